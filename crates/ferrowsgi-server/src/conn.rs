//! One client connection: its socket, its read and write buffers, and the
//! rules that turn buffered bytes into the next ready request.
//!
//! Both the event loop and the application threads drive a connection
//! through [`Conn::next_request`], so pipelined requests already in the
//! buffer are served by whichever thread holds the connection, without a
//! hand-off.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrowsgi_proto::proxy::{parse_proxy_header, ProxyParsed, DEFAULT_MAX_V2_LEN};
use ferrowsgi_proto::{parse_head_into, BodyKind, HeadStorage, Parsed, Version};

use crate::codec::{BodyReader, Codec};
use crate::config::Config;
use crate::hold::Held;
use crate::listen::Stream;
use crate::log;
use crate::peer::PeerInfo;
use crate::spool::{KeptSpool, Spool};
use crate::state::{Parked, Pending};
use crate::sys::Spliced;

/// Bytes asked of the kernel per read(2), and the smallest spare room a read
/// is attempted with. 16 KiB holds dozens of pipelined requests.
pub const READ_CHUNK: usize = 16 * 1024;

/// Room asked of the kernel per read(2) while a request body is being
/// buffered: large bodies arrive in far fewer system calls.
pub const BODY_READ_CHUNK: usize = 128 * 1024;

/// A request body is read completely before the application is called, so a
/// slow uploader never holds an application thread: up to this size in
/// memory, the rest in a temporary file (so memory stays flat under large
/// uploads). Past this size, a body from a client allowed to stream
/// (`--stream-bodies`) is read by the application from the socket instead.
pub const BODY_BUFFER: usize = 256 * 1024;

/// A connection's output buffer larger than this is released once flushed
/// rather than kept for the next response.
pub const KEEP_BUFFER: usize = 64 * 1024;

/// After a response, up to this many bytes of a request body the application
/// did not read are read and discarded to keep the connection; past it the
/// connection is closed instead.
pub const DRAIN_LIMIT: u64 = 256 * 1024;

/// What the connection does once its output is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting for, reading or serving requests.
    Open,
    /// Close after the pending output is written (error responses,
    /// `Connection: close`, HTTP/1.0).
    CloseAfterFlush,
}

