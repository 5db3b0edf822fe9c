//! FastCGI responder (FastCGI Specification 1.0): records in, requests and
//! body bytes out, response records appended to the caller's buffer.
//!
//! A FastCGI connection carries records (`version, type, request id, content
//! length, padding`, spec §3.3). A front end starts a request with
//! `FCGI_BEGIN_REQUEST`, sends the CGI variables as name-value pairs in
//! `FCGI_PARAMS` records (a pair may be split across records; an empty
//! record ends them), then the body in `FCGI_STDIN` records (an empty record
//! ends it). The answer is `FCGI_STDOUT` records holding a CGI-style head
//! (`Status: 200 OK`, fields, an empty line) and the body, an empty
//! `FCGI_STDOUT`, and `FCGI_END_REQUEST`.
//!
//! [`FcgiConn`] is the whole per-connection state, with no I/O:
//!
//! * [`FcgiConn::decode_head`] reads records until a request's variables are
//!   complete and returns them as the crate's ordinary [`RequestHead`]
//!   (through [`CgiVars`], which enforces the [`Limits`]);
//! * [`FcgiConn::decode_with`] and its companions have the method set of
//!   [`crate::BodyDecoder`] and stream the body out of `FCGI_STDIN` records;
//! * [`FcgiConn::write_head`], [`FcgiConn::write_block`] /
//!   [`FcgiConn::stdout_header`], [`FcgiConn::write_end`] and
//!   [`FcgiConn::write_error`] frame the response;
//! * [`FcgiConn::take_output`] hands out the records the decoder itself must
//!   send: answers to management records (`FCGI_GET_VALUES_RESULT`,
//!   `FCGI_UNKNOWN_TYPE`) and refusals (`FCGI_END_REQUEST` with
//!   `FCGI_UNKNOWN_ROLE` or `FCGI_CANT_MPX_CONN`).
//!
//! Decisions the specification leaves open:
//!
//! * Only the Responder role is served; Authorizer and Filter requests are
//!   refused with `FCGI_UNKNOWN_ROLE` (§5.1).
//! * Requests are not multiplexed (`FCGI_MPXS_CONNS` is `0`): a
//!   `FCGI_BEGIN_REQUEST` for another id while one request is active is
//!   refused with `FCGI_CANT_MPX_CONN` (§5.5) and its records skipped, as
//!   records of any inactive id are (§3.3). nginx and Apache never
//!   multiplex.
//! * `FCGI_DATA` is the Filter role's stream; a responder skips it.
//! * The body's length is `CONTENT_LENGTH` when the front end sent one (and
//!   `FCGI_STDIN` must then carry exactly that many bytes), else unknown
//!   ([`BodyKind::Chunked`](crate::BodyKind::Chunked): framed by the empty `FCGI_STDIN`). When that
//!   empty record already follows the variables in the same input, it is
//!   taken with the head and the body is [`BodyKind::Empty`](crate::BodyKind::Empty), so a `GET`
//!   from nginx (which sends `CONTENT_LENGTH` empty) costs no body reading.
//! * Records are written without padding. Padding only aligns records for
//!   the receiver's convenience (§3.3 "recommends" 8-byte alignment); nginx
//!   and Apache read records as a byte stream, and unpadded records let a
//!   body block go out as one 8-byte header plus the application's bytes,
//!   with no suffix to add.
//! * A management record's content is read whole, up to
//!   [`MAX_MANAGEMENT_CONTENT`] bytes; `FCGI_GET_VALUES` asks for a few short
//!   names, so a longer one is treated as a broken front end.
//!
//! Every length from the wire is checked before anything is buffered for
//! it: a name-value pair's lengths against the head-size limit, a
//! management record against [`MAX_MANAGEMENT_CONTENT`], replies waiting in
//! the output against [`MAX_PENDING_OUTPUT`]. Body bytes and the content of
//! skipped records are streamed through, never buffered.
//!
//! ```
//! use ferrowsgi_proto::fastcgi::{FcgiConn, Settings};
//! use ferrowsgi_proto::{BodyKind, Limits};
//!
//! // BEGIN_REQUEST (id 1, responder, keep the connection), two params,
//! // the end of the params, an empty STDIN.
//! let mut wire = vec![1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0];
//! let params = b"\x0e\x03REQUEST_METHODGET\x0b\x02REQUEST_URI/x";
//! wire.extend_from_slice(&[1, 4, 0, 1, 0, params.len() as u8, 0, 0]);
//! wire.extend_from_slice(params);
//! wire.extend_from_slice(&[1, 4, 0, 1, 0, 0, 0, 0, 1, 5, 0, 1, 0, 0, 0, 0]);
//!
//! let mut conn = FcgiConn::new(Settings::default());
//! let (consumed, head) = conn.decode_head(&wire, &Limits::default()).unwrap();
//! let head = head.unwrap();
//! assert_eq!(consumed, wire.len());
//! assert_eq!((head.method(), head.path()), (&b"GET"[..], &b"/x"[..]));
//! assert_eq!(head.body(), BodyKind::Empty);
//! assert!(head.keep_alive());
//!
//! let mut out = Vec::new();
//! conn.write_head(&mut out, b"200 OK", [(&b"Content-Type"[..], &b"text/plain"[..])]);
//! conn.write_block(&mut out, b"hi");
//! assert!(conn.write_end(&mut out));
//! assert!(out.starts_with(b"\x01\x06\x00\x01\x00\x2c\x00\x00Status: 200 OK\r\n"));
//! ```

