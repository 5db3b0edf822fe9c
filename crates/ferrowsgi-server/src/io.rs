//! The socket I/O of one connection: its stream, its input and output
//! buffers, reads into the buffer, writes out of it, the FIN, and the socket
//! options set on the way. Nothing here knows a protocol: a connection
//! ([`crate::conn::Conn`]) pairs this with a codec, and the exchange writes
//! through it.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use crate::clock::Stamp;
use crate::listen::Stream;
use crate::log;
use crate::syscall;

/// Bytes asked of the kernel per read(2), and the smallest spare room a read
/// is attempted with. 16 KiB holds dozens of pipelined requests.
pub const READ_CHUNK: usize = 16 * 1024;

/// A connection's output buffer larger than this is released once flushed
/// rather than kept for the next response.
pub const KEEP_BUFFER: usize = 64 * 1024;

/// A connection's socket and buffers.
#[derive(Debug)]
pub struct SocketIo {
    /// The socket.
    pub stream: Stream,
    /// Bytes read and not yet consumed start at `rpos`.
    pub rbuf: Vec<u8>,
    /// Consumed prefix of `rbuf`.
    pub rpos: usize,
    /// Bytes to send; the unsent part starts at `wpos`.
    pub wbuf: Vec<u8>,
    /// Sent prefix of `wbuf`.
    pub wpos: usize,
    /// The client shut down its sending side.
    pub peer_eof: bool,
    /// The last read(2) filled all the room it was given (so the socket may
    /// hold more).
    pub read_filled: bool,
    /// Epoll reported the client's FIN: read until EOF rather than stopping
    /// at a short read (no further edge will come).
    pub read_closed: bool,
    /// TCP_NODELAY is set (see [`SocketIo::set_nodelay`]).
    pub(crate) nodelay: bool,
    /// The write side is shut down: the FIN has gone.
    write_shut: bool,
}

impl SocketIo {
    /// Wraps an accepted stream, with no buffers yet.
    pub fn new(stream: Stream) -> SocketIo {
        SocketIo {
            stream,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            peer_eof: false,
            read_filled: false,
            read_closed: false,
            nodelay: false,
            write_shut: false,
        }
    }

    /// Frees both buffers when nothing is in them; returns the bytes they
    /// held (see [`crate::conn::Conn::release_buffers`]).
    pub fn release_buffers(&mut self) -> usize {
        if self.rpos < self.rbuf.len() || self.has_output() {
            return 0;
        }
        let held = self.rbuf.capacity() + self.wbuf.capacity();
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.wbuf = Vec::new();
        self.wpos = 0;
        held
    }

    /// Sets TCP_NODELAY before a write that may follow an unacknowledged
    /// one (a second response, a streamed one, `100 Continue`). Only a
    /// connection whose one small answer leaves in one write and is closed
    /// goes without: a system call saved per connection without keep-alive.
    pub fn set_nodelay(&mut self) {
        if !self.nodelay {
            self.nodelay = true;
            if let Err(e) = self.stream.set_nodelay() {
                log::debug(&format!("cannot set TCP_NODELAY: {e}"));
            }
        }
    }

    /// Whether the input buffer holds bytes and has no room for another
    /// read without growing (see [`SocketIo::read_once_of`]).
    pub fn is_full(&self) -> bool {
        !self.rbuf.is_empty() && self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4
    }

    /// Unconsumed input.
    pub fn input(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Marks `n` input bytes consumed, reclaiming the buffer when empty.
    pub fn consume(&mut self, n: usize) {
        self.rpos += n;
        if self.rpos >= self.rbuf.len() {
            if self.rbuf.capacity() > KEEP_BUFFER {
                // Grown for a body: not kept for the connection's idle life.
                self.rbuf = Vec::new();
            } else {
                self.rbuf.clear();
            }
            self.rpos = 0;
        }
    }

    /// One read(2) of about `chunk` bytes into spare room at the end of
    /// `rbuf` (more room for a body than for heads). `Ok(0)` is EOF.
    pub fn read_once_of(&mut self, chunk: usize) -> io::Result<usize> {
        if self.rpos > 0 && self.rpos * 2 >= self.rbuf.len() {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        if self.rbuf.capacity() == 0 && chunk <= READ_CHUNK {
            return self.read_unbuffered();
        }
        if self.rbuf.capacity() - self.rbuf.len() < chunk / 4 {
            self.rbuf.reserve(chunk);
        }
        let len = self.rbuf.len();
        let spare = self.rbuf.spare_capacity_mut();
        let fd = self.stream.as_raw_fd();
        loop {
            match syscall::read(fd, spare) {
                Ok(n) => {
                    self.read_filled = n == spare.len();
                    // SAFETY: the kernel initialised the first
                    // `n <= spare.len()` bytes of the spare capacity.
                    unsafe { self.rbuf.set_len(len + n) };
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The read of a connection that holds no input buffer (a new one, or
    /// one whose buffers an idle spell freed): into the stack, keeping only
    /// what arrived. A connection that sends one request and then waits is
    /// left with a buffer the size of that request rather than a 16 KiB
    /// one, and, above all, 10,000 of them leave no 16 KiB holes between
    /// their small allocations, which the allocator could not give back
    /// (about 4 KiB of RSS each, bench/idle.py). A connection's second read
    /// grows the buffer to the usual size.
    fn read_unbuffered(&mut self) -> io::Result<usize> {
        // Not zeroed: the kernel writes what it reports, and only that is
        // kept (zeroing the 16 KiB was some 500 instructions per new
        // connection).
        let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let fd = self.stream.as_raw_fd();
        loop {
            match syscall::read(fd, &mut stack) {
                Ok(n) => {
                    self.read_filled = n == stack.len();
                    // SAFETY: the kernel initialised the first
                    // `n <= READ_CHUNK` bytes of the array.
                    let got = unsafe { std::slice::from_raw_parts(stack.as_ptr().cast::<u8>(), n) };
                    self.rbuf.extend_from_slice(got);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether output is waiting to be written.
    pub fn has_output(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    /// Shuts the write side down (the FIN), once.
    pub fn shut_write(&mut self) {
        if !self.write_shut {
            self.stream.shutdown_write();
            self.write_shut = true;
        }
    }

    /// Writes pending output without blocking; with `last`, the end of it
    /// is held back (`MSG_MORE`) for the FIN that follows. `Ok(true)` when
    /// all of it is written; a partial write restarts `since` (the write
    /// timeout's clock).
    pub fn flush_with(&mut self, last: bool, since: &mut Stamp) -> io::Result<bool> {
        while self.wpos < self.wbuf.len() {
            let wrote = if last {
                self.stream.write_last(&self.wbuf[self.wpos..])
            } else {
                self.stream.write(&self.wbuf[self.wpos..])
            };
            match wrote {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    if self.wpos < self.wbuf.len() {
                        // A partial write: the client is reading, slowly.
                        *since = Stamp::now();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // A buffer that grew for one large response is not kept for the
        // connection's idle life.
        if self.wbuf.capacity() > KEEP_BUFFER {
            self.wbuf = Vec::new();
        } else {
            self.wbuf.clear();
        }
        self.wpos = 0;
        Ok(true)
    }
}
