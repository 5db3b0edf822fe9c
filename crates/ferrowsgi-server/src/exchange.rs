//! One request and its response, as the application side sees them: the
//! parsed head, a body that can be read on demand, and response writes that
//! the server frames (Content-Length, chunked or close-delimited) and sends.

use std::any::Any;
use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use ferrowsgi_proto::{eq_lowercase, has_body, DateCache, RequestHead, Version, LAST_CHUNK};

use crate::body_buf::BodyBuf;
use crate::clock::Stamp;
use crate::codec::Codec;
use crate::config::Config;
use crate::conn::{Conn, ConnState, BODY_BUFFER, BODY_READ_CHUNK, DRAIN_LIMIT, READ_CHUNK};
use crate::deadline::{self, Claim, Watch};
use crate::hold::{Wrote, TICK};
use crate::peer::PeerInfo;
use crate::spool::KeptSpool;
use crate::state::{ExchangeState, Framing, Parked, Pending, RespState};
use crate::sys::{self, Want};
use crate::wait::Waiter;
use crate::{log, metrics};

pub use ferrowsgi_proto::{Field, ResponseHead};

/// Chunk data wanted by a read of the body that is worth a `read(2)` of its
/// own straight into the reader's buffer; less is read into the
/// connection's buffer together with what follows (framing, more chunks),
/// which saves system calls when chunks or reads are small.
pub const RAW_READ_MIN: usize = 16 * 1024;

/// A complete response body larger than this is written from the
/// application's buffer rather than copied into the connection's.
const DIRECT_BODY: usize = 64 * 1024;

/// Room for what the server adds to an application's head (`Date`,
/// `Server`, `Content-Length` or chunked framing, `Connection`, a gateway's
/// framing, the blank line), reserved with it.
const HEAD_ROOM: usize = 160;

/// A complete answer up to this size (head and body), the first on a
/// connection that closes after it, is sent without TCP_NODELAY: it fits
/// one segment on any path (IPv6 guarantees an MTU of 1,280 bytes), and
/// Nagle's algorithm only holds a segment back while earlier data is
/// unacknowledged, so nothing of it can wait.
const ONE_SHOT_MAX: u64 = 1200;

/// Parts of a write up to this size are copied into the connection's buffer
/// (or held); larger ones go to the kernel from the caller's buffer, with
/// the buffered bytes before them in one writev.
const COPY_LIMIT: usize = 4096;

/// One request/response exchange on a connection, handed to
/// [`crate::Handler::handle`].
pub struct Exchange<'a> {
    conn: &'a mut Conn,
    cfg: &'a Config,
    waiter: &'a dyn Waiter,
    date: &'a mut DateCache,
    /// Where the request and its response are (kept across a pause).
    st: ExchangeState,
    /// Another request is already buffered behind this one, so a complete
    /// response may wait in the buffer and go out with the next one.
    can_defer: bool,
    /// What the handler left to continue with once the output drains.
    paused: Option<Box<dyn Any + Send>>,
    /// The deadline slot of the thread running the request (`--timeout`).
    watch: Option<&'a Watch>,
}

impl std::fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field(
                "method",
                &String::from_utf8_lossy(self.st.req.head.method()),
            )
            .field(
                "target",
                &String::from_utf8_lossy(self.st.req.head.target()),
            )
            .field("state", &self.st.state)
            .finish()
    }
}

/// The error of a body read past `--limit-request-body` (the payload of the
/// [`io::Error`] that [`Exchange::read_body`] and [`Exchange::fill_body`]
/// return), so that the application side can tell it from other I/O errors
/// and raise its own exception for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyOverLimit {
    /// The limit, in bytes.
    pub limit: u64,
}

impl std::fmt::Display for BodyOverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request body over the limit of {} bytes (--limit-request-body)",
            self.limit
        )
    }
}

impl std::error::Error for BodyOverLimit {}

impl BodyOverLimit {
    /// Whether `e` is a body read past the limit.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<BodyOverLimit>())
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out {what}"))
}

