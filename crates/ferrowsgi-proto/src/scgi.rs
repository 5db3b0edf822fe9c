//! SCGI (Neil Schemenauer's Simple Common Gateway Interface protocol).
//!
//! A front end (nginx `scgi_pass`, Apache `mod_proxy_scgi`) opens one
//! connection per request and sends the request's CGI variables as one
//! netstring, then the body:
//!
//! ```text
//! 59:CONTENT_LENGTH\05\0SCGI\01\0REQUEST_METHOD\0POST\0REQUEST_URI\0/x\0,hello
//! ```
//!
//! * the netstring is `length ":" bytes ","`, the length in decimal without
//!   leading zeros (`0` itself aside);
//! * its bytes are `name NUL value NUL` pairs; the first name is
//!   `CONTENT_LENGTH` (present even when it is `0`), and `SCGI` must be `1`;
//! * the body is `CONTENT_LENGTH` raw bytes ([`BodyDecoder`] with
//!   [`BodyKind::Length`](crate::BodyKind::Length), as [`body_decoder`]
//!   makes it);
//! * the answer is CGI-style: `Status: 200 OK`, the fields, an empty line,
//!   the body; the server then closes the connection, which is what ends
//!   the body for the front end.
//!
//! The length prefix is checked against the limits digit by digit, before
//! any of the netstring is buffered, so a front end cannot make the server
//! hold more than [`max_netstring_len`] bytes for a head.
//!
//! ```
//! use ferrowsgi_proto::{scgi, BodyKind, Limits};
//!
//! let req = b"59:CONTENT_LENGTH\x005\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00REQUEST_URI\x00/x\x00,hello";
//! let (head, consumed) = scgi::parse_request(req, &Limits::default()).unwrap().unwrap();
//! assert_eq!(head.method(), b"POST");
//! assert_eq!(head.body(), BodyKind::Length(5));
//! assert_eq!(&req[consumed..], b"hello");
//!
//! let mut out = Vec::new();
//! scgi::write_head(&mut out, b"200 OK", [(&b"Content-Type"[..], &b"text/plain"[..])]);
//! assert_eq!(out, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n");
//! ```

use crate::gateway::{check, name_run, Collector, MAX_SERVER_VARS};
use crate::h1::head::Span;
use crate::h1::syntax::{is_field_value_byte, is_tchar};
use crate::{has_body, push_decimal, BodyDecoder, Limits, ParseError, RequestHead, ResponseHead};

/// Whether an SCGI connection carries more than one request: it does not
/// (the answer is ended by closing the connection).
pub const KEEP_ALIVE: bool = false;

/// The longest netstring accepted under `limits`: the variables' bytes may
/// fill [`Limits::max_head_size`], plus the two NULs of each variable the
/// limits allow.
pub fn max_netstring_len(limits: &Limits) -> usize {
    let vars = limits.max_header_count.saturating_add(MAX_SERVER_VARS);
    limits.max_head_size.saturating_add(vars.saturating_mul(2))
}

/// Decodes a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the netstring is incomplete (call again with
/// more bytes), or the request and the number of bytes it took (the
/// netstring with its comma; the body follows). Fails with 431
/// ([`ParseError::HeadTooLarge`]) as soon as the length prefix passes
/// [`max_netstring_len`], and with 400 for a malformed netstring, a
/// first variable other than `CONTENT_LENGTH`, a `CONTENT_LENGTH` that is
/// not 1*DIGIT, an `SCGI` variable missing or not `1`, or anything
/// [`CgiVars`](crate::gateway::CgiVars) rejects.
///
/// The same bytes always give the same answer, and a prefix of a request
/// gives `Ok(None)` or the error the whole request gives.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    let max = max_netstring_len(limits);
    let mut len: usize = 0;
    let mut colon = None;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                if i == 1 && buf[0] == b'0' {
                    return Err(ParseError::BadRequest(
                        "SCGI netstring length with a leading zero",
                    ));
                }
                len = len
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(usize::from(b - b'0')))
                    .filter(|&n| n <= max)
                    .ok_or(ParseError::HeadTooLarge)?;
            }
            b':' if i > 0 => {
                colon = Some(i);
                break;
            }
            _ => {
                return Err(ParseError::BadRequest(
                    "SCGI request does not start with a netstring length",
                ))
            }
        }
    }
    let Some(colon) = colon else {
        return Ok(None);
    };
    let start = colon + 1;
    // `len <= max`, so these cannot overflow for any buffer that exists.
    let end = start + len;
    if buf.len() <= end {
        return Ok(None);
    }
    if buf[end] != b',' {
        return Err(ParseError::BadRequest(
            "SCGI netstring not ended by a comma",
        ));
    }
    let head = parse_vars(&buf[start..end], limits)?;
    Ok(Some((head, end + 1)))
}