mod decode;
mod encode;
mod pairs;
#[cfg(test)]
mod tests;

use crate::gateway::CgiVars;
use crate::{BodyError, Limits, ParseError, RequestHead};
use pairs::Pairs;

/// The only protocol version (`FCGI_VERSION_1`).
pub const VERSION_1: u8 = 1;
/// Bytes in a record header (`FCGI_HEADER_LEN`).
pub const HEADER_LEN: usize = 8;
/// Most content bytes in one record: the content length is 16 bits.
pub const MAX_CONTENT: usize = 65535;

/// `FCGI_BEGIN_REQUEST`: starts a request (front end to application).
pub const BEGIN_REQUEST: u8 = 1;
/// `FCGI_ABORT_REQUEST`: the front end gives a request up.
pub const ABORT_REQUEST: u8 = 2;
/// `FCGI_END_REQUEST`: the application has finished a request.
pub const END_REQUEST: u8 = 3;
/// `FCGI_PARAMS`: the request's CGI variables as name-value pairs.
pub const PARAMS: u8 = 4;
/// `FCGI_STDIN`: the request body.
pub const STDIN: u8 = 5;
/// `FCGI_STDOUT`: the response (CGI-style head, then body).
pub const STDOUT: u8 = 6;
/// `FCGI_STDERR`: error text from the application.
pub const STDERR: u8 = 7;
/// `FCGI_DATA`: the Filter role's extra input stream.
pub const DATA: u8 = 8;
/// `FCGI_GET_VALUES`: a management query for the application's settings.
pub const GET_VALUES: u8 = 9;
/// `FCGI_GET_VALUES_RESULT`: the answer to [`GET_VALUES`].
pub const GET_VALUES_RESULT: u8 = 10;
/// `FCGI_UNKNOWN_TYPE`: the answer to a management record of another type.
pub const UNKNOWN_TYPE: u8 = 11;

/// `FCGI_RESPONDER`, the only role served.
pub const ROLE_RESPONDER: u16 = 1;
/// `FCGI_KEEP_CONN`: the connection stays open after the request.
pub const FLAG_KEEP_CONN: u8 = 1;

/// `FCGI_REQUEST_COMPLETE`: the request was handled.
pub const REQUEST_COMPLETE: u8 = 0;
/// `FCGI_CANT_MPX_CONN`: refused, one request at a time on a connection.
pub const CANT_MPX_CONN: u8 = 1;
/// `FCGI_OVERLOADED`: refused for lack of resources.
pub const OVERLOADED: u8 = 2;
/// `FCGI_UNKNOWN_ROLE`: refused, the role is not served.
pub const UNKNOWN_ROLE: u8 = 3;

/// Largest management record content read (an `FCGI_GET_VALUES` query):
/// the three names the specification defines take 45 bytes.
pub const MAX_MANAGEMENT_CONTENT: usize = 1024;

