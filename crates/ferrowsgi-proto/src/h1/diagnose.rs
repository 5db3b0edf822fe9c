//! Turns httparse's coarse errors into precise [`ParseError`]s.
//!
//! httparse says *that* a head is bad (`Token`, `HeaderName`, …) but not
//! exactly why. This runs only on that error path, re-reads the lines up to
//! the first problem, and names it: bare CR, obs-fold, whitespace before the
//! colon, a version that is well-formed but unsupported (505), and so on.
//! It also spots the one case where httparse fails on input that is only
//! incomplete: a version such as `HTTP/2` still waiting for `.0`.

use memchr::memchr;

use super::syntax::{is_field_value_byte, is_tchar};
use crate::ParseError;

/// What the diagnosis found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Diagnosis {
    /// Nothing wrong yet: the input is incomplete.
    Partial,
    /// The head is bad for this reason.
    Error(ParseError),
}

/// Names the first problem in `buf` (starting at the request line), which
/// httparse rejected with `fallback`.
pub(crate) fn diagnose(buf: &[u8], fallback: httparse::Error) -> Diagnosis {
    let (line, next) = split_line(buf, 0);
    if let Some(d) = request_line(line, next.is_some()) {
        return d;
    }
    let mut pos = next;
    let mut all_lines_complete = next.is_some();
    while let Some(start) = pos {
        let (line, next) = split_line(buf, start);
        if line.is_empty() && next.is_some() {
            break;
        }
        if let Some(e) = header_line(line, next.is_some()) {
            return Diagnosis::Error(e);
        }
        all_lines_complete = next.is_some();
        pos = next;
    }
    // The buffer ends inside a line that looks fine so far, so the byte that
    // httparse objects to is a CR at the very end: the next byte decides
    // between a line end and a bare CR. Waiting for it keeps the verdict the
    // same however the input is split.
    if !all_lines_complete {
        return Diagnosis::Partial;
    }
    Diagnosis::Error(match fallback {
        httparse::Error::HeaderName => ParseError::InvalidHeaderName,
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::NewLine => ParseError::BareCr,
        httparse::Error::Version => ParseError::InvalidVersion,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        _ => ParseError::InvalidRequestLine,
    })
}

/// The line starting at `start` without its line ending, and where the next
/// line starts (`None` if the line is not complete). A CR at the very end of
/// an incomplete line may be half a CRLF and is left out.
fn split_line(buf: &[u8], start: usize) -> (&[u8], Option<usize>) {
    let rest = buf.get(start..).unwrap_or(&[]);
    let (line, next) = match memchr(b'\n', rest) {
        Some(i) => (&rest[..i], Some(start + i + 1)),
        None => (rest, None),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), next)
}

/// Whether `v` is shaped `HTTP/d.d` (RFC 9112 §2.3), or could still become so
/// when `prefix_ok` and more bytes arrive.
fn version_shape(v: &[u8], prefix_ok: bool) -> bool {
    const SHAPE: &[u8] = b"HTTP/d.d";
    if v.len() > SHAPE.len() || (!prefix_ok && v.len() != SHAPE.len()) {
        return false;
    }
    v.iter().zip(SHAPE).all(|(&b, &s)| {
        if s == b'd' {
            b.is_ascii_digit()
        } else {
            b == s
        }
    })
}

/// Checks the request line `method SP request-target SP HTTP-version`
/// (RFC 9112 §3). `None` means it holds no problem.
fn request_line(line: &[u8], complete: bool) -> Option<Diagnosis> {
    let err = |e| Some(Diagnosis::Error(e));
    if memchr(b'\r', line).is_some() {
        return err(ParseError::BareCr);
    }
    let sp1 = memchr(b' ', line);
    let method = &line[..sp1.unwrap_or(line.len())];
    if !method.iter().all(|&b| is_tchar(b)) || (method.is_empty() && (complete || sp1.is_some())) {
        return err(ParseError::InvalidMethod);
    }
    let Some(sp1) = sp1 else {
        return complete.then_some(Diagnosis::Error(ParseError::InvalidRequestLine));
    };
    let rest = &line[sp1 + 1..];
    let sp2 = memchr(b' ', rest);
    let target = &rest[..sp2.unwrap_or(rest.len())];
    if target.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return err(ParseError::InvalidTarget);
    }
    let Some(sp2) = sp2 else {
        return match (complete, target.is_empty()) {
            (false, _) => None,
            (true, true) => err(ParseError::InvalidRequestLine),
            // "GET /" with no version: HTTP/0.9, long gone.
            (true, false) => err(ParseError::InvalidVersion),
        };
    };
    if target.is_empty() {
        return err(ParseError::InvalidRequestLine);
    }
    let version = &rest[sp2 + 1..];
    if complete {
        if version == b"HTTP/1.0" || version == b"HTTP/1.1" {
            None
        } else if version_shape(version, false) {
            err(ParseError::VersionNotSupported)
        } else {
            err(ParseError::InvalidVersion)
        }
    } else if version_shape(version, true) {
        Some(Diagnosis::Partial)
    } else {
        err(ParseError::InvalidVersion)
    }
}

