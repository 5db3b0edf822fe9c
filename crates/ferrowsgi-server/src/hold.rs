//! Streamed output held for a moment, so that blocks an application yields
//! in quick succession leave in one write, and a thread of its own that
//! writes whatever waited too long.
//!
//! PEP 3333 lets a server keep a block back only if transmission goes on
//! while the application produces the next one. An application that yields
//! a hundred 1 KiB blocks in 30 µs gains nothing from a hundred writes: each
//! is a system call, a TCP segment and (on loopback, or to a proxy on the
//! same host) a wake-up of the reader paid inside the writer's `send`. So a
//! block that follows the previous one quickly is held, and the held bytes
//! are written:
//!
//! - by the producer, once [`HOLD_MAX`] bytes have gathered or a block took
//!   a [`TICK`] or longer to come (a slow stream, such as server-sent
//!   events, is written block by block and gains nothing by waiting);
//! - by the producer when the response ends or writes anything else;
//! - by the flusher thread, at its first tick a [`TICK`] or more after the
//!   first held block, when the application has not moved on. This is the
//!   guarantee: whatever the application does next (compute, sleep, block
//!   on a lock, hold the GIL), a block it yielded is in the kernel within
//!   two ticks (1 ms) of being yielded.
//!
//! The flusher never touches Python, and it writes a socket only while the
//! connection's owner holds output on it: [`Held::push`] sets the
//! descriptor and [`Held::release`] / [`Held::close`] (before the socket
//! closes) clear it, under the lock the flusher writes under, so it can
//! never write to a descriptor that was closed and reused.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::sync::lock;
use std::time::{Duration, Instant};

/// Held bytes are written by the producer once this many have gathered:
/// 64 KiB is a few dozen TCP segments, large enough that the per-write cost
/// vanishes next to copying the bytes, and the same cap the event loop puts
/// on a batch of pipelined answers.
pub(crate) const HOLD_MAX: usize = 64 * 1024;

/// The flusher's period while output is held: at each tick it writes what
/// has been held for a whole tick, so a held block waits at most two ticks,
/// 1 ms: far below what a client can notice, far above the few
/// microseconds a fast generator takes per block, and as long as the event
/// loop holds complete answers (see server.rs). A producer also writes a
/// block at once when it came a tick or more after the previous one: such
/// a stream is slow (server-sent events, a cursor over a database) and
/// gains nothing by waiting. Fixed ticks rather than one timer per held
/// block: at thousands of responses a second the flusher wakes 2,000 times
/// a second, not once per response, and putting a connection on its list
/// costs a lock and no wake-up.
pub(crate) const TICK: Duration = Duration::from_micros(500);

/// A held buffer larger than this is freed when its response ends, so an
/// idle keep-alive connection that once streamed keeps no 64 KiB buffer;
/// a small one is kept for the next response (no allocation per response).
const KEEP_BETWEEN: usize = 8 * 1024;

/// After this long without held output the flusher sleeps until woken, so
/// an idle server has no thread waking 2,000 times a second.
const IDLE_SLEEP: Duration = Duration::from_millis(100);

/// What the producer's write of held bytes achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// Everything held is in the kernel (or still held, to be written soon).
    Done,
    /// The socket is full: the rest has moved into the caller's buffer.
    Blocked,
}

/// One connection's held output, shared with the flusher thread.
#[derive(Debug, Default)]
pub(crate) struct Held {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Held bytes; the unwritten part starts at `pos`.
    buf: Vec<u8>,
    /// Written prefix of `buf`.
    pos: usize,
    /// The socket while its owner holds output on it, -1 otherwise. The
    /// flusher writes only while this is set.
    fd: RawFd,
    /// When the oldest unwritten held byte was yielded.
    since: Option<Instant>,
    /// A flusher write met a full socket: the producer must stop holding
    /// and let the event loop (and the pause machinery) take over.
    blocked: bool,
    /// A flusher write failed (the client went away); reported to the
    /// producer on its next call.
    failed: Option<io::Error>,
    /// On the flusher's list.
    listed: bool,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            buf: Vec::new(),
            pos: 0,
            fd: -1,
            since: None,
            blocked: false,
            failed: None,
            listed: false,
        }
    }
}