/// The netstring's contents: `name NUL value NUL` pairs, checked and
/// sorted into the request in one pass ([`Collector`]).
fn parse_vars(block: &[u8], limits: &Limits) -> Result<RequestHead, ParseError> {
    // Values end at a NUL; one search of the whole block for CR and LF
    // then clears every value at once (a block that has one is checked
    // value by value, so the error is the one that value gives).
    let values_clean = memchr::memchr2(b'\r', b'\n', block).is_none();
    // Offsets into the block are made spans unchecked below.
    if u32::try_from(block.len()).is_err() {
        return Err(ParseError::HeadTooLarge);
    }
    // Room for about one variable per 16 bytes (a front end's are 18 on
    // average); counting the NULs first cost more than the list's rare
    // growth.
    let mut vars = Collector::new(block.len() / 16 + 4);
    let (mut count, mut size) = (0, 0);
    let mut at = 0;
    let mut scgi_seen = false;
    while at < block.len() {
        // The name's bytes are checked as tchar while its end is looked
        // for; a byte that is neither ends the fast way, and the name is
        // then checked as a whole, after the limits, as before.
        let mut end = name_run(block, at);
        while block.get(end).is_some_and(|&b| is_tchar(b)) {
            end += 1;
        }
        let (name_end, name_token) = if block.get(end) == Some(&0) {
            (end, end > at)
        } else {
            let e = next_nul(block, end).ok_or(ParseError::BadRequest(
                "SCGI variable name not ended by NUL",
            ))?;
            (e, false)
        };
        let value_end = next_nul(block, name_end + 1).ok_or(ParseError::BadRequest(
            "SCGI variable value not ended by NUL",
        ))?;
        let (Some(name), Some(value)) =
            (block.get(at..name_end), block.get(name_end + 1..value_end))
        else {
            return Err(ParseError::InvalidHeaderName);
        };
        if count == 0 {
            if name != b"CONTENT_LENGTH" {
                return Err(ParseError::BadRequest(
                    "SCGI request does not start with CONTENT_LENGTH",
                ));
            }
            // The spec requires the variable even for no body ("0"); an
            // empty value would leave the body's end undefined.
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::BadContentLength);
            }
        } else if name == b"SCGI" {
            if value != b"1" {
                return Err(ParseError::BadRequest("SCGI variable is not 1"));
            }
            scgi_seen = true;
        }
        size = check(count, size, name, value, name_token, values_clean, limits)?;
        count += 1;
        vars.add(
            block,
            Span::within(at, name_end),
            Span::within(name_end + 1, value_end),
        );
        at = value_end + 1;
    }
    if count == 0 {
        return Err(ParseError::BadRequest(
            "SCGI request does not start with CONTENT_LENGTH",
        ));
    }
    if !scgi_seen {
        return Err(ParseError::BadRequest("SCGI request without SCGI=1"));
    }
    let mut head = vars.finish(block.to_vec(), limits)?;
    head.set_keep_alive(KEEP_ALIVE);
    Ok(head)
}

/// The offset of the first NUL of `block` at or after `from`.
fn next_nul(block: &[u8], from: usize) -> Option<usize> {
    let s = block.get(from..)?;
    // Most names and values are shorter than this: a loop over their few
    // bytes costs less than a memchr call's setup (a vectorised iterator
    // over the whole block costs a call per NUL, more than the loop).
    let short = s.len().min(16);
    let i = match s[..short].iter().position(|&b| b == 0) {
        Some(i) => i,
        None => short + memchr::memchr(0, &s[short..])?,
    };
    Some(from + i)
}

/// The decoder for the body of `head`: `CONTENT_LENGTH` raw bytes.
pub fn body_decoder(head: &RequestHead, limits: &Limits) -> BodyDecoder {
    BodyDecoder::new(head.body(), limits)
}

/// Appends a CGI-style response head: `Status: ` + `status_line` (such as
/// `b"200 OK"`), one `name: value` line per field, and the empty line. The
/// caller has validated the status and the fields (tokens; no CR, LF, NUL).
pub fn write_head<'a>(
    out: &mut Vec<u8>,
    status_line: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    write_head_after(out, b"Status: ", status_line, fields);
}

