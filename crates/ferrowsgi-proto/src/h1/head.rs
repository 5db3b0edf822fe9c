//! Request-head parsing: bytes in, a validated [`RequestHead`] (or "need more
//! bytes", or a precise [`ParseError`]) out. No I/O.
//!
//! httparse does the tokenising. Around it this module enforces the size
//! [`Limits`] as bytes arrive, turns httparse's coarse errors into precise ones
//! (see the private `diagnose` module), and applies the HTTP/1.1 semantics httparse leaves
//! to its caller: request-target forms, Host, message framing, Connection and
//! Expect.

use std::mem::MaybeUninit;

use memchr::memchr;

use super::diagnose::{diagnose, Diagnosis};
use super::fields::Fields;
use super::target::{classify_target, Scheme};
use crate::{Limits, ParseError};

/// How many empty lines may precede the request line. RFC 9112 §2.2 asks a
/// server to ignore "at least one"; clients that send a stray CRLF after a
/// POST body send one or two. Eight is generous and still bounds the loop.
pub const MAX_LEADING_EMPTY_LINES: usize = 8;

/// Header slots on the stack for httparse's first try. 64 covers every real
/// client; a head with more is re-parsed into a heap array of
/// `Limits::max_header_count` slots, so the common case never allocates for it.
const STACK_HEADER_SLOTS: usize = 64;

/// The HTTP version of a request. Only 1.0 and 1.1 are accepted; other
/// `HTTP/d.d` versions are answered with 505.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

impl Version {
    /// The protocol string, e.g. `"HTTP/1.0"` (for `SERVER_PROTOCOL`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is framed (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// Neither Content-Length nor Transfer-Encoding: no body (§6.3 item 7).
    Empty,
    /// `Content-Length: n` (the value may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A byte range into [`RequestHead`]'s own copy of the head. `u32` is enough:
/// heads larger than 4 GiB are rejected as too large.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    /// First byte.
    start: u32,
    /// One past the last byte.
    end: u32,
}

