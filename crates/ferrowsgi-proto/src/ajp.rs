//! AJP13, the Apache JServ Protocol 1.3 as Apache's `mod_proxy_ajp` speaks it.
//!
//! The web server keeps a pool of connections to the container and sends
//! each request as one binary packet; the container answers with packets of
//! its own. Every packet is framed the same way:
//!
//! ```text
//! web server → container:  0x12 0x34  length (u16, big-endian)  payload
//! container → web server:  'A'  'B'   length (u16, big-endian)  payload
//! ```
//!
//! and no packet is longer than the connection's packet size (8192 bytes
//! by default, Apache's `ProxyIOBufferSize` up to 65536). The first payload
//! byte names the message:
//!
//! * from the web server: FORWARD_REQUEST (2) carries a request head,
//!   CPING (10) asks whether the container is alive, SHUTDOWN (7); a body
//!   packet (`u16` length, data) has no type byte and only ever comes when
//!   the container is owed one: right after a FORWARD_REQUEST whose
//!   Content-Length is not zero, and after each GET_BODY_CHUNK;
//! * from the container: SEND_HEADERS (4), SEND_BODY_CHUNK (3),
//!   END_RESPONSE (5, with a reuse flag), GET_BODY_CHUNK (6), CPONG (9).
//!
//! [`Ajp::parse_request`] turns a FORWARD_REQUEST into the crate's ordinary
//! [`RequestHead`] through [`CgiVars`], with the variables a CGI front end
//! would send: `REQUEST_METHOD`, `SERVER_PROTOCOL`, `REQUEST_URI`,
//! `QUERY_STRING`, `REMOTE_ADDR`, `REMOTE_HOST`, `REMOTE_PORT` (from the
//! `AJP_REMOTE_PORT` request attribute Apache adds), `SERVER_NAME`,
//! `SERVER_PORT`, `SERVER_ADDR` (from `AJP_LOCAL_ADDR`), `HTTPS=on`,
//! `REMOTE_USER`, `AUTH_TYPE`, the `SSL_*` values of an HTTPS request, and
//! the headers as `HTTP_*`, `CONTENT_TYPE` and `CONTENT_LENGTH`.
//!
//! The request path: `mod_proxy_ajp` sends the backend URL's path, which is
//! percent-encoded either way it is configured: by default the path Apache
//! decoded is encoded again (its "canonical" form), and with `ProxyPass …
//! nocanon` the client's path goes through as it was sent. The query string
//! travels apart, as an attribute. So `REQUEST_URI` is that path plus `?`
//! and the query when there is one (any byte a request-target cannot hold,
//! which Apache never sends, is percent-encoded so that the target stays
//! one well-formed string), and the path is decoded once, like an HTTP
//! request's, by whoever makes `PATH_INFO` from it. `mod_proxy_ajp` sends no
//! `SCRIPT_NAME` (the AJP context and servlet-path attributes are never
//! set), so none is made up here.
//!
//! Headers whose name holds `_` are dropped, as Apache and nginx do for CGI:
//! `X_Forwarded_For` would otherwise become the same `HTTP_X_FORWARDED_FOR`
//! as `X-Forwarded-For`, and a client could shadow what a proxy set.
//!
//! ```
//! use ferrowsgi_proto::ajp::{Ajp, Decoded};
//! use ferrowsgi_proto::Limits;
//!
//! // FORWARD_REQUEST: GET /hi, HTTP/1.1, from 192.0.2.1 to example.com:80,
//! // one header (Host, coded 0xA00B), the query string attribute, the end.
//! let mut p = vec![2, 2];
//! for s in ["HTTP/1.1", "/hi", "192.0.2.1"] {
//!     p.extend_from_slice(&(s.len() as u16).to_be_bytes());
//!     p.extend_from_slice(s.as_bytes());
//!     p.push(0);
//! }
//! p.extend_from_slice(&[0xFF, 0xFF]); // remote_host: null
//! p.extend_from_slice(b"\x00\x0bexample.com\x00");
//! p.extend_from_slice(&[0, 80, 0, 0, 1, 0xA0, 0x0B]);
//! p.extend_from_slice(b"\x00\x0bexample.com\x00");
//! p.extend_from_slice(b"\x05\x00\x03a=1\x00\xFF");
//! let mut packet = vec![0x12, 0x34];
//! packet.extend_from_slice(&(p.len() as u16).to_be_bytes());
//! packet.extend_from_slice(&p);
//!
//! let ajp = Ajp::default();
//! let Ok(Decoded::Request { head, consumed }) = ajp.parse_request(&packet, &Limits::default())
//! else {
//!     panic!("expected a request");
//! };
//! assert_eq!(consumed, packet.len());
//! assert_eq!(head.method(), b"GET");
//! assert_eq!(head.target(), b"/hi?a=1");
//! assert_eq!(head.host(), Some(&b"example.com"[..]));
//! assert_eq!(head.var(b"REMOTE_ADDR"), Some(&b"192.0.2.1"[..]));
//! assert!(head.keep_alive());
//! ```

use std::fmt;

use crate::gateway::CgiVars;
use crate::h1::response::status_reason;
use crate::h1::syntax::is_tchar;
use crate::{BodyError, BodyKind, Limits, ParseError, RequestHead};

/// Apache's default packet size (`AJP_MSG_BUFFER_SZ`), and Tomcat's.
pub const DEFAULT_PACKET_SIZE: usize = 8192;

/// The largest packet size Apache can be configured for
/// (`ProxyIOBufferSize`, capped at `AJP_MAX_BUFFER_SZ`).
pub const MAX_PACKET_SIZE: usize = 65536;

/// The smallest packet size accepted: room for a modest request head.
pub const MIN_PACKET_SIZE: usize = 1024;

/// Bytes before a packet's payload: two magic bytes and the length.
pub const PACKET_HEADER_LEN: usize = 4;

/// The magic of a packet from the web server.
const MAGIC_IN: [u8; 2] = [0x12, 0x34];
/// The magic of a packet from the container.
const MAGIC_OUT: [u8; 2] = *b"AB";

/// Message types from the web server.
const FORWARD_REQUEST: u8 = 2;
const SHUTDOWN: u8 = 7;
const CPING: u8 = 10;

/// Message types from the container.
const SEND_BODY_CHUNK: u8 = 3;
const SEND_HEADERS: u8 = 4;
const END_RESPONSE: u8 = 5;
const GET_BODY_CHUNK: u8 = 6;
const CPONG: u8 = 9;

/// The method codes 1..=27, in order.
const METHODS: [&[u8]; 27] = [
    b"OPTIONS",
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"ACL",
    b"REPORT",
    b"VERSION-CONTROL",
    b"CHECKIN",
    b"CHECKOUT",
    b"UNCHECKOUT",
    b"SEARCH",
    b"MKWORKSPACE",
    b"UPDATE",
    b"LABEL",
    b"MERGE",
    b"BASELINE-CONTROL",
    b"MKACTIVITY",
];

/// The method code that defers to the `stored_method` attribute.
const METHOD_STORED: u8 = 0xFF;

/// Request header names coded 0xA001..=0xA00E, as CGI variables.
const REQUEST_HEADERS: [&[u8]; 14] = [
    b"HTTP_ACCEPT",
    b"HTTP_ACCEPT_CHARSET",
    b"HTTP_ACCEPT_ENCODING",
    b"HTTP_ACCEPT_LANGUAGE",
    b"HTTP_AUTHORIZATION",
    b"HTTP_CONNECTION",
    b"CONTENT_TYPE",
    b"CONTENT_LENGTH",
    b"HTTP_COOKIE",
    b"HTTP_COOKIE2",
    b"HTTP_HOST",
    b"HTTP_PRAGMA",
    b"HTTP_REFERER",
    b"HTTP_USER_AGENT",
];

/// Response header names coded 0xA001..=0xA00B, lowercase.
const RESPONSE_HEADERS: [&[u8]; 11] = [
    b"content-type",
    b"content-language",
    b"content-length",
    b"date",
    b"last-modified",
    b"location",
    b"set-cookie",
    b"set-cookie2",
    b"servlet-engine",
    b"status",
    b"www-authenticate",
];

/// Request attribute codes.
const ATTR_CONTEXT: u8 = 0x01;
const ATTR_SERVLET_PATH: u8 = 0x02;
const ATTR_REMOTE_USER: u8 = 0x03;
const ATTR_AUTH_TYPE: u8 = 0x04;
const ATTR_QUERY_STRING: u8 = 0x05;
const ATTR_JVM_ROUTE: u8 = 0x06;
const ATTR_SSL_CERT: u8 = 0x07;
const ATTR_SSL_CIPHER: u8 = 0x08;
const ATTR_SSL_SESSION: u8 = 0x09;
const ATTR_REQ_ATTRIBUTE: u8 = 0x0A;
const ATTR_SSL_KEY_SIZE: u8 = 0x0B;
const ATTR_SECRET: u8 = 0x0C;
const ATTR_STORED_METHOD: u8 = 0x0D;
const ATTR_END: u8 = 0xFF;

/// The AJP13 settings of one listener: the packet size both sides agreed
/// on, and the shared secret requests must carry, if any. Every encoder and
/// decoder of the protocol hangs off it.
#[derive(Clone, PartialEq, Eq)]
pub struct Ajp {
    packet_size: usize,
    secret: Option<Box<[u8]>>,
}

impl fmt::Debug for Ajp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("Ajp")
            .field("packet_size", &self.packet_size)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Default for Ajp {
    fn default() -> Ajp {
        Ajp {
            packet_size: DEFAULT_PACKET_SIZE,
            secret: None,
        }
    }
}

/// What [`Ajp::parse_request`] found at the start of the input.
#[derive(Debug)]
pub enum Decoded {
    /// Not a whole packet yet: read more and call again with all of it.
    Incomplete,
    /// A FORWARD_REQUEST packet of `consumed` bytes. The request is
    /// keep-alive (END_RESPONSE may offer the connection for reuse) and its
    /// body is `Length(n)` for a Content-Length, `Chunked` when the client
    /// sent its body chunked (the length is unknown; an empty body packet
    /// ends it), else `Empty`.
    Request {
        /// The request.
        head: RequestHead,
        /// Bytes of the input it took.
        consumed: usize,
    },
    /// A CPING packet of `consumed` bytes: answer it with
    /// [`Ajp::write_cpong`] and keep reading.
    Cping {
        /// Bytes of the input it took.
        consumed: usize,
    },
    /// A SHUTDOWN packet of `consumed` bytes. Only the container's own
    /// administrator may stop it, so it is not obeyed: the connection
    /// closes, as after any packet the container will not act on.
    Shutdown {
        /// Bytes of the input it took.
        consumed: usize,
    },
}