/// Most bytes of management answers and refusals waiting in the output: a
/// front end that sends queries and never reads the answers is cut off
/// rather than growing this without end.
pub const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// What `FCGI_GET_VALUES` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `FCGI_MAX_CONNS`: the most connections the server accepts at once.
    pub max_conns: u32,
    /// `FCGI_MAX_REQS`: the most requests it handles at once (one per
    /// connection, since requests are not multiplexed).
    pub max_reqs: u32,
}

impl Default for Settings {
    /// 10,000 connections and requests, the server's default connection
    /// limit (the server passes its own).
    fn default() -> Self {
        Settings {
            max_conns: 10_000,
            max_reqs: 10_000,
        }
    }
}

/// A record header as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Header {
    /// The record type.
    kind: u8,
    /// The request id (0 for management records).
    id: u16,
    /// Content bytes.
    len: u16,
    /// Padding bytes after the content.
    pad: u8,
}

/// Where the record reader stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rec {
    /// Reading a header; `have` of its 8 bytes are in `FcgiConn::hbuf`.
    Header {
        /// Header bytes read.
        have: u8,
    },
    /// In the current record's content.
    Content {
        /// Content bytes still to come.
        left: u16,
    },
    /// In the current record's padding.
    Padding {
        /// Padding bytes still to come.
        left: u8,
    },
}

/// Where the current record's content goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    /// Read past: a record of an inactive id, `FCGI_DATA`, a record whose
    /// meaning is decided at its end, or an unknown management type.
    Skip,
    /// An `FCGI_BEGIN_REQUEST` body into `FcgiConn::begin`.
    Begin,
    /// The active request's `FCGI_PARAMS` into the name-value parser.
    Params,
    /// The active request's `FCGI_STDIN`: body bytes.
    Stdin,
    /// A management record's content into `FcgiConn::mgmt`.
    Management,
}

/// The request on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No request: waiting for `FCGI_BEGIN_REQUEST`.
    Idle,
    /// A request has begun; its variables are being read.
    Params,
    /// The head was handed out; the body is being read.
    Stdin,
    /// The empty `FCGI_STDIN` came: the body is complete.
    StdinDone,
    /// The front end sent `FCGI_ABORT_REQUEST` after the head was handed
    /// out.
    Aborted,
    /// The response was ended before the whole body came: the rest of the
    /// body is read (and dropped) before the next request, since front
    /// ends send all of it and reuse a connection only after that.
    Draining,
}

/// Why decoding stopped for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The request's variables were refused (status from the error).
    Head(ParseError),
    /// The front end aborted the request during its body.
    Aborted,
    /// The record stream breaks the protocol; nothing after it can be read.
    Protocol(&'static str),
}

impl Fault {
    fn into_parse(self) -> ParseError {
        match self {
            Fault::Head(e) => e,
            Fault::Aborted => ParseError::BadRequest("fastcgi: the request was aborted"),
            Fault::Protocol(m) => ParseError::BadRequest(m),
        }
    }

    fn into_body(self) -> BodyError {
        match self {
            Fault::Head(e) => BodyError::Gateway(e.message()),
            Fault::Aborted => BodyError::Aborted,
            Fault::Protocol(m) => BodyError::Gateway(m),
        }
    }
}

/// What a decoding call is after.
#[derive(Debug)]
enum Goal<'a> {
    /// A request head: decoding stops once one is built.
    Head {
        /// The limits the variables are checked against.
        limits: &'a Limits,
        /// The head, once the empty `FCGI_PARAMS` came.
        head: Option<RequestHead>,
    },
    /// Body bytes: decoding stops at the body's end, or before data once
    /// `max_out` bytes were put.
    Body {
        /// Body bytes that may still be put in this call.
        room: usize,
    },
}