/// A response head whose first line is `opening` + `status_line` (`Status: `
/// for SCGI, `HTTP/1.1 ` for uwsgi), then the fields and the empty line.
pub(crate) fn write_head_after<'a>(
    out: &mut Vec<u8>,
    opening: &[u8],
    status_line: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    out.extend_from_slice(opening);
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"\r\n");
    write_fields(out, fields);
}

/// Appends the head of `head` CGI-style, as [`write_head`] does, from its
/// field lines as they are; with `content_length`, the length of a body
/// known whole, a `Content-Length` field is added (a status that has no
/// body gets none), so the front end can tell a complete answer from one
/// cut short.
pub fn write_response_head(out: &mut Vec<u8>, head: &ResponseHead, content_length: Option<u64>) {
    out.extend_from_slice(b"Status: ");
    write_head_rest(out, head, content_length);
}

/// A response head after its first line's opening (`Status: ` or
/// `HTTP/1.1 `).
pub(crate) fn write_head_rest(out: &mut Vec<u8>, head: &ResponseHead, content_length: Option<u64>) {
    let fields = head.field_lines();
    out.reserve(head.status_line().len() + fields.len() + 40);
    out.extend_from_slice(head.status_line());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(fields);
    if let Some(n) = content_length.filter(|_| has_body(head.status)) {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value` lines and the empty line that ends a head.
pub(crate) fn write_fields<'a>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    for (name, value) in fields {
        out.reserve(name.len() + value.len() + 4);
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The framing around a body block of `len` bytes: none, the body goes out
/// raw (its end is the connection's close). The server writes the block
/// itself, from the application's buffer.
pub fn block_prefix(_len: usize) -> &'static [u8] {
    b""
}

/// Appends one body block: the bytes themselves.
pub fn write_block(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
}

/// Appends what ends a response: nothing, since closing the connection
/// ends it.
pub fn write_end(_out: &mut Vec<u8>) {}

/// Appends a complete error answer for a request rejected before any
/// response was sent: `Status`, a plain-text `Content-Type`, the
/// `Content-Length` and `message` plus a newline as the body. CR, LF and
/// other control bytes in `reason` and `message` become spaces, so the
/// answer can never be split.
pub fn write_error(out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
    out.extend_from_slice(b"Status: ");
    write_error_rest(out, status, reason, message);
}

/// An error answer after its first line's opening (`Status: ` or
/// `HTTP/1.1 `): the status, the reason, the fields and the body.
pub(crate) fn write_error_rest(out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
    push_decimal(out, u64::from(status.clamp(100, 999)));
    out.push(b' ');
    push_clean(out, reason.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    push_decimal(out, message.len() as u64 + 1);
    out.extend_from_slice(b"\r\n\r\n");
    push_clean(out, message.as_bytes());
    out.push(b'\n');
}

/// Appends `s` with every byte a field value cannot hold made a space.
fn push_clean(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(
        s.iter()
            .map(|&b| if is_field_value_byte(b) { b } else { b' ' }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BodyKind;

    /// A netstring of `vars`.
    fn encode(vars: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut s = Vec::new();
        for (n, v) in vars {
            s.extend_from_slice(n);
            s.push(0);
            s.extend_from_slice(v);
            s.push(0);
        }
        let mut out = s.len().to_string().into_bytes();
        out.push(b':');
        out.extend_from_slice(&s);
        out.push(b',');
        out
    }

    /// Variables by name, owned values.
    type Vars = Vec<(&'static [u8], Vec<u8>)>;

    fn basic(cl: &[u8]) -> Vars {
        vec![
            (b"CONTENT_LENGTH", cl.to_vec()),
            (b"SCGI", b"1".to_vec()),
            (b"REQUEST_METHOD", b"POST".to_vec()),
            (b"REQUEST_URI", b"/deepthought?q=42".to_vec()),
            (b"HTTP_HOST", b"example.com".to_vec()),
            (b"REMOTE_ADDR", b"192.0.2.9".to_vec()),
        ]
    }

    fn enc(vars: &Vars) -> Vec<u8> {
        let v: Vec<(&[u8], &[u8])> = vars.iter().map(|(n, v)| (*n, &v[..])).collect();
        encode(&v)
    }

    fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
        parse_request(buf, &Limits::default())
    }

    #[test]
    fn the_spec_example_parses() {
        // The example request of the SCGI specification.
        let mut req = b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00REQUEST_URI\x00/deepthought\x00,".to_vec();
        req.extend_from_slice(b"What is the answer to life?");
        let (head, consumed) = parse(&req).unwrap().unwrap();
        assert_eq!(consumed, 74);
        assert_eq!(head.method(), b"POST");
        assert_eq!(head.path(), b"/deepthought");
        assert_eq!(head.body(), BodyKind::Length(27));
        assert_eq!(head.content_length_raw(), Some(&b"27"[..]));
        assert_eq!(head.var(b"SCGI"), Some(&b"1"[..]));
        assert!(!head.keep_alive());
        assert!(head.is_gateway());
        let mut body = Vec::new();
        let mut dec = body_decoder(&head, &Limits::default());
        let n = dec.decode(&req[consumed..], &mut body, usize::MAX).unwrap();
        assert_eq!(n, 27);
        assert!(dec.is_done());
        assert_eq!(body, b"What is the answer to life?");
    }

    #[test]
    fn variables_become_the_request() {
        let req = enc(&basic(b"0"));
        let (head, consumed) = parse(&req).unwrap().unwrap();
        assert_eq!(consumed, req.len());
        assert_eq!(head.query(), b"q=42");
        assert_eq!(head.host(), Some(&b"example.com"[..]));
        assert_eq!(head.var(b"REMOTE_ADDR"), Some(&b"192.0.2.9"[..]));
        assert_eq!(head.body(), BodyKind::Length(0));
        assert!(body_decoder(&head, &Limits::default()).is_done());
    }

    #[test]
    fn every_split_is_incomplete_until_the_comma() {
        let mut req = enc(&basic(b"3"));
        req.extend_from_slice(b"abc");
        let whole = req.len() - 3;
        for k in 0..whole {
            assert_eq!(parse(&req[..k]), Ok(None), "split at {k}");
        }
        for k in whole..=req.len() {
            let (_, consumed) = parse(&req[..k]).unwrap().unwrap();
            assert_eq!(consumed, whole);
        }
    }

    #[test]
    fn malformed_netstrings_are_rejected() {
        let bad = |buf: &[u8]| match parse(buf) {
            Err(ParseError::BadRequest(m)) => m,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        };
        assert!(bad(b":").contains("length"));
        assert!(bad(b"x").contains("length"));
        assert!(bad(b"1x").contains("length"));
        assert!(bad(b" 1:").contains("length"));
        assert!(bad(b"-1:").contains("length"));
        assert!(bad(b"01:").contains("leading zero"));
        assert!(bad(b"00").contains("leading zero"));
        assert!(bad(b"0:,").contains("CONTENT_LENGTH"));
        // The comma is checked as soon as it is due.
        assert!(bad(b"1:a;").contains("comma"));
        let mut req = enc(&basic(b"0"));
        let last = req.len() - 1;
        req[last] = b';';
        assert!(bad(&req).contains("comma"));
        // Pairs: a name without its NUL, a value without its NUL.
        assert!(bad(b"14:CONTENT_LENGTH,").contains("name"));
        assert!(bad(b"16:CONTENT_LENGTH\x000,").contains("value"));
    }

    #[test]
    fn the_scgi_rules_are_kept() {
        let with = |f: &dyn Fn(&mut Vars)| {
            let mut v = basic(b"0");
            f(&mut v);
            parse(&enc(&v))
        };
        // CONTENT_LENGTH first, and 1*DIGIT.
        assert!(matches!(
            with(&|v| v.swap(0, 1)),
            Err(ParseError::BadRequest(m)) if m.contains("CONTENT_LENGTH")
        ));
        assert!(matches!(
            with(&|v| {
                v.remove(0);
            }),
            Err(ParseError::BadRequest(m)) if m.contains("CONTENT_LENGTH")
        ));
        for cl in [
            &b""[..],
            b"-1",
            b"1x",
            b" 1",
            b"+1",
            b"99999999999999999999",
        ] {
            assert_eq!(
                with(&|v| v[0].1 = cl.to_vec()),
                Err(ParseError::BadContentLength),
                "{cl:?}"
            );
        }
        // SCGI=1 present.
        assert!(matches!(
            with(&|v| {
                v.remove(1);
            }),
            Err(ParseError::BadRequest(m)) if m.contains("SCGI=1")
        ));
        for s in [&b"0"[..], b"2", b"", b"1.0"] {
            assert!(matches!(
                with(&|v| v[1].1 = s.to_vec()),
                Err(ParseError::BadRequest(m)) if m.contains("not 1")
            ));
        }
        // What CgiVars checks: a method, a target, no differing repeats,
        // no control bytes.
        assert_eq!(
            with(&|v| {
                v.remove(2);
            }),
            Err(ParseError::InvalidMethod)
        );
        assert_eq!(
            with(&|v| {
                v.remove(3);
            }),
            Err(ParseError::InvalidTarget)
        );
        assert!(matches!(
            with(&|v| v.push((b"REMOTE_ADDR", b"203.0.113.1".to_vec()))),
            Err(ParseError::BadRequest(m)) if m.contains("repeated")
        ));
        assert_eq!(
            with(&|v| v.push((b"HTTP_X", b"a\rb".to_vec()))),
            Err(ParseError::InvalidHeaderValue)
        );
        assert_eq!(
            with(&|v| v.push((b"", b"x".to_vec()))),
            Err(ParseError::InvalidHeaderName)
        );
    }

    #[test]
    fn the_length_prefix_is_bounded_before_anything_is_buffered() {
        let limits = Limits {
            max_head_size: 100,
            max_header_count: 2,
            ..Limits::default()
        };
        let max = max_netstring_len(&limits);
        assert_eq!(max, 100 + 2 * (2 + MAX_SERVER_VARS));
        let ok = format!("{max}:");
        assert_eq!(parse_request(ok.as_bytes(), &limits), Ok(None));
        let over = format!("{}:", max + 1);
        assert_eq!(
            parse_request(over.as_bytes(), &limits),
            Err(ParseError::HeadTooLarge)
        );
        // Rejected at the digit that passes the limit, colon or not.
        assert_eq!(
            parse_request(b"9999", &limits),
            Err(ParseError::HeadTooLarge)
        );
        assert_eq!(
            parse(b"99999999999999999999999999"),
            Err(ParseError::HeadTooLarge)
        );
        // Within the netstring's bound, the variables' own limits apply.
        let mut v = basic(b"0");
        v.push((b"HTTP_X", vec![b'a'; 100]));
        let req = enc(&v);
        assert!(req.len() < max);
        assert_eq!(parse_request(&req, &limits), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn a_head_costs_a_fixed_number_of_allocations() {
        // What nginx's scgi_params send, with a few headers.
        let mut v = basic(b"5");
        for (n, val) in [
            (&b"QUERY_STRING"[..], &b"q=42"[..]),
            (b"CONTENT_TYPE", b"text/plain"),
            (b"DOCUMENT_URI", b"/deepthought"),
            (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
            (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"REQUEST_SCHEME", b"http"),
            (b"REMOTE_PORT", b"40000"),
            (b"SERVER_PORT", b"80"),
            (b"SERVER_NAME", b"example.com"),
            (b"HTTP_USER_AGENT", b"curl/8"),
            (b"HTTP_ACCEPT", b"*/*"),
            (b"HTTP_CONTENT_TYPE", b"text/plain"),
            (b"HTTP_CONTENT_LENGTH", b"5"),
        ] {
            v.push((n, val.to_vec()));
        }
        let req = enc(&v);
        let before = crate::alloc_count::allocations();
        let parsed = parse(&req);
        let used = crate::alloc_count::allocations() - before;
        assert!(matches!(parsed, Ok(Some(_))));
        // The variables' bytes, and one list for the header fields and the
        // server variables together, made at its final size.
        assert_eq!(used, 2);
    }

    #[test]
    fn a_response_head_is_written_cgi_style() {
        let mut head = ResponseHead::new(200, b"200 OK");
        head.push_header(b"Content-Type", b"text/plain");
        head.push_header(b"Connection", b"close");
        let mut out = Vec::new();
        write_response_head(&mut out, &head, Some(5));
        assert_eq!(
            out,
            b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
        );
        out.clear();
        write_response_head(
            &mut out,
            &ResponseHead::new(304, b"304 Not Modified"),
            Some(0),
        );
        assert_eq!(out, b"Status: 304 Not Modified\r\n\r\n");
    }

    #[test]
    fn responses_are_cgi_style() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            b"404 Not Found",
            [
                (&b"Content-Type"[..], &b"text/html"[..]),
                (b"Set-Cookie", b"a=b"),
            ],
        );
        write_block(&mut out, b"<p>");
        assert!(block_prefix(3).is_empty());
        write_end(&mut out);
        assert_eq!(
            out,
            b"Status: 404 Not Found\r\nContent-Type: text/html\r\nSet-Cookie: a=b\r\n\r\n<p>"
        );
        out.clear();
        write_error(&mut out, 431, "Too\r\nLarge", "head\ntoo large");
        assert_eq!(
            out,
            b"Status: 431 Too  Large\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 15\r\n\r\nhead too large\n"
        );
    }
}