/// Why a response head could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The status line does not start with three digits forming 100..=999.
    BadStatus,
    /// The status, reason and fields do not fit in one packet (the web
    /// server would refuse a longer one).
    HeadTooLarge,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::BadStatus => "invalid response status",
            EncodeError::HeadTooLarge => "response head does not fit in one AJP packet",
        })
    }
}

impl std::error::Error for EncodeError {}

impl Ajp {
    /// Settings for packets of at most `packet_size` bytes (header
    /// included), which must be what the web server uses (Apache's
    /// `ProxyIOBufferSize`, 8192 unless set). Fails outside
    /// [`MIN_PACKET_SIZE`]..=[`MAX_PACKET_SIZE`].
    pub fn new(packet_size: usize) -> Result<Ajp, &'static str> {
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&packet_size) {
            return Err("AJP packet size must be between 1024 and 65536 bytes");
        }
        Ok(Ajp {
            packet_size,
            secret: None,
        })
    }

    /// The same settings, requiring every request to carry `secret` (Apache's
    /// `ProxyPass … secret=`); a request without it, or with another, is
    /// refused with 403. An empty secret requires nothing.
    pub fn with_secret(mut self, secret: &[u8]) -> Ajp {
        self.secret = (!secret.is_empty()).then(|| secret.into());
        self
    }

    /// The packet size, header included.
    pub fn packet_size(&self) -> usize {
        self.packet_size
    }

    /// Most body bytes in one packet from the web server (its packet size
    /// less the header and the chunk length): what GET_BODY_CHUNK asks for.
    pub fn max_body_chunk(&self) -> usize {
        self.packet_size - PACKET_HEADER_LEN - 2
    }

    /// Most data bytes in one SEND_BODY_CHUNK (the packet size less the
    /// header, the type, the length and the trailing NUL): 8184 by default.
    pub fn max_block(&self) -> usize {
        self.packet_size - PACKET_HEADER_LEN - 4
    }

    /// Decodes the packet at the start of `buf`. Resumable: with a partial
    /// packet it returns [`Decoded::Incomplete`] and the caller calls again
    /// once more has arrived. Everything the protocol forbids is refused
    /// before the whole packet is there where it can be: a wrong magic (the
    /// peer is not an AJP web server, or the stream lost its framing), a
    /// packet longer than the packet size, and then any field that runs
    /// past the packet's end, an unknown method or attribute code, a string
    /// without its NUL, bytes after the terminator, a missing or wrong
    /// secret (403). The variables then go through [`CgiVars`] and its
    /// limits.
    pub fn parse_request(&self, buf: &[u8], limits: &Limits) -> Result<Decoded, ParseError> {
        let payload = match self.packet(buf)? {
            Some(p) => p,
            None => return Ok(Decoded::Incomplete),
        };
        let consumed = PACKET_HEADER_LEN + payload.len();
        match payload.first() {
            Some(&FORWARD_REQUEST) => {
                let head = self.forward_request(&payload[1..], limits)?;
                Ok(Decoded::Request { head, consumed })
            }
            Some(&CPING) if payload.len() == 1 => Ok(Decoded::Cping { consumed }),
            Some(&SHUTDOWN) if payload.len() == 1 => Ok(Decoded::Shutdown { consumed }),
            Some(&CPING) | Some(&SHUTDOWN) => {
                Err(ParseError::BadRequest("AJP control packet with a payload"))
            }
            Some(_) => Err(ParseError::BadRequest("unknown AJP packet type")),
            None => Err(ParseError::BadRequest("empty AJP packet")),
        }
    }

    /// The payload of the packet at the start of `buf`, `None` while it is
    /// incomplete.
    fn packet<'a>(&self, buf: &'a [u8]) -> Result<Option<&'a [u8]>, ParseError> {
        for (i, &m) in MAGIC_IN.iter().enumerate() {
            match buf.get(i) {
                Some(&b) if b != m => {
                    return Err(ParseError::BadRequest("not an AJP13 packet (wrong magic)"))
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
        let Some(&[hi, lo]) = buf.get(2..4) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len > self.packet_size - PACKET_HEADER_LEN {
            return Err(ParseError::HeadTooLarge);
        }
        Ok(buf.get(PACKET_HEADER_LEN..PACKET_HEADER_LEN + len))
    }

    /// A FORWARD_REQUEST's payload after its type byte, as a request.
    fn forward_request(&self, payload: &[u8], limits: &Limits) -> Result<RequestHead, ParseError> {
        let mut r = Reader { buf: payload };
        let mut vars = CgiVars::new();
        let method_code = r.u8()?;
        let protocol = r.string()?.unwrap_or(b"HTTP/1.1");
        let uri = r.string()?.ok_or(ParseError::InvalidTarget)?;
        let remote_addr = r.string()?;
        let remote_host = r.string()?;
        let server_name = r.string()?;
        let server_port = r.u16()?;
        let is_ssl = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ParseError::BadRequest("AJP is_ssl is not a boolean")),
        };
        let method = match method_code {
            1..=27 => Some(METHODS[usize::from(method_code - 1)]),
            METHOD_STORED => None,
            _ => return Err(ParseError::InvalidMethod),
        };
        if let Some(m) = method {
            vars.push(b"REQUEST_METHOD", m, limits)?;
        }
        if !protocol.iter().all(|&b| b > b' ' && b < 0x7f) {
            return Err(ParseError::InvalidVersion);
        }
        vars.push(b"SERVER_PROTOCOL", protocol, limits)?;
        if let Some(a) = remote_addr {
            vars.push(b"REMOTE_ADDR", a, limits)?;
        }
        if let Some(h) = remote_host.filter(|h| !h.is_empty()) {
            vars.push(b"REMOTE_HOST", h, limits)?;
        }
        if let Some(n) = server_name {
            vars.push(b"SERVER_NAME", n, limits)?;
        }
        let mut port = [0u8; 5];
        vars.push(b"SERVER_PORT", decimal(server_port, &mut port), limits)?;
        if is_ssl {
            vars.push(b"HTTPS", b"on", limits)?;
        }

        let count = usize::from(r.u16()?);
        if count > limits.max_header_count {
            return Err(ParseError::TooManyHeaders);
        }
        let mut headers = Headers::default();
        let mut chunked = false;
        for _ in 0..count {
            let code = r.peek_u16()?;
            let name: Option<Vec<u8>> = if code >> 8 == 0xA0 {
                r.u16()?;
                let i = usize::from(code & 0xFF);
                let n = REQUEST_HEADERS
                    .get(i.wrapping_sub(1))
                    .ok_or(ParseError::InvalidHeaderName)?;
                Some(n.to_vec())
            } else {
                let n = r.string()?.ok_or(ParseError::InvalidHeaderName)?;
                cgi_header_name(n)?
            };
            let value = r.string()?.unwrap_or(b"");
            let Some(name) = name else { continue };
            if name == b"HTTP_TRANSFER_ENCODING" {
                chunked = value
                    .split(|&b| b == b',')
                    .any(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            headers.add(name, value, limits)?;
        }

        let mut query: Option<&[u8]> = None;
        let mut secret: Option<&[u8]> = None;
        loop {
            let code = r.u8()?;
            let (name, value): (&[u8], &[u8]) = match code {
                ATTR_END => break,
                ATTR_CONTEXT | ATTR_SERVLET_PATH | ATTR_JVM_ROUTE => {
                    // Tomcat's own routing data, nothing a WSGI environ has.
                    r.string()?;
                    continue;
                }
                ATTR_REMOTE_USER => (b"REMOTE_USER", r.value()?),
                ATTR_AUTH_TYPE => (b"AUTH_TYPE", r.value()?),
                ATTR_QUERY_STRING => {
                    if query.replace(r.value()?).is_some() {
                        return Err(ParseError::BadRequest("AJP query string sent twice"));
                    }
                    continue;
                }
                ATTR_SSL_CERT => (b"SSL_CLIENT_CERT", r.value()?),
                ATTR_SSL_CIPHER => (b"SSL_CIPHER", r.value()?),
                ATTR_SSL_SESSION => (b"SSL_SESSION_ID", r.value()?),
                ATTR_SSL_KEY_SIZE => {
                    let size = r.u16()?;
                    vars.push(b"SSL_CIPHER_USEKEYSIZE", decimal(size, &mut port), limits)?;
                    continue;
                }
                ATTR_REQ_ATTRIBUTE => {
                    let name = r.value()?;
                    let value = r.value()?;
                    match name {
                        b"AJP_REMOTE_PORT" => (b"REMOTE_PORT", value),
                        b"AJP_LOCAL_ADDR" => (b"SERVER_ADDR", value),
                        b"AJP_SSL_PROTOCOL" => (b"SSL_PROTOCOL", value),
                        // Other attributes come from the web server's
                        // configuration (`SetEnv AJP_…`) under names of its
                        // choosing, which could pose as any variable.
                        _ => continue,
                    }
                }
                ATTR_SECRET => {
                    if secret.replace(r.value()?).is_some() {
                        return Err(ParseError::BadRequest("AJP secret sent twice"));
                    }
                    continue;
                }
                ATTR_STORED_METHOD => {
                    let m = r.value()?;
                    if method.is_some() {
                        return Err(ParseError::BadRequest(
                            "AJP stored method with a coded method",
                        ));
                    }
                    (b"REQUEST_METHOD", m)
                }
                _ => return Err(ParseError::BadRequest("unknown AJP request attribute")),
            };
            vars.push(name, value, limits)?;
        }
        if !r.buf.is_empty() {
            return Err(ParseError::BadRequest(
                "bytes after the AJP request terminator",
            ));
        }
        if let Some(expected) = &self.secret {
            match secret {
                Some(s) if same_secret(s, expected) => {}
                Some(_) => return Err(ParseError::Forbidden("wrong AJP secret")),
                None => return Err(ParseError::Forbidden("AJP request without the secret")),
            }
        }
        if method.is_none() && vars.get(b"REQUEST_METHOD").is_none() {
            return Err(ParseError::InvalidMethod);
        }

        // The target: the encoded path, then the query.
        if uri.first() != Some(&b'/') {
            return Err(ParseError::InvalidTarget);
        }
        let mut target = Vec::with_capacity(uri.len() + query.map_or(0, |q| q.len() + 1));
        for &b in uri {
            push_target_byte(&mut target, b, b"?#");
        }
        if let Some(q) = query {
            if !q.is_empty() {
                target.push(b'?');
                for &b in q {
                    push_target_byte(&mut target, b, b"#");
                }
            }
        }
        if target.len() > limits.max_request_line {
            return Err(ParseError::UriTooLong);
        }
        vars.push(b"REQUEST_URI", &target, limits)?;
        vars.push(b"QUERY_STRING", query.unwrap_or(b""), limits)?;
        for (name, value) in &headers.list {
            vars.push(name, value, limits)?;
        }

        let mut head = vars.into_request(limits)?;
        head.set_keep_alive(true);
        if chunked {
            // Apache sends no body packet unasked for a chunked body, but
            // does for a Content-Length: with both, the two sides would wait
            // for each other.
            if head.content_length_raw().is_some() {
                return Err(ParseError::ConflictingFraming);
            }
            head.set_body(BodyKind::Chunked);
        }
        Ok(head)
    }

    /// A decoder for the body of a request this codec parsed.
    pub fn body_decoder(&self, kind: BodyKind) -> AjpBodyDecoder {
        AjpBodyDecoder::new(kind, self)
    }

    /// Appends a SEND_HEADERS packet: `status_line` is `b"200 OK"` (three
    /// digits, then optionally a space and the reason), `fields` are valid
    /// names and values already. The eleven names AJP has codes for go as
    /// codes. Fails, leaving `out` as it was, when the status is malformed
    /// or the head does not fit in one packet.
    pub fn write_head<'a>(
        &self,
        out: &mut Vec<u8>,
        status_line: &[u8],
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), EncodeError> {
        let (code, reason) = match status_line {
            [a, b, c, rest @ ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) && *a != b'0' => {
                let code =
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
                match rest {
                    [] => (code, &b""[..]),
                    [b' ', reason @ ..] => (code, reason),
                    _ => return Err(EncodeError::BadStatus),
                }
            }
            _ => return Err(EncodeError::BadStatus),
        };
        let start = out.len();
        let result = self.encode_head(out, code, reason, fields);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// [`Ajp::write_head`] after the status is parsed.
    fn encode_head<'a>(
        &self,
        out: &mut Vec<u8>,
        code: u16,
        reason: &[u8],
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        let limit = start + self.packet_size;
        out.extend_from_slice(&[MAGIC_OUT[0], MAGIC_OUT[1], 0, 0, SEND_HEADERS]);
        out.extend_from_slice(&code.to_be_bytes());
        push_string(out, reason, limit)?;
        let count_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let mut count: u16 = 0;
        for (name, value) in fields {
            count = count.checked_add(1).ok_or(EncodeError::HeadTooLarge)?;
            match RESPONSE_HEADERS
                .iter()
                .position(|n| name.eq_ignore_ascii_case(n))
            {
                Some(i) => out.extend_from_slice(&[0xA0, i as u8 + 1]),
                None => push_string(out, name, limit)?,
            }
            push_string(out, value, limit)?;
        }
        if out.len() > limit {
            return Err(EncodeError::HeadTooLarge);
        }
        out[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
        let len = out.len() - start - PACKET_HEADER_LEN;
        // `limit` bounds `len` by MAX_PACKET_SIZE - 4, so it fits.
        let len = u16::try_from(len).map_err(|_| EncodeError::HeadTooLarge)?;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// The bytes that go before `len` bytes of response body in one
    /// SEND_BODY_CHUNK, with [`BLOCK_SUFFIX`] after them, so that the data
    /// itself can be written from where it lies. `None` when `len` is more
    /// than [`Ajp::max_block`]: larger data goes out in several packets.
    /// A zero length is allowed: `mod_proxy_ajp` takes an empty chunk as
    /// "flush what you have to the client".
    pub fn block_prefix(&self, len: usize) -> Option<[u8; 7]> {
        if len > self.max_block() {
            return None;
        }
        let [ph, pl] = u16::try_from(len + 4).ok()?.to_be_bytes();
        let [dh, dl] = u16::try_from(len).ok()?.to_be_bytes();
        Some([MAGIC_OUT[0], MAGIC_OUT[1], ph, pl, SEND_BODY_CHUNK, dh, dl])
    }

    /// Appends `data` as SEND_BODY_CHUNK packets of at most
    /// [`Ajp::max_block`] bytes each (nothing for empty data; see
    /// [`Ajp::write_flush`]).
    pub fn write_block(&self, out: &mut Vec<u8>, data: &[u8]) {
        for piece in data.chunks(self.max_block()) {
            if let Some(prefix) = self.block_prefix(piece.len()) {
                out.extend_from_slice(&prefix);
                out.extend_from_slice(piece);
                out.extend_from_slice(BLOCK_SUFFIX);
            }
        }
    }

    /// Appends an empty SEND_BODY_CHUNK, which `mod_proxy_ajp` passes on as
    /// a flush of what it holds.
    pub fn write_flush(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[MAGIC_OUT[0], MAGIC_OUT[1], 0, 4, SEND_BODY_CHUNK, 0, 0, 0]);
    }

    /// Appends END_RESPONSE: the response is complete, and with `reuse` the
    /// web server may send the next request on this connection (without,
    /// it closes the connection).
    pub fn write_end(&self, out: &mut Vec<u8>, reuse: bool) {
        out.extend_from_slice(&[
            MAGIC_OUT[0],
            MAGIC_OUT[1],
            0,
            2,
            END_RESPONSE,
            u8::from(reuse),
        ]);
    }

    /// Appends CPONG, the answer to a CPING.
    pub fn write_cpong(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[MAGIC_OUT[0], MAGIC_OUT[1], 0, 1, CPONG]);
    }

    /// Appends a whole answer for a request refused before any response:
    /// `status` and `reason`, a plain-text `message` as the body, and
    /// END_RESPONSE without reuse (after a refusal the connection's framing
    /// cannot be trusted, so it closes).
    pub fn write_error(&self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        let mut body = Vec::with_capacity(message.len() + 1);
        body.extend_from_slice(message.as_bytes());
        body.push(b'\n');
        let mut len = [0u8; 5];
        let mut line = Vec::with_capacity(4 + reason.len());
        let status = if (100..=999).contains(&status) {
            status
        } else {
            500
        };
        line.extend_from_slice(decimal(status, &mut len));
        line.push(b' ');
        let reason = if reason.is_empty() {
            status_reason(status)
        } else {
            reason
        };
        line.extend_from_slice(reason.as_bytes());
        let mut clen = [0u8; 5];
        // The message is a short fixed text; should it not fit a packet, a
        // bare head still tells the status.
        let body = &body[..body.len().min(self.max_block())];
        let fields: [(&[u8], &[u8]); 2] = [
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (
                b"Content-Length",
                decimal(u16::try_from(body.len()).unwrap_or(0), &mut clen),
            ),
        ];
        if self.write_head(out, &line, fields).is_err() {
            let _ = self.write_head(out, b"500 Internal Server Error", []);
        } else {
            self.write_block(out, body);
        }
        self.write_end(out, false);
    }
}