impl Span {
    /// A span from `usize` offsets (both already known to be below 4 GiB).
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// A span from offsets into a buffer whose length its caller has
    /// checked to be below 4 GiB (so the offsets fit, and nothing is
    /// checked again per span: a gateway head makes two per variable).
    #[inline(always)]
    pub(crate) fn within(start: usize, end: usize) -> Span {
        debug_assert!(end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span of the last `len` bytes of this one (never more than it
    /// covers).
    #[inline(always)]
    pub(crate) fn tail(&self, len: usize) -> Span {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        Span {
            start: self.end.saturating_sub(len).max(self.start),
            end: self.end,
        }
    }

    /// The span of `part`, a sub-slice of `base`, as offsets into `base`.
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        debug_assert!(start <= base.len() && start + part.len() <= base.len());
        let start = start.min(base.len());
        Span::new(start, (start + part.len()).min(base.len()))
    }

    /// The bytes this span covers in `buf`; empty if it is out of range
    /// (which would be a bug, never a panic on the request path).
    pub(crate) fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    /// The first byte's offset.
    pub(crate) fn start(&self) -> usize {
        self.start as usize
    }

    /// Whether the span covers nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

/// A parsed and validated request head. It owns a copy of the head's bytes;
/// every accessor returns a slice of that copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The head as received, from the request line through the empty line.
    bytes: Vec<u8>,
    /// The method.
    method: Span,
    /// The request-target as sent.
    target: Span,
    /// The path part of the target; empty means `/` (absolute-form, no path).
    path: Span,
    /// The query part of the target, without `?`.
    query: Span,
    /// The protocol version.
    version: Version,
    /// Header name and value spans, in order; values trimmed of OWS. For a
    /// gateway request, the server variables follow (from `vars_at`), so
    /// that one allocation holds both.
    headers: Vec<(Span, Span)>,
    /// The effective host: the target's authority, else the Host header.
    host: Option<Span>,
    /// The scheme of an absolute-form target.
    scheme: Option<Scheme>,
    /// How the body is framed.
    body: BodyKind,
    /// Whether the connection may stay open after this request.
    keep_alive: bool,
    /// Whether the client waits for `100 Continue`.
    expects_continue: bool,
    /// The first Content-Type value.
    content_type: Option<Span>,
    /// The first element of the validated Content-Length.
    content_length: Option<Span>,
    /// For a request a front end handed over already parsed (FastCGI, SCGI,
    /// uwsgi, AJP): where in `headers` the server variables it sent start,
    /// other than the `HTTP_*` ones (which are the fields before). `None`
    /// for a request read as HTTP/1.x.
    vars_at: Option<u32>,
}

impl RequestHead {
    /// The method, e.g. `b"GET"` (case-sensitive, RFC 9110 §9.1).
    pub fn method(&self) -> &[u8] {
        self.method.get(&self.bytes)
    }

    /// The request-target exactly as sent (for `RAW_URI` / `REQUEST_URI`).
    pub fn target(&self) -> &[u8] {
        self.target.get(&self.bytes)
    }

    /// The path part of the target, before any `?`, still percent-encoded.
    /// For the absolute-form `http://h/p?q` it is `/p`, for `http://h` it is
    /// `/`, and for the asterisk-form it is `*`.
    pub fn path(&self) -> &[u8] {
        if self.path.is_empty() {
            b"/"
        } else {
            self.path.get(&self.bytes)
        }
    }

    /// The query after the first `?`, raw; empty when there is none.
    pub fn query(&self) -> &[u8] {
        self.query.get(&self.bytes)
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header lines in order: names as sent (case preserved), values
    /// trimmed of surrounding whitespace. Repeated headers appear repeatedly.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.fields()
            .iter()
            .map(|(n, v)| (n.get(&self.bytes), v.get(&self.bytes)))
    }

    /// The number of header lines.
    pub fn header_count(&self) -> usize {
        self.fields().len()
    }

    /// The header fields' spans (without a gateway request's server
    /// variables).
    fn fields(&self) -> &[(Span, Span)] {
        match self.vars_at {
            Some(at) => self.headers.get(..at as usize).unwrap_or(&[]),
            None => &self.headers,
        }
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The effective host and optional port: the authority of an absolute-form
    /// target, which wins over the Host header (RFC 9112 §3.2.2), else the
    /// Host header. `None` only for HTTP/1.0 requests without Host; an empty
    /// Host header gives `Some(b"")`.
    pub fn host(&self) -> Option<&[u8]> {
        self.host.map(|s| s.get(&self.bytes))
    }

    /// `Some(b"http")` or `Some(b"https")` for an absolute-form target (the
    /// scheme lower-cased), else `None`.
    pub fn scheme(&self) -> Option<&[u8]> {
        self.scheme.map(|s| match s {
            Scheme::Http => &b"http"[..],
            Scheme::Https => &b"https"[..],
        })
    }

    /// How the body is framed.
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// Whether the connection may be reused (RFC 9112 §9.3): HTTP/1.1 unless
    /// Connection lists `close`; HTTP/1.0 only if it lists `keep-alive` (and
    /// not `close`).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether the client sent `Expect: 100-continue` in an HTTP/1.1 request;
    /// it is ignored in HTTP/1.0 (RFC 9110 §10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.expects_continue
    }

    /// The first Content-Type value, if any.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.content_type.map(|s| s.get(&self.bytes))
    }

    /// The validated Content-Length as sent (for `CONTENT_LENGTH`). When the
    /// header was repeated or a list of identical values, the first value.
    pub fn content_length_raw(&self) -> Option<&[u8]> {
        self.content_length.map(|s| s.get(&self.bytes))
    }

    /// Whether a front end handed this request over already parsed (see
    /// [`crate::gateway`]) rather than it being read as HTTP/1.x.
    pub fn is_gateway(&self) -> bool {
        self.vars_at.is_some()
    }

    /// The server variables a front end sent with the request (`REMOTE_ADDR`,
    /// `HTTPS`, `SCRIPT_NAME`, `DOCUMENT_ROOT`, …), in order, without the
    /// `HTTP_*` ones, which are [`RequestHead::headers`]. Empty for an
    /// HTTP/1.x request.
    pub fn vars(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let vars = match self.vars_at {
            Some(at) => self.headers.get(at as usize..).unwrap_or(&[]),
            None => &[],
        };
        vars.iter()
            .map(|(n, v)| (n.get(&self.bytes), v.get(&self.bytes)))
    }

    /// The value of the server variable `name` (exact, case-sensitive, as
    /// CGI names are), if the front end sent it.
    pub fn var(&self, name: &[u8]) -> Option<&[u8]> {
        self.vars().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Sets whether the connection may carry another request after this
    /// one; a gateway codec decides it from its own protocol (FastCGI's
    /// `FCGI_KEEP_CONN`, AJP's connection reuse).
    pub fn set_keep_alive(&mut self, keep_alive: bool) {
        self.keep_alive = keep_alive;
    }

    /// Sets how the body is framed; a gateway codec whose protocol frames
    /// the body itself uses [`BodyKind::Chunked`] for "length unknown, until
    /// the protocol says the body ended".
    pub fn set_body(&mut self, body: BodyKind) {
        self.body = body;
    }

    /// The whole head as received, request line through the final empty line.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives back the head's allocations for the next head to be parsed
    /// into ([`parse_head_into`]); empty ones if they grew past what is
    /// worth keeping with an idle connection.
    pub fn into_storage(mut self) -> HeadStorage {
        self.take_storage()
    }

    /// [`RequestHead::into_storage`] for a head that is not moved: its
    /// allocations are taken and it is left empty (every accessor then
    /// gives an empty slice). Handing a head over by value copies its 150
    /// bytes, which an owner about to drop it can spare.
    pub fn take_storage(&mut self) -> HeadStorage {
        let bytes = std::mem::take(&mut self.bytes);
        let headers = std::mem::take(&mut self.headers);
        if bytes.capacity() > HeadStorage::KEEP_BYTES
            || headers.capacity() > HeadStorage::KEEP_FIELDS
        {
            return HeadStorage::default();
        }
        HeadStorage { bytes, headers }
    }
}

/// The parts of a [`RequestHead`] that [`crate::gateway`] builds from a
/// front end's variables, as spans of `bytes`.
#[derive(Debug)]
pub(crate) struct GatewayParts {
    pub(crate) bytes: Vec<u8>,
    pub(crate) method: Span,
    pub(crate) target: Span,
    pub(crate) path: Span,
    pub(crate) query: Span,
    pub(crate) version: Version,
    /// The header fields, then the server variables.
    pub(crate) fields: Vec<(Span, Span)>,
    /// How many of `fields` are header fields.
    pub(crate) n_fields: usize,
    pub(crate) host: Option<Span>,
    pub(crate) body: BodyKind,
    pub(crate) content_type: Option<Span>,
    pub(crate) content_length: Option<Span>,
}

impl From<GatewayParts> for RequestHead {
    fn from(p: GatewayParts) -> RequestHead {
        RequestHead {
            bytes: p.bytes,
            method: p.method,
            target: p.target,
            path: p.path,
            query: p.query,
            version: p.version,
            headers: p.fields,
            host: p.host,
            scheme: None,
            body: p.body,
            keep_alive: false,
            expects_continue: false,
            content_type: p.content_type,
            content_length: p.content_length,
            vars_at: Some(u32::try_from(p.n_fields).unwrap_or(u32::MAX)),
        }
    }
}

/// The buffers of a parsed head, kept from one request of a connection to
/// the next so that parsing a head allocates nothing (two allocations and
/// two frees per request otherwise).
#[derive(Debug, Default)]
pub struct HeadStorage {
    bytes: Vec<u8>,
    headers: Vec<(Span, Span)>,
}

impl HeadStorage {
    /// Bytes the buffers hold room for (what giving them up frees).
    pub fn capacity(&self) -> usize {
        self.bytes.capacity() + self.headers.capacity() * std::mem::size_of::<(Span, Span)>()
    }

    /// Head bytes kept at most (a larger head's buffer is freed).
    const KEEP_BYTES: usize = 4096;
    /// Header fields kept at most.
    const KEEP_FIELDS: usize = 64;
}

/// The outcome of [`parse_head`] when the bytes so far are not in error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head was parsed.
    Complete {
        /// The parsed head.
        head: RequestHead,
        /// How many bytes of the buffer it used, skipped empty lines included;
        /// the body or the next request starts there.
        consumed: usize,
    },
    /// The head is not complete yet; call again with more bytes (from the
    /// same start).
    Partial,
}

/// Parses a request head from the start of `buf`.
///
/// Stateless: call it again with the grown buffer after each read. Limits are
/// enforced on incomplete input too, so an endless request line or head fails
/// as soon as it passes its limit. Bytes after the head are not looked at.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    parse_head_into(buf, limits, &mut HeadStorage::default())
}

