//! The uwsgi protocol: uWSGI's binary request packet, as nginx
//! `uwsgi_pass` and Apache `mod_proxy_uwsgi` send it.
//!
//! A front end opens one connection per request and sends a 4-byte header,
//! the request's CGI variables, then the body:
//!
//! ```text
//! modifier1: u8 (0: a WSGI request)  datasize: u16, little-endian  modifier2: u8 (0)
//! then, filling exactly datasize bytes, for each variable:
//!   key length: u16 LE, key, value length: u16 LE, value
//! then CONTENT_LENGTH bytes of body
//! ```
//!
//! * only modifier1 0 with modifier2 0 (the WSGI request nginx and Apache
//!   send by default) is served; uWSGI's other packet kinds are rejected
//!   with a 400 that names the modifier;
//! * the body is `CONTENT_LENGTH` raw bytes ([`BodyDecoder`] with
//!   [`BodyKind::Length`](crate::BodyKind::Length), as [`body_decoder`]
//!   makes it); nginx sends an empty `CONTENT_LENGTH` for no body;
//! * the answer is an HTTP/1.1 status line, the fields, an empty line and
//!   the body, which the server ends by closing the connection.
//!
//! The packet's size is known from its first four bytes, which are checked
//! against the limits before the rest is buffered; the u16 field bounds it
//! to 65535 bytes in any case.
//!
//! ```
//! use ferrowsgi_proto::{uwsgi, BodyKind, Limits};
//!
//! let mut vars = Vec::new();
//! for (k, v) in [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/a?b=1")] {
//!     vars.extend_from_slice(&(k.len() as u16).to_le_bytes());
//!     vars.extend_from_slice(k.as_bytes());
//!     vars.extend_from_slice(&(v.len() as u16).to_le_bytes());
//!     vars.extend_from_slice(v.as_bytes());
//! }
//! let mut req = vec![0];
//! req.extend_from_slice(&(vars.len() as u16).to_le_bytes());
//! req.push(0);
//! req.extend_from_slice(&vars);
//! let (head, consumed) = uwsgi::parse_request(&req, &Limits::default()).unwrap().unwrap();
//! assert_eq!((head.path(), head.query()), (&b"/a"[..], &b"b=1"[..]));
//! assert_eq!(head.body(), BodyKind::Empty);
//! assert_eq!(consumed, req.len());
//!
//! let mut out = Vec::new();
//! uwsgi::write_head(&mut out, b"200 OK", [(&b"Content-Type"[..], &b"text/plain"[..])]);
//! assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
//! ```

use crate::gateway::{check, name_run, Collector, MAX_SERVER_VARS};
use crate::h1::head::Span;
use crate::scgi::{write_error_rest, write_head_after, write_head_rest};
use crate::{BodyDecoder, Limits, ParseError, RequestHead, ResponseHead};

/// Whether a uwsgi connection carries more than one request: it does not
/// (the answer is ended by closing the connection).
pub const KEEP_ALIVE: bool = false;

/// The length of the packet header: modifier1, datasize (2 bytes),
/// modifier2.
pub const HEADER_LEN: usize = 4;

/// The largest variables block accepted under `limits` (the packet's
/// datasize): the variables' bytes may fill [`Limits::max_head_size`],
/// plus the two 2-byte lengths of each variable the limits allow.
pub fn max_datasize(limits: &Limits) -> usize {
    let vars = limits.max_header_count.saturating_add(MAX_SERVER_VARS);
    limits
        .max_head_size
        .saturating_add(vars.saturating_mul(4))
        .min(usize::from(u16::MAX))
}

/// Decodes a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the packet is incomplete (call again with more
/// bytes), or the request and the number of bytes it took (header and
/// variables; the body follows). Fails with 400 for a modifier1 other than
/// 0 or a modifier2 other than 0 (as soon as that byte arrives), with 431
/// ([`ParseError::HeadTooLarge`]) for a datasize past [`max_datasize`]
/// (as soon as the header is in), and with 400 for variables that do not
/// fill the datasize exactly or that [`CgiVars`](crate::gateway::CgiVars)
/// rejects.
///
/// The same bytes always give the same answer, and a prefix of a request
/// gives `Ok(None)` or the error the whole request gives.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    match buf.first() {
        None => return Ok(None),
        Some(0) => {}
        Some(_) => {
            return Err(ParseError::BadRequest(
                "uwsgi packet with a modifier1 other than 0 (only WSGI requests are served)",
            ))
        }
    }
    let [_, lo, hi, modifier2, ..] = *buf else {
        return Ok(None);
    };
    let datasize = usize::from(u16::from_le_bytes([lo, hi]));
    if datasize > max_datasize(limits) {
        return Err(ParseError::HeadTooLarge);
    }
    if modifier2 != 0 {
        return Err(ParseError::BadRequest(
            "uwsgi packet with a modifier2 other than 0",
        ));
    }
    let end = HEADER_LEN + datasize;
    let Some(vars) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    let head = parse_vars(vars, limits)?;
    Ok(Some((head, end)))
}