/// The byte after a SEND_BODY_CHUNK's data.
pub const BLOCK_SUFFIX: &[u8] = &[0];

/// Appends a GET_BODY_CHUNK asking for up to `len` bytes.
fn write_get_body_chunk(out: &mut Vec<u8>, len: u16) {
    let [h, l] = len.to_be_bytes();
    out.extend_from_slice(&[MAGIC_OUT[0], MAGIC_OUT[1], 0, 3, GET_BODY_CHUNK, h, l]);
}

/// Appends an AJP string (length, bytes, NUL), failing once `out` would
/// pass `limit`.
fn push_string(out: &mut Vec<u8>, s: &[u8], limit: usize) -> Result<(), EncodeError> {
    if out.len() + s.len() + 3 > limit {
        return Err(EncodeError::HeadTooLarge);
    }
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::HeadTooLarge)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    out.push(0);
    Ok(())
}

/// Whether two secrets are equal, in a time that depends on their lengths
/// only, so that a guesser learns nothing from how fast a wrong one fails.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// `n` in decimal, in `buf`.
fn decimal(n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Appends `b` to a request-target, percent-encoding it when a target
/// cannot hold it or it is one of `special`.
fn push_target_byte(out: &mut Vec<u8>, b: u8, special: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if b > b' ' && b < 0x7f && !special.contains(&b) {
        out.push(b);
    } else {
        out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
}

/// The CGI variable for a header sent by name: `CONTENT_TYPE` and
/// `CONTENT_LENGTH`, else `HTTP_` and the name in upper case with `-` made
/// `_`. `None` for a name holding `_` (dropped, see the module text); an
/// error for a name that is not a token.
fn cgi_header_name(name: &[u8]) -> Result<Option<Vec<u8>>, ParseError> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::InvalidHeaderName);
    }
    if name.contains(&b'_') {
        return Ok(None);
    }
    if name.eq_ignore_ascii_case(b"content-type") {
        return Ok(Some(b"CONTENT_TYPE".to_vec()));
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        return Ok(Some(b"CONTENT_LENGTH".to_vec()));
    }
    let mut v = Vec::with_capacity(5 + name.len());
    v.extend_from_slice(b"HTTP_");
    v.extend(name.iter().map(|&b| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    }));
    Ok(Some(v))
}

/// The headers of one request as CGI variables, repeated `HTTP_*` names
/// joined into one value (`; ` for cookies, `, ` otherwise, as RFC 9110
/// §5.3 and RFC 6265 §5.4 combine them). `CONTENT_TYPE` and
/// `CONTENT_LENGTH` are kept apart, so that [`CgiVars`] refuses two that
/// differ.
#[derive(Default)]
struct Headers {
    list: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

impl Headers {
    fn add(&mut self, name: Vec<u8>, value: &[u8], limits: &Limits) -> Result<(), ParseError> {
        // The packet bounds all this already; the head limit keeps it to
        // what an HTTP head could be.
        self.bytes += name.len() + value.len() + 2;
        if self.bytes > limits.max_head_size {
            return Err(ParseError::HeadTooLarge);
        }
        if name.starts_with(b"HTTP_") {
            if let Some((_, v)) = self.list.iter_mut().find(|(n, _)| *n == name) {
                v.extend_from_slice(if name == b"HTTP_COOKIE" { b"; " } else { b", " });
                v.extend_from_slice(value);
                return Ok(());
            }
        }
        self.list.push((name, value.to_vec()));
        Ok(())
    }
}

/// Reads the fields of one packet's payload; running past its end is an
/// error.
struct Reader<'a> {
    buf: &'a [u8],
}