impl Inner {
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Writes what is held without waiting. `Ok(true)` when all of it went.
    fn write_now(&mut self) -> io::Result<bool> {
        while self.pos < self.buf.len() {
            match crate::sys::send_nowait(self.fd, &self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.clear();
        Ok(true)
    }

    fn clear(&mut self) {
        if self.buf.capacity() > 2 * HOLD_MAX {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.pos = 0;
        self.since = None;
    }

    /// Writes what is held now; what the socket does not take moves to
    /// `out` and holding stops.
    fn write_or_spill(&mut self, out: &mut Vec<u8>) -> io::Result<Wrote> {
        match self.write_now() {
            Ok(true) => Ok(Wrote::Done),
            Ok(false) => {
                self.spill_into(out);
                self.fd = -1;
                Ok(Wrote::Blocked)
            }
            Err(e) => {
                self.clear();
                self.fd = -1;
                Err(e)
            }
        }
    }

    /// Moves the unwritten held bytes to the end of `out`.
    fn spill_into(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.pending());
        self.clear();
    }
}

impl Held {
    /// Holds `parts` for the stream on socket `fd`, after the connection's
    /// unwritten output (`out` from `out_pos`), which moves in first so the
    /// order on the wire is kept. With `write` set, or once [`HOLD_MAX`]
    /// bytes are held, writes them now; when the socket is full, the
    /// unwritten rest moves back into `out` and holding stops.
    pub(crate) fn push(
        self: &Arc<Self>,
        fd: RawFd,
        out: &mut Vec<u8>,
        out_pos: &mut usize,
        parts: &[&[u8]],
        write: bool,
        now: Instant,
    ) -> io::Result<Wrote> {
        let mut g = lock(&self.inner);
        if let Some(e) = g.failed.take() {
            g.clear();
            g.fd = -1;
            return Err(e);
        }
        g.fd = fd;
        if *out_pos < out.len() {
            g.buf.extend_from_slice(&out[*out_pos..]);
        }
        out.clear();
        *out_pos = 0;
        for p in parts {
            g.buf.extend_from_slice(p);
        }
        if g.blocked || write || g.pending().len() >= HOLD_MAX {
            g.blocked = false;
            return g.write_or_spill(out);
        }
        if g.since.is_none() {
            g.since = Some(now);
        }
        if !g.listed {
            g.listed = true;
            drop(g);
            if !enlist(self) {
                // No flusher thread: nothing may wait, so write at once.
                let mut g = lock(&self.inner);
                g.listed = false;
                return g.write_or_spill(out);
            }
        }
        Ok(Wrote::Done)
    }

    /// Stops holding: the unwritten held bytes move to the end of `out` (the
    /// connection's buffer, which holds nothing unwritten meanwhile), and
    /// the flusher will not write this socket again. A failure the flusher
    /// met is returned.
    pub(crate) fn release(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut g = lock(&self.inner);
        g.fd = -1;
        g.blocked = false;
        if let Some(e) = g.failed.take() {
            g.clear();
            return Err(e);
        }
        g.spill_into(out);
        if g.buf.capacity() > KEEP_BETWEEN {
            // Not kept for the connection's idle life.
            g.buf = Vec::new();
        }
        Ok(())
    }

    /// Forgets the socket without keeping the bytes (the connection is being
    /// dropped).
    pub(crate) fn close(&self) {
        let mut g = lock(&self.inner);
        g.fd = -1;
        g.failed = None;
        g.clear();
    }
}

/// The flusher's list of connections that hold output.
#[derive(Debug, Default)]
struct List {
    items: Vec<Arc<Held>>,
    /// The flusher waits for an entry (the list was empty).
    sleeping: bool,
}

#[derive(Debug, Default)]
struct Flusher {
    list: Mutex<List>,
    wake: Condvar,
}

/// Puts `held` on the flusher's list, starting the flusher thread on first
/// use. `false` when the thread cannot be started.
fn enlist(held: &Arc<Held>) -> bool {
    static FLUSHER: OnceLock<Option<Arc<Flusher>>> = OnceLock::new();
    let flusher = FLUSHER.get_or_init(|| {
        let f = Arc::new(Flusher::default());
        let runner = Arc::clone(&f);
        std::thread::Builder::new()
            .name("ferrowsgi-flush".into())
            .spawn(move || run(&runner))
            .ok()
            .map(|_| f)
    });
    let Some(f) = flusher else {
        return false;
    };
    let mut list = lock(&f.list);
    list.items.push(Arc::clone(held));
    if list.sleeping {
        list.sleeping = false;
        f.wake.notify_one();
    }
    true
}

/// The flusher thread: every [`TICK`] writes held output that has waited
/// a tick or more and drops entries that hold nothing; after
/// [`IDLE_SLEEP`] with an empty list it sleeps until an entry is added.
fn run(f: &Flusher) {
    let mut list = lock(&f.list);
    let mut last_busy = Instant::now();
    let mut tick = Instant::now();
    loop {
        let now = Instant::now();
        list.items.retain(|h| {
            let Ok(mut g) = h.inner.try_lock() else {
                // Its producer is adding to it or writing it right now.
                return true;
            };
            if g.fd < 0 || g.pending().is_empty() || g.failed.is_some() {
                g.listed = false;
                return false;
            }
            if g.since
                .is_some_and(|s| now.saturating_duration_since(s) < TICK)
            {
                return true;
            }
            match g.write_now() {
                Ok(true) => {
                    g.listed = false;
                    false
                }
                Ok(false) => {
                    // The client reads slowly: tell the producer, and try
                    // again at the next tick in case it is not back soon.
                    g.blocked = true;
                    true
                }
                Err(e) => {
                    g.failed = Some(e);
                    g.listed = false;
                    false
                }
            }
        });
        if !list.items.is_empty() {
            last_busy = now;
        } else if now.saturating_duration_since(last_busy) >= IDLE_SLEEP {
            list.sleeping = true;
            list = f.wake.wait(list).unwrap_or_else(|e| e.into_inner());
            last_busy = Instant::now();
            tick = last_busy;
            continue;
        }
        // The next tick on the grid, so that time spent writing does not
        // stretch the period.
        tick += TICK;
        if tick <= now {
            tick = now + TICK;
        }
        let wait = tick.saturating_duration_since(Instant::now());
        list = f
            .wake
            .wait_timeout(list, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_held_block_is_written_by_the_flusher_while_the_producer_waits() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let held = Arc::new(Held::default());
        let (mut out, mut pos) = (b"head;".to_vec(), 0);
        let now = Instant::now();
        let wrote = held.push(
            ours.as_raw_fd(),
            &mut out,
            &mut pos,
            &[b"block;"],
            false,
            now,
        );
        assert_eq!(wrote.unwrap(), Wrote::Done);
        assert!(
            out.is_empty(),
            "the unwritten head moved into the held bytes"
        );
        // Held, not written: nothing has arrived yet.
        theirs.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let early = theirs.read(&mut buf);
        assert_eq!(early.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // The producer does nothing more; the flusher writes it.
        theirs.set_nonblocking(false).unwrap();
        theirs
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 11 {
            let n = theirs.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"head;block;");
        assert!(now.elapsed() >= TICK, "written before a tick had passed");
        let mut rest = Vec::new();
        held.release(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn writes_at_once_when_asked_and_keeps_the_order_when_released() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let held = Arc::new(Held::default());
        let (mut out, mut pos) = (Vec::new(), 0);
        let now = Instant::now();
        let fd = ours.as_raw_fd();
        held.push(fd, &mut out, &mut pos, &[b"a;"], true, now)
            .unwrap();
        let mut buf = [0u8; 2];
        theirs.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"a;");
        held.push(fd, &mut out, &mut pos, &[b"b;", b"c;"], false, now)
            .unwrap();
        let mut back = Vec::new();
        held.release(&mut back).unwrap();
        assert_eq!(
            back, b"b;c;",
            "released bytes go back to the caller, in order"
        );
    }

    #[test]
    fn a_full_socket_hands_the_rest_back() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let held = Arc::new(Held::default());
        let (mut out, mut pos) = (Vec::new(), 0);
        let block = vec![7u8; 4096];
        let fd = ours.as_raw_fd();
        let mut blocked = false;
        for _ in 0..10_000 {
            let r = held.push(fd, &mut out, &mut pos, &[&block], true, Instant::now());
            if r.unwrap() == Wrote::Blocked {
                blocked = true;
                break;
            }
        }
        assert!(blocked, "the peer never read, so the socket had to fill");
        assert!(
            !out.is_empty(),
            "what the socket did not take is the caller's"
        );
    }
}
