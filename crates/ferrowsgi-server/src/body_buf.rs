//! The memory a request body is buffered in before the application is
//! called ([`BodyBuf`]), and the one spare block each thread keeps for the
//! next body.
//!
//! A body of known length is given one block of exactly its size (within
//! [`BODY_BUFFER`], the in-memory limit) before its first byte is copied,
//! so it is never grown by reallocation and copied again on the way. When
//! the request is over, its block goes back to the thread that drops it,
//! which keeps one (the largest it has seen, within [`BODY_BUFFER`]) for
//! the next body. A stream of POST requests then reuses one warm block
//! rather than asking the allocator for fresh ones each time, and what it
//! costs no longer depends on which malloc arena the thread draws from (the
//! process's main arena for a worker's event loop, a thread arena for
//! `serve()`'s). A connection holds a block only while it has a body in
//! memory, so an idle keep-alive connection holds none; each thread holds
//! at most one spare block of at most [`BODY_BUFFER`] bytes.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};

use crate::conn::BODY_BUFFER;

thread_local! {
    /// This thread's spare block: empty, with the capacity of the largest
    /// body block given back here (within [`BODY_BUFFER`]).
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The buffered part of a request body. It dereferences to its `Vec`;
/// dropping it gives its block back to the thread's spare.
#[derive(Debug, Default)]
pub struct BodyBuf(Vec<u8>);

impl BodyBuf {
    /// No buffer: for a request with no body, or one read by the
    /// application straight from the socket or from its spool file.
    pub const fn new() -> BodyBuf {
        BodyBuf(Vec::new())
    }

    /// A buffer for a body of `len` bytes: the thread's spare block when it
    /// is large enough; else one block of exactly `len` bytes (the spare,
    /// too small, is freed: the block given back after this body takes its
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

    /// The thread's spare block, or an empty buffer when it has none: for
    /// a chunked body, whose length is not known, and which grows from
    /// there as its bytes come.
    pub fn take_spare() -> BodyBuf {
        BodyBuf(SPARE.try_with(Cell::take).unwrap_or_default())
    }

    /// Frees this thread's spare block; returns the bytes it held.
    pub fn release_spare() -> usize {
        SPARE
            .try_with(Cell::take)
            .map_or(0, |spare| spare.capacity())
    }

    /// The capacity of this thread's spare block (0 for none).
    pub fn spare_capacity() -> usize {
        SPARE
            .try_with(|slot| {
                let spare = slot.take();
                let cap = spare.capacity();
                slot.set(spare);
                cap
            })
            .unwrap_or(0)
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
        let mut block = std::mem::take(&mut self.0);
        block.clear();
        // During the thread's exit the slot is gone: the block is freed.
        let _ = SPARE.try_with(|slot| {
            let spare = slot.take();
            slot.set(if spare.capacity() >= cap {
                spare
            } else {
                block
            });
        });
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

    /// Each test runs on a thread of its own, so the spare starts empty.
    fn on_own_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn a_length_gets_exactly_its_size_then_the_block_is_reused() {
        on_own_thread(|| {
            let mut body = BodyBuf::for_length(65536);
            assert_eq!(body.capacity(), 65536);
            body.extend_from_slice(&[7; 65536]);
            let at = body.as_ptr();
            drop(body);
            assert_eq!(BodyBuf::spare_capacity(), 65536);
            let again = BodyBuf::for_length(1000);
            assert_eq!(again.as_ptr(), at, "the spare block is taken");
            assert!(again.is_empty());
            assert_eq!(BodyBuf::spare_capacity(), 0);
        });
    }

    #[test]
    fn the_larger_block_is_kept() {
        on_own_thread(|| {
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
    fn nothing_past_the_limit_is_kept() {
        on_own_thread(|| {
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
        on_own_thread(|| {
            drop(BodyBuf::new());
            drop(BodyBuf::for_length(0));
            assert_eq!(BodyBuf::spare_capacity(), 0);
        });
    }
}