/// The error for a field that runs past the packet.
const TRUNCATED: ParseError = ParseError::BadRequest("AJP packet ends inside a field");

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, ParseError> {
        let (&b, rest) = self.buf.split_first().ok_or(TRUNCATED)?;
        self.buf = rest;
        Ok(b)
    }

    fn peek_u16(&self) -> Result<u16, ParseError> {
        match self.buf {
            [h, l, ..] => Ok(u16::from_be_bytes([*h, *l])),
            _ => Err(TRUNCATED),
        }
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        let v = self.peek_u16()?;
        self.buf = &self.buf[2..];
        Ok(v)
    }

    /// A string: length, bytes, NUL; `None` for the null string (length
    /// 0xFFFF).
    fn string(&mut self) -> Result<Option<&'a [u8]>, ParseError> {
        let len = self.u16()?;
        if len == 0xFFFF {
            return Ok(None);
        }
        let len = usize::from(len);
        let s = self.buf.get(..len).ok_or(TRUNCATED)?;
        if self.buf.get(len) != Some(&0) {
            return Err(ParseError::BadRequest("AJP string without its NUL"));
        }
        self.buf = &self.buf[len + 1..];
        Ok(Some(s))
    }

    /// A string that must not be null.
    fn value(&mut self) -> Result<&'a [u8], ParseError> {
        self.string()?
            .ok_or(ParseError::BadRequest("AJP attribute without a value"))
    }
}

/// Where an [`AjpBodyDecoder`] stands in the packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a body packet's first bytes: magic, length, chunk length.
    Header { have: u8, bytes: [u8; 6] },
    /// In a packet's data: `left` bytes of data, then `pad` bytes the
    /// packet holds past them; `last` for the empty chunk that ends a body.
    Data { left: usize, pad: usize, last: bool },
    /// The body is over (or, after [`AjpBodyDecoder::abandon`], the
    /// connection owes nothing more).
    Done,
    /// The framing broke; every call returns the error again.
    Failed(BodyError),
}

/// Decodes a request body sent as AJP body packets, and says when the web
/// server must be asked for more ([`AjpBodyDecoder::take_output`]).
///
/// The same methods as [`crate::BodyDecoder`]. A body with a Content-Length
/// ends after that many bytes; a body of unknown length (a client's chunked
/// body) ends with an empty body packet. The web server sends the first
/// packet of a Content-Length body on its own and every later one only when
/// asked with GET_BODY_CHUNK.
#[derive(Clone, Debug)]
pub struct AjpBodyDecoder {
    /// Body bytes still to come for a Content-Length body; `None` when the
    /// length is unknown.
    remaining: Option<u64>,
    state: State,
    /// Whether the web server owes a packet (it was asked, or sends the
    /// first one unasked).
    owed: bool,
    /// Whether a GET_BODY_CHUNK must go out before more body can come.
    want: bool,
    /// Whether the application is done with the body (see `abandon`).
    abandoned: bool,
    /// The packet size.
    packet_size: usize,
}

/// Framing errors of body packets.
const BAD_MAGIC: BodyError = BodyError::Gateway("AJP body packet with a wrong magic");
const TOO_LONG: BodyError = BodyError::Gateway("AJP body packet longer than the packet size");
const BAD_CHUNK: BodyError = BodyError::Gateway("AJP body chunk longer than its packet");
const UNASKED: BodyError = BodyError::Gateway("AJP body packet that was not asked for");
const OVERRUN: BodyError = BodyError::Gateway("AJP body longer than its Content-Length");
const SHORT: BodyError = BodyError::Gateway("AJP body ended before its Content-Length");

impl AjpBodyDecoder {
    /// A decoder for a body framed as `kind` (as [`Ajp::parse_request`]
    /// set it) on a connection with `ajp`'s packet size.
    pub fn new(kind: BodyKind, ajp: &Ajp) -> AjpBodyDecoder {
        let (remaining, state, owed, want) = match kind {
            BodyKind::Empty | BodyKind::Length(0) => (Some(0), State::Done, false, false),
            BodyKind::Length(n) => (Some(n), Self::header(), true, false),
            BodyKind::Chunked => (None, Self::header(), false, true),
        };
        AjpBodyDecoder {
            remaining,
            state,
            owed,
            want,
            abandoned: false,
            packet_size: ajp.packet_size,
        }
    }

    fn header() -> State {
        State::Header {
            have: 0,
            bytes: [0; 6],
        }
    }

    /// Appends what must be sent to the web server before more body can
    /// come: a GET_BODY_CHUNK once the packets received so far are used
    /// up, else nothing. Call it when the application wants more body than
    /// has arrived.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        if !self.want || self.owed || !matches!(self.state, State::Header { .. }) {
            return;
        }
        let max = self.packet_size - PACKET_HEADER_LEN - 2;
        let ask = match self.remaining {
            Some(n) => clamp(n).min(max),
            None => max,
        };
        // `max` is below 65536, so `ask` fits.
        write_get_body_chunk(out, u16::try_from(ask).unwrap_or(u16::MAX));
        self.want = false;
        self.owed = true;
    }

    /// Whether [`AjpBodyDecoder::take_output`] has something to send.
    pub fn wants_output(&self) -> bool {
        self.want && !self.owed && matches!(self.state, State::Header { .. })
    }

    /// The application will read no more of the body: from now on nothing
    /// more is asked for, and the decoder is done once the packet the web
    /// server already owes (if any) has been read. Then the connection is
    /// clean for the next request, and END_RESPONSE may offer it for reuse;
    /// the web server discards the rest of the client's body itself.
    pub fn abandon(&mut self) {
        self.abandoned = true;
        self.want = false;
        if !self.owed && matches!(self.state, State::Header { have: 0, .. }) {
            self.state = State::Done;
        }
    }

    /// Decodes as much of `input` as possible, handing each run of body
    /// bytes (at most `max_out` in all) to `put`; returns `(input bytes
    /// consumed, body bytes put)`. Packet framing is consumed even when
    /// `max_out` is 0. Stops at the end of the body, and where the web
    /// server must be asked for more first ([`AjpBodyDecoder::wants_output`]):
    /// the caller sends the GET_BODY_CHUNK that
    /// [`AjpBodyDecoder::take_output`] makes, and calls again with what
    /// comes next.
    ///
    /// A byte that comes before it was asked for is an error: a web server
    /// sends a body packet only when asked (but for the first packet of a
    /// Content-Length body, which it sends unasked). Taking it for the
    /// answer to the next question would leave the web server one packet
    /// ahead of the questions for the rest of the body, and its answer to
    /// the last one inside the connection's next request.
    ///
    /// After an error the decoder stays failed and returns the same error.
    pub fn decode_with(
        &mut self,
        input: &[u8],
        max_out: usize,
        mut put: impl FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError> {
        let mut pos = 0;
        let mut written = 0;
        loop {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Header {
                    mut have,
                    mut bytes,
                } => {
                    if pos == input.len() {
                        break;
                    }
                    if !self.owed {
                        return Err(self.fail(UNASKED));
                    }
                    // 4 bytes of packet header, then 2 of chunk length
                    // unless the packet is empty.
                    let need = if have >= 4 && bytes[2..4] == [0, 0] {
                        4
                    } else {
                        6
                    };
                    while usize::from(have) < need && pos < input.len() {
                        bytes[usize::from(have)] = input[pos];
                        have += 1;
                        pos += 1;
                        if have == 2 && bytes[..2] != MAGIC_IN {
                            return Err(self.fail(BAD_MAGIC));
                        }
                        if have == 4 {
                            break;
                        }
                    }
                    self.state = State::Header { have, bytes };
                    if have == 4 || have == 6 {
                        self.packet_started(have, bytes)?;
                    }
                }
                State::Data { left, pad, last } => {
                    if left > 0 {
                        let room = max_out - written;
                        let n = (input.len() - pos).min(room).min(left);
                        if n == 0 {
                            break;
                        }
                        put(&input[pos..pos + n]);
                        pos += n;
                        written += n;
                        self.take(n);
                    } else if pad > 0 {
                        let n = (input.len() - pos).min(pad);
                        if n == 0 {
                            break;
                        }
                        pos += n;
                        self.state = State::Data {
                            left,
                            pad: pad - n,
                            last,
                        };
                    }
                    if let State::Data {
                        left: 0,
                        pad: 0,
                        last,
                    } = self.state
                    {
                        self.packet_done(last);
                    }
                }
            }
        }
        Ok((pos, written))
    }

    /// Checks a packet's header once its first 4 (empty packet) or 6 bytes
    /// are in, and moves to its data.
    fn packet_started(&mut self, have: u8, bytes: [u8; 6]) -> Result<(), BodyError> {
        let plen = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if plen > self.packet_size - PACKET_HEADER_LEN {
            return Err(self.fail(TOO_LONG));
        }
        let (chunk, pad) = match (plen, have) {
            // An empty packet: the end of a body of unknown length.
            (0, _) => (0, 0),
            (1, _) => return Err(self.fail(BAD_CHUNK)),
            (_, 4) => return Ok(()),
            _ => {
                let chunk = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
                if chunk > plen - 2 {
                    return Err(self.fail(BAD_CHUNK));
                }
                (chunk, plen - 2 - chunk)
            }
        };
        self.owed = false;
        if let Some(rest) = self.remaining {
            if chunk as u64 > rest {
                return Err(self.fail(OVERRUN));
            }
            if chunk == 0 && rest > 0 && !self.abandoned {
                return Err(self.fail(SHORT));
            }
        }
        self.state = State::Data {
            left: chunk,
            pad,
            last: chunk == 0,
        };
        if chunk == 0 && pad == 0 {
            self.packet_done(true);
        }
        Ok(())
    }

    /// Counts `n` data bytes of the current packet as taken.
    fn take(&mut self, n: usize) {
        if let State::Data { left, pad, last } = self.state {
            self.state = State::Data {
                left: left - n,
                pad,
                last,
            };
        }
        if let Some(rest) = &mut self.remaining {
            *rest -= n as u64;
        }
    }

    /// A packet has been read whole.
    fn packet_done(&mut self, last: bool) {
        let over = last || self.remaining == Some(0) || self.abandoned;
        if over {
            self.state = State::Done;
        } else {
            self.state = Self::header();
            self.want = true;
        }
    }

    fn fail(&mut self, e: BodyError) -> BodyError {
        self.state = State::Failed(e);
        e
    }

    /// Body bytes that come next in the input with no framing among them:
    /// the rest of the current packet's data; 0 when a packet header comes
    /// first or the body is over.
    pub fn data_ahead(&self) -> u64 {
        match self.state {
            State::Data { left, .. } => left as u64,
            _ => 0,
        }
    }

    /// Records `n` body bytes taken without [`AjpBodyDecoder::decode_with`],
    /// at most [`AjpBodyDecoder::data_ahead`]; returns how many counted.
    pub fn consume_data(&mut self, n: u64) -> u64 {
        let State::Data { left, pad, last } = self.state else {
            return 0;
        };
        let n = clamp(n).min(left);
        self.take(n);
        if left == n && pad == 0 {
            self.packet_done(last);
        }
        n as u64
    }

    /// Whether the whole body has been read (or, after
    /// [`AjpBodyDecoder::abandon`], nothing more is owed).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// At most how many bytes must still be read once the body is
    /// [abandoned](AjpBodyDecoder::abandon): the rest of the packet being
    /// read, or a whole packet the web server owes; 0 when done.
    pub fn discard_hint(&self) -> u64 {
        match self.state {
            State::Done | State::Failed(_) => 0,
            State::Data { left, pad, .. } => (left + pad) as u64,
            State::Header { have, .. } if self.owed => {
                (self.packet_size - usize::from(have)) as u64
            }
            State::Header { .. } => 0,
        }
    }

    /// Body bytes still to come, when known: `Some(n)` for a Content-Length
    /// body (and `Some(0)` once any body is done), `None` for a body of
    /// unknown length.
    pub fn remaining_hint(&self) -> Option<u64> {
        match self.state {
            State::Done => Some(0),
            _ => self.remaining,
        }
    }
}