impl<'a> Exchange<'a> {
    pub(crate) fn new(
        conn: &'a mut Conn,
        req: Pending,
        cfg: &'a Config,
        waiter: &'a dyn Waiter,
        date: &'a mut DateCache,
        watch: Option<&'a Watch>,
    ) -> Exchange<'a> {
        // The deadline runs from the moment the request is handed over.
        let due = watch.map_or(0, |_| deadline::due_after(cfg.timeout));
        let keep_alive = req.head.keep_alive();
        // What follows a body still being read is that body, not a request.
        let can_defer = req.decoder.is_done() && !conn.input().is_empty();
        let body_read = req.body.len() as u64;
        Exchange {
            conn,
            cfg,
            waiter,
            date,
            st: ExchangeState {
                req,
                body_pos: 0,
                state: RespState::Idle,
                status: 0,
                body_read,
                body_invalid: false,
                body_over_limit: false,
                body_sent: 0,
                keep_alive,
                last_block: None,
                started: cfg
                    .access_log
                    .as_ref()
                    .filter(|a| a.needs_timing())
                    .map(|_| Instant::now()),
                logged_headers: Vec::new(),
                due,
                counted_from: None,
                head_out: 0,
            },
            can_defer,
            paused: None,
            watch,
        }
    }

    /// Takes up a parked exchange again, for [`crate::Handler::resume`].
    pub(crate) fn resumed(
        conn: &'a mut Conn,
        parked: Parked,
        cfg: &'a Config,
        waiter: &'a dyn Waiter,
        date: &'a mut DateCache,
        watch: Option<&'a Watch>,
    ) -> (Exchange<'a>, Box<dyn Any + Send>) {
        let ex = Exchange {
            conn,
            cfg,
            waiter,
            date,
            st: parked.st,
            can_defer: false,
            paused: None,
            watch,
        };
        (ex, parked.app)
    }

    /// Whether the server is stopping (draining its connections).
    pub(crate) fn is_draining(&self) -> bool {
        self.conn.stopping
            || self
                .conn
                .server_stop
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Times this request for the metrics from `ready`, when it was ready
    /// to be served.
    pub(crate) fn count_from(&mut self, ready: Instant) {
        self.st.counted_from = Some(ready);
    }

    /// Pauses the response: the handler returns, keeping `state`, and the
    /// event loop writes the buffered output and then calls
    /// [`crate::Handler::resume`] with `state` (on any application thread).
    /// If the client goes away or stops reading for the write timeout,
    /// `state` is dropped instead, so its `Drop` is where the handler's
    /// cleanup belongs. A response can pause before it starts (see
    /// [`Exchange::should_yield`]) or while it streams, not once finished.
    pub fn pause(&mut self, state: Box<dyn Any + Send>) -> io::Result<()> {
        if !matches!(self.st.state, RespState::Streaming(_) | RespState::Idle) {
            return Err(io::Error::other("a finished response cannot pause"));
        }
        self.paused = Some(state);
        Ok(())
    }

    /// Whether the handler should [`Exchange::pause`] now, before it starts
    /// producing the response body: other connections have requests ready
    /// in this wake-up of the event loop (which runs the application
    /// itself). The event loop then serves them and goes on with this one
    /// right after, so that the answers go out in one burst: every write to
    /// a sleeping client wakes it, and a burst wakes it once. Nothing of
    /// the response has been produced yet, so no block waits meanwhile.
    pub fn should_yield(&self) -> bool {
        self.conn.defer_output && self.conn.others_ready && self.st.state == RespState::Idle
    }

    /// Starts watching the request's deadline while the handler runs (the
    /// deadline itself was set when the request was handed over). The
    /// watcher may answer for the request only when nothing of earlier
    /// answers waits in the buffer, or its 504 would overtake them.
    pub(crate) fn arm(&mut self) {
        if let (Some(w), true) = (self.watch, self.st.due > 0) {
            let pending_output = self.conn.has_output();
            let conn = &mut *self.conn;
            let fd = conn.io.stream.as_raw_fd();
            let head = &self.st.req.head;
            let (fd, answer) = match &mut conn.codec {
                _ if pending_output => (-1, None),
                Codec::Http1 => (fd, None),
                // A gateway's 504 is framed by its codec; one that cannot
                // give it in advance leaves it to the exchange, when the
                // application's thread comes back (docs/ARCHITECTURE.md).
                Codec::Gateway(g) => match g.timeout_answer(self.cfg.timeout) {
                    Some(a) => (fd, Some(a)),
                    None => (-1, None),
                },
            };
            w.arm(
                self.st.due,
                fd,
                self.st.state != RespState::Idle,
                head.method(),
                head.target(),
                answer,
            );
        }
    }

    /// Stops watching the deadline; `true` when it had passed while the
    /// handler ran.
    pub(crate) fn disarm(&self) -> bool {
        match self.watch {
            Some(w) if self.st.due > 0 => w.disarm(),
            _ => false,
        }
    }

    /// The deadline passed before the application's head could go out:
    /// the answer is a 504 (written by the watcher, or here when it could
    /// not), and nothing of the application's reaches the client.
    fn deadline_answer(&mut self, answered: bool) -> io::Error {
        self.st.status = 504;
        self.st.keep_alive = false;
        self.st.state = RespState::Done;
        if !answered && !self.conn.codec.is_http1() {
            let message = format!(
                "the application did not answer within {} s",
                self.cfg.timeout.as_secs_f64()
            );
            let conn = &mut *self.conn;
            conn.codec
                .write_error(&mut conn.io.wbuf, 504, "Gateway Timeout", &message);
        } else if !answered {
            let date = self.date.get().to_vec();
            let mut extra: Vec<(&[u8], &[u8])> = vec![(b"Date", &date)];
            if self.cfg.server_header {
                extra.push((b"Server", b"ferrowsgi"));
            }
            ferrowsgi_proto::write_simple_error_response(
                &mut self.conn.io.wbuf,
                504,
                "Gateway Timeout",
                &format!(
                    "the application did not answer within {} s",
                    self.cfg.timeout.as_secs_f64()
                ),
                &extra,
            );
        }
        timed_out("waiting for the application (--timeout): answered 504")
    }

    /// Whether the handler paused the response.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Drops the handler's paused state (after a panic).
    pub(crate) fn unpause(&mut self) {
        self.paused = None;
    }

    /// Moves a paused exchange into its connection, to wait for the output
    /// to drain.
    pub(crate) fn park(mut self) {
        if self.paused.is_none() {
            return self.complete();
        }
        if let Err(e) = self.release_held() {
            let _ = self.write_failed(e);
        }
        let Some(app) = self.paused else {
            return self.complete();
        };
        self.conn.parked = Some(Box::new(Parked { st: self.st, app }));
    }

    /// The parsed request head.
    pub fn head(&self) -> &RequestHead {
        &self.st.req.head
    }

    /// The connection's two ends.
    pub fn peer(&self) -> &PeerInfo {
        &self.conn.peer
    }

    /// Requests this connection served before this one.
    pub fn served_before(&self) -> u64 {
        self.conn.served
    }

    /// The server's settings.
    pub fn config(&self) -> &Config {
        self.cfg
    }

    // ----- request body -------------------------------------------------

    /// Decoded body bytes buffered and not yet consumed.
    pub fn body_buffered(&self) -> &[u8] {
        &self.st.req.body[self.st.body_pos..]
    }

    /// Marks `n` buffered body bytes consumed.
    pub fn consume_body(&mut self, n: usize) {
        self.st.body_pos = (self.st.body_pos + n).min(self.st.req.body.len());
        if self.st.body_pos == self.st.req.body.len() {
            if self.st.req.body.capacity() > BODY_BUFFER {
                // Grown for the buffered start of a large body or for a
                // long line: not kept for the rest of the request.
                self.st.req.body = BodyBuf::new();
            } else {
                self.st.req.body.clear();
            }
            self.st.body_pos = 0;
        }
    }

    /// Before more of the body is appended to the buffer: the bytes the
    /// application has consumed are dropped from its front once they would
    /// make it grow, so that the buffer holds what is unconsumed plus one
    /// append, however many small reads or lines the body is taken in.
    fn compact_body(&mut self, appending: usize) {
        let body = &mut self.st.req.body;
        if self.st.body_pos > 0 && body.capacity() - body.len() < appending {
            body.drain(..self.st.body_pos);
            self.st.body_pos = 0;
        }
    }

    /// Whether the body went over `--limit-request-body` while the
    /// application read it (see [`BodyOverLimit`]).
    pub fn is_body_over_limit(&self) -> bool {
        self.st.body_over_limit
    }

    /// The error of a read past the limit; the connection closes after the
    /// answer (the rest of the body is not read).
    fn over_limit(&mut self) -> io::Error {
        self.st.body_over_limit = true;
        self.st.keep_alive = false;
        io::Error::new(
            io::ErrorKind::InvalidData,
            BodyOverLimit {
                limit: self.cfg.max_body,
            },
        )
    }

    /// Counts `n` more body bytes read, against the limit. Declared lengths
    /// were checked before the application was called; a chunked body is
    /// checked as it arrives.
    fn count_body(&mut self, n: usize) -> io::Result<()> {
        self.st.body_read += n as u64;
        if self.cfg.max_body > 0 && self.st.body_read > self.cfg.max_body {
            return Err(self.over_limit());
        }
        Ok(())
    }

    /// Body bytes kept on disk and not yet read.
    pub fn spooled_left(&self) -> u64 {
        self.st
            .req
            .spool
            .as_ref()
            .map_or(0, |s| s.len.saturating_sub(s.read_pos))
    }

    /// Body bytes the application has yet to read, when that is known: the
    /// rest of a Content-Length body, wherever it is (buffered, on disk or
    /// still on its way). `None` for a chunked body not decoded to its end.
    pub fn body_left(&self) -> Option<u64> {
        let held = self.body_buffered().len() as u64 + self.spooled_left();
        self.st.req.decoder.remaining_hint().map(|r| held + r)
    }

    /// Reads the body into `out` until `out` is full or the body ends, and
    /// returns how much was read: buffered bytes first, then the spool
    /// file, then the socket, waiting for the client as
    /// [`Exchange::fill_body`] does. Body bytes that follow with no framing
    /// among them (a Content-Length body, the data of a chunk) are read
    /// with `read(2)` straight into `out` (a chunk's data when at least
    /// [`RAW_READ_MIN`] of it is wanted); a chunked body's framing, and the
    /// data that comes with it, is read into the connection's buffer and
    /// decoded from there into `out`. Nothing of the body is kept on the way, so memory
    /// does not grow with the body, whatever its framing.
    /// `out` need not be initialised; its first `n` bytes are when `Ok(n)`
    /// returns.
    pub fn read_body(&mut self, out: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        self.read_body_now(out).map_err(|e| self.past_deadline(e))
    }

    fn read_body_now(&mut self, out: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if self.st.body_over_limit {
            return Err(self.over_limit());
        }
        let buffered = self.body_buffered();
        let mut got = buffered.len().min(out.len());
        copy_into(&mut out[..got], &buffered[..got]);
        self.consume_body(got);
        if got < out.len() && self.body_buffered().is_empty() {
            if let Some(spool) = self.st.req.spool.as_mut() {
                got += spool.read_at_most(&mut out[got..])?;
            }
        }
        while got < out.len() && self.spooled_left() == 0 && !self.st.req.decoder.is_done() {
            self.send_continue()?;
            let room = out.len() - got;
            let n = if !self.conn.input().is_empty() {
                let dst = &mut out[got..];
                let mut at = 0;
                let decoded = self.st.req.decoder.decode_with(
                    &self.conn.io.rbuf[self.conn.io.rpos..],
                    room,
                    |data| {
                        copy_into(&mut dst[at..at + data.len()], data);
                        at += data.len();
                    },
                );
                let (used, wrote) = decoded.map_err(|e| self.invalid_body(&e))?;
                self.conn.consume(used);
                wrote
            } else {
                if self.conn.io.peer_eof {
                    return Err(self.cut_short());
                }
                self.ask_for_body()?;
                let ahead = self.st.req.decoder.data_ahead();
                let want = room.min(usize::try_from(ahead).unwrap_or(usize::MAX));
                // A Content-Length body is read straight into `out`, and so
                // is a chunk's data when enough of it is wanted to be worth
                // a system call of its own. Otherwise (framing next, or a
                // little data before it) the socket is read into the
                // connection's buffer: one read for the framing and the
                // data of several chunks, or for several small reads.
                let raw = want > 0
                    && (want >= RAW_READ_MIN || self.st.req.decoder.remaining_hint().is_some());
                let read = if raw {
                    let fd = self.conn.io.stream.as_raw_fd();
                    sys::read_into(fd, &mut out[got..got + want])
                } else {
                    self.conn.read_once_of(BODY_READ_CHUNK)
                };
                match read {
                    Ok(0) => {
                        self.conn.io.peer_eof = true;
                        continue;
                    }
                    Ok(n) if raw => {
                        self.st.req.decoder.consume_data(n as u64);
                        n
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.wait_body()?;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.st.keep_alive = false;
                        return Err(e);
                    }
                }
            };
            got += n;
            self.count_body(n)?;
        }
        Ok(got)
    }

    /// Sends what a gateway protocol needs sent before more of the body
    /// can come (AJP13 asks for each body packet); nothing for HTTP/1.x.
    fn ask_for_body(&mut self) -> io::Result<()> {
        if self.st.req.decoder.is_plain() {
            return Ok(());
        }
        let before = self.conn.io.wbuf.len();
        self.st.req.decoder.take_output(&mut self.conn.io.wbuf);
        if self.conn.io.wbuf.len() > before {
            self.write_parts(&[])?;
        }
        Ok(())
    }

    /// The error of a client that closed its side before the end of the body.
    fn cut_short(&mut self) -> io::Error {
        self.st.keep_alive = false;
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client disconnected before the end of the request body",
        )
    }

    /// The error of a body whose framing turned out malformed.
    fn invalid_body(&mut self, e: &ferrowsgi_proto::BodyError) -> io::Error {
        self.st.keep_alive = false;
        self.st.body_invalid = true;
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }

    /// Sends `100 Continue` if the client waits for it and nothing of the
    /// response has gone out (called before the body is first read).
    fn send_continue(&mut self) -> io::Result<()> {
        if self.st.req.continue_pending {
            self.st.req.continue_pending = false;
            if self.st.state == RespState::Idle {
                // The watcher must not write its 504 in the middle.
                if self.watch.is_some_and(|w| !w.claim_busy()) {
                    self.st.keep_alive = false;
                    return Err(timed_out("waiting for the application (--timeout)"));
                }
                self.conn.set_nodelay();
                let wrote = self.write_parts(&[b"HTTP/1.1 100 Continue\r\n\r\n"]);
                if let Some(w) = self.watch {
                    w.release_busy();
                }
                wrote?;
            }
        }
        Ok(())
    }

    /// The error the application is given for `e`, a failure of the
    /// server's I/O for the request: once the request's deadline has
    /// passed, whatever ended the call (the wait reaching the deadline, the
    /// client closing after its 504) is reported as the deadline
    /// ([`deadline::PastDeadline`]), and the request counts as told
    /// ([`Watch::deliver_here`]), so that no interruption lands in its
    /// thread a second time while it handles this one.
    fn past_deadline(&self, e: io::Error) -> io::Error {
        match self.watch {
            Some(w) if !BodyOverLimit::is(&e) && self.fired(w) => {
                if !deadline::PastDeadline::is(&e) {
                    w.deliver_here();
                }
                io::Error::new(io::ErrorKind::TimedOut, deadline::PastDeadline)
            }
            _ => e,
        }
    }

    /// Whether the request's deadline has passed and the watcher acted on
    /// it. The watcher sends the 504 and its FIN before it marks the slot
    /// fired, so a client that closes at once after its 504 can end one
    /// of the request's waits first: past the deadline, the mark is
    /// waited for.
    fn fired(&self, w: &Watch) -> bool {
        if w.has_fired() {
            return true;
        }
        if self.st.due == 0 || crate::clock::fine_ns() < self.st.due {
            return false;
        }
        w.await_fired(std::time::Duration::from_secs(1));
        w.has_fired()
    }

    /// Waits through the handler's [`Waiter`] until the socket is ready for
    /// `want`; `Ok(false)` when `timeout` passed first.
    ///
    /// Such a wait never outlasts the request's deadline (`--timeout`): past
    /// it the wait fails, so a request reading a slow body or writing to a
    /// slow reader is not held for the read or write timeout, which would
    /// count as a lost thread past `--timeout-grace`.
    fn wait_socket(&self, want: Want, timeout: std::time::Duration) -> io::Result<bool> {
        let fd = self.conn.io.stream.as_raw_fd();
        let left = match self.watch {
            Some(_) if self.st.due > 0 => Some(std::time::Duration::from_nanos(
                self.st.due.saturating_sub(crate::clock::fine_ns()),
            )),
            _ => None,
        };
        let wait = left.map_or(timeout, |l| l.min(timeout));
        let by_deadline = left.is_some_and(|l| l < timeout);
        let watch = self.watch;
        let mut ready = Ok(false);
        self.waiter.wait(&mut || {
            if !wait.is_zero() || left.is_none() {
                ready = sys::wait_fd(fd, want, wait);
            }
            if by_deadline && matches!(ready, Ok(false)) {
                if let Some(w) = watch {
                    w.await_fired(std::time::Duration::from_secs(1));
                }
            }
        });
        match ready {
            Ok(false) if by_deadline => {
                if let Some(w) = watch {
                    w.deliver_here();
                }
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    deadline::PastDeadline,
                ))
            }
            other => other,
        }
    }

    /// Waits up to the read timeout for more of the body; a client that
    /// stays quiet that long ends the connection.
    fn wait_body(&mut self) -> io::Result<()> {
        match self.wait_socket(Want::Read, self.cfg.read_timeout) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.st.keep_alive = false;
                Err(timed_out("reading the request body"))
            }
            Err(e) => {
                self.st.keep_alive = false;
                Err(e)
            }
        }
    }

    /// Whether the whole body has been decoded (it may still sit unconsumed
    /// in the buffer).
    pub fn body_complete(&self) -> bool {
        self.st.req.decoder.is_done()
    }

    /// Decodes more of the body into the buffer, reading the socket (and
    /// first sending `100 Continue` if it is owed) when needed. Returns
    /// `Ok(false)` at the end of the body. A client that goes quiet for the
    /// read timeout or disconnects is an error.
    pub fn fill_body(&mut self) -> io::Result<bool> {
        self.fill_body_now().map_err(|e| self.past_deadline(e))
    }

    fn fill_body_now(&mut self) -> io::Result<bool> {
        if self.st.body_over_limit {
            return Err(self.over_limit());
        }
        const APPEND: usize = READ_CHUNK * 4;
        self.compact_body(APPEND);
        if let Some(spool) = self.st.req.spool.as_mut() {
            if spool.read_into(&mut self.st.req.body, APPEND)? > 0 {
                return Ok(true);
            }
        }
        if self.st.req.decoder.is_done() {
            return Ok(false);
        }
        self.send_continue()?;
        let before = self.st.req.body.len();
        loop {
            let n = self
                .st
                .req
                .decoder
                .decode(
                    &self.conn.io.rbuf[self.conn.io.rpos..],
                    &mut self.st.req.body,
                    APPEND,
                )
                .map_err(|e| self.invalid_body(&e))?;
            self.conn.consume(n);
            let got = self.st.req.body.len() - before;
            if got > 0 || self.st.req.decoder.is_done() {
                self.count_body(got)?;
                return Ok(got > 0);
            }
            if self.conn.io.peer_eof {
                return Err(self.cut_short());
            }
            self.ask_for_body()?;
            match self.conn.read_once_of(BODY_READ_CHUNK) {
                Ok(0) => self.conn.io.peer_eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_body()?,
                Err(e) => {
                    self.st.keep_alive = false;
                    return Err(e);
                }
            }
        }
    }

    // ----- response -----------------------------------------------------

    /// Whether the request body turned out malformed (bad chunked framing)
    /// while the application read it: a client error, answered 400 when
    /// nothing has been sent yet.
    pub fn is_body_invalid(&self) -> bool {
        self.st.body_invalid
    }

    /// Whether the response head has gone out.
    pub fn is_committed(&self) -> bool {
        self.st.state != RespState::Idle
    }

    /// Whether the response is complete or aborted.
    pub fn is_finished(&self) -> bool {
        matches!(self.st.state, RespState::Done | RespState::Aborted)
    }

    /// Status code sent (0 before the head).
    pub fn status(&self) -> u16 {
        self.st.status
    }

    /// Sends a complete response whose body is `blocks`. Without an
    /// application Content-Length, one is added. May leave bytes in the
    /// connection's buffer for the event loop to write (the application is
    /// done with them), so a slow reader holds no application thread.
    ///
    /// After a body read past `--limit-request-body`, the client gets 413
    /// instead, whatever `head` and `blocks` say (see
    /// [`Exchange::is_body_over_limit`]).
    pub fn respond(&mut self, head: &ResponseHead, blocks: &[&[u8]]) -> io::Result<()> {
        if self.st.body_over_limit {
            return self.answer_body_over_limit();
        }
        self.respond_as_is(head, blocks)
    }

    /// Answers 413 with `Connection: close` in place of the application's
    /// response to a body read past the limit (RFC 9110 §15.5.14): the
    /// client sent too much, whatever the application made of the error.
    /// Nothing happens once the response has started.
    pub fn answer_body_over_limit(&mut self) -> io::Result<()> {
        if self.st.state != RespState::Idle {
            return Ok(());
        }
        log::info(&format!(
            "{} rejected: 413 Content Too Large: request body over the limit of {} bytes",
            self.conn.peer.remote_addr, self.cfg.max_body
        ));
        self.st.keep_alive = false;
        let mut head = ResponseHead::new(413, b"413 Content Too Large");
        head.push_header(b"Content-Type", b"text/plain; charset=utf-8");
        self.respond_as_is(&head, &[b"request body over the limit\n"])
    }

    fn respond_as_is<'b>(&mut self, head: &ResponseHead, blocks: &[&'b [u8]]) -> io::Result<()> {
        let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        let framing = self.commit_head(head, Some(total))?;
        let allowed = match framing {
            Framing::Length(n) => n,
            Framing::Empty => 0,
            _ => u64::MAX,
        };
        // What goes out: the blocks, cut where the framing allows no more.
        let sent = total.min(allowed);
        let mut left = sent;
        let mut cut = move |b: &&'b [u8]| -> &'b [u8] {
            let take = (b.len() as u64).min(left) as usize;
            left -= take as u64;
            &b[..take]
        };
        self.st.body_sent = sent;
        self.st.state = RespState::Done;
        self.check_length(framing, sent, total);
        if !self.conn.codec.is_http1() {
            for b in blocks {
                let b = cut(b);
                self.gateway_block(b);
            }
            self.gateway_end();
            if self.may_defer() {
                return Ok(());
            }
            return self.conn.flush().map(|_| ());
        }
        if sent > DIRECT_BODY as u64 {
            // A large body goes straight from the application's buffer, with
            // the head in the same writev; only what the socket does not
            // take now is copied, for the event loop to write.
            let body: Vec<&[u8]> = blocks.iter().map(cut).collect();
            return self.write_out(&body, false).map(|_| ());
        }
        for b in blocks {
            let b = cut(b);
            self.conn.io.wbuf.extend_from_slice(b);
        }
        if self.may_defer() {
            // Goes out with the answers to the requests pipelined behind, or
            // with those to the other connections of this wake-up.
            return Ok(());
        }
        // Push what the socket takes now; the event loop writes the rest.
        self.conn.flush().map(|_| ())
    }

    /// Sends the head of a streamed response: Content-Length framing when
    /// the application gave one, chunked on HTTP/1.1, close-delimited on
    /// HTTP/1.0. The head goes out with the first block.
    ///
    /// After a body read past `--limit-request-body`, the client gets 413
    /// instead and this fails with the [`BodyOverLimit`] error.
    pub fn start_stream(&mut self, head: &ResponseHead) -> io::Result<()> {
        self.start_stream_now(head)
            .map_err(|e| self.past_deadline(e))
    }

    fn start_stream_now(&mut self, head: &ResponseHead) -> io::Result<()> {
        if self.st.body_over_limit && self.st.state == RespState::Idle {
            self.answer_body_over_limit()?;
            return Err(self.over_limit());
        }
        let framing = self.commit_head(head, None)?;
        self.st.state = RespState::Streaming(framing);
        self.st.last_block = Some(Instant::now());
        Ok(())
    }

    /// Sends one block of a streamed response and returns once it is in the
    /// kernel (PEP 3333: a block is transmitted before the next is asked
    /// for). Bytes past the application's Content-Length are dropped.
    pub fn send(&mut self, block: &[u8]) -> io::Result<()> {
        self.send_now(block).map_err(|e| self.past_deadline(e))
    }

    fn send_now(&mut self, block: &[u8]) -> io::Result<()> {
        self.send_block(block, true).map(|_| ())
    }

    /// Sends one block of a streamed response without waiting: what the
    /// socket does not take now stays in the connection's buffer. Returns
    /// `Ok(true)` when the block is in the kernel or held for a moment, and
    /// `Ok(false)` when the client is reading slower than the response is
    /// made: the handler should then [`Exchange::pause`] and go on when
    /// resumed, and the event loop keeps transmitting meanwhile (so PEP
    /// 3333's rule that a block is on its way before the next is asked for
    /// still holds).
    ///
    /// A small block that follows the previous one quickly is held, so that
    /// a fast generator's blocks leave together; a flusher thread writes
    /// held bytes the application has not followed up within 1 ms (see
    /// `hold.rs`), whatever the application is doing.
    pub fn send_nowait(&mut self, block: &[u8]) -> io::Result<bool> {
        self.send_nowait_now(block)
            .map_err(|e| self.past_deadline(e))
    }

    fn send_nowait_now(&mut self, block: &[u8]) -> io::Result<bool> {
        self.send_block(block, false)
    }

    fn send_block(&mut self, block: &[u8], wait: bool) -> io::Result<bool> {
        let RespState::Streaming(framing) = self.st.state else {
            return Err(io::Error::other("response not started"));
        };
        if block.is_empty() {
            return Ok(true);
        }
        if !self.conn.codec.is_http1() {
            return self.gateway_send(block, wait);
        }
        match framing {
            Framing::Empty => {
                self.st.body_sent += block.len() as u64;
                Ok(true)
            }
            Framing::Length(left) => {
                let take = (block.len() as u64).min(left) as usize;
                if take < block.len() {
                    log::warning(&format!(
                        "{} {}: application sent more than its Content-Length; cut",
                        String::from_utf8_lossy(self.st.req.head.method()),
                        String::from_utf8_lossy(self.st.req.head.target())
                    ));
                    self.st.keep_alive = false;
                }
                self.st.state = RespState::Streaming(Framing::Length(left - take as u64));
                self.st.body_sent += take as u64;
                if take as u64 == left {
                    // The body is complete: no block can follow it, so it
                    // is a complete response like a list's (it starts no
                    // flusher, and may join the wake-up's burst).
                    return self.complete_out(&block[..take], wait);
                }
                self.block_out(&[&block[..take]], wait)
            }
            Framing::Close => {
                self.st.body_sent += block.len() as u64;
                self.block_out(&[block], wait)
            }
            Framing::Chunked => {
                self.st.body_sent += block.len() as u64;
                let mut prefix = Vec::with_capacity(18);
                write_chunk_size(&mut prefix, block.len());
                self.block_out(&[&prefix, block, b"\r\n"], wait)
            }
        }
    }

    /// Writes a streamed block's bytes: waiting for the socket with `wait`,
    /// else held or written now (see [`Exchange::send_nowait`]).
    fn block_out(&mut self, parts: &[&[u8]], wait: bool) -> io::Result<bool> {
        let now = Instant::now();
        let slow = self
            .st
            .last_block
            .map_or(true, |t| now.saturating_duration_since(t) >= TICK);
        self.st.last_block = Some(now);
        let size: usize = parts.iter().map(|p| p.len()).sum();
        if wait || size > COPY_LIMIT {
            return self.write_out(parts, wait);
        }
        let conn = &mut *self.conn;
        let fd = conn.io.stream.as_raw_fd();
        let held = conn.held.get_or_insert_with(Default::default);
        match held.push(fd, &mut conn.io.wbuf, &mut conn.io.wpos, parts, slow, now) {
            Ok(Wrote::Done) => Ok(true),
            Ok(Wrote::Blocked) => {
                conn.write_blocked = true;
                conn.since = Stamp::now();
                Ok(false)
            }
            Err(e) => Err(self.write_failed(e)),
        }
    }

    /// Sends the block that completes a streamed body. A small one waits in
    /// the connection's buffer, after whatever was held, when a complete
    /// response may (the answers of this wake-up or of a pipelined batch
    /// leave together, see [`Exchange::respond`]); otherwise it is written
    /// now, waiting for the socket only with `wait`.
    fn complete_out(&mut self, block: &[u8], wait: bool) -> io::Result<bool> {
        if wait || !self.may_defer() || block.len() > COPY_LIMIT {
            return self.write_out(&[block], wait);
        }
        if let Err(e) = self.release_held() {
            return Err(self.write_failed(e));
        }
        self.conn.io.wbuf.extend_from_slice(block);
        Ok(true)
    }

    /// Whether a complete answer may wait in the connection's buffer to go
    /// out with the answers to the requests pipelined behind it, or with
    /// those to the other connections of this wake-up. The last answer of
    /// a closing connection always waits: the event loop (or the
    /// application thread) writes it right after the exchange, with the
    /// FIN (`Conn::finish_output`).
    fn may_defer(&self) -> bool {
        !self.st.keep_alive || self.can_defer || self.conn.defer_output
    }

    /// Moves held stream output back into the connection's buffer, ahead of
    /// whatever is written next.
    fn release_held(&mut self) -> io::Result<()> {
        let conn = &mut *self.conn;
        match &conn.held {
            Some(h) => h.release(&mut conn.io.wbuf),
            None => Ok(()),
        }
    }

    /// Sends `len` bytes (all that is left when `None`) of the open file
    /// `fd` from `offset` with sendfile(2), as part of a streamed response,
    /// waiting for the socket as needed. Returns the bytes sent.
    pub fn send_file(&mut self, fd: RawFd, offset: u64, len: Option<u64>) -> io::Result<u64> {
        self.file_out(fd, offset, len, true).map(|(n, _)| n)
    }

    /// [`Exchange::send_file`] without waiting: returns the bytes sent and
    /// whether that was all of them. When it was not, the socket is full:
    /// the handler should [`Exchange::pause`] and, when resumed, call again
    /// from the new offset. In a chunked stream the file is one chunk, which
    /// cannot be left open, so there this waits like `send_file`.
    pub fn send_file_nowait(
        &mut self,
        fd: RawFd,
        offset: u64,
        len: Option<u64>,
    ) -> io::Result<(u64, bool)> {
        self.file_out(fd, offset, len, false)
    }

    fn file_out(
        &mut self,
        fd: RawFd,
        offset: u64,
        len: Option<u64>,
        wait: bool,
    ) -> io::Result<(u64, bool)> {
        let RespState::Streaming(framing) = self.st.state else {
            return Err(io::Error::other("response not started"));
        };
        if !self.conn.codec.is_http1() {
            return self.gateway_file(fd, offset, len);
        }
        // SAFETY: fstat only writes into the zeroed stat buffer we own.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                return Err(io::Error::last_os_error());
            }
            st.st_size as u64
        };
        let mut want = size.saturating_sub(offset);
        if let Some(l) = len {
            want = want.min(l);
        }
        let wait = wait || framing == Framing::Chunked;
        match framing {
            Framing::Empty => return Ok((0, true)),
            Framing::Length(left) => want = want.min(left),
            Framing::Chunked => {
                // A file in a chunked stream goes as one chunk of known size.
                if want == 0 {
                    return Ok((0, true));
                }
                let mut prefix = Vec::with_capacity(18);
                write_chunk_size(&mut prefix, want as usize);
                self.write_parts(&[&prefix])?;
            }
            Framing::Close => {}
        }
        if !self.write_out(&[], wait)? {
            return Ok((0, want == 0));
        }
        let sock = self.conn.io.stream.as_raw_fd();
        let mut off = i64::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let mut left = want;
        while left > 0 {
            let chunk = left.min(1 << 30) as usize;
            match sys::sendfile(sock, fd, &mut off, chunk) {
                Ok(0) => break,
                Ok(n) => left -= n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait {
                        self.conn.write_blocked = true;
                        break;
                    }
                    self.wait_writable()?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.st.keep_alive = false;
                    return Err(e);
                }
            }
        }
        let sent = want - left;
        self.st.body_sent += sent;
        if sent > 0 {
            self.conn.since = Stamp::now();
        }
        match framing {
            Framing::Length(l) => self.st.state = RespState::Streaming(Framing::Length(l - sent)),
            Framing::Chunked => {
                if left > 0 {
                    // The file shrank under us: the chunk cannot be completed.
                    self.abort();
                    return Err(io::Error::other("file shorter than announced"));
                }
                self.write_parts(&[b"\r\n"])?;
            }
            _ => {}
        }
        // A file that ended early (sendfile returned 0) is done too; the
        // Content-Length check in `finish` reports the shortfall.
        let done = left == 0 || off as u64 >= size;
        Ok((sent, done))
    }

    /// Sends a file in a gateway protocol's response: read in pieces and
    /// framed like any block (the codec's framing sits between the file's
    /// bytes, so sendfile(2) cannot carry them). Waits for the socket.
    fn gateway_file(
        &mut self,
        fd: RawFd,
        offset: u64,
        len: Option<u64>,
    ) -> io::Result<(u64, bool)> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut off = offset;
        let mut sent = 0u64;
        loop {
            let want = len.map_or(buf.len() as u64, |l| (l - sent).min(buf.len() as u64)) as usize;
            if want == 0 {
                break;
            }
            let n = sys::pread(fd, &mut buf[..want], off)?;
            if n == 0 {
                break;
            }
            self.send_block(&buf[..n], true)?;
            off += n as u64;
            sent += n as u64;
        }
        Ok((sent, true))
    }

    /// Ends a streamed response: the last chunk for chunked framing, or a
    /// check that the application's Content-Length was met (a short body
    /// closes the connection, so the client sees the truncation).
    pub fn finish(&mut self) -> io::Result<()> {
        match self.st.state {
            RespState::Idle => Err(io::Error::other("response not started")),
            RespState::Done | RespState::Aborted => Ok(()),
            RespState::Streaming(framing) => {
                self.st.state = RespState::Done;
                if let Err(e) = self.release_held() {
                    return Err(self.write_failed(e));
                }
                match framing {
                    Framing::Chunked => self.conn.io.wbuf.extend_from_slice(LAST_CHUNK),
                    Framing::Length(left) if left > 0 => {
                        log::warning(&format!(
                            "{} {}: application sent {} bytes less than its Content-Length; \
                             closing the connection",
                            String::from_utf8_lossy(self.st.req.head.method()),
                            String::from_utf8_lossy(self.st.req.head.target()),
                            left
                        ));
                        self.st.keep_alive = false;
                    }
                    _ => {}
                }
                if !self.conn.codec.is_http1() {
                    self.gateway_end();
                }
                // The response is complete, so like a complete response it
                // may go out with the other answers of this wake-up (or of
                // the pipelined batch); what the socket does not take now,
                // the event loop writes, holding no thread.
                if self.may_defer() {
                    return Ok(());
                }
                match self.conn.flush() {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.write_failed(e)),
                }
            }
        }
    }

    /// Makes this the connection's last exchange (after an internal error).
    pub(crate) fn close_after(&mut self) {
        self.st.keep_alive = false;
    }

    /// Cuts the response off after an error: the connection closes without
    /// a terminating chunk, so the client can tell the body is incomplete.
    pub fn abort(&mut self) {
        self.st.state = RespState::Aborted;
        self.st.keep_alive = false;
        // The blocks already yielded still go out before the close.
        let _ = self.release_held();
        let _ = self.write_parts(&[]);
    }

    fn check_length(&mut self, framing: Framing, sent: u64, produced: u64) {
        if let Framing::Length(n) = framing {
            if produced > n {
                log::warning(&format!(
                    "{} {}: application sent more than its Content-Length; cut",
                    String::from_utf8_lossy(self.st.req.head.method()),
                    String::from_utf8_lossy(self.st.req.head.target())
                ));
                self.st.keep_alive = false;
            } else if sent < n && !self.is_head() {
                log::warning(&format!(
                    "{} {}: application sent {} bytes less than its Content-Length; \
                     closing the connection",
                    String::from_utf8_lossy(self.st.req.head.method()),
                    String::from_utf8_lossy(self.st.req.head.target()),
                    n - sent
                ));
                self.st.keep_alive = false;
            }
        }
    }

    fn is_head(&self) -> bool {
        self.st.req.head.method() == b"HEAD"
    }

    /// Builds the response head into the connection's write buffer and
    /// decides the framing. `full_len` is the whole body's length when the
    /// application handed it over at once.
    fn commit_head(&mut self, head: &ResponseHead, full_len: Option<u64>) -> io::Result<Framing> {
        if self.st.state != RespState::Idle {
            return Err(io::Error::other("response already started"));
        }
        if let Some(Claim::TimedOut { answered }) = self.watch.map(Watch::claim_head) {
            return Err(self.deadline_answer(answered));
        }
        self.st.status = head.status;
        let is_head = self.is_head();
        let buffered_input = self.conn.input().len() as u64;
        let conn_closing = self.conn.state == ConnState::CloseAfterFlush
            || self.conn.stopping
            || self
                .conn
                .server_stop
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
            || self.at_request_limit();
        if head.close {
            self.st.keep_alive = false;
        }
        // An unread body with 100 Continue never sent: the client may or may
        // not send it, so the connection cannot be reused safely. An unread
        // body too large to discard afterwards (or of unknown size) means
        // closing too, and the client is told so now.
        if self.st.req.continue_pending {
            self.st.keep_alive = false;
        } else if !self.st.req.decoder.is_done() {
            let left = self.st.req.decoder.discard_hint().unwrap_or(u64::MAX);
            if left.saturating_sub(buffered_input) > DRAIN_LIMIT {
                self.st.keep_alive = false;
            }
        }
        if conn_closing {
            self.st.keep_alive = false;
        }
        // Room for the whole answer at once: a connection's buffer starts
        // empty, and growing it field by field and then for the body took
        // an allocation and a reallocation (with its copy) per one-request
        // connection. A complete body is counted only up to what would be
        // copied into the buffer anyway ([`DIRECT_BODY`]). A buffer that
        // has served an answer already grows as it needs.
        if self.conn.io.wbuf.capacity() == 0 {
            let body_room = full_len.map_or(0, |n| n.min(DIRECT_BODY as u64) as usize);
            self.conn
                .io
                .wbuf
                .reserve(head.http1_lines().len() + HEAD_ROOM + body_room);
        }
        let head_start = self.conn.io.wbuf.len();
        let framing = if self.conn.codec.is_http1() {
            self.h1_head(head, full_len, is_head)
        } else {
            self.gateway_head(head, full_len, is_head)
        };
        self.st.head_out = (self.conn.io.wbuf.len() - head_start) as u64;
        if let Some(names) = self
            .cfg
            .access_log
            .as_ref()
            .map(|a| a.response_headers())
            .filter(|n| !n.is_empty())
        {
            self.st.logged_headers = find_fields(&self.conn.io.wbuf[head_start..], names);
        }
        // The first answer on a connection that closes after it, small and
        // complete, leaves in one write: Nagle's algorithm cannot delay it.
        let head_len = (self.conn.io.wbuf.len() - self.conn.io.wpos) as u64;
        let one_shot = !self.st.keep_alive
            && self.conn.served == 0
            && full_len.is_some_and(|n| n.saturating_add(head_len) <= ONE_SHOT_MAX);
        if !one_shot {
            self.conn.set_nodelay();
        }
        Ok(framing)
    }

    /// Writes an HTTP/1.1 response head into the connection's buffer and
    /// decides the framing: the application's Content-Length, the whole
    /// body's length when it is known, else chunked (close-delimited for
    /// HTTP/1.0).
    fn h1_head(&mut self, head: &ResponseHead, full_len: Option<u64>, is_head: bool) -> Framing {
        let http10 = self.st.req.head.version() == Version::Http10;
        let app_len = head.content_length();
        let out = &mut self.conn.io.wbuf;
        out.extend_from_slice(head.http1_lines());
        if !head.has_date {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date_now(self.date));
            out.extend_from_slice(b"\r\n");
        }
        if self.cfg.server_header && !head.has_server {
            out.extend_from_slice(b"Server: ferrowsgi\r\n");
        }
        let bodyless_status = !has_body(head.status);
        let framing = if bodyless_status {
            Framing::Empty
        } else if let Some(n) = app_len {
            if is_head {
                Framing::Empty
            } else {
                Framing::Length(n)
            }
        } else if let Some(n) = full_len {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
            if is_head {
                Framing::Empty
            } else {
                Framing::Length(n)
            }
        } else if http10 {
            self.st.keep_alive = false;
            if is_head {
                Framing::Empty
            } else {
                Framing::Close
            }
        } else {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            if is_head {
                Framing::Empty
            } else {
                Framing::Chunked
            }
        };
        if !self.st.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        framing
    }

    /// Writes a gateway protocol's response head through its codec and
    /// decides how much body goes out: the application's Content-Length,
    /// the whole body's length when known (announced to the front end),
    /// else as much as the application sends (the codec frames each block
    /// and marks the end, [`Framing::Close`] here meaning "no count").
    /// Date and Server are the front end's to add.
    fn gateway_head(
        &mut self,
        head: &ResponseHead,
        full_len: Option<u64>,
        is_head: bool,
    ) -> Framing {
        let app_len = head.content_length();
        let announce = if app_len.is_some() { None } else { full_len };
        let conn = &mut *self.conn;
        if let Codec::Gateway(g) = &mut conn.codec {
            g.write_head(&mut conn.io.wbuf, head, announce);
        }
        match app_len.or(full_len) {
            _ if !has_body(head.status) || is_head => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    }

    /// Frames `data` as a block of a gateway protocol's response body in
    /// the connection's buffer.
    fn gateway_block(&mut self, data: &[u8]) {
        let conn = &mut *self.conn;
        if let Codec::Gateway(g) = &mut conn.codec {
            if !data.is_empty() {
                g.write_block(&mut conn.io.wbuf, data);
            }
        }
    }

    /// Ends a gateway protocol's response in the connection's buffer.
    fn gateway_end(&mut self) {
        let keep_alive = self.st.keep_alive;
        let conn = &mut *self.conn;
        if let Codec::Gateway(g) = &mut conn.codec {
            g.write_end(&mut conn.io.wbuf, keep_alive);
        }
    }

    /// Sends one block of a gateway protocol's streamed response (see
    /// [`Exchange::send_block`]): counted against the framing, framed by
    /// the codec, written now (waiting for the socket with `wait`).
    fn gateway_send(&mut self, block: &[u8], wait: bool) -> io::Result<bool> {
        let RespState::Streaming(framing) = self.st.state else {
            return Err(io::Error::other("response not started"));
        };
        let take = match framing {
            Framing::Empty => {
                self.st.body_sent += block.len() as u64;
                return Ok(true);
            }
            Framing::Length(left) => {
                let take = (block.len() as u64).min(left) as usize;
                if take < block.len() {
                    log::warning(&format!(
                        "{} {}: application sent more than its Content-Length; cut",
                        String::from_utf8_lossy(self.st.req.head.method()),
                        String::from_utf8_lossy(self.st.req.head.target())
                    ));
                    self.st.keep_alive = false;
                }
                self.st.state = RespState::Streaming(Framing::Length(left - take as u64));
                take
            }
            Framing::Close | Framing::Chunked => block.len(),
        };
        self.st.body_sent += take as u64;
        self.gateway_block(&block[..take]);
        // Each block of a streamed response is on its way before the next
        // is asked for (PEP 3333), through the front end too.
        let conn = &mut *self.conn;
        if let Codec::Gateway(g) = &mut conn.codec {
            if take > 0 {
                g.write_flush(&mut conn.io.wbuf);
            }
        }
        self.write_out(&[], wait)
    }

    /// This request reaches `--keep-alive-requests`, so its answer closes
    /// the connection. Requests the client already pipelined behind it are
    /// answered first (up to `--max-pipelined` past the limit), so that a
    /// batch is not cut off and resent: the answer that closes is the one
    /// after which nothing more is buffered.
    fn at_request_limit(&self) -> bool {
        let limit = self.cfg.keep_alive_requests;
        if limit == 0 || self.conn.served + 1 < limit {
            return false;
        }
        let pipelined = self.st.req.decoder.is_done() && !self.conn.input().is_empty();
        let grace = self.cfg.max_pipelined as u64;
        !pipelined || self.conn.served + 1 >= limit.saturating_add(grace)
    }

    /// Writes the connection's pending output followed by `parts`, and
    /// returns once everything is in the kernel, waiting for the socket
    /// (through the [`Waiter`]) up to the write timeout.
    fn write_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.write_out(parts, true).map(|_| ())
    }

    /// Writes the pending output and `parts`. With `wait`, as
    /// [`Exchange::write_parts`]; without, what the socket does not take is
    /// left in the connection's buffer and `Ok(false)` says so.
    fn write_out(&mut self, parts: &[&[u8]], wait: bool) -> io::Result<bool> {
        if let Err(e) = self.release_held() {
            return Err(self.write_failed(e));
        }
        let small: usize = parts.iter().map(|p| p.len()).sum();
        if small <= COPY_LIMIT {
            for p in parts {
                self.conn.io.wbuf.extend_from_slice(p);
            }
            if wait {
                return self.flush_blocking().map(|_| true);
            }
            return self.conn.flush().map_err(|e| self.write_failed(e));
        }
        // Large blocks go straight from the application's buffer.
        let mut skip = 0usize; // bytes of the parts already written
        loop {
            let pending = &self.conn.io.wbuf[self.conn.io.wpos..];
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() + 1);
            if !pending.is_empty() {
                slices.push(IoSlice::new(pending));
            }
            let mut s = skip;
            for p in parts {
                if s >= p.len() {
                    s -= p.len();
                    continue;
                }
                slices.push(IoSlice::new(&p[s..]));
                s = 0;
            }
            if slices.is_empty() {
                self.conn.io.wbuf.clear();
                self.conn.io.wpos = 0;
                return Ok(true);
            }
            let pending_len = pending.len();
            match self.conn.io.stream.write_vectored(&slices) {
                Ok(0) => return Err(self.write_failed(io::ErrorKind::WriteZero.into())),
                Ok(mut n) => {
                    self.conn.since = Stamp::now();
                    let from_pending = n.min(pending_len);
                    self.conn.io.wpos += from_pending;
                    n -= from_pending;
                    skip += n;
                    if self.conn.io.wpos >= self.conn.io.wbuf.len() {
                        self.conn.io.wbuf.clear();
                        self.conn.io.wpos = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if wait {
                        self.wait_writable()?;
                        continue;
                    }
                    // The rest waits in the buffer for the event loop.
                    self.conn.write_blocked = true;
                    let mut s = skip;
                    for p in parts {
                        if s >= p.len() {
                            s -= p.len();
                            continue;
                        }
                        self.conn.io.wbuf.extend_from_slice(&p[s..]);
                        s = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.write_failed(e)),
            }
        }
    }

    fn flush_blocking(&mut self) -> io::Result<()> {
        loop {
            match self.conn.flush() {
                Ok(true) => return Ok(()),
                Ok(false) => self.wait_writable()?,
                Err(e) => return Err(self.write_failed(e)),
            }
        }
    }

    fn write_failed(&mut self, e: io::Error) -> io::Error {
        self.st.keep_alive = false;
        self.st.state = RespState::Aborted;
        e
    }

    fn wait_writable(&mut self) -> io::Result<()> {
        match self.wait_socket(Want::Write, self.cfg.write_timeout) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.st.keep_alive = false;
                self.st.state = RespState::Aborted;
                // As for a timed-out buffered response: drop what the
                // kernel still holds rather than trickle it out.
                self.conn.io.stream.reset_on_close();
                Err(timed_out("writing the response"))
            }
            Err(e) => Err(self.write_failed(e)),
        }
    }

    /// Closes the exchange after the handler returned: finishes a response
    /// the handler left open, decides whether the connection stays open,
    /// arranges for an unread body to be discarded, and writes the access
    /// log line. The last call on an exchange (it takes what the next
    /// request reuses); taking `self` by reference spares copying the
    /// whole exchange, about 500 bytes, into the call.
    pub(crate) fn complete(&mut self) {
        if let Err(e) = self.release_held() {
            let _ = self.write_failed(e);
        }
        match self.st.state {
            RespState::Idle if self.st.body_over_limit => {
                let _ = self.answer_body_over_limit();
            }
            RespState::Idle => {
                log::error("application returned without a response; sending 500");
                let mut head = ResponseHead::new(500, b"500 Internal Server Error");
                head.push_header(b"Content-Type", b"text/plain");
                let _ = self.respond(&head, &[b"Internal Server Error\n"]);
            }
            RespState::Streaming(_) => {
                let _ = self.finish();
            }
            _ => {}
        }
        if self.st.keep_alive && !self.st.req.decoder.is_done() {
            match self.st.req.decoder.discard_hint() {
                Some(n) if n <= DRAIN_LIMIT => {
                    self.conn.drain = Some(Box::new(self.st.req.decoder.clone()))
                }
                None if self.conn.input().len() as u64 <= DRAIN_LIMIT => {
                    self.conn.drain = Some(Box::new(self.st.req.decoder.clone()))
                }
                _ => self.st.keep_alive = false,
            }
        }
        if !self.st.keep_alive {
            self.conn.state = ConnState::CloseAfterFlush;
            // The client may still be sending the body nobody read.
            self.conn.must_linger |= !self.st.req.decoder.is_done();
        }
        if self.conn.state == ConnState::Open {
            // The connection goes on: its next large body reuses the file.
            if let Some(spool) = self.st.req.spool.take() {
                self.conn.kept_spool = KeptSpool::keep(spool).map(Box::new);
            }
        }
        self.conn.served += 1;
        if let Some(m) = metrics::current() {
            self.st.count(m);
        }
        if let Some(access) = &self.cfg.access_log {
            access.write(&log::AccessRecord {
                peer: &self.conn.peer,
                head: &self.st.req.head,
                status: self.st.status,
                bytes: self.st.body_sent,
                duration: self.st.started.map(|t| t.elapsed()),
                response_headers: &self.st.logged_headers,
            });
        }
        self.conn.spare_head = self.st.req.head.take_storage();
    }
}