/// Checks one header line `field-name ":" OWS field-value OWS` (RFC 9112 §5).
fn header_line(line: &[u8], complete: bool) -> Option<ParseError> {
    if memchr(b'\r', line).is_some() {
        return Some(ParseError::BareCr);
    }
    if let Some(b' ' | b'\t') = line.first() {
        return Some(ParseError::ObsFold);
    }
    let name_len = line
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(line.len());
    match line.get(name_len) {
        None if complete => Some(ParseError::InvalidHeaderName),
        None => None,
        Some(b':') if name_len == 0 => Some(ParseError::InvalidHeaderName),
        Some(b':') => {
            let value = &line[name_len + 1..];
            (!value.iter().all(|&b| is_field_value_byte(b)))
                .then_some(ParseError::InvalidHeaderValue)
        }
        Some(b' ' | b'\t') => Some(ParseError::WhitespaceBeforeColon),
        Some(_) => Some(ParseError::InvalidHeaderName),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_shapes() {
        assert!(version_shape(b"HTTP/2.0", false));
        assert!(!version_shape(b"HTTP/2", false));
        assert!(version_shape(b"HTTP/2", true));
        assert!(version_shape(b"", true));
        assert!(!version_shape(b"http/1.1", true));
        assert!(!version_shape(b"HTTP/1.10", true));
    }

    #[test]
    fn header_lines() {
        let cases: &[(&[u8], bool, Option<ParseError>)] = &[
            (b"Host: a", true, None),
            (b"Host", false, None),
            (b"Host", true, Some(ParseError::InvalidHeaderName)),
            (b": a", true, Some(ParseError::InvalidHeaderName)),
            (b"Ho st: a", true, Some(ParseError::WhitespaceBeforeColon)),
            (b"Host\t: a", true, Some(ParseError::WhitespaceBeforeColon)),
            (b" Host: a", true, Some(ParseError::ObsFold)),
            (b"Ho\"st: a", true, Some(ParseError::InvalidHeaderName)),
            (b"X: a\x00b", true, Some(ParseError::InvalidHeaderValue)),
            (b"X: a\rb", true, Some(ParseError::BareCr)),
        ];
        for (line, complete, want) in cases {
            assert_eq!(
                header_line(line, *complete),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn request_lines() {
        let err = |e| Some(Diagnosis::Error(e));
        let cases: &[(&[u8], bool, Option<Diagnosis>)] = &[
            (b"GET / HTTP/1.1", true, None),
            (b"GET / HTTP/2", false, Some(Diagnosis::Partial)),
            (
                b"GET / HTTP/2.0",
                true,
                err(ParseError::VersionNotSupported),
            ),
            (b"GET / HTTP/2", true, err(ParseError::InvalidVersion)),
            (b"GET /", true, err(ParseError::InvalidVersion)),
            (b"GET /", false, None),
            (b"GET", true, err(ParseError::InvalidRequestLine)),
            (b"GET ", true, err(ParseError::InvalidRequestLine)),
            (b"G@T / HTTP/1.1", true, err(ParseError::InvalidMethod)),
            (b"GET /\x00 HTTP/1.1", true, err(ParseError::InvalidTarget)),
            (b"GET /\r HTTP/1.1", true, err(ParseError::BareCr)),
        ];
        for (line, complete, want) in cases {
            let got = request_line(line, *complete);
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
