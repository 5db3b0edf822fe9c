//! One client connection: its socket I/O ([`SocketIo`]) paired with the
//! codec of the protocol it speaks ([`Codec`]), and the rules that turn
//! buffered bytes into the next ready request.
//!
//! Both the event loop and the application threads drive a connection
//! through [`Conn::next_request`], so pipelined requests already in the
//! buffer are served by whichever thread holds the connection, without a
//! hand-off.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ferrowsgi_proto::proxy::{parse_proxy_header, ProxyParsed, DEFAULT_MAX_V2_LEN};
use ferrowsgi_proto::{parse_head_into, BodyKind, HeadStorage, Parsed, Version};

use crate::body_buf::BodyBuf;
use crate::clock::Stamp;
use crate::codec::{BodyReader, Codec};
use crate::config::Config;
use crate::hold::Held;
use crate::io::SocketIo;
pub use crate::io::{KEEP_BUFFER, READ_CHUNK};
use crate::listen::Stream;
use crate::log;
use crate::peer::PeerInfo;
use crate::spool::{KeptSpool, Spool};
use crate::state::{Parked, Pending};
use crate::sys::Spliced;
use crate::syscall;

/// Room asked of the kernel per read(2) while a request body is being
/// buffered: large bodies arrive in far fewer system calls.
pub const BODY_READ_CHUNK: usize = 128 * 1024;