/// What [`Conn::next_request`] found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned by value, never stored
pub enum Next {
    /// A request ready for the application.
    Ready(Pending),
    /// More bytes are needed (or output must drain first).
    Wait,
    /// The connection is finished: flush what is pending, then close.
    Close,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: Stream,
    /// Who is on the other end.
    pub peer: Arc<PeerInfo>,
    /// Bytes read and not yet consumed start at `rpos`.
    pub rbuf: Vec<u8>,
    /// Consumed prefix of `rbuf`.
    pub rpos: usize,
    /// The buffers of the last request's head, for the next one's.
    pub spare_head: HeadStorage,
    /// Bytes to send; the unsent part starts at `wpos`.
    pub wbuf: Vec<u8>,
    /// Sent prefix of `wbuf`.
    pub wpos: usize,
    /// Keep going or close after the flush.
    pub state: ConnState,
    /// A request whose body is still being buffered.
    pub pending: Option<Box<Pending>>,
    /// The unread rest of the previous request's body, being discarded.
    pub drain: Option<BodyReader>,
    /// The protocol the connection speaks.
    pub codec: Codec,
    /// The client shut down its sending side.
    pub peer_eof: bool,
    /// The last read stopped because the buffer was full, not at EAGAIN.
    pub maybe_more: bool,
    /// The last read(2) filled all the room it was given (so the socket may
    /// hold more).
    pub read_filled: bool,
    /// Epoll reported the client's FIN: read until EOF rather than stopping
    /// at a short read (no further edge will come).
    pub read_closed: bool,
    /// Requests served on this connection.
    pub served: u64,
    /// The server is stopping: finish the request in progress, then close.
    pub stopping: bool,
    /// The server's stop flag, read when a response head is written, so
    /// that a response begun after a stop was asked for says
    /// `Connection: close` even while the loop has not marked the
    /// connection yet (its application call started before the stop).
    pub server_stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// A request was rejected while the client may still be sending: linger
    /// before closing so our response is not lost to a reset.
    pub must_linger: bool,
    /// When the current wait (idle, head, body, write) last saw progress.
    pub since: Instant,
    /// When the first byte of a still incomplete head arrived.
    pub head_since: Option<Instant>,
    /// A response paused until its buffered output drains (a slow reader
    /// of a streamed response); no further request is served meanwhile.
    pub parked: Option<Box<Parked>>,
    /// A write without waiting met a full socket (EAGAIN); a paused
    /// response resumes only after the next writability edge.
    pub write_blocked: bool,
    /// Complete responses may wait in the buffer until the event loop has
    /// served the other connections ready in the same wake-up, and then go
    /// out together (set by an inline event loop, which flushes them).
    pub defer_output: bool,
    /// This connection is on the event loop's list of deferred flushes.
    pub deferred: bool,
    /// Other connections have requests ready in this wake-up (inline mode):
    /// a response may yield to them before its iteration starts.
    pub others_ready: bool,
    /// A paused response is on the event loop's list to go on with at the
    /// end of this wake-up.
    pub resume_due: bool,
    /// A read-readiness edge has not been acted on yet.
    pub read_due: bool,
    /// Streamed output held back for a moment (see `hold.rs`), made on the
    /// connection's first streamed response and kept for the next ones.
    pub(crate) held: Option<Arc<Held>>,
    /// The socket is registered with the event loop's poller. A connection
    /// answered and closed in its first round never is (see
    /// `EventLoop::watch`).
    pub(crate) registered: bool,
    /// TCP_NODELAY is set (see [`Conn::set_nodelay`]).
    pub(crate) nodelay: bool,
    /// The write side is shut down: the FIN has gone (see
    /// [`Conn::finish_output`]).
    write_shut: bool,
    /// The spool file of an earlier body, kept for the next large one.
    pub kept_spool: Option<KeptSpool>,
    /// Set by the event loop when it sees an event for this connection while
    /// an application thread has it (made on the first hand-off).
    pub(crate) away_seen: Option<Arc<AtomicBool>>,
    /// The connection must start with a PROXY protocol header, not read
    /// yet (a listener with `+proxy` or `--proxy-protocol`).
    pub proxy_pending: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Before the socket closes: the flusher must never write to its
        // descriptor again (it could be reused at once).
        if let Some(h) = &self.held {
            h.close();
        }
    }
}

/// Outcome of reading from the socket.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Read until the kernel had no more (EAGAIN) or the buffer filled.
    Progress,
    /// The client closed its side.
    Eof,
}

impl Conn {
    /// Wraps an accepted stream.
    pub fn new(stream: Stream, peer: PeerInfo) -> Conn {
        Conn {
            stream,
            peer: Arc::new(peer),
            rbuf: Vec::new(),
            rpos: 0,
            spare_head: HeadStorage::default(),
            wbuf: Vec::new(),
            wpos: 0,
            state: ConnState::Open,
            pending: None,
            drain: None,
            codec: Codec::Http1,
            peer_eof: false,
            maybe_more: false,
            read_filled: false,
            read_closed: false,
            served: 0,
            stopping: false,
            server_stop: None,
            must_linger: false,
            since: Instant::now(),
            head_since: None,
            parked: None,
            write_blocked: false,
            defer_output: false,
            deferred: false,
            others_ready: false,
            resume_due: false,
            read_due: false,
            held: None,
            registered: false,
            nodelay: false,
            write_shut: false,
            kept_spool: None,
            away_seen: None,
            proxy_pending: false,
        }
    }

