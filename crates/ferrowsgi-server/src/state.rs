//! The state of one request and its response on a connection: what the
//! connection keeps between the event loop's reading and the application's
//! exchange, and what a paused response keeps while its output drains.

use std::any::Any;
use std::time::{Duration, Instant};

use ferrowsgi_proto::RequestHead;

use crate::body_buf::BodyBuf;
use crate::codec::BodyReader;

use crate::metrics;
use crate::spool::Spool;

/// A request whose head is parsed and whose body is (partly) buffered.
#[derive(Debug)]
pub struct Pending {
    /// The parsed head.
    pub head: RequestHead,
    /// The body's reader, positioned after the buffered part.
    pub decoder: BodyReader,
    /// Decoded body bytes already read, in a block sized once for a body
    /// of known length (see [`BodyBuf`]).
    pub body: BodyBuf,
    /// Whether `100 Continue` is owed before the body is read.
    pub continue_pending: bool,
    /// The part of a large body kept on disk, before `body`.
    pub spool: Option<Spool>,
}

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Content-Length: this many bytes remain to be sent.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// The end of the body is the close of the connection (HTTP/1.0).
    Close,
    /// No body at all (HEAD, 1xx, 204, 304).
    Empty,
}

/// Where the response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RespState {
    /// Nothing sent yet.
    Idle,
    /// The head is out; the body is streaming with this framing.
    Streaming(Framing),
    /// Complete.
    Done,
    /// Cut off after an error; the connection will be closed.
    Aborted,
}

/// The per-request part of an [`crate::Exchange`], which a paused response keeps
/// with its connection ([`Parked`]).
#[derive(Debug)]
pub(crate) struct ExchangeState {
    pub(crate) req: Pending,
    pub(crate) body_pos: usize,
    pub(crate) state: RespState,
    pub(crate) status: u16,
    pub(crate) body_read: u64,
    /// The request body turned out malformed while the application read it.
    pub(crate) body_invalid: bool,
    /// The request body went over `--limit-request-body` while the
    /// application read it: every later read fails the same way, and the
    /// answer is 413 unless the response has started.
    pub(crate) body_over_limit: bool,
    pub(crate) body_sent: u64,
    pub(crate) keep_alive: bool,
    /// When the stream's previous block (or its head) was handed over; set
    /// when a stream starts, so a complete response reads no clock for it.
    pub(crate) last_block: Option<Instant>,
    /// When the request was handed to the application, read only for an
    /// access log that shows durations.
    pub(crate) started: Option<Instant>,
    /// The response headers the access log shows (in the order of
    /// [`crate::log::AccessLog::response_headers`]); empty unless it shows some.
    pub(crate) logged_headers: Vec<Option<Vec<u8>>>,
    /// The request's deadline (see `deadline.rs`); 0 for none.
    pub(crate) due: u64,
    /// With metrics on: when the request was ready ([`Exchange::count_from`]).
    pub(crate) counted_from: Option<Instant>,
    /// Bytes of the response head.
    pub(crate) head_out: u64,
}

/// An exchange whose response is waiting for a slow reader: the handler's
/// own state and the exchange's, kept with the connection while the event
/// loop writes the buffered output, until [`crate::Handler::resume`].
pub struct Parked {
    pub(crate) st: ExchangeState,
    /// The handler's state (dropping it ends the response for good).
    pub(crate) app: Box<dyn Any + Send>,
}

impl Parked {
    /// The parked request's head.
    pub fn head(&self) -> &RequestHead {
        &self.st.req.head
    }

    /// Counts the request of a paused response that will never go on (its
    /// client went away or stopped reading).
    pub(crate) fn count_abandoned(&self, m: &metrics::WorkerSlot) {
        self.st.count(m);
    }
}

impl ExchangeState {
    /// Counts this request in the worker's metrics.
    pub(crate) fn count(&self, m: &metrics::WorkerSlot) {
        let took = self.counted_from.map_or(Duration::ZERO, |t| t.elapsed());
        let bytes_in = self.req.head.as_bytes().len() as u64 + self.body_read;
        m.on_request(
            self.req.head.method(),
            self.status,
            took,
            bytes_in,
            self.head_out + self.body_sent,
        );
    }
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field(
                "method",
                &String::from_utf8_lossy(self.st.req.head.method()),
            )
            .field(
                "target",
                &String::from_utf8_lossy(self.st.req.head.target()),
            )
            .field("state", &self.st.state)
            .field("body_sent", &self.st.body_sent)
            .finish()
    }
}