/// [`parse_head`], building a complete head in `storage`'s buffers (which
/// it takes; give them back with [`RequestHead::into_storage`]).
pub fn parse_head_into(
    buf: &[u8],
    limits: &Limits,
    storage: &mut HeadStorage,
) -> Result<Parsed, ParseError> {
    let Some(skip) = skip_empty_lines(buf)? else {
        return Ok(Parsed::Partial);
    };
    let rest = buf.get(skip..).unwrap_or(&[]);
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADER_SLOTS];
    let stack_slots = limits.max_header_count.min(STACK_HEADER_SLOTS);
    let outcome = match parse_with_slots(rest, &mut slots[..stack_slots], limits, storage) {
        Attempt::Done(r) => r,
        Attempt::OutOfSlots if limits.max_header_count > STACK_HEADER_SLOTS => {
            let mut heap = vec![MaybeUninit::uninit(); limits.max_header_count];
            match parse_with_slots(rest, &mut heap, limits, storage) {
                Attempt::Done(r) => r,
                Attempt::OutOfSlots => Err(ParseError::TooManyHeaders),
            }
        }
        Attempt::OutOfSlots => Err(ParseError::TooManyHeaders),
    };
    outcome.map(|parsed| match parsed {
        Parsed::Complete { head, consumed } => Parsed::Complete {
            head,
            consumed: consumed + skip,
        },
        Parsed::Partial => Parsed::Partial,
    })
}