/// A request body is read completely before the application is called, so a
/// slow uploader never holds an application thread: up to this size in
/// memory, the rest in a temporary file (so memory stays flat under large
/// uploads). Past this size, a body from a client allowed to stream
/// (`--stream-bodies`) is read by the application from the socket instead.
pub const BODY_BUFFER: usize = 256 * 1024;

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
    /// The socket and its buffers.
    pub io: SocketIo,
    /// Who is on the other end.
    pub peer: Arc<PeerInfo>,
    /// The buffers of the last request's head, for the next one's.
    pub spare_head: HeadStorage,
    /// Keep going or close after the flush.
    pub state: ConnState,
    /// A request whose body is still being buffered.
    pub pending: Option<Box<Pending>>,
    /// The unread rest of the previous request's body, being discarded.
    pub drain: Option<Box<BodyReader>>,
    /// The protocol the connection speaks.
    pub codec: Codec,
    /// The last read stopped because the buffer was full, not at EAGAIN.
    pub maybe_more: bool,
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
    pub since: Stamp,
    /// When the first byte of a still incomplete head arrived.
    pub head_since: Option<Stamp>,
    /// A response paused until its buffered output drains (a slow reader
    /// of a streamed response); no further request is served meanwhile.
    pub parked: Option<Box<Parked>>,
    /// A write without waiting met a full socket (EAGAIN); a paused
    /// response resumes only after the next writability edge.
    pub write_blocked: bool,
    /// Complete responses may wait in the buffer until the event loop has
    /// served the other connections ready in the same wake-up, and then go
    /// out together (set by the event loop, which flushes them: at the end
    /// of its turn, or, for answers a thread gives back unwritten, at the
    /// start of the next).
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
    /// The spool file of an earlier body, kept for the next large one.
    pub kept_spool: Option<Box<KeptSpool>>,
    /// Set by the event loop when it sees an event for this connection while
    /// an application thread has it (made on the first hand-off).
    pub(crate) away_seen: Option<Arc<AtomicBool>>,
    /// The connection must start with a PROXY protocol header, not read
    /// yet (a listener with `+proxy` or `--proxy-protocol`).
    pub proxy_pending: bool,
    /// The last request's head said it was the client's last: HTTP/1.0
    /// without keep-alive, `Connection: close`, or a protocol of one request
    /// per connection (SCGI, uwsgi, FastCGI without `FCGI_KEEP_CONN`). Such a
    /// client sends nothing after it (RFC 9112 §9.6), which lets a close
    /// with nothing left unread end the connection without a shutdown
    /// first (see [`Conn::flush_or_close`]).
    pub peer_done: bool,
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
            io: SocketIo::new(stream),
            peer: Arc::new(peer),
            spare_head: HeadStorage::default(),
            state: ConnState::Open,
            pending: None,
            drain: None,
            codec: Codec::Http1,
            maybe_more: false,
            served: 0,
            stopping: false,
            server_stop: None,
            must_linger: false,
            since: Stamp::now(),
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
            kept_spool: None,
            away_seen: None,
            proxy_pending: false,
            peer_done: false,
        }
    }

    /// A spool file for a new body: the one kept from an earlier request,
    /// or a new one.
    fn new_spool(&mut self) -> io::Result<Spool> {
        match self.kept_spool.take().and_then(|k| k.reuse()) {
            Some(spool) => Ok(spool),
            None => Spool::create(),
        }
    }

    /// Sets TCP_NODELAY (see [`SocketIo::set_nodelay`]).
    pub fn set_nodelay(&mut self) {
        self.io.set_nodelay();
    }

    /// Unconsumed input.
    pub fn input(&self) -> &[u8] {
        self.io.input()
    }

    /// Marks `n` input bytes consumed (see [`SocketIo::consume`]).
    pub fn consume(&mut self, n: usize) {
        self.io.consume(n);
    }

    /// [`Conn::read_once`] asking for about `chunk` bytes (more room for a
    /// body than for heads).
    pub fn read_once_of(&mut self, chunk: usize) -> io::Result<usize> {
        self.io.read_once_of(chunk)
    }

    /// Whether output is waiting to be written.
    pub fn has_output(&self) -> bool {
        self.io.has_output()
    }

    /// Shuts the write side down (the FIN), once.
    pub(crate) fn shut_write(&mut self) {
        self.io.shut_write();
    }

    fn flush_with(&mut self, last: bool) -> io::Result<bool> {
        self.io.flush_with(last, &mut self.since)
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

    /// Reads until EAGAIN, EOF, or `cap` unconsumed bytes are buffered.
    ///
    /// Reading for a new request (nothing pending or left over), it stops
    /// once the buffer is full rather than growing it, so that the head is
    /// parsed first: a body that follows then goes to a block of its own
    /// size (`read_into_body`) instead of growing the connection's
    /// buffer, step by step, to a size it would not keep. A head that does
    /// not fit is read on in the next call (`Next::Wait` with
    /// `maybe_more`), which grows the buffer as before.
    pub fn fill(&mut self, cap: usize) -> io::Result<ReadOutcome> {
        self.maybe_more = false;
        let fresh = self.pending.is_none() && self.input().is_empty();
        if self.input().is_empty() {
            if let Some(outcome) = self.splice_body() {
                return outcome;
            }
            if let Some(outcome) = self.read_into_body() {
                return outcome;
            }
        }
        loop {
            if self.input().len() >= cap || (fresh && self.io.is_full()) {
                self.maybe_more = true;
                return Ok(ReadOutcome::Progress);
            }
            match self.read_once() {
                Ok(0) => {
                    self.io.peer_eof = true;
                    return Ok(ReadOutcome::Eof);
                }
                // A read that did not fill the room drained the socket: with
                // edge-triggered readiness, data arriving later raises a new
                // edge, so the usual extra read that would only see EAGAIN
                // is skipped (one syscall less per request).
                Ok(_) if !self.io.read_filled && !self.io.read_closed => {
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
        let sock = self.io.stream.as_raw_fd();
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
                    self.io.peer_eof = true;
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

    /// Reads the rest of a Content-Length body kept in memory from the
    /// socket straight into its block, which was sized for the whole body
    /// when its head was read: the body is not copied from the
    /// connection's buffer, and that buffer does not grow for it. Bytes
    /// past the body's end (a pipelined request) land in the connection's
    /// buffer through the same readv(2), so a read that completes the body
    /// also tells whether the socket held more. Reads until the body is
    /// complete, EAGAIN, a short read (the socket is drained: edge-triggered
    /// readiness raises a new edge for later data) or EOF. `None` when this
    /// does not apply (no such body pending, or some of its input already
    /// buffered): the caller reads into the buffer instead.
    fn read_into_body(&mut self) -> Option<io::Result<ReadOutcome>> {
        let p = self.pending.as_mut()?;
        if !p.decoder.is_plain() || p.spool.is_some() {
            return None;
        }
        let remaining = usize::try_from(p.decoder.remaining_hint()?).ok()?;
        // Only a body within the in-memory limit is read here (a larger
        // one is spooled, and its block was never made).
        if remaining == 0 || p.body.len().saturating_add(remaining) > BODY_BUFFER {
            return None;
        }
        // The block holds the whole body already; this only guards a body
        // whose block was made smaller.
        p.body.reserve_exact(remaining);
        let fd = self.io.stream.as_raw_fd();
        loop {
            let Some(remaining) = p
                .decoder
                .remaining_hint()
                .and_then(|r| usize::try_from(r).ok())
            else {
                return Some(Ok(ReadOutcome::Progress));
            };
            if remaining == 0 {
                // Complete after reads that filled all their room: what
                // follows is read after the response, without waiting for
                // an edge that will not come again.
                self.maybe_more = true;
                return Some(Ok(ReadOutcome::Progress));
            }
            let body_len = p.body.len();
            // The block was reserved for the whole rest above, and each
            // read only moves bytes from `remaining` into its length; should
            // it ever be short, the ordinary read path takes over.
            let rest = p.body.spare_capacity_mut().get_mut(..remaining)?;
            let after_len = self.io.rbuf.len();
            let after = self.io.rbuf.spare_capacity_mut();
            // A buffer with little room left is not worth the second
            // vector: a read that fills the body then sets `maybe_more`.
            let room = if after.len() >= 1024 {
                remaining + after.len()
            } else {
                remaining
            };
            let read = if room > remaining {
                syscall::read_two(fd, rest, after)
            } else {
                syscall::read(fd, rest)
            };
            match read {
                Ok(0) => {
                    self.io.peer_eof = true;
                    return Some(Ok(ReadOutcome::Eof));
                }
                Ok(n) => {
                    let into_body = n.min(remaining);
                    // SAFETY: the kernel initialised the first `n` bytes of
                    // the two spare regions taken in order: `into_body` of
                    // the body's, then the rest of the buffer's.
                    unsafe { p.body.set_len(body_len + into_body) };
                    if n > remaining {
                        // SAFETY: as above, for the `n - remaining` bytes
                        // after the buffer's `after_len`.
                        unsafe { self.io.rbuf.set_len(after_len + n - remaining) };
                    }
                    p.decoder.consume_length(into_body as u64);
                    self.io.read_filled = n == room;
                    if n == room || self.io.read_closed {
                        if n > remaining {
                            // The body is complete and a request follows:
                            // it is served from the buffer, and read on
                            // after it when the buffer was filled.
                            self.maybe_more = self.io.read_filled || self.io.read_closed;
                            return Some(Ok(ReadOutcome::Progress));
                        }
                        continue;
                    }
                    return Some(Ok(ReadOutcome::Progress));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Some(Ok(ReadOutcome::Progress))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
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
        let held = self.io.release_buffers() + self.spare_head.capacity();
        self.spare_head = HeadStorage::default();
        held
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
            && !self.io.peer_eof
            && !self.io.read_closed
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

    /// [`Conn::flush_or_finish`] for a caller that closes the connection as
    /// soon as this returns `Ok(true)` with the connection closing (the event
    /// loop, through `start_linger`). When a plain close cannot become a
    /// reset ([`Conn::close_sends_fin`]), the last output is written with
    /// `MSG_MORE` and the write side is not shut down: the close that follows
    /// puts the FIN on the held segment itself (the kernel's `tcp_send_fin`
    /// marks the unsent tail), so the answer and the FIN still leave in one
    /// segment, and the connection costs one system call less.
    pub fn flush_or_close(&mut self) -> io::Result<bool> {
        if self.state == ConnState::CloseAfterFlush
            && self.parked.is_none()
            && self.close_sends_fin()
        {
            self.flush_with(true)
        } else {
            self.flush_or_finish()
        }
    }

    /// Whether the connection may be closed at once, without reading and
    /// discarding what the client may still send: it sent its FIN, or
    /// nothing of its input is buffered, being read as a body, or left
    /// unread by the application.
    pub fn closes_quietly(&self) -> bool {
        self.io.peer_eof || (!self.must_linger && self.input().is_empty() && self.pending.is_none())
    }

    /// Whether close(2) alone ends the connection with a FIN, as the
    /// shutdown before it would: the kernel resets a connection closed
    /// with unread bytes in its receive queue, and drops the output it
    /// still holds. Nothing can be unread when the client sent its FIN
    /// and we read it, or when it closes quietly, said its request was its
    /// last, and the read that brought the request did not fill its room
    /// (the socket held nothing more then). A connection the server closes
    /// on its own account (a limit, a stop, an error) keeps the shutdown:
    /// its client may have sent its next request already.
    fn close_sends_fin(&self) -> bool {
        self.io.peer_eof
            || (self.peer_done
                && self.closes_quietly()
                && self.drain.is_none()
                && !self.io.read_filled
                && !self.io.read_closed
                && !self.maybe_more)
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
                self.io.wbuf.len() - self.io.wpos,
            ));
        }
        self.io.stream.reset_on_close();
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
        self.codec
            .write_error(&mut self.io.wbuf, status, reason, why);
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
        let before = self.io.wbuf.len();
        p.decoder.take_output(&mut self.io.wbuf);
        if self.io.wbuf.len() > before {
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
                if self.io.peer_eof {
                    if !self.input().is_empty() {
                        log::info(&format!(
                            "{} closed the connection inside its PROXY header",
                            self.peer.remote_addr
                        ));
                    }
                    return Some(Next::Close);
                }
                if !self.input().is_empty() {
                    self.head_since.get_or_insert_with(Stamp::now);
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
                match dec.decode(&self.io.rbuf[self.io.rpos..], &mut sink, READ_CHUNK * 4) {
                    Ok(n) => {
                        self.consume(n);
                        if dec.is_done() {
                            break;
                        }
                        if n == 0 {
                            if self.io.peer_eof {
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
                return if self.io.peer_eof {
                    Next::Close
                } else {
                    Next::Wait
                };
            }
            let input = &self.io.rbuf[self.io.rpos..];
            // HTTP/1.x is parsed here rather than through `Codec::decode_head`:
            // the call and the moves of the head through its result cost
            // some 60 instructions per request.
            let decoded = match &mut self.codec {
                Codec::Http1 => match parse_head_into(input, &cfg.limits, &mut self.spare_head) {
                    Ok(Parsed::Complete { head, consumed }) => Ok(Some((head, consumed))),
                    Ok(Parsed::Partial) => Ok(None),
                    Err(e) => Err(e),
                },
                Codec::Gateway(g) => g.decode_head(input, &cfg.limits, &mut self.io.wbuf),
            };
            match decoded {
                Ok(None) => {
                    if self.io.peer_eof {
                        // A half-sent head is not answered: the client is gone.
                        return Next::Close;
                    }
                    // The head's deadline runs from its first byte, however
                    // slowly the rest trickles in (slowloris).
                    self.head_since.get_or_insert_with(Stamp::now);
                    return Next::Wait;
                }
                Err(e) => {
                    self.reject(e.status(), e.reason(), &e.to_string());
                    return Next::Close;
                }
                Ok(Some((head, consumed))) => {
                    self.consume(consumed);
                    self.head_since = None;
                    self.peer_done = !head.keep_alive();
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
                    let mut pending = Pending {
                        head,
                        decoder,
                        body: BodyBuf::new(),
                        continue_pending,
                        spool: None,
                    };
                    if kind == BodyKind::Empty || continue_pending {
                        // With Expect: 100-continue the application decides
                        // whether it wants the body; the 100 goes out on its
                        // first read.
                        return Next::Ready(pending);
                    }
                    match kind {
                        BodyKind::Length(n) if n > BODY_BUFFER as u64 => {
                            if cfg.stream_bodies.applies(self.peer.is_local) {
                                // A large body from a client allowed to
                                // stream: the application reads it from the
                                // socket as it comes.
                                return Next::Ready(pending);
                            }
                            // Otherwise it goes to a spool file, from the
                            // connection's buffer and the socket: no block.
                        }
                        // A body that stays in memory gets its whole block
                        // before its first byte is copied (bounded by the
                        // check just above), so it is never reallocated.
                        BodyKind::Length(n) => pending.body = BodyBuf::for_length(n as usize),
                        _ => pending.body = BodyBuf::take_spare(),
                    }
                    // A body that is all in the buffer already (the usual
                    // small POST) is read without boxing the request; only
                    // one that has to wait for more bytes is kept boxed.
                    return self.read_body(pending, cfg);
                }
            }
        }
        let Some(p) = self.pending.take() else {
            return Next::Wait;
        };
        self.read_body(*p, cfg)
    }

    /// Reads the whole body before calling the application: up to
    /// BODY_BUFFER in memory, the rest spooled to a temporary file, so a
    /// slow uploader holds no application thread and memory stays flat.
    /// Clients allowed to stream (`--stream-bodies`) skip the file. A
    /// request whose body is not all there yet waits in `self.pending`.
    fn read_body(&mut self, mut p: Pending, cfg: &Config) -> Next {
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
                p.decoder.take_output(&mut self.io.wbuf);
                return Next::Ready(p);
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
                        if let Err(e) =
                            spool.write(&self.io.rbuf[self.io.rpos..self.io.rpos + take])
                        {
                            return self.spool_failed(&e);
                        }
                        p.decoder.consume_length(take as u64);
                        self.consume(take);
                        continue;
                    }
                    if self.io.peer_eof {
                        self.body_cut_short(&p);
                        return Next::Close;
                    }
                    self.ask_for_body(&mut p);
                    self.pending = Some(Box::new(p));
                    return Next::Wait;
                }
            }
            if p.body.len() >= BODY_BUFFER {
                if cfg.stream_bodies.applies(self.peer.is_local) {
                    // A chunked body past the buffer, from a client allowed
                    // to stream: the application reads the rest as it comes.
                    return Next::Ready(p);
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
            match p
                .decoder
                .decode(&self.io.rbuf[self.io.rpos..], &mut p.body, room)
            {
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
                        if self.io.peer_eof {
                            self.body_cut_short(&p);
                            return Next::Close;
                        }
                        self.ask_for_body(&mut p);
                        self.pending = Some(Box::new(p));
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