/// The variables block: (u16 LE length, key, u16 LE length, value) each,
/// checked and sorted into the request in one pass ([`Collector`]).
fn parse_vars(block: &[u8], limits: &Limits) -> Result<RequestHead, ParseError> {
    // Room for about one variable per 20 bytes (a front end's are 22 on
    // average with their four length bytes); counting them first cost more
    // than the list's rare growth.
    let mut vars = Collector::new(block.len() / 20 + 4);
    let (mut count, mut size) = (0, 0);
    let mut at = 0;
    while at < block.len() {
        let key = take_string(block, at).ok_or(ParseError::BadRequest(
            "uwsgi variable key runs past the packet's datasize",
        ))?;
        let value = take_string(block, key.end).ok_or(ParseError::BadRequest(
            "uwsgi variable value runs past the packet's datasize",
        ))?;
        at = value.end;
        let (Some(name), Some(val)) = (block.get(key.clone()), block.get(value.clone())) else {
            return Err(ParseError::InvalidHeaderName);
        };
        // A name made of upper-case letters, digits and '_' is a token
        // (found eight bytes at a time); any other is checked byte by byte.
        let name_token = !name.is_empty() && name_run(block, key.start) >= key.end;
        size = check(count, size, name, val, name_token, false, limits)?;
        count += 1;
        vars.add(
            block,
            // The block is at most 65535 bytes.
            Span::within(key.start, key.end),
            Span::within(value.start, value.end),
        );
    }
    let mut head = vars.finish(block.to_vec(), limits)?;
    head.set_keep_alive(KEEP_ALIVE);
    Ok(head)
}

/// Where the u16-LE-length-prefixed string at offset `at` of `block` lies,
/// or `None` when its length or its bytes run past the block.
fn take_string(block: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    let [lo, hi] = *block.get(at..at.checked_add(2)?)? else {
        return None;
    };
    let start = at + 2;
    let end = start + usize::from(u16::from_le_bytes([lo, hi]));
    (end <= block.len()).then_some(start..end)
}

/// The decoder for the body of `head`: `CONTENT_LENGTH` raw bytes.
pub fn body_decoder(head: &RequestHead, limits: &Limits) -> BodyDecoder {
    BodyDecoder::new(head.body(), limits)
}

/// Appends an HTTP/1.1 response head: `HTTP/1.1 ` + `status_line` (such
/// as `b"200 OK"`), one `name: value` line per field, and the empty line.
/// The caller has validated the status and the fields (tokens; no CR, LF,
/// NUL).
pub fn write_head<'a>(
    out: &mut Vec<u8>,
    status_line: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    write_head_after(out, b"HTTP/1.1 ", status_line, fields);
}

/// Appends the head of `head` with an HTTP/1.1 status line, as
/// [`write_head`] does, from its field lines as they are; with
/// `content_length`, the length of a body known whole, a `Content-Length`
/// field is added (a status that has no body gets none).
pub fn write_response_head(out: &mut Vec<u8>, head: &ResponseHead, content_length: Option<u64>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_head_rest(out, head, content_length);
}

// A body goes out raw, as over SCGI: its end is the connection's close.
pub use crate::scgi::{block_prefix, write_block, write_end};