/// Skips up to [`MAX_LEADING_EMPTY_LINES`] empty lines (CRLF or LF, RFC 9112
/// §2.2). `Ok(None)` means the buffer holds nothing else yet.
fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut pos = 0;
    let mut lines = 0;
    loop {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'\n') => pos += 1,
            Some(b'\r') => match buf.get(pos + 1) {
                None => return Ok(None),
                Some(b'\n') => pos += 2,
                Some(_) => return Err(ParseError::BareCr),
            },
            Some(_) => return Ok(Some(pos)),
        }
        lines += 1;
        if lines > MAX_LEADING_EMPTY_LINES {
            return Err(ParseError::TooManyEmptyLines);
        }
    }
}

/// The result of one httparse attempt with a given number of header slots.
enum Attempt {
    /// Parsed, partial or failed for good.
    Done(Result<Parsed, ParseError>),
    /// httparse ran out of header slots; retry with more (or fail with 431).
    OutOfSlots,
}

/// Runs httparse over `buf` (which starts at the request line) with `slots`,
/// then checks limits and semantics.
fn parse_with_slots<'b>(
    buf: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    limits: &Limits,
    storage: &mut HeadStorage,
) -> Attempt {
    let mut req = httparse::Request::new(&mut []);
    let result = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => {
            let head = buf.get(..n).unwrap_or(buf);
            check_limits(head, limits).and_then(|()| build_head(head, &req, storage))
        }
        Ok(httparse::Status::Partial) => check_limits(buf, limits).map(|()| Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Attempt::OutOfSlots,
        Err(e) => match diagnose(buf, e) {
            Diagnosis::Partial => check_limits(buf, limits).map(|()| Parsed::Partial),
            Diagnosis::Error(e) => Err(e),
        },
    };
    Attempt::Done(result)
}