/// The `Date` field's value for now. The seconds come from `time(2)`, a
/// read of the kernel's coarse clock in the vDSO: the field has whole
/// seconds, and `SystemTime::now` with its conversion since 1970 cost
/// about 120 instructions more per response. The coarse clock may trail
/// the precise one by a tick (a few milliseconds) at a second's turn,
/// well within what a Date is (RFC 9110 §6.6.1: the best approximation
/// available).
fn date_now(date: &mut DateCache) -> &[u8] {
    // SAFETY: with a null pointer, time() only returns the time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    match u64::try_from(now) {
        Ok(second) => date.get_at(second),
        // A clock before 1970: the cache's own handling of it.
        Err(_) => date.get(),
    }
}

/// The values of the fields `names` (lower-case) in a serialised response
/// head (status line first), in the order of `names`; the first of a
/// repeated field.
fn find_fields(block: &[u8], names: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    let mut found = vec![None; names.len()];
    for line in block.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        for (slot, want) in found.iter_mut().zip(names) {
            if slot.is_none() && eq_lowercase(name, want) {
                *slot = Some(value.to_vec());
            }
        }
    }
    found
}

/// Copies all of `src` into the start of `dst` (which may be
/// uninitialised and must be at least as long).
fn copy_into(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    let dst = &mut dst[..src.len()];
    // SAFETY: both slices are live and `src.len()` long (the line above
    // panics otherwise, which no caller allows); a `&mut` slice cannot
    // overlap a shared one; writing bytes into `MaybeUninit<u8>` is always
    // valid.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len());
    }
}

/// Appends a chunk-size line (`1a\r\n`) for a chunk of `n` bytes.
fn write_chunk_size(out: &mut Vec<u8>, n: usize) {
    let _ = write!(out, "{n:x}\r\n");
}