/// Appends a complete error answer for a request rejected before any
/// response was sent: the status line, a plain-text `Content-Type`, the
/// `Content-Length` and `message` plus a newline as the body. CR, LF and
/// other control bytes in `reason` and `message` become spaces, so the
/// answer can never be split.
pub fn write_error(out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_error_rest(out, status, reason, message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BodyKind;

    fn vars_block(vars: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in vars {
            out.extend_from_slice(&(k.len() as u16).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    fn packet(modifier1: u8, block: &[u8], modifier2: u8) -> Vec<u8> {
        let mut out = vec![modifier1];
        out.extend_from_slice(&(block.len() as u16).to_le_bytes());
        out.push(modifier2);
        out.extend_from_slice(block);
        out
    }

    /// What nginx's uwsgi_params send for a POST.
    fn nginx_vars(cl: &'static [u8]) -> Vec<(&'static [u8], &'static [u8])> {
        vec![
            (b"QUERY_STRING", b"a=%20b"),
            (b"REQUEST_METHOD", b"POST"),
            (b"CONTENT_TYPE", b"text/plain"),
            (b"CONTENT_LENGTH", cl),
            (b"REQUEST_URI", b"/app/x%2Fy?a=%20b"),
            (b"PATH_INFO", b"/app/x/y"),
            (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
            (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"REQUEST_SCHEME", b"http"),
            (b"REMOTE_ADDR", b"127.0.0.1"),
            (b"REMOTE_PORT", b"40404"),
            (b"SERVER_PORT", b"8080"),
            (b"SERVER_NAME", b"localhost"),
            (b"HTTP_HOST", b"localhost:8080"),
            (b"HTTP_USER_AGENT", b"curl/8"),
        ]
    }

    fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
        parse_request(buf, &Limits::default())
    }

    #[test]
    fn an_nginx_request_parses() {
        let mut req = packet(0, &vars_block(&nginx_vars(b"5")), 0);
        let head_len = req.len();
        req.extend_from_slice(b"hello");
        let (head, consumed) = parse(&req).unwrap().unwrap();
        assert_eq!(consumed, head_len);
        assert_eq!(head.method(), b"POST");
        assert_eq!(head.target(), b"/app/x%2Fy?a=%20b");
        assert_eq!(head.query(), b"a=%20b");
        assert_eq!(head.host(), Some(&b"localhost:8080"[..]));
        assert_eq!(head.content_type(), Some(&b"text/plain"[..]));
        assert_eq!(head.header(b"user-agent"), Some(&b"curl/8"[..]));
        assert_eq!(head.var(b"PATH_INFO"), Some(&b"/app/x/y"[..]));
        assert_eq!(head.var(b"REMOTE_PORT"), Some(&b"40404"[..]));
        assert_eq!(head.body(), BodyKind::Length(5));
        assert!(!head.keep_alive());
        let mut body = Vec::new();
        let mut dec = body_decoder(&head, &Limits::default());
        assert_eq!(dec.remaining_hint(), Some(5));
        dec.decode(&req[consumed..], &mut body, usize::MAX).unwrap();
        assert!(dec.is_done());
        assert_eq!(body, b"hello");
    }

    #[test]
    fn an_empty_content_length_is_no_body() {
        let req = packet(0, &vars_block(&nginx_vars(b"")), 0);
        let (head, _) = parse(&req).unwrap().unwrap();
        assert_eq!(head.body(), BodyKind::Empty);
        assert!(body_decoder(&head, &Limits::default()).is_done());
    }

    #[test]
    fn every_split_is_incomplete_until_the_last_variable() {
        let mut req = packet(0, &vars_block(&nginx_vars(b"2")), 0);
        let whole = req.len();
        req.extend_from_slice(b"ok");
        for k in 0..whole {
            assert_eq!(parse(&req[..k]), Ok(None), "split at {k}");
        }
        for k in whole..=req.len() {
            assert_eq!(parse(&req[..k]).unwrap().unwrap().1, whole);
        }
    }

    #[test]
    fn other_modifiers_are_rejected_at_once() {
        let block = vars_block(&nginx_vars(b""));
        for m1 in [1u8, 5, 17, 100, 255] {
            let req = packet(m1, &block, 0);
            // The first byte is enough to know.
            for k in 1..=req.len() {
                assert!(matches!(
                    parse(&req[..k]),
                    Err(ParseError::BadRequest(m)) if m.contains("modifier1")
                ));
            }
        }
        let req = packet(0, &block, 1);
        for k in 4..=req.len() {
            assert!(matches!(
                parse(&req[..k]),
                Err(ParseError::BadRequest(m)) if m.contains("modifier2")
            ));
        }
        assert_eq!(parse(&req[..3]), Ok(None));
    }

    #[test]
    fn variables_must_fill_the_datasize_exactly() {
        let block = vars_block(&nginx_vars(b""));
        let short = |cut: usize| {
            let mut req = packet(0, &block[..block.len() - cut], 0);
            req.extend_from_slice(&block[block.len() - cut..]);
            parse(&req)
        };
        // Cut inside the last value, inside its length, inside the key.
        for cut in [1, 6, 7, 8, 10] {
            assert!(
                matches!(short(cut), Err(ParseError::BadRequest(m)) if m.contains("datasize")),
                "cut {cut}: {:?}",
                short(cut)
            );
        }
        // A lone byte after the last variable.
        let mut longer = block.clone();
        longer.push(0);
        assert!(matches!(
            parse(&packet(0, &longer, 0)),
            Err(ParseError::BadRequest(m)) if m.contains("datasize")
        ));
        // No variables at all.
        assert_eq!(parse(&packet(0, b"", 0)), Err(ParseError::InvalidMethod));
    }

    #[test]
    fn cgi_rules_apply() {
        let with = |extra: (&'static [u8], &'static [u8])| {
            let mut v = nginx_vars(b"");
            v.push(extra);
            parse(&packet(0, &vars_block(&v), 0))
        };
        assert_eq!(with((b"", b"x")), Err(ParseError::InvalidHeaderName));
        assert_eq!(
            with((b"HTTP_X", b"a\nb")),
            Err(ParseError::InvalidHeaderValue)
        );
        assert!(matches!(
            with((b"REMOTE_ADDR", b"10.0.0.1")),
            Err(ParseError::BadRequest(m)) if m.contains("repeated")
        ));
        assert_eq!(
            with((b"CONTENT_LENGTH", b"x")),
            Err(ParseError::BadRequest("a server variable repeated"))
        );
        let mut v = nginx_vars(b"1.5");
        assert_eq!(
            parse(&packet(0, &vars_block(&v), 0)),
            Err(ParseError::BadContentLength)
        );
        v.retain(|(k, _)| *k != b"REQUEST_METHOD");
        assert_eq!(
            parse(&packet(0, &vars_block(&v), 0)),
            Err(ParseError::InvalidMethod)
        );
    }

    #[test]
    fn the_datasize_is_bounded_before_the_variables_are_buffered() {
        let limits = Limits {
            max_head_size: 200,
            max_header_count: 4,
            ..Limits::default()
        };
        let max = max_datasize(&limits);
        assert_eq!(max, 200 + 4 * (4 + MAX_SERVER_VARS));
        let header = |n: usize| {
            let mut h = vec![0];
            h.extend_from_slice(&(n as u16).to_le_bytes());
            h.push(0);
            h
        };
        assert_eq!(parse_request(&header(max), &limits), Ok(None));
        assert_eq!(
            parse_request(&header(max + 1), &limits),
            Err(ParseError::HeadTooLarge)
        );
        // The default limits take the largest packet the u16 allows.
        assert_eq!(max_datasize(&Limits::default()), 65535);
        assert_eq!(parse(&header(65535)), Ok(None));
        // Within the datasize, the variables' own limits apply.
        let mut v = nginx_vars(b"");
        v.push((b"HTTP_X", &[b'a'; 250][..]));
        let req = packet(0, &vars_block(&v), 0);
        assert_eq!(parse_request(&req, &limits), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn a_response_head_gets_a_status_line() {
        let mut head = ResponseHead::new(404, b"404 Not Found");
        head.push_header(b"X-A", b"1");
        let mut out = Vec::new();
        write_response_head(&mut out, &head, None);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\n\r\n");
        out.clear();
        write_response_head(&mut out, &ResponseHead::new(200, b"200 OK"), Some(13));
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n");
    }

    #[test]
    fn responses_are_http_status_lines() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            b"201 Created",
            [(&b"Location"[..], &b"/x"[..]), (b"X-A", b"")],
        );
        assert!(block_prefix(9).is_empty());
        write_block(&mut out, b"made");
        write_end(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 201 Created\r\nLocation: /x\r\nX-A: \r\n\r\nmade"
        );
        out.clear();
        write_error(&mut out, 400, "Bad Request", "uwsgi\0packet");
        assert_eq!(
            out,
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 13\r\n\r\nuwsgi packet\n"
        );
    }
}
