//! The memory a request body is buffered in before the application is
//! called ([`BodyBuf`]), and the one spare block the process keeps for the
//! next body.
//!
//! A body of known length is given one block of exactly its size (within
//! [`BODY_BUFFER`], the in-memory limit) before its first byte is copied,
//! so it is never grown by reallocation and copied again on the way. When
//! the request is over its block is kept as the process's spare (the
//! largest given back, within [`BODY_BUFFER`]) for the next body. A stream
//! of POST requests then reuses one warm block rather than asking the
//! allocator for fresh ones each time, and what it costs no longer depends
//! on which malloc arena the thread draws from (the process's main arena
//! for a worker's event loop, a thread arena for `serve()`'s).
//!
//! The spare is the process's, not a thread's: with application threads
//! the event loop moves between threads (leader and followers) and a
//! request is often finished on another thread than the one that read its
//! body, so blocks given back to each thread's own slot would pile up where
//! the next body is not read. The slot is taken with `try_lock`: a thread
//! that finds it busy allocates or frees as if there were no spare, and
//! never waits (not even in a child forked while another thread held the
//! slot, where it stays busy for good and bodies are allocated as before).
//! A connection holds a block only while it has a body in memory, so an
//! idle keep-alive connection holds none; the process holds at most one
//! spare block, of at most [`BODY_BUFFER`] bytes, and frees it, its pages
//! given back to the kernel, once no body has been buffered for a while
//! (the event loop's sweep asks, [`BodyBuf::buffered`]).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crate::conn::BODY_BUFFER;

/// The process's spare block: empty, with the capacity of the largest
/// body block given back (within [`BODY_BUFFER`]).
static SPARE: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Bodies given a buffer so far (see [`BodyBuf::buffered`]).
static BUFFERED: AtomicU64 = AtomicU64::new(0);

