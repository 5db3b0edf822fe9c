//! Response side: validating what the application hands us (status line and
//! header fields) and framing what goes out (chunks, lengths, Date, canned
//! error responses).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::syntax;

/// The last chunk and the empty trailer section that end a chunked body
/// (RFC 9112 §7.1).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Whether `b` is a non-empty token (RFC 9110 §5.6.2: `1*tchar`), as a header
/// name must be.
pub fn is_token(b: &[u8]) -> bool {
    syntax::is_token(b)
}

/// Whether `b` may be sent as a field value (RFC 9110 §5.5): no CR, LF, NUL or
/// other control character except HTAB; obs-text (0x80–0xFF) is allowed. This
/// is the check that stops header injection.
pub fn is_valid_field_value(b: &[u8]) -> bool {
    // Without a short cut the loop is vectorised: a field value is checked
    // 16 or 32 bytes at a time, where stopping at the first bad byte would
    // take one at a time (a bad byte is rare, and rejected either way).
    b.iter()
        .fold(true, |ok, &c| ok & syntax::is_field_value_byte(c))
}

/// Whether `name` equals `lower` but for ASCII case, where `lower` has no
/// upper-case letter (a field name as the server spells it to compare:
/// `b"content-length"`). The same answer as `eq_ignore_ascii_case` for any
/// `name`, in a loop without branches (a third of the instructions for a
/// 14-byte name, as only `lower`'s letters are folded).
#[inline]
pub fn eq_lowercase(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(!lower.iter().any(u8::is_ascii_uppercase));
    name.len() == lower.len()
        && name.iter().zip(lower).fold(0u8, |diff, (&a, &b)| {
            let fold = if b.is_ascii_lowercase() { 0x20 } else { 0 };
            diff | ((a | fold) ^ b)
        }) == 0
}

