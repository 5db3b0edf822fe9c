//! The protocol a connection speaks: how its bytes become requests and its
//! responses become bytes.
//!
//! A connection ([`crate::conn::Conn`]) pairs socket I/O with one [`Codec`].
//! HTTP/1.1 is the [`Codec::Http1`] variant, handled inline by the
//! connection and the exchange (its hot path pays one predictable branch
//! for the seam). Every front-end protocol (FastCGI, SCGI, uwsgi, AJP13) is
//! a [`Gateway`]: the protocol crate has its sans-I/O decoder and encoder,
//! and a small adapter here turns them into this trait. What differs
//! between protocols is only:
//!
//! * decoding a request head (which may answer the front end on its own,
//!   e.g. FastCGI's management records), and the reader of its body
//!   ([`BodyReader`]);
//! * encoding the response head, each body block, the end of the response,
//!   and an error answer for a request the application never saw.
//!
//! Everything else — buffering, spooling large bodies, timeouts, the
//! thread hand-off, `--limit-request-body`, Content-Length accounting,
//! pausing for slow readers — is the connection's and the exchange's, the
//! same for every protocol.

use std::fmt;
use std::time::Duration;

use ferrowsgi_proto::{
    parse_head_into, BodyDecoder, BodyError, HeadStorage, Limits, ParseError, Parsed, RequestHead,
    ResponseHead,
};

/// The text of a 504 for a request that ran past `timeout` (`--timeout`).
pub fn timeout_message(timeout: Duration) -> String {
    format!(
        "the application did not answer within {} s",
        timeout.as_secs_f64()
    )
}

/// A front-end protocol's codec, as the connection uses it. Implementations
/// hold the protocol's per-connection state (a FastCGI request id, say).
pub trait Gateway: Send + fmt::Debug {
    /// Decodes the next request's head from the start of `input`:
    /// `Ok(Some((head, consumed)))` once complete, `Ok(None)` when more
    /// bytes are needed. Bytes the protocol must send on its own (replies
    /// to management records) are appended to `out`. The head's
    /// [`RequestHead::keep_alive`] says whether another request may follow
    /// on the connection.
    fn decode_head(
        &mut self,
        input: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
    ) -> Result<Option<(RequestHead, usize)>, ParseError>;

    /// The reader of `head`'s body (a [`BodyDecoder`] for a protocol whose
    /// body is plain Content-Length bytes).
    fn body_reader(&mut self, head: &RequestHead, limits: &Limits) -> BodyReader;

    /// Appends the response head. `body_len` is the body's length when the
    /// whole body is known (a complete response), for a protocol that wants
    /// it up front; the application's own Content-Length is among the
    /// head's fields when it gave one.
    fn write_head(&mut self, out: &mut Vec<u8>, head: &ResponseHead, body_len: Option<u64>);

    /// Appends one block of the response body, framed (non-empty).
    fn write_block(&mut self, out: &mut Vec<u8>, data: &[u8]);

    /// Appends what makes the front end pass on at once what it has of a
    /// streamed response (AJP13's empty body chunk: Apache buffers body
    /// packets otherwise); nothing for a protocol whose front end passes
    /// each block on as it comes.
    fn write_flush(&mut self, _out: &mut Vec<u8>) {}

    /// Appends the end of the response; `keep_alive` says whether the
    /// connection will carry another request.
    fn write_end(&mut self, out: &mut Vec<u8>, keep_alive: bool);

    /// Appends a complete error answer for a request the application never
    /// saw (or no request at all); the connection closes after it.
    fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str);

    /// The complete `504 Gateway Timeout` answer (with
    /// [`timeout_message`] for `timeout` as its text) to the current
    /// request, for the deadline watcher to send on its own while the
    /// request's thread still runs (`--timeout`). It must leave the codec
    /// as it was: the request may well finish in time and answer normally.
    /// `None` (the default) leaves the 504 to the exchange, when the
    /// application's thread comes back. It is asked for with every
    /// request, so a codec keeps an answer that does not change from one
    /// request to the next rather than making it again.
    fn timeout_answer(&mut self, timeout: Duration) -> Option<&[u8]> {
        let _ = timeout;
        None
    }
}

/// The codec of one connection.
#[derive(Debug)]
pub enum Codec {
    /// HTTP/1.0 and 1.1 (RFC 9112), the connection's and the exchange's own.
    Http1,
    /// A front-end protocol.
    Gateway(Box<dyn Gateway>),
}

impl Codec {
    /// Whether this is HTTP/1.x.
    pub fn is_http1(&self) -> bool {
        matches!(self, Codec::Http1)
    }

    /// Decodes the next request head from `input` (see
    /// [`Gateway::decode_head`]); HTTP/1.x parses into `spare`'s buffers.
    pub fn decode_head(
        &mut self,
        input: &[u8],
        limits: &Limits,
        spare: &mut HeadStorage,
        out: &mut Vec<u8>,
    ) -> Result<Option<(RequestHead, usize)>, ParseError> {
        match self {
            Codec::Http1 => match parse_head_into(input, limits, spare)? {
                Parsed::Complete { head, consumed } => Ok(Some((head, consumed))),
                Parsed::Partial => Ok(None),
            },
            Codec::Gateway(g) => g.decode_head(input, limits, out),
        }
    }

    /// The reader of `head`'s body.
    pub fn body_reader(&mut self, head: &RequestHead, limits: &Limits) -> BodyReader {
        match self {
            Codec::Http1 => BodyReader::Http1(BodyDecoder::new(head.body(), limits)),
            Codec::Gateway(g) => g.body_reader(head, limits),
        }
    }