/// The spare's slot, unless another thread holds it right now.
fn slot() -> Option<MutexGuard<'static, Vec<u8>>> {
    match SPARE.try_lock() {
        Ok(guard) => Some(guard),
        // Nothing panics while holding it, and whatever it holds is an
        // empty block: a poisoned slot is as good as any.
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The buffered part of a request body. It dereferences to its `Vec`;
/// dropping it gives its block back as the process's spare.
#[derive(Debug, Default)]
pub struct BodyBuf(Vec<u8>);

impl BodyBuf {
    /// No buffer: for a request with no body, or one read by the
    /// application straight from the socket or from its spool file.
    pub const fn new() -> BodyBuf {
        BodyBuf(Vec::new())
    }

    /// A buffer for a body of `len` bytes: the process's spare block when
    /// it is large enough; else one block of exactly `len` bytes (a spare
    /// too small is freed: the block given back after this body takes its
    /// place). A length of 0 or past [`BODY_BUFFER`] (a body that is not
    /// kept in memory) gets no buffer.
    pub fn for_length(len: usize) -> BodyBuf {
        if len == 0 || len > BODY_BUFFER {
            return BodyBuf::new();
        }
        let mut buf = Self::take_spare();
        if buf.capacity() < len {
            // Not `reserve_exact`: that would realloc, which copies the old
            // block's bytes although none of them is kept.
            buf.0 = Vec::with_capacity(len);
        }
        buf
    }

    /// The process's spare block, or an empty buffer when there is none
    /// (or another thread holds the slot): for a chunked body, whose length
    /// is not known, and which grows from there as its bytes come.
    pub fn take_spare() -> BodyBuf {
        BUFFERED.fetch_add(1, Ordering::Relaxed);
        BodyBuf(
            slot()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default(),
        )
    }

    /// Frees the process's spare block, its pages given back to the
    /// kernel first (the allocator keeps freed memory mapped); returns the
    /// bytes it held.
    pub fn release_spare() -> usize {
        let spare = slot()
            .filter(|s| s.capacity() > 0)
            .map(|mut s| std::mem::take(&mut *s));
        spare.map_or(0, |mut s| {
            crate::sys::discard_pages(&mut s);
            s.capacity()
        })
    }

    /// How many bodies have been given a buffer so far: a count that
    /// has not moved between two looks means no body used the spare block
    /// in between.
    pub fn buffered() -> u64 {
        BUFFERED.load(Ordering::Relaxed)
    }

    /// The capacity of the process's spare block (0 for none).
    pub fn spare_capacity() -> usize {
        slot().map_or(0, |s| s.capacity())
    }
}

impl Drop for BodyBuf {
    fn drop(&mut self) {
        let cap = self.0.capacity();
        // A block grown past the in-memory limit (a chunked body's
        // doubling, a long line read by `readline`) is not kept.
        if cap == 0 || cap > BODY_BUFFER {
            return;
        }
        let smaller = match slot() {
            Some(mut spare) if spare.capacity() < cap => {
                self.0.clear();
                std::mem::replace(&mut *spare, std::mem::take(&mut self.0))
            }
            _ => return,
        };
        // Freed once the slot is let go (at the end of the match above).
        drop(smaller);
    }
}

impl Deref for BodyBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for BodyBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spare is the process's: the tests take turns, each starting
    /// with none.
    fn one_at_a_time(f: impl FnOnce()) {
        static TURN: Mutex<()> = Mutex::new(());
        let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        BodyBuf::release_spare();
        f();
    }

    #[test]
    fn a_length_gets_exactly_its_size_then_the_block_is_reused() {
        one_at_a_time(|| {
            let mut body = BodyBuf::for_length(65536);
            assert_eq!(body.capacity(), 65536);
            body.extend_from_slice(&[7; 65536]);
            let at = body.as_ptr();
            drop(body);
            assert_eq!(BodyBuf::spare_capacity(), 65536);
            let again = BodyBuf::for_length(1000);
            assert_eq!(again.as_ptr(), at, "the spare block is taken");
            assert!(again.is_empty(), "a block comes back empty");
            assert_eq!(BodyBuf::spare_capacity(), 0);
        });
    }

    #[test]
    fn the_larger_block_is_kept() {
        one_at_a_time(|| {
            let small = BodyBuf::for_length(100);
            let large = BodyBuf::for_length(5000);
            assert_eq!(large.capacity(), 5000);
            drop(large);
            drop(small);
            assert_eq!(BodyBuf::spare_capacity(), 5000);
            // A spare too small for a body is replaced, not grown.
            drop(BodyBuf::for_length(9000));
            assert_eq!(BodyBuf::spare_capacity(), 9000);
        });
    }

    #[test]
    fn a_block_from_another_thread_is_reused() {
        one_at_a_time(|| {
            let body = BodyBuf::for_length(4096);
            let at = body.as_ptr();
            std::thread::spawn(move || drop(body)).join().unwrap();
            assert_eq!(BodyBuf::for_length(4096).as_ptr(), at);
        });
    }

    #[test]
    fn nothing_past_the_limit_is_kept() {
        one_at_a_time(|| {
            let huge = BodyBuf::for_length(BODY_BUFFER + 1);
            assert_eq!(
                huge.capacity(),
                0,
                "a length past the limit is not allocated"
            );
            let mut grown = BodyBuf::take_spare();
            grown.reserve_exact(BODY_BUFFER + 1);
            drop(grown);
            assert_eq!(BodyBuf::spare_capacity(), 0);
            drop(BodyBuf::for_length(BODY_BUFFER));
            assert_eq!(BodyBuf::release_spare(), BODY_BUFFER);
            assert_eq!(BodyBuf::spare_capacity(), 0);
        });
    }

    #[test]
    fn no_body_allocates_nothing() {
        one_at_a_time(|| {
            drop(BodyBuf::new());
            drop(BodyBuf::for_length(0));
            assert_eq!(BodyBuf::spare_capacity(), 0);
        });
    }
}