/// One FastCGI connection's protocol state: the record reader, the request
/// in progress, and the replies the decoder owes the front end.
#[derive(Debug)]
pub struct FcgiConn {
    /// What `FCGI_GET_VALUES` reports.
    settings: Settings,
    /// The record reader's position.
    rec: Rec,
    /// Header bytes gathered while `rec` is `Header`.
    hbuf: [u8; HEADER_LEN],
    /// The current record's header.
    cur: Header,
    /// Where the current record's content goes.
    sink: Sink,
    /// The request on the connection.
    phase: Phase,
    /// The active request's id (meaningful unless `phase` is `Idle`).
    id: u16,
    /// Whether the active request asked for `FCGI_KEEP_CONN`.
    keep_conn: bool,
    /// Whether the response head (or an error answer) was written.
    head_written: bool,
    /// Body bytes still due by `CONTENT_LENGTH`, when the front end sent it.
    length_left: Option<u64>,
    /// The `FCGI_BEGIN_REQUEST` body being read.
    begin: [u8; 8],
    /// Bytes of `begin` read.
    begin_have: u8,
    /// A management record's content being read.
    mgmt: Vec<u8>,
    /// The name-value parser for `FCGI_PARAMS`.
    pairs: Pairs,
    /// The request's variables so far.
    vars: CgiVars,
    /// Bytes of variables so far (names and values).
    vars_bytes: usize,
    /// Records the decoder owes the front end.
    out: Vec<u8>,
    /// Whether the connection must close once `out` is sent.
    close: bool,
    /// The error that stopped decoding, repeated by every later call.
    failed: Option<Fault>,
}

impl FcgiConn {
    /// A connection with no request yet, answering `FCGI_GET_VALUES` with
    /// `settings`.
    pub fn new(settings: Settings) -> FcgiConn {
        FcgiConn {
            settings,
            rec: Rec::Header { have: 0 },
            hbuf: [0; HEADER_LEN],
            cur: Header::default(),
            sink: Sink::Skip,
            phase: Phase::Idle,
            id: 0,
            keep_conn: false,
            head_written: false,
            length_left: None,
            begin: [0; 8],
            begin_have: 0,
            mgmt: Vec::new(),
            pairs: Pairs::default(),
            vars: CgiVars::new(),
            vars_bytes: 0,
            out: Vec::new(),
            close: false,
            failed: None,
        }
    }

    /// Reads records from `input` until a request's variables are complete.
    /// Returns the input bytes consumed (all of `input` unless a head was
    /// completed or the connection is to close) and the head once complete.
    /// The caller keeps unconsumed bytes and offers them again with more.
    ///
    /// Management records and refused requests met on the way leave their
    /// answers for [`FcgiConn::take_output`]; after a refusal without
    /// `FCGI_KEEP_CONN`, [`FcgiConn::wants_close`] is set and nothing more
    /// is consumed. Call this again only once the previous request was
    /// ended ([`FcgiConn::write_end`]) and, when it ended before its body
    /// did, the rest of its body was read ([`FcgiConn::is_done`]).
    ///
    /// Errors: the [`CgiVars`] errors for the variables (400/431), and
    /// [`ParseError::BadRequest`] for a record stream that breaks the
    /// protocol; after an error every call fails the same way and the
    /// connection must close (after [`FcgiConn::write_error`]).
    pub fn decode_head(
        &mut self,
        input: &[u8],
        limits: &Limits,
    ) -> Result<(usize, Option<RequestHead>), ParseError> {
        if let Some(f) = self.failed {
            return Err(f.into_parse());
        }
        if !matches!(self.phase, Phase::Idle | Phase::Params) {
            return Err(ParseError::BadRequest(
                "fastcgi: the previous request was not ended",
            ));
        }
        let mut goal = Goal::Head { limits, head: None };
        match self.run(input, &mut goal, &mut |_| {}) {
            Ok(consumed) => match goal {
                Goal::Head { head, .. } => Ok((consumed, head)),
                Goal::Body { .. } => Ok((consumed, None)),
            },
            Err(f) => {
                self.failed = Some(f);
                Err(f.into_parse())
            }
        }
    }