/// Checks the request-line, header-line and head-size limits over `head`, a
/// complete head or all bytes received so far of an incomplete one. Line
/// lengths exclude the line ending; a CR at the very end of an incomplete
/// buffer may be the start of one and is not counted.
fn check_limits(head: &[u8], limits: &Limits) -> Result<(), ParseError> {
    // No line can be longer than the whole head: a head within both line
    // limits (nearly every one) needs no scan for line ends.
    if head.len() > limits.max_request_line.min(limits.max_header_field_size) {
        check_line_limits(head, limits)?;
    }
    // Spans are u32: a head of 4 GiB or more is too large whatever the limit.
    if head.len() > limits.max_head_size || u32::try_from(head.len()).is_err() {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(())
}

/// The line-length part of [`check_limits`].
fn check_line_limits(head: &[u8], limits: &Limits) -> Result<(), ParseError> {
    let mut start = 0;
    let mut first = true;
    loop {
        let rest = head.get(start..).unwrap_or(&[]);
        let (line_len, next) = match memchr(b'\n', rest) {
            Some(i) => (i, Some(start + i + 1)),
            None => (rest.len(), None),
        };
        let line = &rest[..line_len];
        let content = line.strip_suffix(b"\r").unwrap_or(line).len();
        if first {
            if content > limits.max_request_line {
                return Err(ParseError::UriTooLong);
            }
            first = false;
        } else if content > limits.max_header_field_size {
            return Err(ParseError::HeaderFieldTooLarge);
        } else if content == 0 && next.is_some() {
            break;
        }
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    Ok(())
}

/// Builds the owned head from httparse's result, applying RFC 9112's rules.
fn build_head(
    head: &[u8],
    req: &httparse::Request<'_, '_>,
    storage: &mut HeadStorage,
) -> Result<Parsed, ParseError> {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(ParseError::InvalidRequestLine);
    };
    let (method, target) = (method.as_bytes(), target.as_bytes());
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(ParseError::InvalidVersion),
    };
    // RFC 9110 §9.3.6: CONNECT makes a tunnel, which a WSGI server never offers.
    if method == b"CONNECT" {
        return Err(ParseError::MethodNotImplemented);
    }
    let parts = classify_target(method, target)?;
    let target_span = Span::of(head, target);
    let at = |(s, e): (usize, usize)| {
        let base = target_span.start as usize;
        Span::new(base + s, base + e)
    };
    let authority = parts.authority.map(at);

    let mut fields = Fields::default();
    let mut headers = std::mem::take(&mut storage.headers);
    headers.clear();
    headers.reserve(req.headers.len());
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        let value_span = Span::of(head, value);
        headers.push((Span::of(head, name), value_span));
        fields.on_header(head, name, value, value_span);
    }
    let verdict = fields.judge(head, version)?;

    let mut bytes = std::mem::take(&mut storage.bytes);
    bytes.clear();
    bytes.extend_from_slice(head);
    let head_out = RequestHead {
        bytes,
        method: Span::of(head, method),
        target: target_span,
        path: at(parts.path),
        query: at(parts.query),
        version,
        headers,
        host: authority.or(verdict.host),
        scheme: parts.scheme,
        body: verdict.body,
        keep_alive: verdict.keep_alive,
        expects_continue: verdict.expects_continue,
        content_type: verdict.content_type,
        content_length: verdict.content_length,
        vars_at: None,
    };
    Ok(Parsed::Complete {
        head: head_out,
        consumed: head.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError as E;

    fn complete_into(raw: &[u8], storage: &mut HeadStorage) -> RequestHead {
        match parse_head_into(raw, &Limits::default(), storage) {
            Ok(Parsed::Complete { head, consumed }) => {
                assert_eq!(consumed, raw.len());
                head
            }
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn a_head_parsed_into_kept_buffers_has_only_its_own_fields() {
        let mut storage = HeadStorage::default();
        let first = complete_into(
            b"POST /first?a=1 HTTP/1.1\r\nHost: one\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\
              Content-Length: 0\r\n\r\n",
            &mut storage,
        );
        assert_eq!(first.header_count(), 5);
        storage = first.into_storage();
        assert!(storage.bytes.capacity() > 0 && storage.headers.capacity() >= 5);
        let second = complete_into(b"GET /2 HTTP/1.0\r\nX-Z: z\r\n\r\n", &mut storage);
        assert_eq!(second.method(), b"GET");
        assert_eq!(second.target(), b"/2");
        assert_eq!(second.version(), Version::Http10);
        assert_eq!(second.as_bytes(), b"GET /2 HTTP/1.0\r\nX-Z: z\r\n\r\n");
        let fields: Vec<_> = second.headers().collect();
        assert_eq!(fields, vec![(&b"X-Z"[..], &b"z"[..])]);
        assert_eq!(second.host(), None);
        assert_eq!(second.body(), BodyKind::Empty);
    }

    #[test]
    fn a_large_head_gives_its_buffers_up() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..70 {
            raw.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(60)).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let head = complete_into(&raw, &mut HeadStorage::default());
        let storage = head.into_storage();
        assert_eq!(storage.bytes.capacity(), 0);
        assert_eq!(storage.headers.capacity(), 0);
    }

    fn parse(raw: &[u8]) -> Result<Parsed, ParseError> {
        parse_head(raw, &Limits::default())
    }

    fn complete(raw: &[u8]) -> (RequestHead, usize) {
        match parse(raw) {
            Ok(Parsed::Complete { head, consumed }) => (head, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn head(raw: &[u8]) -> RequestHead {
        complete(raw).0
    }

    /// Checks each (raw head, exact error) case whole, and at every split
    /// point: a prefix gives Partial or the same error, never another verdict.
    fn check_rejects(cases: &[(&[u8], ParseError)]) {
        for (raw, want) in cases {
            let name = String::from_utf8_lossy(raw);
            assert_eq!(parse(raw), Err(*want), "{name:?}");
            for cut in 0..raw.len() {
                match parse(&raw[..cut]) {
                    Ok(Parsed::Partial) => {}
                    Err(e) if e == *want => {}
                    other => panic!("{name:?} cut at {cut}: {other:?}, want {want:?}"),
                }
            }
        }
    }

    /// One `#[test]` per rule family, one line per case: (raw head, exact error).
    macro_rules! rejects {
        ($($name:ident: [$($case:expr,)*])*) => {$(
            #[test]
            fn $name() {
                let cases: &[(&[u8], ParseError)] = &[$($case,)*];
                check_rejects(cases);
            }
        )*};
    }

    rejects! {
        rejects_request_line: [
            (b"\rX", E::BareCr),
            (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidMethod),
            (b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidMethod),
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidRequestLine),
            (b"GET\r\n\r\n", E::InvalidRequestLine),
            (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", E::BareCr),
        ]
        rejects_version: [
            (b"GET /\r\n\r\n", E::InvalidVersion),
            (b"GET / http/1.1\r\nHost: a\r\n\r\n", E::InvalidVersion),
            (b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", E::InvalidVersion),
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", E::InvalidVersion),
            (b"GET / HTTP/11\r\nHost: a\r\n\r\n", E::InvalidVersion),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", E::VersionNotSupported),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", E::VersionNotSupported),
            (b"GET / HTTP/0.9\r\n\r\n", E::VersionNotSupported),
        ]
        rejects_target: [
            (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", E::InvalidTarget),
            (b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", E::InvalidTarget),
            (b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", E::InvalidTarget),
            (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", E::MethodNotImplemented),
        ]
        rejects_header_syntax: [
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", E::ObsFold),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", E::ObsFold),
            (b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", E::ObsFold),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", E::WhitespaceBeforeColon),
            (b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", E::WhitespaceBeforeColon),
            (b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", E::InvalidHeaderName),
            (b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", E::InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nNoColon\r\nHost: a\r\n\r\n", E::InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nX\x00: a\r\nHost: a\r\n\r\n", E::InvalidHeaderName),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", E::BareCr),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", E::BareCr),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", E::InvalidHeaderValue),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n", E::InvalidHeaderValue),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", E::InvalidHeaderValue),
        ]
        rejects_host: [
            (b"GET / HTTP/1.1\r\n\r\n", E::MissingHost),
            (b"GET / HTTP/1.1\r\nX: a\r\n\r\n", E::MissingHost),
            (b"GET http://h/ HTTP/1.1\r\n\r\n", E::MissingHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", E::MultipleHost),
            (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", E::MultipleHost),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", E::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", E::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", E::InvalidHost),
            (b"GET / HTTP/1.0\r\nHost: u@a\r\n\r\n", E::InvalidHost),
            (b"GET http://h/ HTTP/1.1\r\nHost: a b\r\n\r\n", E::InvalidHost),
        ]
        rejects_content_length: [
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", E::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", E::ConflictingContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", E::ConflictingContentLength),
        ]
        rejects_transfer_encoding: [
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", E::ConflictingFraming),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n", E::ConflictingFraming),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", E::TransferEncodingHttp10),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", E::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", E::UnsupportedTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", E::UnsupportedTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n", E::UnsupportedTransferCoding),
        ]
        rejects_content_type: [
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\n", E::ConflictingContentType),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\ncontent-type: Text/Plain\r\n\r\n", E::ConflictingContentType),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b; charset=utf-8\r\nContent-Type: a/b\r\n\r\n", E::ConflictingContentType),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nContent-Type: a/b\r\nContent-Type:\r\n\r\n", E::ConflictingContentType),
            (b"POST / HTTP/1.0\r\nContent-Type: a/b\r\nX: y\r\nCONTENT-TYPE: c/d\r\n\r\n", E::ConflictingContentType),
        ]
        rejects_expect: [
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n", E::ExpectationFailed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\n\r\n", E::ExpectationFailed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue;x\r\n\r\n", E::ExpectationFailed),
        ]
    }

    const GOOD: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"\r\n\nGET /a?b HTTP/1.0\n\n",
        b"POST /p HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n",
        b"POST http://h/x HTTP/1.1\r\nHost:\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
    ];

    #[test]
    fn good_heads_split_at_every_offset() {
        for raw in GOOD {
            let whole = parse(raw);
            assert!(
                matches!(whole, Ok(Parsed::Complete { consumed, .. }) if consumed == raw.len())
            );
            for cut in 0..raw.len() {
                assert_eq!(parse(&raw[..cut]), Ok(Parsed::Partial), "cut {cut}");
            }
        }
    }

    #[test]
    fn simple_get() {
        let h = head(b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent:  curl \t\r\nX-Empty:\r\n\r\n");
        assert_eq!(h.method(), b"GET");
        assert_eq!(h.target(), b"/a/b%20c?x=1&y=2");
        assert_eq!(h.path(), b"/a/b%20c");
        assert_eq!(h.query(), b"x=1&y=2");
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.version().as_str(), "HTTP/1.1");
        assert_eq!(h.host(), Some(&b"example.com:8080"[..]));
        assert_eq!(h.scheme(), None);
        assert_eq!(h.body(), BodyKind::Empty);
        assert!(h.keep_alive());
        assert!(!h.expects_continue());
        assert_eq!(h.header_count(), 3);
        let hs: Vec<_> = h.headers().collect();
        assert_eq!(hs[1], (&b"User-Agent"[..], &b"curl"[..]));
        assert_eq!(hs[2], (&b"X-Empty"[..], &b""[..]));
        assert_eq!(h.header(b"user-agent"), Some(&b"curl"[..]));
        assert_eq!(h.content_type(), None);
        assert_eq!(h.content_length_raw(), None);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let (h, consumed) = complete(b"\r\n\n\r\nGET / HTTP/1.0\r\n\r\n");
        assert_eq!(consumed, 23);
        assert_eq!(h.as_bytes(), b"GET / HTTP/1.0\r\n\r\n");
        let eight = [&b"\r\n".repeat(8)[..], b"GET / HTTP/1.0\r\n\r\n"].concat();
        assert!(matches!(parse(&eight), Ok(Parsed::Complete { .. })));
        let nine = [&b"\r\n".repeat(9)[..], b"GET / HTTP/1.0\r\n\r\n"].concat();
        assert_eq!(parse(&nine), Err(E::TooManyEmptyLines));
        assert_eq!(parse(b"\r\n\r\n"), Ok(Parsed::Partial));
        assert_eq!(parse(b""), Ok(Parsed::Partial));
    }

    #[test]
    fn pipelined_consumed_stops_at_first_head() {
        let first = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let raw = [&first[..], b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
        let (h, consumed) = complete(&raw);
        assert_eq!(consumed, first.len());
        assert_eq!(h.path(), b"/1");
        let (h2, _) = complete(&raw[consumed..]);
        assert_eq!(h2.path(), b"/2");
    }

    #[test]
    fn lf_only_line_endings() {
        let h = head(b"GET / HTTP/1.1\nHost: a\nX: y\n\n");
        assert_eq!(h.header(b"x"), Some(&b"y"[..]));
    }

    #[test]
    fn absolute_form_overrides_host() {
        let h = head(b"GET HTTP://Other:81/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.host(), Some(&b"Other:81"[..]));
        assert_eq!(h.scheme(), Some(&b"http"[..]));
        assert_eq!((h.path(), h.query()), (&b"/p"[..], &b"q"[..]));
        let h = head(b"GET https://h HTTP/1.1\r\nHost:\r\n\r\n");
        assert_eq!(
            (h.host(), h.scheme()),
            (Some(&b"h"[..]), Some(&b"https"[..]))
        );
        assert_eq!(h.path(), b"/");
    }

    #[test]
    fn asterisk_form() {
        let h = head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((h.path(), h.query()), (&b"*"[..], &b""[..]));
    }

    #[test]
    fn empty_host_is_accepted() {
        // RFC 9112 §3.2: a client sends an empty Host when the target URI
        // has no authority; only a missing, repeated or invalid Host is 400.
        for raw in [
            &b"GET / HTTP/1.1\r\nHost:\r\n\r\n"[..],
            b"GET /p?q HTTP/1.1\r\nHost: \t \r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost:\r\n\r\n",
        ] {
            let h = head(raw);
            assert_eq!(
                h.host(),
                Some(&b""[..]),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(h.header(b"host"), Some(&b""[..]));
        }
        // Every other Host rule holds.
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost:\r\nHost:\r\n\r\n"),
            Err(E::MultipleHost)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost:\r\nHost: a\r\n\r\n"),
            Err(E::MultipleHost)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(E::MissingHost));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Err(E::InvalidHost)
        );
    }

    #[test]
    fn singleton_fields_repeated() {
        // Content-Type: identical copies are one value; Host: never twice,
        // even identical (RFC 9112 §3.2).
        let h = head(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b; q=1\r\n\
              content-type:  a/b; q=1 \r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(h.content_type(), Some(&b"a/b; q=1"[..]));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            Err(E::MultipleHost)
        );
        // Content-Length: identical copies are one value, differing ones 400.
        let h =
            head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(
            (h.body(), h.content_length_raw()),
            (BodyKind::Length(3), Some(&b"3"[..]))
        );
        // List fields: repeated lines are one list.
        let h = head(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n\
              Connection: keep-alive\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.expects_continue());
        assert!(!h.keep_alive());
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: x\r\n\r\n"),
            Err(E::ExpectationFailed)
        );
        assert_eq!(
            parse(
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                    Transfer-Encoding: chunked\r\n\r\n"
            ),
            Err(E::BadTransferEncoding)
        );
    }

    #[test]
    fn content_type_conflict_is_judged_after_host_and_before_expect() {
        let ct = b"Content-Type: a/b\r\nContent-Type: c/d\r\n";
        let with = |fields: &[u8]| [&b"POST / HTTP/1.1\r\n"[..], fields, ct, b"\r\n"].concat();
        assert_eq!(parse(&with(b"")), Err(E::MissingHost));
        assert_eq!(
            parse(&with(b"Host: a\r\nExpect: x\r\n")),
            Err(E::ConflictingContentType)
        );
        assert_eq!(
            parse(&with(
                b"Host: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n"
            )),
            Err(E::ConflictingContentLength)
        );
        assert_eq!(E::ConflictingContentType.status(), 400);
    }

    #[test]
    fn http10_without_host() {
        let h = head(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!((h.version(), h.host()), (Version::Http10, None));
        assert_eq!(h.version().as_str(), "HTTP/1.0");
    }

    #[test]
    fn content_type_and_obs_text() {
        let h = head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain; charset=x\r\nX: \x80\xff\r\n\r\n");
        assert_eq!(h.content_type(), Some(&b"text/plain; charset=x"[..]));
        assert_eq!(h.header(b"x"), Some(&b"\x80\xff"[..]));
    }

    fn limits() -> Limits {
        Limits {
            max_request_line: 32,
            max_header_count: 4,
            max_header_field_size: 16,
            max_head_size: 64,
            ..Limits::default()
        }
    }

    #[test]
    fn limits_on_complete_and_partial_input() {
        let l = limits();
        let long_line = [&b"GET /"[..], &[b'a'; 28], b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
        assert_eq!(parse_head(&long_line, &l), Err(E::UriTooLong));
        assert_eq!(parse_head(&[b'A'; 40], &l), Err(E::UriTooLong));
        let ok_line = [&b"GET /"[..], &[b'a'; 18], b" HTTP/1.1\r"].concat();
        assert_eq!(ok_line.len(), 33);
        assert_eq!(parse_head(&ok_line, &l), Ok(Parsed::Partial));
        let field = b"GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abcd\r\n\r\n";
        assert_eq!(parse_head(field, &l), Err(E::HeaderFieldTooLarge));
        assert_eq!(parse_head(&field[..42], &l), Err(E::HeaderFieldTooLarge));
        let field_ok = b"GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abc\r\n\r\n";
        assert!(matches!(
            parse_head(field_ok, &l),
            Ok(Parsed::Complete { .. })
        ));
        let big =
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 0123456789\r\nB: 0123456789\r\nC: 0123456789\r\n\r\n";
        assert_eq!(parse_head(big, &l), Err(E::HeadTooLarge));
        assert_eq!(parse_head(&big[..big.len() - 2], &l), Err(E::HeadTooLarge));
        let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n";
        assert_eq!(parse_head(many, &l), Err(E::TooManyHeaders));
        assert_eq!(
            parse_head(&many[..many.len() - 2], &l),
            Err(E::TooManyHeaders)
        );
    }

    #[test]
    fn header_count_beyond_stack_slots() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..99 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(head(&raw).header_count(), 100);
        let more = [&raw[..raw.len() - 2], b"X-last: v\r\n\r\n"].concat();
        assert_eq!(parse(&more), Err(E::TooManyHeaders));
    }

    #[test]
    fn custom_methods_and_name_case() {
        let h = head(b"PROPFIND /d HTTP/1.1\r\nhOsT: a\r\nX-MiXed: 1\r\n\r\n");
        assert_eq!(h.method(), b"PROPFIND");
        assert_eq!(h.host(), Some(&b"a"[..]));
        assert_eq!(h.headers().nth(1), Some((&b"X-MiXed"[..], &b"1"[..])));
        // Methods are case-sensitive: "connect" is not CONNECT, and its
        // authority-form target is then invalid.
        assert_eq!(
            parse(b"connect h:1 HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(E::InvalidTarget)
        );
    }

    #[test]
    fn unsupported_version_waits_for_the_whole_line() {
        assert_eq!(parse(b"GET / HTTP/2"), Ok(Parsed::Partial));
        assert_eq!(parse(b"GET / HTTP/2.0"), Ok(Parsed::Partial));
        assert_eq!(parse(b"GET / HTTP/2.0\r\n"), Err(E::VersionNotSupported));
        assert_eq!(parse(b"GET / HTTQ"), Err(E::InvalidVersion));
    }

    #[test]
    fn typical_head_allocates_twice_at_most() {
        let raw = b"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\
                    Accept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n";
        let limits = Limits::default();
        let before = crate::alloc_count::allocations();
        let parsed = parse_head(raw, &limits);
        let used = crate::alloc_count::allocations() - before;
        assert!(matches!(parsed, Ok(Parsed::Complete { .. })));
        // The owned head copy and the header offsets; counting itself works.
        assert!((1..=2).contains(&used), "{used} allocations");
    }

    #[test]
    fn head_owns_its_bytes() {
        let mut buf = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nBODY".to_vec();
        let (h, consumed) = complete(&buf);
        buf.clear();
        assert_eq!(
            (h.path(), h.host(), consumed),
            (&b"/x"[..], Some(&b"a"[..]), 28)
        );
        assert_eq!(h.as_bytes(), b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    }
}