    /// A spool file for a new body: the one kept from an earlier request,
    /// or a new one.
    fn new_spool(&mut self) -> io::Result<Spool> {
        match self.kept_spool.take().and_then(KeptSpool::reuse) {
            Some(spool) => Ok(spool),
            None => Spool::create(),
        }
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

    /// One read(2) into spare room at the end of `rbuf`. `Ok(0)` is EOF.
    pub fn read_once(&mut self) -> io::Result<usize> {
        let chunk = if self.pending.is_some() {
            BODY_READ_CHUNK
        } else {
            READ_CHUNK
        };
        self.read_once_of(chunk)
    }

    /// [`Conn::read_once`] asking for about `chunk` bytes (more room for a
    /// body than for heads).
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
            // SAFETY: read(2) writes at most `spare.len()` bytes into the
            // vector's spare capacity, which is valid for writes; the length
            // is raised only over the bytes it reports as written.
            let rc = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
            if rc >= 0 {
                let n = rc as usize;
                self.read_filled = n == spare.len();
                // SAFETY: the kernel initialised `n <= spare.len()` bytes.
                unsafe { self.rbuf.set_len(len + n) };
                return Ok(n);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
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
        let mut stack = [0u8; READ_CHUNK];
        let fd = self.stream.as_raw_fd();
        loop {
            // SAFETY: read(2) writes at most `stack.len()` bytes into the
            // live, writable array.
            let rc = unsafe { libc::read(fd, stack.as_mut_ptr().cast(), stack.len()) };
            if rc >= 0 {
                let n = rc as usize;
                self.read_filled = n == stack.len();
                self.rbuf.extend_from_slice(&stack[..n]);
                return Ok(n);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Reads until EAGAIN, EOF, or `cap` unconsumed bytes are buffered.
    pub fn fill(&mut self, cap: usize) -> io::Result<ReadOutcome> {
        self.maybe_more = false;
        if self.input().is_empty() {
            if let Some(outcome) = self.splice_body() {
                return outcome;
            }
        }
        loop {
            if self.input().len() >= cap {
                self.maybe_more = true;
                return Ok(ReadOutcome::Progress);
            }
            match self.read_once() {
                Ok(0) => {
                    self.peer_eof = true;
                    return Ok(ReadOutcome::Eof);
                }
                // A read that did not fill the room drained the socket: with
                // edge-triggered readiness, data arriving later raises a new
                // edge, so the usual extra read that would only see EAGAIN
                // is skipped (one syscall less per request).
                Ok(_) if !self.read_filled && !self.read_closed => {
                    return Ok(ReadOutcome::Progress)
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadOutcome::Progress)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the rest of a Content-Length body that is being spooled from
    /// the socket straight into its file (splice(2): the bytes never enter
    /// user space), until the socket is empty, the client closes, or the
    /// body is complete. `None` when this does not apply (no spooled
    /// Content-Length body, or splice(2) unavailable): the caller reads into
    /// the buffer instead.
    fn splice_body(&mut self) -> Option<io::Result<ReadOutcome>> {
        let p = self.pending.as_mut()?;
        if !p.decoder.is_plain() {
            return None;
        }
        let spool = p.spool.as_mut()?;
        if !spool.splice || spool.failed.is_some() {
            return None;
        }
        let sock = self.stream.as_raw_fd();
        loop {
            let remaining = p.decoder.remaining_hint()?;
            if remaining == 0 {
                // The body ended before the socket was drained: whatever
                // follows (a pipelined request) is read after the response,
                // without waiting for an edge that will not come again.
                self.maybe_more = true;
                return Some(Ok(ReadOutcome::Progress));
            }
            let max = usize::try_from(remaining).unwrap_or(usize::MAX);
            match spool.splice_from(sock, max) {
                Spliced::Moved(n) => {
                    p.decoder.consume_length(n as u64);
                }
                Spliced::Eof => {
                    self.peer_eof = true;
                    return Some(Ok(ReadOutcome::Eof));
                }
                Spliced::Empty => return Some(Ok(ReadOutcome::Progress)),
                Spliced::Unsupported => {
                    spool.splice = false;
                    return None;
                }
                Spliced::Socket(e) => return Some(Err(e)),
                Spliced::File(e) => {
                    // Reported by `next_request`, which answers 500.
                    spool.failed = Some(e);
                    return Some(Ok(ReadOutcome::Progress));
                }
            }
        }
    }

    /// Frees the buffers of a connection that has nothing in them (it
    /// waits for its client's next request) and returns how many bytes
    /// they held. The event loop calls this for connections that stayed
    /// quiet for a whole sweep, so that an idle keep-alive connection costs
    /// its bookkeeping alone (about 1 KiB, bench/idle.py) rather than a
    /// 16 KiB input buffer with a page of it touched, while a busy one
    /// keeps reusing its buffers and allocates nothing per request.
    pub fn release_buffers(&mut self) -> usize {
        if !self.input().is_empty() || self.has_output() || self.pending.is_some() {
            return 0;
        }
        let held = self.rbuf.capacity() + self.wbuf.capacity() + self.spare_head.capacity();
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.wbuf = Vec::new();
        self.wpos = 0;
        self.spare_head = HeadStorage::default();
        held
    }

    /// Whether output is waiting to be written.
    pub fn has_output(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    /// Nothing is to be done for this connection until its client sends
    /// more: it stays open, its output is out, nothing is buffered, paused
    /// or half-read, and no read is owed. The event loop needs no wake-up to
    /// take such a connection back from an application thread.
    pub fn waits_quietly(&self) -> bool {
        self.state == ConnState::Open
            && !self.has_output()
            && self.parked.is_none()
            && self.pending.is_none()
            && self.drain.is_none()
            && self.input().is_empty()
            && !self.maybe_more
            && !self.read_due
            && !self.peer_eof
            && !self.read_closed
            && !self.stopping
            && !self.must_linger
    }

    /// Writes pending output without blocking. `Ok(true)` when all of it is
    /// written. Any progress restarts the write timeout.
    pub fn flush(&mut self) -> io::Result<bool> {
        self.flush_with(false)
    }

    /// [`Conn::flush`] for the last output of a connection that closes
    /// after it, and then shuts the write side down. The end of the output
    /// is held back (`MSG_MORE`) for the shutdown, so the FIN leaves in the
    /// same segment: without keep-alive that is one packet fewer per
    /// connection and one acknowledgement fewer from the client, which on
    /// loopback, or to a proxy on the same host, the server's CPU pays for
    /// too. The FIN goes as soon as the output is out, before the close and
    /// whatever lingering follows (a close with unread input would be a
    /// reset, and drop anything still held).
    pub fn finish_output(&mut self) -> io::Result<bool> {
        if !self.flush_with(true)? {
            return Ok(false);
        }
        self.shut_write();
        Ok(true)
    }

    /// Shuts the write side down (the FIN), once.
    pub(crate) fn shut_write(&mut self) {
        if !self.write_shut {
            self.stream.shutdown_write();
            self.write_shut = true;
        }
    }

    /// [`Conn::finish_output`] when this output is the connection's last
    /// (it closes after it, and no paused response will add to it),
    /// [`Conn::flush`] otherwise.
    pub fn flush_or_finish(&mut self) -> io::Result<bool> {
        if self.state == ConnState::CloseAfterFlush && self.parked.is_none() {
            self.finish_output()
        } else {
            self.flush()
        }
    }

    fn flush_with(&mut self, last: bool) -> io::Result<bool> {
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
                        self.since = Instant::now();
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

    /// The client left its response unread for `waited`: logs one line
    /// (a paused response's own state logs its abandonment instead) and
    /// makes the close a reset, so the kernel drops the unsent bytes rather
    /// than trickling them to a client we gave up on.
    pub fn give_up_writing(&self, waited: Duration) {
        if self.parked.is_none() {
            log::info(&format!(
                "{}: closing the connection: the client read nothing for {} s \
                 ({} response bytes unsent)",
                self.peer.remote_addr,
                waited.as_secs(),
                self.wbuf.len() - self.wpos,
            ));
        }
        self.stream.reset_on_close();
    }

    /// Queues a complete error response for a request the application never
    /// saw, and marks the connection to close after it.
    pub fn reject(&mut self, status: u16, reason: &str, why: &str) {
        log::info(&format!(
            "{} rejected: {status} {reason}: {why}",
            self.peer.remote_addr
        ));
        if let Some(m) = crate::metrics::current() {
            m.on_rejected(status);
        }
        self.codec.write_error(&mut self.wbuf, status, reason, why);
        self.state = ConnState::CloseAfterFlush;
        self.must_linger = true;
        self.pending = None;
        self.drain = None;
    }

    /// A body could not be written to its temporary file: 500, then close.
    fn spool_failed(&mut self, e: &io::Error) -> Next {
        log::error(&format!("cannot spool a request body: {e}"));
        self.reject(
            500,
            "Internal Server Error",
            "cannot store the request body",
        );
        Next::Close
    }

    /// Logs a body the client stopped sending by closing the connection.
    fn body_cut_short(&self, p: &Pending) {
        let got = p.body.len() as u64 + p.spool.as_ref().map_or(0, |s| s.len);
        log::info(&format!(
            "{}: client closed the connection during the body of {} {} \
             ({got} bytes received); request dropped",
            self.peer.remote_addr,
            String::from_utf8_lossy(p.head.method()),
            String::from_utf8_lossy(p.head.target()),
        ));
    }

    /// Queues and starts writing what a gateway protocol needs sent before
    /// more of `p`'s body can come (AJP13 asks for each body packet).
    fn ask_for_body(&mut self, p: &mut Pending) {
        if p.decoder.is_plain() {
            return;
        }
        let before = self.wbuf.len();
        p.decoder.take_output(&mut self.wbuf);
        if self.wbuf.len() > before {
            // What the socket does not take now, the event loop writes.
            if let Err(e) = self.flush() {
                log::debug(&format!("cannot ask for more of a request body: {e}"));
            }
        }
    }

    /// Reads the PROXY protocol header that starts the connection and
    /// takes the client it names as the connection's peer. `None` once it
    /// is read (the first request may follow in the same buffer); else
    /// what [`Conn::next_request`] returns. A missing or invalid header
    /// closes the connection without an answer: the peer is a load
    /// balancer that does not speak HTTP errors back to anyone, and
    /// nothing after a bad header can be trusted to be a request. The
    /// head's timeout covers a header that arrives in part.
    fn read_proxy_header(&mut self) -> Option<Next> {
        match parse_proxy_header(self.input(), DEFAULT_MAX_V2_LEN) {
            Ok(ProxyParsed::Partial) => {
                if self.peer_eof {
                    if !self.input().is_empty() {
                        log::info(&format!(
                            "{} closed the connection inside its PROXY header",
                            self.peer.remote_addr
                        ));
                    }
                    return Some(Next::Close);
                }
                if !self.input().is_empty() {
                    self.head_since.get_or_insert_with(Instant::now);
                }
                Some(Next::Wait)
            }
            Ok(ProxyParsed::Complete { header, consumed }) => {
                self.consume(consumed);
                self.proxy_pending = false;
                self.head_since = None;
                // No request has seen the peer yet, so nothing else holds it
                // and it is rewritten in place.
                match Arc::get_mut(&mut self.peer) {
                    Some(peer) => peer.set_proxied(header.addresses, header.tls),
                    None => {
                        let mut peer = PeerInfo::unix(std::path::Path::new(""));
                        peer.remote_addr.clone_from(&self.peer.remote_addr);
                        peer.remote_port.clone_from(&self.peer.remote_port);
                        peer.server_name.clone_from(&self.peer.server_name);
                        peer.server_port.clone_from(&self.peer.server_port);
                        peer.is_unix = self.peer.is_unix;
                        peer.is_local = self.peer.is_local;
                        peer.ip = self.peer.ip;
                        peer.set_proxied(header.addresses, header.tls);
                        self.peer = Arc::new(peer);
                    }
                }
                None
            }
            Err(e) => {
                log::info(&format!("{} closed: {e}", self.peer.remote_addr));
                self.state = ConnState::CloseAfterFlush;
                Some(Next::Close)
            }
        }
    }

    /// Finds the next request ready for the application among the buffered
    /// bytes: discards the rest of a previous body, parses a head, applies
    /// the body rules and buffers a small body completely. Rejections queue
    /// their response and return [`Next::Close`].
    pub fn next_request(&mut self, cfg: &Config) -> Next {
        if self.state == ConnState::CloseAfterFlush {
            return Next::Close;
        }
        if self.proxy_pending {
            if let Some(next) = self.read_proxy_header() {
                return next;
            }
        }
        if let Some(mut dec) = self.drain.take() {
            let mut sink = Vec::new();
            loop {
                sink.clear();
                match dec.decode(&self.rbuf[self.rpos..], &mut sink, READ_CHUNK * 4) {
                    Ok(n) => {
                        self.consume(n);
                        if dec.is_done() {
                            break;
                        }
                        if n == 0 {
                            if self.peer_eof {
                                return Next::Close;
                            }
                            self.drain = Some(dec);
                            return Next::Wait;
                        }
                    }
                    Err(_) => {
                        self.state = ConnState::CloseAfterFlush;
                        return Next::Close;
                    }
                }
            }
        }
        if self.pending.is_none() {
            if self.input().is_empty() {
                return if self.peer_eof {
                    Next::Close
                } else {
                    Next::Wait
                };
            }
            let input = &self.rbuf[self.rpos..];
            // HTTP/1.x is parsed here rather than through `Codec::decode_head`:
            // the call and the moves of the head through its result cost
            // some 60 instructions per request.
            let decoded = match &mut self.codec {
                Codec::Http1 => match parse_head_into(input, &cfg.limits, &mut self.spare_head) {
                    Ok(Parsed::Complete { head, consumed }) => Ok(Some((head, consumed))),
                    Ok(Parsed::Partial) => Ok(None),
                    Err(e) => Err(e),
                },
                Codec::Gateway(g) => g.decode_head(input, &cfg.limits, &mut self.wbuf),
            };
            match decoded {
                Ok(None) => {
                    if self.peer_eof {
                        // A half-sent head is not answered: the client is gone.
                        return Next::Close;
                    }
                    // The head's deadline runs from its first byte, however
                    // slowly the rest trickles in (slowloris).
                    self.head_since.get_or_insert_with(Instant::now);
                    return Next::Wait;
                }
                Err(e) => {
                    self.reject(e.status(), e.reason(), &e.to_string());
                    return Next::Close;
                }
                Ok(Some((head, consumed))) => {
                    self.consume(consumed);
                    self.head_since = None;
                    let kind = head.body();
                    if let BodyKind::Length(n) = kind {
                        if cfg.max_body > 0 && n > cfg.max_body {
                            self.reject(413, "Content Too Large", "request body over the limit");
                            return Next::Close;
                        }
                    }
                    let continue_pending = self.codec.is_http1()
                        && head.version() == Version::Http11
                        && head.expects_continue()
                        && kind != BodyKind::Empty;
                    let decoder = self.codec.body_reader(&head, &cfg.limits);
                    let pending = Pending {
                        head,
                        decoder,
                        body: Vec::new(),
                        continue_pending,
                        spool: None,
                    };
                    if kind == BodyKind::Empty || continue_pending {
                        // With Expect: 100-continue the application decides
                        // whether it wants the body; the 100 goes out on its
                        // first read.
                        return Next::Ready(pending);
                    }
                    if matches!(kind, BodyKind::Length(n) if n > BODY_BUFFER as u64)
                        && cfg.stream_bodies.applies(self.peer.is_local)
                    {
                        // A large body from a client allowed to stream: the
                        // application reads it from the socket as it comes.
                        return Next::Ready(pending);
                    }
                    self.pending = Some(Box::new(pending));
                }
            }
        }
        // Read the whole body before calling the application: up to
        // BODY_BUFFER in memory, the rest spooled to a temporary file, so a
        // slow uploader holds no application thread and memory stays flat.
        // Clients allowed to stream (`--stream-bodies`) skip the file.
        let Some(mut p) = self.pending.take() else {
            return Next::Wait;
        };
        loop {
            if let Some(e) = p.spool.as_mut().and_then(|s| s.failed.take()) {
                return self.spool_failed(&e);
            }
            if p.decoder.is_done() {
                if let Some(spool) = p.spool.as_mut() {
                    if let Err(e) = spool.append(&mut p.body) {
                        return self.spool_failed(&e);
                    }
                }
                // What a gateway's reader owes the front end (FastCGI's
                // refusal of a request id that came during the body) goes
                // out before the response, not after it.
                p.decoder.take_output(&mut self.wbuf);
                return Next::Ready(*p);
            }
            if let Some(remaining) = p.decoder.remaining_hint().filter(|_| p.decoder.is_plain()) {
                // A Content-Length body: one that cannot stay in memory goes
                // to its file as soon as its size is known, and the buffered
                // part is written from the connection's buffer directly (the
                // rest is spliced from the socket by `fill`).
                if p.spool.is_none() && p.body.len() as u64 + remaining > BODY_BUFFER as u64 {
                    match self
                        .new_spool()
                        .and_then(|mut spool| spool.append(&mut p.body).map(|()| spool))
                    {
                        Ok(spool) => p.spool = Some(spool),
                        Err(e) => return self.spool_failed(&e),
                    }
                }
                if let Some(spool) = p.spool.as_mut() {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input().len());
                    if take > 0 {
                        if let Err(e) = spool.write(&self.rbuf[self.rpos..self.rpos + take]) {
                            return self.spool_failed(&e);
                        }
                        p.decoder.consume_length(take as u64);
                        self.consume(take);
                        continue;
                    }
                    if self.peer_eof {
                        self.body_cut_short(&p);
                        return Next::Close;
                    }
                    self.ask_for_body(&mut p);
                    self.pending = Some(p);
                    return Next::Wait;
                }
            }
            if p.body.len() >= BODY_BUFFER {
                if cfg.stream_bodies.applies(self.peer.is_local) {
                    // A chunked body past the buffer, from a client allowed
                    // to stream: the application reads the rest as it comes.
                    return Next::Ready(*p);
                }
                let spooled = match p.spool.as_mut() {
                    Some(spool) => spool.append(&mut p.body),
                    None => self.new_spool().and_then(|mut spool| {
                        let r = spool.append(&mut p.body);
                        p.spool = Some(spool);
                        r
                    }),
                };
                if let Err(e) = spooled {
                    return self.spool_failed(&e);
                }
            }
            let room = BODY_BUFFER.saturating_sub(p.body.len()).max(1);
            match p.decoder.decode(&self.rbuf[self.rpos..], &mut p.body, room) {
                Ok(n) => {
                    self.consume(n);
                    let total = p.body.len() as u64 + p.spool.as_ref().map_or(0, |s| s.len);
                    if cfg.max_body > 0 && total > cfg.max_body {
                        self.reject(413, "Content Too Large", "request body over the limit");
                        return Next::Close;
                    }
                    if p.decoder.is_done() || p.body.len() >= BODY_BUFFER {
                        continue;
                    }
                    if n == 0 || self.input().is_empty() {
                        if self.peer_eof {
                            self.body_cut_short(&p);
                            return Next::Close;
                        }
                        self.ask_for_body(&mut p);
                        self.pending = Some(p);
                        return Next::Wait;
                    }
                }
                Err(e) => {
                    self.reject(e.status(), "Bad Request", &e.to_string());
                    return Next::Close;
                }
            }
        }
    }
}