    /// Decodes body bytes from `input`, handing each run of them (at most
    /// `max_out` in all) to `put`; returns `(input consumed, body bytes
    /// put)`. Consumes all of `input` except when the body ends (the bytes
    /// after it belong to what follows) or when `max_out` bytes were put
    /// and more body comes next. Record headers, padding, management
    /// records and records of other ids are consumed even when `max_out`
    /// is 0.
    ///
    /// Errors: [`BodyError::Aborted`] once the front end sent
    /// `FCGI_ABORT_REQUEST` (the request should end with
    /// [`FcgiConn::write_error`], which then writes only
    /// `FCGI_END_REQUEST`), [`BodyError::Gateway`] when `FCGI_STDIN`
    /// disagrees with `CONTENT_LENGTH` or the records break the protocol.
    /// After an error every call fails the same way.
    pub fn decode_with(
        &mut self,
        input: &[u8],
        max_out: usize,
        mut put: impl FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError> {
        if let Some(f) = self.failed {
            return Err(f.into_body());
        }
        match self.phase {
            Phase::Stdin | Phase::Draining => {}
            // The padding of the body's last record is still the body's.
            Phase::StdinDone | Phase::Idle if self.rec != (Rec::Header { have: 0 }) => {}
            Phase::Aborted => return Err(BodyError::Aborted),
            // Done, or no body to read: nothing is consumed.
            Phase::StdinDone | Phase::Idle | Phase::Params => return Ok((0, 0)),
        }
        let mut goal = Goal::Body { room: max_out };
        match self.run(input, &mut goal, &mut put) {
            Ok(consumed) => {
                let room = match goal {
                    Goal::Body { room } => room,
                    Goal::Head { .. } => max_out,
                };
                Ok((consumed, max_out - room))
            }
            Err(f) => {
                if f == Fault::Aborted {
                    self.phase = Phase::Aborted;
                } else {
                    self.failed = Some(f);
                }
                Err(f.into_body())
            }
        }
    }

    /// [`FcgiConn::decode_with`] appending the body bytes to `out`.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, BodyError> {
        self.decode_with(input, max_out, |d| out.extend_from_slice(d))
            .map(|(consumed, _)| consumed)
    }

    /// Body bytes that come next in the input with no framing among them:
    /// the rest of the `FCGI_STDIN` record being read (0 between records or
    /// when the body is over). A caller may read that many bytes straight
    /// into its own buffer and report them with
    /// [`FcgiConn::consume_data`].
    pub fn data_ahead(&self) -> u64 {
        match (self.phase, self.rec, self.sink, self.failed) {
            (Phase::Stdin | Phase::Draining, Rec::Content { left }, Sink::Stdin, None) => {
                let left = u64::from(left);
                self.length_left.map_or(left, |l| l.min(left))
            }
            _ => 0,
        }
    }

    /// Records `n` body bytes taken without [`FcgiConn::decode_with`], at
    /// most [`FcgiConn::data_ahead`]; returns how many counted.
    pub fn consume_data(&mut self, n: u64) -> u64 {
        let n = n.min(self.data_ahead());
        if n == 0 {
            return 0;
        }
        // Fits: data_ahead is at most the record's u16 content left.
        let k = u16::try_from(n).unwrap_or(u16::MAX);
        if let Some(l) = self.length_left.as_mut() {
            *l -= u64::from(k);
        }
        if let Rec::Content { left } = self.rec {
            self.rec = Rec::Content { left: left - k };
            if left == k {
                // The record's content is over; what follows is framing.
                // It cannot fail: the end of a STDIN record with content
                // only moves to its padding.
                if let Err(f) = self.end_record(&mut Goal::Body { room: 0 }) {
                    self.failed = Some(f);
                }
            }
        }
        u64::from(k)
    }

    /// Whether the whole body was read: its empty `FCGI_STDIN` (and that
    /// record's padding) came. Also true once a request's rest was drained
    /// after its response ended.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::StdinDone | Phase::Idle) && self.rec == Rec::Header { have: 0 }
    }

    /// Body bytes still to come, when known: `Some(n)` while a
    /// `CONTENT_LENGTH` body is read, `Some(0)` once any body is done,
    /// `None` for a body of unknown length.
    pub fn remaining_hint(&self) -> Option<u64> {
        if matches!(self.phase, Phase::StdinDone | Phase::Idle) {
            return Some(0);
        }
        self.length_left
    }

    /// Whether records wait in [`FcgiConn::take_output`].
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Appends the records the decoder owes the front end (management
    /// answers, refusals) to `out`, and forgets them.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.out);
        } else {
            out.append(&mut self.out);
        }
    }

    /// Whether the connection must close once the output is sent: a refused
    /// request without `FCGI_KEEP_CONN`, or a request aborted before its
    /// head without it.
    pub fn wants_close(&self) -> bool {
        self.close
    }

    /// The active request's id; 0 when there is none.
    pub fn request_id(&self) -> u16 {
        if matches!(self.phase, Phase::Idle | Phase::Draining) {
            0
        } else {
            self.id
        }
    }
}