    /// Appends a complete error answer (see [`Gateway::write_error`]).
    pub fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        match self {
            Codec::Http1 => {
                ferrowsgi_proto::write_simple_error_response(out, status, reason, message, &[])
            }
            Codec::Gateway(g) => g.write_error(out, status, reason, message),
        }
    }
}

/// A body framed by its protocol (FastCGI's STDIN records, AJP13's body
/// packets), read with the same calls as HTTP/1's [`BodyDecoder`].
pub trait GatewayBody: Send + fmt::Debug {
    /// Decodes what it can of `input`, handing body bytes (at most
    /// `max_out`) to `put`; returns (input consumed, body bytes put).
    fn decode_with(
        &mut self,
        input: &[u8],
        max_out: usize,
        put: &mut dyn FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError>;
    /// Body bytes that come next with no framing among them.
    fn data_ahead(&self) -> u64;
    /// Records `n` of those bytes as taken straight from the socket.
    fn consume_data(&mut self, n: u64) -> u64;
    /// Whether the whole body has been decoded.
    fn is_done(&self) -> bool;
    /// Body bytes still to come, when known.
    fn remaining_hint(&self) -> Option<u64>;
    /// At most how many bytes must still be read to discard the rest of the
    /// body once the application is done with it (`None`: unknown). All
    /// that is left unless the protocol can stop the front end sending it
    /// (AJP13 asks for each packet, so only the one on its way is left).
    fn discard_hint(&self) -> Option<u64> {
        self.remaining_hint()
    }
    /// Appends bytes the front end must be sent before more of the body can
    /// come (AJP13's GET_BODY_CHUNK), if any.
    fn take_output(&mut self, out: &mut Vec<u8>);
    /// A copy, for discarding the rest of an unread body after the response.
    fn boxed_clone(&self) -> Box<dyn GatewayBody>;
}

/// The reader of one request body.
#[derive(Debug)]
pub enum BodyReader {
    /// Content-Length or chunked bytes (HTTP/1.x, and gateways whose body
    /// is plain Content-Length bytes).
    Http1(BodyDecoder),
    /// A body its protocol frames.
    Gateway(Box<dyn GatewayBody>),
}

impl Clone for BodyReader {
    fn clone(&self) -> BodyReader {
        match self {
            BodyReader::Http1(d) => BodyReader::Http1(d.clone()),
            BodyReader::Gateway(g) => BodyReader::Gateway(g.boxed_clone()),
        }
    }
}

impl BodyReader {
    /// [`BodyDecoder::decode_with`].
    pub fn decode_with(
        &mut self,
        input: &[u8],
        max_out: usize,
        mut put: impl FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError> {
        match self {
            BodyReader::Http1(d) => d.decode_with(input, max_out, put),
            BodyReader::Gateway(g) => g.decode_with(input, max_out, &mut put),
        }
    }

    /// [`BodyDecoder::decode`]: appends body bytes to `out`.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, BodyError> {
        match self {
            BodyReader::Http1(d) => d.decode(input, out, max_out),
            BodyReader::Gateway(g) => g
                .decode_with(input, max_out, &mut |data| out.extend_from_slice(data))
                .map(|(consumed, _)| consumed),
        }
    }

    /// [`BodyDecoder::data_ahead`].
    pub fn data_ahead(&self) -> u64 {
        match self {
            BodyReader::Http1(d) => d.data_ahead(),
            BodyReader::Gateway(g) => g.data_ahead(),
        }
    }

    /// [`BodyDecoder::consume_data`].
    pub fn consume_data(&mut self, n: u64) -> u64 {
        match self {
            BodyReader::Http1(d) => d.consume_data(n),
            BodyReader::Gateway(g) => g.consume_data(n),
        }
    }

    /// [`BodyDecoder::consume_length`]: bytes moved by the kernel straight
    /// to a file; only a plain Content-Length body can be.
    pub fn consume_length(&mut self, n: u64) -> u64 {
        match self {
            BodyReader::Http1(d) => d.consume_length(n),
            BodyReader::Gateway(_) => 0,
        }
    }

    /// Whether the bytes of this body can be moved from the socket without
    /// looking at them (splice(2) into a spool file).
    pub fn is_plain(&self) -> bool {
        matches!(self, BodyReader::Http1(_))
    }

    /// [`BodyDecoder::is_done`].
    pub fn is_done(&self) -> bool {
        match self {
            BodyReader::Http1(d) => d.is_done(),
            BodyReader::Gateway(g) => g.is_done(),
        }
    }

    /// [`BodyDecoder::remaining_hint`].
    pub fn remaining_hint(&self) -> Option<u64> {
        match self {
            BodyReader::Http1(d) => d.remaining_hint(),
            BodyReader::Gateway(g) => g.remaining_hint(),
        }
    }

    /// [`GatewayBody::discard_hint`]: for HTTP/1.x, all that is left.
    pub fn discard_hint(&self) -> Option<u64> {
        match self {
            BodyReader::Http1(d) => d.remaining_hint(),
            BodyReader::Gateway(g) => g.discard_hint(),
        }
    }

    /// Appends what must be sent before more of the body can come (see
    /// [`GatewayBody::take_output`]); nothing for HTTP/1.x.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        if let BodyReader::Gateway(g) = self {
            g.take_output(out);
        }
    }
}