/// `n` as a `usize`, saturating.
fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FORWARD_REQUEST payload under construction.
    struct Req {
        p: Vec<u8>,
    }

    fn s(p: &mut Vec<u8>, v: Option<&[u8]>) {
        match v {
            Some(v) => {
                p.extend_from_slice(&(v.len() as u16).to_be_bytes());
                p.extend_from_slice(v);
                p.push(0);
            }
            None => p.extend_from_slice(&[0xFF, 0xFF]),
        }
    }

    impl Req {
        /// Method code, uri; HTTP/1.1 from 192.0.2.1:…, server example.com:80.
        fn new(method: u8, uri: &[u8], ssl: bool, headers: &[(&[u8], &[u8])]) -> Req {
            let mut p = vec![FORWARD_REQUEST, method];
            s(&mut p, Some(b"HTTP/1.1"));
            s(&mut p, Some(uri));
            s(&mut p, Some(b"192.0.2.1"));
            s(&mut p, None);
            s(&mut p, Some(b"example.com"));
            p.extend_from_slice(&80u16.to_be_bytes());
            p.push(u8::from(ssl));
            p.extend_from_slice(&(headers.len() as u16).to_be_bytes());
            for (n, v) in headers {
                match n {
                    [0xA0, _] => p.extend_from_slice(n),
                    _ => s(&mut p, Some(n)),
                }
                s(&mut p, Some(v));
            }
            Req { p }
        }

        fn attr(mut self, code: u8, v: &[u8]) -> Req {
            self.p.push(code);
            s(&mut self.p, Some(v));
            self
        }

        fn req_attr(mut self, n: &[u8], v: &[u8]) -> Req {
            self.p.push(ATTR_REQ_ATTRIBUTE);
            s(&mut self.p, Some(n));
            s(&mut self.p, Some(v));
            self
        }

        fn raw(mut self, b: &[u8]) -> Req {
            self.p.extend_from_slice(b);
            self
        }

        /// The whole packet, terminated.
        fn packet(self) -> Vec<u8> {
            packet(&self.raw(&[ATTR_END]).p)
        }
    }

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut v = MAGIC_IN.to_vec();
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn parse(buf: &[u8]) -> Result<RequestHead, ParseError> {
        parse_with(&Ajp::default(), buf)
    }

    fn parse_with(ajp: &Ajp, buf: &[u8]) -> Result<RequestHead, ParseError> {
        match ajp.parse_request(buf, &Limits::default())? {
            Decoded::Request { head, consumed } => {
                assert_eq!(consumed, buf.len());
                Ok(head)
            }
            other => panic!("not a request: {other:?}"),
        }
    }

    fn get(uri: &[u8]) -> Vec<u8> {
        Req::new(2, uri, false, &[(b"\xA0\x0B", b"example.com")]).packet()
    }

    #[test]
    fn a_request_becomes_cgi_variables() {
        let buf = Req::new(
            4,
            b"/app/a%20b",
            true,
            &[
                (b"\xA0\x0B", b"example.com"),
                (b"\xA0\x07", b"text/plain"),
                (b"\xA0\x08", b"5"),
                (b"X-Request-Id", b"abc"),
            ],
        )
        .attr(ATTR_QUERY_STRING, b"q=1&r=%20")
        .attr(ATTR_REMOTE_USER, b"alice")
        .attr(ATTR_AUTH_TYPE, b"Basic")
        .req_attr(b"AJP_REMOTE_PORT", b"54321")
        .req_attr(b"AJP_LOCAL_ADDR", b"127.0.0.1")
        .attr(ATTR_JVM_ROUTE, b"node1")
        .packet();
        let h = parse(&buf).unwrap();
        assert_eq!(h.method(), b"POST");
        assert_eq!(h.target(), b"/app/a%20b?q=1&r=%20");
        assert_eq!(h.path(), b"/app/a%20b");
        assert_eq!(h.query(), b"q=1&r=%20");
        assert_eq!(h.host(), Some(&b"example.com"[..]));
        assert_eq!(h.content_type(), Some(&b"text/plain"[..]));
        assert_eq!(h.body(), BodyKind::Length(5));
        assert_eq!(h.header(b"x-request-id"), Some(&b"abc"[..]));
        assert!(h.keep_alive());
        assert!(h.is_gateway());
        let vars: Vec<_> = h.vars().collect();
        assert_eq!(
            vars,
            vec![
                (&b"REQUEST_METHOD"[..], &b"POST"[..]),
                (b"SERVER_PROTOCOL", b"HTTP/1.1"),
                (b"REMOTE_ADDR", b"192.0.2.1"),
                (b"SERVER_NAME", b"example.com"),
                (b"SERVER_PORT", b"80"),
                (b"HTTPS", b"on"),
                (b"REMOTE_USER", b"alice"),
                (b"AUTH_TYPE", b"Basic"),
                (b"REMOTE_PORT", b"54321"),
                (b"SERVER_ADDR", b"127.0.0.1"),
                (b"REQUEST_URI", b"/app/a%20b?q=1&r=%20"),
                (b"QUERY_STRING", b"q=1&r=%20"),
            ]
        );
    }

    #[test]
    fn every_method_code() {
        for (i, m) in METHODS.iter().enumerate() {
            let h = parse(&Req::new(i as u8 + 1, b"/", false, &[]).packet()).unwrap();
            assert_eq!(h.method(), *m);
        }
        for bad in [0u8, 28, 0x80, 0xFE] {
            assert_eq!(
                parse(&Req::new(bad, b"/", false, &[]).packet()).unwrap_err(),
                ParseError::InvalidMethod,
                "{bad}"
            );
        }
    }

    #[test]
    fn stored_method() {
        let h = parse(
            &Req::new(METHOD_STORED, b"/", false, &[])
                .attr(ATTR_STORED_METHOD, b"PATCH")
                .packet(),
        )
        .unwrap();
        assert_eq!(h.method(), b"PATCH");
        assert_eq!(
            parse(&Req::new(METHOD_STORED, b"/", false, &[]).packet()).unwrap_err(),
            ParseError::InvalidMethod
        );
        assert_eq!(
            parse(
                &Req::new(METHOD_STORED, b"/", false, &[])
                    .attr(ATTR_STORED_METHOD, b"PA TCH")
                    .packet()
            )
            .unwrap_err(),
            ParseError::InvalidMethod
        );
        assert!(matches!(
            parse(
                &Req::new(2, b"/", false, &[])
                    .attr(ATTR_STORED_METHOD, b"PATCH")
                    .packet()
            ),
            Err(ParseError::BadRequest(_))
        ));
    }

    #[test]
    fn every_coded_header() {
        let names: Vec<[u8; 2]> = (1..=14u8).map(|i| [0xA0, i]).collect();
        let headers: Vec<(&[u8], &[u8])> = names
            .iter()
            .map(|n| (&n[..], if n[1] == 8 { &b"0"[..] } else { &b"v"[..] }))
            .collect();
        let h = parse(&Req::new(2, b"/", false, &headers).packet()).unwrap();
        let got: Vec<_> = h.headers().map(|(n, _)| n.to_vec()).collect();
        let want: Vec<&[u8]> = vec![
            b"ACCEPT",
            b"ACCEPT-CHARSET",
            b"ACCEPT-ENCODING",
            b"ACCEPT-LANGUAGE",
            b"AUTHORIZATION",
            b"CONNECTION",
            b"CONTENT-TYPE",
            b"CONTENT-LENGTH",
            b"COOKIE",
            b"COOKIE2",
            b"HOST",
            b"PRAGMA",
            b"REFERER",
            b"USER-AGENT",
        ];
        assert_eq!(got, want);
        for bad in [[0xA0, 0], [0xA0, 15], [0xA0, 0xFF]] {
            assert_eq!(
                parse(&Req::new(2, b"/", false, &[(&bad, b"v")]).packet()).unwrap_err(),
                ParseError::InvalidHeaderName
            );
        }
    }

    #[test]
    fn header_names_by_string() {
        let h = parse(
            &Req::new(
                2,
                b"/",
                false,
                &[
                    (b"content-type", b"a/b"),
                    (b"Content-Length", b"3"),
                    (b"X-Forwarded-For", b"192.0.2.9"),
                    (b"X_Forwarded_For", b"203.0.113.1"),
                    (b"Accept", b"x"),
                    (b"accept", b"y"),
                    (b"Cookie", b"a=1"),
                    (b"\xA0\x09", b"b=2"),
                ],
            )
            .packet(),
        )
        .unwrap();
        let headers: Vec<_> = h.headers().collect();
        assert_eq!(
            headers,
            vec![
                (&b"CONTENT-TYPE"[..], &b"a/b"[..]),
                (b"CONTENT-LENGTH", b"3"),
                (b"X-FORWARDED-FOR", b"192.0.2.9"),
                (b"ACCEPT", b"x, y"),
                (b"COOKIE", b"a=1; b=2"),
            ]
        );
        for bad in [&b"a b"[..], b"", b"x:y", b"\xC3\xA9"] {
            assert_eq!(
                parse(&Req::new(2, b"/", false, &[(bad, b"v")]).packet()).unwrap_err(),
                ParseError::InvalidHeaderName,
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(&Req::new(2, b"/", false, &[(b"X", b"a\nb")]).packet()).unwrap_err(),
            ParseError::InvalidHeaderValue
        );
        // Two differing lengths are refused, two equal ones are one.
        assert!(parse(
            &Req::new(
                2,
                b"/",
                false,
                &[(b"\xA0\x08", b"3"), (b"Content-Length", b"4")]
            )
            .packet()
        )
        .is_err());
        let h = parse(
            &Req::new(
                2,
                b"/",
                false,
                &[(b"\xA0\x08", b"3"), (b"Content-Length", b"3")],
            )
            .packet(),
        )
        .unwrap();
        assert_eq!(h.body(), BodyKind::Length(3));
    }

    #[test]
    fn chunked_from_the_client_is_a_body_of_unknown_length() {
        let h = parse(&Req::new(4, b"/", false, &[(b"Transfer-Encoding", b"chunked")]).packet())
            .unwrap();
        assert_eq!(h.body(), BodyKind::Chunked);
        assert_eq!(
            parse(
                &Req::new(
                    4,
                    b"/",
                    false,
                    &[(b"Transfer-Encoding", b"chunked"), (b"\xA0\x08", b"4")]
                )
                .packet()
            )
            .unwrap_err(),
            ParseError::ConflictingFraming
        );
        let h = parse(&Req::new(4, b"/", false, &[(b"\xA0\x08", b"0")]).packet()).unwrap();
        assert_eq!(h.body(), BodyKind::Length(0));
        let h = parse(&get(b"/")).unwrap();
        assert_eq!(h.body(), BodyKind::Empty);
    }

    #[test]
    fn the_target_is_the_encoded_path_and_the_query() {
        let h = parse(
            &Req::new(2, b"/a b/\xC3\xA9?#", false, &[])
                .attr(ATTR_QUERY_STRING, b"x=1#y z")
                .packet(),
        )
        .unwrap();
        assert_eq!(h.target(), b"/a%20b/%C3%A9%3F%23?x=1%23y%20z");
        assert_eq!(h.var(b"QUERY_STRING"), Some(&b"x=1#y z"[..]));
        // An empty query string makes no `?`.
        let h = parse(
            &Req::new(2, b"/p", false, &[])
                .attr(ATTR_QUERY_STRING, b"")
                .packet(),
        )
        .unwrap();
        assert_eq!(h.target(), b"/p");
        assert_eq!(h.var(b"QUERY_STRING"), Some(&b""[..]));
        let h = parse(&get(b"/p")).unwrap();
        assert_eq!(h.var(b"QUERY_STRING"), Some(&b""[..]));
        for bad in [&b""[..], b"p", b"*", b"http://x/"] {
            assert_eq!(
                parse(&get(bad)).unwrap_err(),
                ParseError::InvalidTarget,
                "{bad:?}"
            );
        }
        let mut p = vec![FORWARD_REQUEST, 2];
        s(&mut p, Some(b"HTTP/1.1"));
        s(&mut p, None);
        assert_eq!(parse(&packet(&p)).unwrap_err(), ParseError::InvalidTarget);
        let long = [b'a'; 9000];
        let mut uri = b"/".to_vec();
        uri.extend_from_slice(&long);
        let ajp = Ajp::new(MAX_PACKET_SIZE).unwrap();
        assert_eq!(
            parse_with(&ajp, &get(&uri)).unwrap_err(),
            ParseError::UriTooLong
        );
    }

    #[test]
    fn ssl_attributes() {
        let h = parse(
            &Req::new(2, b"/", true, &[])
                .attr(ATTR_SSL_CERT, b"-----BEGIN")
                .attr(ATTR_SSL_CIPHER, b"TLS_AES_128_GCM_SHA256")
                .attr(ATTR_SSL_SESSION, b"abcd")
                .raw(&[ATTR_SSL_KEY_SIZE, 0, 128])
                .req_attr(b"AJP_SSL_PROTOCOL", b"TLSv1.3")
                .req_attr(b"REMOTE_ADDR", b"10.9.9.9")
                .packet(),
        )
        .unwrap();
        assert_eq!(h.var(b"HTTPS"), Some(&b"on"[..]));
        assert_eq!(h.var(b"SSL_CLIENT_CERT"), Some(&b"-----BEGIN"[..]));
        assert_eq!(h.var(b"SSL_CIPHER"), Some(&b"TLS_AES_128_GCM_SHA256"[..]));
        assert_eq!(h.var(b"SSL_SESSION_ID"), Some(&b"abcd"[..]));
        assert_eq!(h.var(b"SSL_CIPHER_USEKEYSIZE"), Some(&b"128"[..]));
        assert_eq!(h.var(b"SSL_PROTOCOL"), Some(&b"TLSv1.3"[..]));
        // A request attribute cannot pose as a server variable.
        assert_eq!(h.var(b"REMOTE_ADDR"), Some(&b"192.0.2.1"[..]));
        let h = parse(&get(b"/")).unwrap();
        assert_eq!(h.var(b"HTTPS"), None);
        assert_eq!(h.var(b"REMOTE_HOST"), None);
    }

    #[test]
    fn secret() {
        let ajp = Ajp::default().with_secret(b"s3cret");
        let good = Req::new(2, b"/", false, &[])
            .attr(ATTR_SECRET, b"s3cret")
            .packet();
        assert!(parse_with(&ajp, &good).is_ok());
        // Without a configured secret, one sent is ignored.
        assert!(parse(&good).is_ok());
        let wrong = Req::new(2, b"/", false, &[])
            .attr(ATTR_SECRET, b"s3creT")
            .packet();
        let e = parse_with(&ajp, &wrong).unwrap_err();
        assert_eq!(e.status(), 403);
        let short = Req::new(2, b"/", false, &[])
            .attr(ATTR_SECRET, b"s3cre")
            .packet();
        assert_eq!(parse_with(&ajp, &short).unwrap_err().status(), 403);
        assert_eq!(parse_with(&ajp, &get(b"/")).unwrap_err().status(), 403);
        let twice = Req::new(2, b"/", false, &[])
            .attr(ATTR_SECRET, b"s3cret")
            .attr(ATTR_SECRET, b"s3cret")
            .packet();
        assert_eq!(parse_with(&ajp, &twice).unwrap_err().status(), 400);
        assert!(!format!("{ajp:?}").contains("s3cret"));
        // An empty secret requires nothing.
        assert!(parse_with(&Ajp::default().with_secret(b""), &get(b"/")).is_ok());
    }

    #[test]
    fn malformed_packets() {
        let bad = |buf: &[u8]| parse(buf).unwrap_err();
        // Attributes: unknown code, no terminator, bytes after it.
        assert_eq!(
            bad(&Req::new(2, b"/", false, &[]).raw(&[0x0E]).packet()).status(),
            400
        );
        assert_eq!(bad(&packet(&Req::new(2, b"/", false, &[]).p)), TRUNCATED);
        assert_eq!(
            bad(&packet(&Req::new(2, b"/", false, &[]).raw(&[0xFF, 0]).p)).status(),
            400
        );
        // A string without its NUL, a string running past the end.
        let mut p = vec![FORWARD_REQUEST, 2, 0, 3];
        p.extend_from_slice(b"abcX");
        assert!(matches!(bad(&packet(&p)), ParseError::BadRequest(_)));
        assert_eq!(bad(&packet(&[FORWARD_REQUEST, 2, 0, 9, b'a'])), TRUNCATED);
        // is_ssl not a boolean.
        let mut r = Req::new(2, b"/", false, &[]);
        let at = r.p.len() - 3;
        r.p[at] = 2;
        assert!(matches!(bad(&r.packet()), ParseError::BadRequest(_)));
        // Query string twice.
        assert!(matches!(
            bad(&Req::new(2, b"/", false, &[])
                .attr(ATTR_QUERY_STRING, b"a")
                .attr(ATTR_QUERY_STRING, b"b")
                .packet()),
            ParseError::BadRequest(_)
        ));
        // A null attribute value.
        assert!(matches!(
            bad(&Req::new(2, b"/", false, &[])
                .raw(&[ATTR_REMOTE_USER, 0xFF, 0xFF])
                .packet()),
            ParseError::BadRequest(_)
        ));
        // Types and sizes.
        assert!(matches!(bad(&packet(&[])), ParseError::BadRequest(_)));
        assert!(matches!(bad(&packet(&[3])), ParseError::BadRequest(_)));
        assert!(matches!(
            bad(&packet(&[CPING, 0])),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            bad(&packet(&[SHUTDOWN, 0])),
            ParseError::BadRequest(_)
        ));
        // A protocol with a space or a control is no version.
        let mut r = Req::new(2, b"/", false, &[]);
        r.p[8] = b' ';
        assert_eq!(&r.p[4..12], b"HTTP 1.1");
        assert_eq!(bad(&r.packet()), ParseError::InvalidVersion);
    }

    #[test]
    fn wrong_magic_and_long_packets_fail_early() {
        let ajp = Ajp::default();
        let limits = Limits::default();
        for buf in [
            &b"G"[..],
            b"\x12G",
            b"GET / HTTP/1.1\r\n",
            b"AB\x00\x01\x0a",
        ] {
            assert!(
                matches!(
                    ajp.parse_request(buf, &limits),
                    Err(ParseError::BadRequest(_))
                ),
                "{buf:?}"
            );
        }
        assert!(matches!(
            ajp.parse_request(b"\x12", &limits),
            Ok(Decoded::Incomplete)
        ));
        assert_eq!(
            ajp.parse_request(&[0x12, 0x34, 0x1F, 0xFD], &limits)
                .unwrap_err(),
            ParseError::HeadTooLarge
        );
        assert!(matches!(
            ajp.parse_request(&[0x12, 0x34, 0x1F, 0xFC], &limits),
            Ok(Decoded::Incomplete)
        ));
        let big = Ajp::new(MAX_PACKET_SIZE).unwrap();
        assert!(matches!(
            big.parse_request(&[0x12, 0x34, 0xFF, 0xFC], &limits),
            Ok(Decoded::Incomplete)
        ));
        assert_eq!(
            big.parse_request(&[0x12, 0x34, 0xFF, 0xFD], &limits)
                .unwrap_err(),
            ParseError::HeadTooLarge
        );
        assert!(Ajp::new(1023).is_err());
        assert!(Ajp::new(65537).is_err());
    }

    #[test]
    fn control_packets() {
        let ajp = Ajp::default();
        let limits = Limits::default();
        let mut buf = packet(&[CPING]);
        buf.extend_from_slice(&get(b"/"));
        let Ok(Decoded::Cping { consumed }) = ajp.parse_request(&buf, &limits) else {
            panic!("no cping");
        };
        assert_eq!(consumed, 5);
        let Ok(Decoded::Request { consumed: c2, .. }) = ajp.parse_request(&buf[5..], &limits)
        else {
            panic!("no request");
        };
        assert_eq!(5 + c2, buf.len());
        assert!(matches!(
            ajp.parse_request(&packet(&[SHUTDOWN]), &limits),
            Ok(Decoded::Shutdown { consumed: 5 })
        ));
        let mut out = Vec::new();
        ajp.write_cpong(&mut out);
        assert_eq!(out, b"AB\x00\x01\x09");
    }

    #[test]
    fn resumable_at_every_byte() {
        let ajp = Ajp::default();
        let limits = Limits::default();
        let mut buf = Req::new(4, b"/x", false, &[(b"\xA0\x0B", b"h"), (b"\xA0\x08", b"3")])
            .attr(ATTR_QUERY_STRING, b"a=b")
            .packet();
        let whole = buf.len();
        buf.extend_from_slice(b"\x12\x34\x00\x05\x00\x03abc");
        for cut in 0..whole {
            assert!(
                matches!(
                    ajp.parse_request(&buf[..cut], &limits),
                    Ok(Decoded::Incomplete)
                ),
                "cut at {cut}"
            );
        }
        let Ok(Decoded::Request { head, consumed }) = ajp.parse_request(&buf, &limits) else {
            panic!("no request");
        };
        assert_eq!(consumed, whole);
        assert_eq!(head.target(), b"/x?a=b");
    }

    #[test]
    fn limits_apply() {
        let ajp = Ajp::default();
        let tight = Limits {
            max_header_count: 2,
            max_head_size: 200,
            ..Limits::default()
        };
        let three = Req::new(2, b"/", false, &[(b"A", b"1"), (b"B", b"2"), (b"C", b"3")]).packet();
        assert_eq!(
            ajp.parse_request(&three, &tight).unwrap_err(),
            ParseError::TooManyHeaders
        );
        let big = Req::new(2, b"/", false, &[(b"A", &[b'x'; 300])]).packet();
        assert_eq!(
            ajp.parse_request(&big, &tight).unwrap_err(),
            ParseError::HeadTooLarge
        );
        // Merged duplicates count too.
        let many: Vec<(&[u8], &[u8])> = vec![(b"A", &[b'x'; 60]); 2];
        let tight = Limits {
            max_head_size: 100,
            ..Limits::default()
        };
        assert_eq!(
            ajp.parse_request(&Req::new(2, b"/", false, &many).packet(), &tight)
                .unwrap_err(),
            ParseError::HeadTooLarge
        );
    }

    /// Body packets as the web server sends them.
    fn body_packet(data: &[u8]) -> Vec<u8> {
        let mut p = (data.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(data);
        packet(&p)
    }

    /// Feeds `wire` to `d` in pieces of `step` bytes, answering its
    /// requests from `packets`; returns the body and the requests made.
    fn run_body(
        d: &mut AjpBodyDecoder,
        first: &[u8],
        mut packets: Vec<Vec<u8>>,
        step: usize,
    ) -> Result<(Vec<u8>, usize), BodyError> {
        let mut body = Vec::new();
        let mut wire = first.to_vec();
        let mut asked = 0;
        packets.reverse();
        loop {
            let mut pos = 0;
            while pos < wire.len() {
                let end = (pos + step).min(wire.len());
                let (c, _) =
                    d.decode_with(&wire[pos..end], usize::MAX, |b| body.extend_from_slice(b))?;
                if c == 0 {
                    break;
                }
                pos += c;
            }
            wire.drain(..pos);
            if d.is_done() {
                return Ok((body, asked));
            }
            let mut out = Vec::new();
            d.take_output(&mut out);
            if !out.is_empty() {
                assert_eq!(&out[..5], b"AB\x00\x03\x06");
                asked += 1;
                match packets.pop() {
                    Some(p) => wire.extend_from_slice(&p),
                    None => return Ok((body, asked)),
                }
            } else if wire.is_empty() {
                return Ok((body, asked));
            }
        }
    }

    #[test]
    fn a_length_body_across_packets_at_every_split() {
        let ajp = Ajp::default();
        let data: Vec<u8> = (0..20000u32).map(|i| (i % 251) as u8).collect();
        let first = body_packet(&data[..8186]);
        let rest = vec![body_packet(&data[8186..16000]), body_packet(&data[16000..])];
        for step in [1, 2, 3, 5, 7, 4096, 100_000] {
            let mut d = ajp.body_decoder(BodyKind::Length(20000));
            assert_eq!(d.remaining_hint(), Some(20000));
            assert!(!d.wants_output());
            let (body, asked) = run_body(&mut d, &first, rest.clone(), step).unwrap();
            assert_eq!(body, data, "step {step}");
            assert_eq!(asked, 2);
            assert!(d.is_done());
            assert_eq!(d.remaining_hint(), Some(0));
        }
    }

    #[test]
    fn an_unknown_length_body_ends_with_an_empty_packet() {
        let ajp = Ajp::default();
        for end in [packet(&[0, 0]), packet(&[])] {
            let mut d = ajp.body_decoder(BodyKind::Chunked);
            assert!(d.wants_output());
            assert_eq!(d.remaining_hint(), None);
            let (body, asked) = run_body(
                &mut d,
                b"",
                vec![body_packet(b"hello "), body_packet(b"world"), end],
                1,
            )
            .unwrap();
            assert_eq!(body, b"hello world");
            assert_eq!(asked, 3);
            assert!(d.is_done());
        }
        // An empty body of unknown length.
        let mut d = ajp.body_decoder(BodyKind::Chunked);
        let (body, _) = run_body(&mut d, b"", vec![body_packet(b"")], 3).unwrap();
        assert!(body.is_empty());
        assert!(d.is_done());
    }

    #[test]
    fn get_body_chunk_asks_for_what_is_left() {
        let ajp = Ajp::default();
        let mut d = ajp.body_decoder(BodyKind::Length(10));
        let mut out = Vec::new();
        d.take_output(&mut out);
        assert!(out.is_empty(), "the first packet comes unasked");
        let mut body = Vec::new();
        d.decode(&body_packet(b"abcd"), &mut body).unwrap();
        assert!(d.wants_output());
        d.take_output(&mut out);
        assert_eq!(out, b"AB\x00\x03\x06\x00\x06");
        // Asked once: nothing more until it comes.
        d.take_output(&mut out);
        assert_eq!(out.len(), 7);
        let mut d = ajp.body_decoder(BodyKind::Chunked);
        d.take_output(&mut out);
        assert_eq!(&out[7..], b"AB\x00\x03\x06\x1F\xFA");
    }

    impl AjpBodyDecoder {
        fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BodyError> {
            self.decode_with(input, usize::MAX, |b| out.extend_from_slice(b))
                .map(|(c, _)| c)
        }
    }

    #[test]
    fn body_framing_errors() {
        let ajp = Ajp::default();
        let mut out = Vec::new();
        let check = |kind: BodyKind, wire: &[u8], want: BodyError| {
            let mut d = ajp.body_decoder(kind);
            let mut o = Vec::new();
            d.take_output(&mut o);
            let mut sink = Vec::new();
            assert_eq!(d.decode(wire, &mut sink), Err(want), "{wire:?}");
            // Failed for good.
            assert_eq!(d.decode(b"", &mut sink), Err(want));
            assert!(!d.is_done());
        };
        check(BodyKind::Length(5), b"\x12\x35", BAD_MAGIC);
        check(BodyKind::Length(5), b"AB\x00\x02", BAD_MAGIC);
        check(BodyKind::Length(5), b"\x12\x34\x1F\xFD", TOO_LONG);
        check(BodyKind::Length(5), b"\x12\x34\x00\x01", BAD_CHUNK);
        check(BodyKind::Length(5), b"\x12\x34\x00\x04\x00\x03", BAD_CHUNK);
        check(BodyKind::Length(2), &body_packet(b"abc"), OVERRUN);
        check(BodyKind::Length(2), &body_packet(b""), SHORT);
        check(BodyKind::Length(2), &packet(&[]), SHORT);
        // Decoding stops where the next packet must be asked for; a packet
        // that comes before the question is refused, whether the web server
        // sent it behind the first one or first for a chunked body (for
        // which the first packet is asked for too).
        let mut d = ajp.body_decoder(BodyKind::Length(6));
        assert_eq!(d.decode(&body_packet(b"abc"), &mut out), Ok(9));
        assert!(d.wants_output());
        let mut d = ajp.body_decoder(BodyKind::Length(6));
        let mut wire = body_packet(b"abc");
        wire.extend_from_slice(&body_packet(b"def"));
        assert_eq!(d.decode(&wire, &mut out), Err(UNASKED));
        assert_eq!(d.decode(b"", &mut out), Err(UNASKED));
        let mut d = ajp.body_decoder(BodyKind::Chunked);
        assert!(d.wants_output());
        assert_eq!(d.decode(&body_packet(b"x"), &mut out), Err(UNASKED));
        let mut d = ajp.body_decoder(BodyKind::Chunked);
        let mut o = Vec::new();
        d.take_output(&mut o);
        let mut wire = body_packet(b"x");
        wire.extend_from_slice(&packet(&[]));
        assert_eq!(d.decode(&wire, &mut out), Err(UNASKED));
        // An empty body has no packets.
        let mut d = ajp.body_decoder(BodyKind::Empty);
        assert!(d.is_done());
        assert_eq!(d.decode(&body_packet(b"x"), &mut out), Ok(0));
    }

    #[test]
    fn padding_after_the_chunk_is_skipped() {
        let ajp = Ajp::default();
        let mut d = ajp.body_decoder(BodyKind::Length(3));
        let mut out = Vec::new();
        let wire = packet(b"\x00\x03abcXY");
        for (i, b) in wire.iter().enumerate() {
            assert_eq!(d.decode(&[*b], &mut out), Ok(1), "byte {i}");
        }
        assert_eq!(out, b"abc");
        assert!(d.is_done());
        let mut d = ajp.body_decoder(BodyKind::Chunked);
        let mut o = Vec::new();
        d.take_output(&mut o);
        assert_eq!(d.decode(&packet(b"\x00\x00ZZ"), &mut out), Ok(8));
        assert!(d.is_done());
    }

    #[test]
    fn max_out_and_direct_reads() {
        let ajp = Ajp::default();
        let mut d = ajp.body_decoder(BodyKind::Length(10));
        let wire = body_packet(b"0123456789");
        // Framing is consumed even with no room for data.
        assert_eq!(d.decode_with(&wire, 0, |_| panic!("no room")), Ok((6, 0)));
        assert_eq!(d.data_ahead(), 10);
        let mut out = Vec::new();
        assert_eq!(
            d.decode_with(&wire[6..], 4, |b| out.extend_from_slice(b)),
            Ok((4, 4))
        );
        assert_eq!(out, b"0123");
        assert_eq!(d.data_ahead(), 6);
        // The caller reads the rest itself.
        assert_eq!(d.consume_data(100), 6);
        assert!(d.is_done());
        assert_eq!(d.consume_data(1), 0);
        assert_eq!(d.data_ahead(), 0);
        // Direct reads that end a packet ask for the next.
        let mut d = ajp.body_decoder(BodyKind::Length(10));
        assert_eq!(d.decode(&wire[..6], &mut out), Ok(6));
        assert_eq!(d.consume_data(3), 3);
        assert!(!d.wants_output());
        let mut d = ajp.body_decoder(BodyKind::Length(20));
        assert_eq!(d.decode(&wire[..6], &mut out), Ok(6));
        assert_eq!(d.consume_data(10), 10);
        assert!(d.wants_output());
        assert_eq!(d.remaining_hint(), Some(10));
    }

    #[test]
    fn abandon_reads_only_what_is_owed() {
        let ajp = Ajp::default();
        // The unasked first packet is still read, then the connection is clean.
        let mut d = ajp.body_decoder(BodyKind::Length(100_000));
        d.abandon();
        assert!(!d.is_done());
        let mut out = Vec::new();
        let mut wire = body_packet(&[7; 8186]);
        wire.extend_from_slice(&get(b"/next"));
        let c = d.decode(&wire, &mut out).unwrap();
        assert_eq!(c, 8192);
        assert!(d.is_done());
        assert!(!d.wants_output());
        assert!(parse(&wire[c..]).is_ok());
        // Abandoned between packets: done at once.
        let mut d = ajp.body_decoder(BodyKind::Length(10_000));
        d.decode(&body_packet(&[1; 100]), &mut out).unwrap();
        assert!(d.wants_output());
        d.abandon();
        assert!(d.is_done());
        let mut o = Vec::new();
        d.take_output(&mut o);
        assert!(o.is_empty());
        // Abandoned while a requested packet is owed: that one is read, even
        // if it is the empty one of a client that gave up.
        let mut d = ajp.body_decoder(BodyKind::Length(10_000));
        d.decode(&body_packet(&[1; 100]), &mut out).unwrap();
        d.take_output(&mut o);
        d.abandon();
        assert!(!d.is_done());
        assert_eq!(d.decode(&body_packet(b""), &mut out), Ok(6));
        assert!(d.is_done());
        // Abandoned in the middle of a packet.
        let mut d = ajp.body_decoder(BodyKind::Chunked);
        d.take_output(&mut o);
        let wire = body_packet(b"abcdef");
        d.decode(&wire[..7], &mut out).unwrap();
        d.abandon();
        assert!(!d.is_done());
        d.decode(&wire[7..], &mut out).unwrap();
        assert!(d.is_done());
    }

    #[test]
    fn response_head() {
        let ajp = Ajp::default();
        let mut out = b"x".to_vec();
        ajp.write_head(
            &mut out,
            b"201 Created",
            [
                (&b"Content-Type"[..], &b"text/plain"[..]),
                (b"X-A", b"1"),
                (b"SET-COOKIE", b"a=b"),
                (b"WWW-Authenticate", b"Basic"),
            ],
        )
        .unwrap();
        let mut want = b"xAB".to_vec();
        let mut p = vec![SEND_HEADERS, 0, 201];
        s(&mut p, Some(b"Created"));
        p.extend_from_slice(&[0, 4, 0xA0, 1]);
        s(&mut p, Some(b"text/plain"));
        s(&mut p, Some(b"X-A"));
        s(&mut p, Some(b"1"));
        p.extend_from_slice(&[0xA0, 7]);
        s(&mut p, Some(b"a=b"));
        p.extend_from_slice(&[0xA0, 11]);
        s(&mut p, Some(b"Basic"));
        want.extend_from_slice(&(p.len() as u16).to_be_bytes());
        want.extend_from_slice(&p);
        assert_eq!(out, want);
        // Every coded name.
        for (i, n) in RESPONSE_HEADERS.iter().enumerate() {
            let mut out = Vec::new();
            ajp.write_head(&mut out, b"200 OK", [(*n, &b"v"[..])])
                .unwrap();
            assert_eq!(&out[out.len() - 6..out.len() - 4], &[0xA0, i as u8 + 1]);
        }
        // A status without a reason.
        let mut out = Vec::new();
        ajp.write_head(&mut out, b"204", []).unwrap();
        assert_eq!(out, b"AB\x00\x08\x04\x00\xCC\x00\x00\x00\x00\x00");
        for bad in [&b""[..], b"20", b"2x0 OK", b"099 X", b"200OK", b"2000 OK"] {
            let mut out = b"keep".to_vec();
            assert_eq!(
                ajp.write_head(&mut out, bad, []),
                Err(EncodeError::BadStatus),
                "{bad:?}"
            );
            assert_eq!(out, b"keep");
        }
    }

    #[test]
    fn a_head_larger_than_a_packet_is_refused() {
        let ajp = Ajp::default();
        let value = vec![b'v'; 4000];
        let mut out = b"keep".to_vec();
        let fields = [(&b"X-A"[..], &value[..]), (b"X-B", &value[..])];
        assert!(ajp.write_head(&mut out, b"200 OK", fields).is_ok());
        assert!(out.len() - 4 <= 8192);
        out.truncate(4);
        let fields = [
            (&b"X-A"[..], &value[..]),
            (b"X-B", &value[..]),
            (b"X-C", &value[..200]),
        ];
        assert_eq!(
            ajp.write_head(&mut out, b"200 OK", fields),
            Err(EncodeError::HeadTooLarge)
        );
        assert_eq!(out, b"keep");
        // Exactly a packet fits.
        let mut out = Vec::new();
        // Header 4, type 1, status 2, empty reason 3, count 2, name 4, value 3 + n.
        let fill = vec![b'v'; 8192 - 19];
        ajp.write_head(&mut out, b"200 ", [(&b"X"[..], &fill[..])])
            .unwrap();
        assert_eq!(out.len(), 8192);
        let fill = vec![b'v'; fill.len() + 1];
        assert_eq!(
            ajp.write_head(&mut Vec::new(), b"200 ", [(&b"X"[..], &fill[..])]),
            Err(EncodeError::HeadTooLarge)
        );
    }

    #[test]
    fn body_blocks_and_the_end() {
        let ajp = Ajp::default();
        assert_eq!(ajp.max_block(), 8184);
        assert_eq!(ajp.max_body_chunk(), 8186);
        assert_eq!(ajp.block_prefix(5), Some(*b"AB\x00\x09\x03\x00\x05"));
        assert_eq!(
            ajp.block_prefix(8184),
            Some([b'A', b'B', 0x1F, 0xFC, 3, 0x1F, 0xF8])
        );
        assert_eq!(ajp.block_prefix(8185), None);
        let mut out = Vec::new();
        let data = vec![9u8; 8184 * 2 + 1];
        ajp.write_block(&mut out, &data);
        assert_eq!(out.len(), data.len() + 3 * 8);
        assert_eq!(&out[..7], &ajp.block_prefix(8184).unwrap());
        assert_eq!(out[8191], 0);
        assert_eq!(&out[8192..8199], &ajp.block_prefix(8184).unwrap());
        assert_eq!(&out[16384..16391], &ajp.block_prefix(1).unwrap());
        assert_eq!(&out[16391..], &[9, 0]);
        let mut out = Vec::new();
        ajp.write_block(&mut out, b"");
        assert!(out.is_empty());
        ajp.write_flush(&mut out);
        assert_eq!(out, b"AB\x00\x04\x03\x00\x00\x00");
        let mut out = Vec::new();
        ajp.write_end(&mut out, true);
        ajp.write_end(&mut out, false);
        assert_eq!(out, b"AB\x00\x02\x05\x01AB\x00\x02\x05\x00");
        let big = Ajp::new(MAX_PACKET_SIZE).unwrap();
        assert_eq!(big.max_block(), 65528);
        let p = big.block_prefix(65528).unwrap();
        assert_eq!(&p[2..4], &[0xFF, 0xFC]);
    }

    #[test]
    fn error_answers() {
        let ajp = Ajp::default();
        let mut out = Vec::new();
        ajp.write_error(&mut out, 403, "Forbidden", "wrong AJP secret");
        let mut want = Vec::new();
        ajp.write_head(
            &mut want,
            b"403 Forbidden",
            [
                (&b"Content-Type"[..], &b"text/plain; charset=utf-8"[..]),
                (b"Content-Length", b"17"),
            ],
        )
        .unwrap();
        ajp.write_block(&mut want, b"wrong AJP secret\n");
        ajp.write_end(&mut want, false);
        assert_eq!(out, want);
        // A status out of range becomes 500, an empty reason the canonical one.
        let mut out = Vec::new();
        ajp.write_error(&mut out, 7, "", "x");
        assert_eq!(&out[5..7], &500u16.to_be_bytes());
        assert_eq!(&out[9..30], b"Internal Server Error");
    }

    /// A small deterministic generator for the no-panic sweep.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn mutated_packets_never_panic() {
        let ajp = Ajp::default().with_secret(b"k");
        let limits = Limits {
            max_header_count: 3,
            max_head_size: 120,
            ..Limits::default()
        };
        let seed = Req::new(4, b"/a", true, &[(b"\xA0\x08", b"3"), (b"X-Y", b"z")])
            .attr(ATTR_QUERY_STRING, b"q")
            .attr(ATTR_SECRET, b"k")
            .raw(&[ATTR_SSL_KEY_SIZE, 1, 0])
            .packet();
        let mut rng = Lcg(7);
        for _ in 0..20_000 {
            let mut buf = seed.clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % buf.len();
                match rng.next() % 3 {
                    0 => buf[i] = rng.next() as u8,
                    1 => {
                        buf.remove(i);
                    }
                    _ => buf.insert(i, rng.next() as u8),
                }
            }
            if let Ok(Decoded::Request { head, consumed }) = ajp.parse_request(&buf, &limits) {
                assert!(consumed <= buf.len());
                let mut d = ajp.body_decoder(head.body());
                let mut out = Vec::new();
                d.take_output(&mut out);
                let _ = d.decode_with(&buf[consumed..], usize::MAX, |_| {});
            }
        }
    }
}