/// The canonical reason phrase for a status code (RFC 9110 §15, plus 103,
/// 421–429, 431 and 451 from their RFCs); `""` for codes without one.
pub fn status_reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// Parses a WSGI status string (PEP 3333: `"NNN Reason"`) into its code.
///
/// Requires exactly three digits forming 100..=999, then a space, then a
/// reason that is a valid field value (it may be empty). `"200"` without the
/// space, `"99 x"`, `"2000 OK"` and reasons with CR or LF are refused.
pub fn parse_status(status: &[u8]) -> Option<u16> {
    let [a, b, c, b' ', reason @ ..] = status else {
        return None;
    };
    if !(a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit()) {
        return None;
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    (code >= 100 && is_valid_field_value(reason)).then_some(code)
}

/// Length of an IMF-fixdate (RFC 9110 §5.6.7), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

/// Caches the `Date` header value, reformatting it at most once per second.
#[derive(Clone, Debug)]
pub struct DateCache {
    /// The whole second `date` was made for.
    second: u64,
    /// The formatted IMF-fixdate.
    date: [u8; DATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    /// A cache holding the current time.
    pub fn new() -> Self {
        let mut cache = DateCache {
            second: u64::MAX,
            date: *b"Thu, 01 Jan 1970 00:00:00 GMT",
        };
        cache.refresh(SystemTime::now());
        cache
    }

    /// The current date as an IMF-fixdate (29 bytes), for the `Date` header.
    pub fn get(&mut self) -> &[u8] {
        self.refresh(SystemTime::now());
        &self.date
    }

    /// The date for `second` (whole seconds since 1970, as `time(2)` gives
    /// them), formatted only when it is not the cached one's: for a caller
    /// that has the seconds from a cheaper clock than [`SystemTime`].
    pub fn get_at(&mut self, second: u64) -> &[u8] {
        if second != self.second {
            self.refresh(UNIX_EPOCH + Duration::from_secs(second));
        }
        &self.date
    }

    /// Reformats if `now` is in another second than the cached value.
    fn refresh(&mut self, now: SystemTime) {
        // A clock before 1970 keeps the last value rather than failing.
        let Ok(since) = now.duration_since(UNIX_EPOCH) else {
            return;
        };
        let second = since.as_secs();
        if second == self.second {
            return;
        }
        let text = httpdate::fmt_http_date(now);
        if let Ok(date) = <[u8; DATE_LEN]>::try_from(text.as_bytes()) {
            self.date = date;
            self.second = second;
        }
    }
}

/// Appends one chunk (RFC 9112 §7.1): `{hex size}\r\n{data}\r\n`. Appends
/// nothing for empty data, since an empty chunk would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut i = digits.len();
    while n > 0 && i > 0 {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
    }
    out.reserve(digits.len() - i + data.len() + 4);
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

/// Whether a response with this status may have a body: not 1xx, 204 or 304
/// (RFC 9110 §6.4.1). HEAD is the caller's business.
pub fn has_body(status: u16) -> bool {
    !((100..200).contains(&status) || status == 204 || status == 304)
}

/// A complete HTTP/1.1 response for an error the server itself found:
/// `Content-Type: text/plain; charset=utf-8`, `Content-Length`,
/// `Connection: close`, and `message` plus `"\n"` as the body.
pub fn simple_error_response(err_status: u16, reason: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + message.len());
    write_simple_error_response(&mut out, err_status, reason, message, &[]);
    out
}

/// Like [`simple_error_response`], appending to `out` and adding `extra`
/// header lines (e.g. `Date`, `Server`) after the status line. CR, LF and
/// other controls in `reason`, `message` or `extra` values become spaces, so a
/// response can never be split.
pub fn write_simple_error_response(
    out: &mut Vec<u8>,
    err_status: u16,
    reason: &str,
    message: &str,
    extra: &[(&[u8], &[u8])],
) {
    let clean = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend(s.iter().map(|&b| {
            if syntax::is_field_value_byte(b) {
                b
            } else {
                b' '
            }
        }));
    };
    let status = err_status.clamp(100, 999);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    clean(out, reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra {
        if !is_token(name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        clean(out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    push_decimal(out, message.len() as u64 + 1);
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    clean(out, message.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_lowercase_agrees_with_eq_ignore_ascii_case() {
        // Every byte against every kind of byte a lower-case name may hold,
        // alone and inside a longer name.
        for lower in [&b"a"[..], b"z", b"0", b"-", b"_", b"~", b"\x7f", b"\xc9"] {
            for a in 0..=255u8 {
                assert_eq!(
                    eq_lowercase(&[a], lower),
                    [a].eq_ignore_ascii_case(lower),
                    "{a:#x} against {lower:?}"
                );
                let name = [b'x', a, b'-', b'1'];
                let want = [b'x', lower[0], b'-', b'1'];
                assert_eq!(eq_lowercase(&name, &want), name.eq_ignore_ascii_case(&want));
            }
        }
        assert!(eq_lowercase(b"Content-Length", b"content-length"));
        assert!(eq_lowercase(b"CONTENT-LENGTH", b"content-length"));
        assert!(!eq_lowercase(b"Content-Lengt", b"content-length"));
        assert!(!eq_lowercase(b"Content_Length", b"content-length"));
        assert!(!eq_lowercase(b"Content\rLength", b"content-length"));
        assert!(eq_lowercase(b"", b""));
    }

    #[test]
    fn field_values() {
        assert!(is_valid_field_value(b"text/plain; charset=utf-8"));
        assert!(is_valid_field_value(b"tab\there and obs-text \xe9"));
        assert!(is_valid_field_value(b""));
        let long = [b'a'; 100];
        for bad in [0u8, b'\r', b'\n', 0x1f, 0x7f] {
            for at in [0, 1, 15, 16, 31, 32, 99] {
                let mut v = long;
                v[at] = bad;
                assert!(!is_valid_field_value(&v), "{bad:#x} at {at}");
            }
        }
    }

    #[test]
    fn statuses() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"200 OK", Some(200)),
            (b"404 Not Found", Some(404)),
            (b"599 ", Some(599)),
            (b"999 Custom\tthing \x80", Some(999)),
            (b"100 Continue", Some(100)),
            (b"200", None),
            (b"200OK", None),
            (b"099 Low", None),
            (b"2000 OK", None),
            (b"20 OK", None),
            (b" 200 OK", None),
            (b"2x0 OK", None),
            (b"200 OK\r\nX: y", None),
            (b"200 O\nK", None),
            (b"200 \x00", None),
            (b"", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_status(s), *want, "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn tokens_and_field_values() {
        assert!(is_token(b"Content-Type") && is_token(b"x!#$%&'*+-.^_`|~9"));
        assert!(!is_token(b"") && !is_token(b"a b") && !is_token(b"a:") && !is_token(b"\xe9"));
        assert!(is_valid_field_value(b"") && is_valid_field_value(b"a\tb c \x80\xff"));
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b", b"\x7f", b"\x1b"] {
            assert!(!is_valid_field_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn reasons_and_bodies() {
        assert_eq!(status_reason(200), "OK");
        assert_eq!(status_reason(413), "Content Too Large");
        assert_eq!(status_reason(431), "Request Header Fields Too Large");
        assert_eq!(status_reason(799), "");
        for (code, body) in [
            (100, false),
            (101, false),
            (199, false),
            (200, true),
            (204, false),
            (304, false),
            (404, true),
        ] {
            assert_eq!(has_body(code), body, "{code}");
        }
    }

    #[test]
    fn chunks_and_decimals() {
        let cases: &[(usize, &[u8])] = &[
            (1, b"1"),
            (15, b"f"),
            (16, b"10"),
            (255, b"ff"),
            (4096, b"1000"),
        ];
        for (len, hex) in cases {
            let data = vec![b'x'; *len];
            let mut out = Vec::new();
            write_chunk(&mut out, &data);
            assert_eq!(out, [*hex, b"\r\n", &data, b"\r\n"].concat());
        }
        let mut out = b"keep".to_vec();
        write_chunk(&mut out, b"");
        assert_eq!(out, b"keep");
        push_decimal(&mut out, 0);
        push_decimal(&mut out, u64::MAX);
        assert_eq!(out, b"keep018446744073709551615");
    }

    #[test]
    fn date_cache() {
        let mut cache = DateCache::new();
        let date = cache.get().to_vec();
        assert_eq!(date.len(), 29);
        assert!(date.ends_with(b" GMT"));
        let text = std::str::from_utf8(&date).unwrap();
        assert!(httpdate::parse_http_date(text).is_ok());
        let mut fixed = DateCache::default();
        fixed.refresh(UNIX_EPOCH + std::time::Duration::from_secs(784_111_777));
        assert_eq!(&fixed.date, b"Sun, 06 Nov 1994 08:49:37 GMT");
        // By whole seconds: the same text for the same second, the next
        // one's for the next.
        assert_eq!(fixed.get_at(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fixed.get_at(784_111_778), b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(fixed.get_at(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn simple_error_responses() {
        let r = simple_error_response(400, "Bad Request", "invalid Content-Length");
        assert_eq!(
            r,
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 23\r\nConnection: close\r\n\r\ninvalid Content-Length\n"
        );
        let mut out = Vec::new();
        let extra: &[(&[u8], &[u8])] = &[(b"Server", b"ferrowsgi"), (b"Bad Name", b"x")];
        write_simple_error_response(&mut out, 431, "Too\r\nX: y", "a\r\nb", extra);
        assert!(out.starts_with(b"HTTP/1.1 431 Too  X: y\r\nServer: ferrowsgi\r\nContent-Type"));
        assert!(out.ends_with(b"Content-Length: 5\r\nConnection: close\r\n\r\na  b\n"));
    }
}
