//! Semantics of the header fields that decide framing and connection handling:
//! Host, Content-Length, Transfer-Encoding, Connection, Expect, Content-Type.
//!
//! [`Fields`] gathers facts header by header; [`Fields::judge`] then applies
//! RFC 9112's rules in a fixed order, so a head with several problems always
//! gets the same answer.

use memchr::memchr;

use super::head::{BodyKind, Span, Version};
use super::response::eq_lowercase;
use super::syntax::{is_token, is_valid_host, list_elements, trim_ows};
use crate::ParseError;

/// Parses one Content-Length element: `1*DIGIT` that fits in a `u64`
/// (RFC 9110 §8.6). No sign, no spaces, no hex.
pub(crate) fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Facts gathered from the header fields before they are judged.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    /// Number of Host lines.
    host_count: usize,
    /// The first Host value.
    host: Option<Span>,
    /// The Content-Length value and the span of its first element.
    content_length: Option<(u64, Span)>,
    /// The first Content-Length problem found.
    content_length_error: Option<ParseError>,
    /// Whether any Transfer-Encoding line was present.
    te_present: bool,
    /// Whether `chunked` was seen.
    te_chunked: bool,
    /// Whether the last coding seen was `chunked`.
    te_last_chunked: bool,
    /// Whether a coding other than `chunked` was seen.
    te_other: bool,
    /// Whether the Transfer-Encoding list was malformed.
    te_bad: bool,
    /// Connection lists `close`.
    close: bool,
    /// Connection lists `keep-alive`.
    keep_alive: bool,
    /// Expect holds `100-continue`.
    expect_continue: bool,
    /// Expect holds something else.
    expect_other: bool,
    /// The first Content-Type value.
    content_type: Option<Span>,
    /// A later Content-Type line differs from the first.
    content_type_conflict: bool,
}

/// What the header fields decide for a valid head.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// How the body is framed.
    pub(crate) body: BodyKind,
    /// Whether the connection may be reused.
    pub(crate) keep_alive: bool,
    /// Whether the client waits for `100 Continue`.
    pub(crate) expects_continue: bool,
    /// The Host header value, if one was sent.
    pub(crate) host: Option<Span>,
    /// The first Content-Type value.
    pub(crate) content_type: Option<Span>,
    /// The first element of the Content-Length value.
    pub(crate) content_length: Option<Span>,
}

impl Fields {
    /// Records one header line; `head` is the buffer `value` points into.
    pub(crate) fn on_header(&mut self, head: &[u8], name: &[u8], value: &[u8], span: Span) {
        // `eq_lowercase` folds only the constant's letters, in a loop without
        // branches: every request's Host, and the Content-Type and
        // Content-Length of one with a body, are compared here.
        match name.len() {
            4 if eq_lowercase(name, b"host") => {
                self.host_count += 1;
                self.host.get_or_insert(span);
            }
            6 if eq_lowercase(name, b"expect") => self.on_expect(value),
            10 if eq_lowercase(name, b"connection") => self.on_connection(value),
            12 if eq_lowercase(name, b"content-type") => self.on_content_type(head, span),
            14 if eq_lowercase(name, b"content-length") => {
                self.on_content_length(head, value);
            }
            17 if eq_lowercase(name, b"transfer-encoding") => {
                self.on_transfer_encoding(value);
            }
            _ => {}
        }
    }

    /// Records one Content-Length line. RFC 9110 §8.6 lets a recipient accept
    /// a repeated field or a list when all values are identical; anything else
    /// is a framing error (RFC 9112 §6.3 item 5).
    fn on_content_length(&mut self, head: &[u8], value: &[u8]) {
        if self.content_length_error.is_some() {
            return;
        }
        for elem in list_elements(value) {
            let Some(n) = parse_content_length(elem) else {
                self.content_length_error = Some(ParseError::BadContentLength);
                return;
            };
            match self.content_length {
                None => self.content_length = Some((n, Span::of(head, elem))),
                Some((seen, _)) if seen == n => {}
                Some(_) => {
                    self.content_length_error = Some(ParseError::ConflictingContentLength);
                    return;
                }
            }
        }
    }

    /// Records one Content-Type line. Content-Type is a singleton field
    /// (RFC 9110 §8.3): a copy identical to the first, byte for byte, says
    /// nothing new and is accepted (as RFC 9110 §8.6 lets a recipient do
    /// for Content-Length); a differing one is refused, since a front end
    /// that keeps the last copy and an application given the first would
    /// see two different bodies.
    fn on_content_type(&mut self, head: &[u8], span: Span) {
        match self.content_type {
            None => self.content_type = Some(span),
            Some(first) if first.get(head) != span.get(head) => self.content_type_conflict = true,
            Some(_) => {}
        }
    }

    /// Records one Transfer-Encoding line; repeated lines form one list in
    /// order (RFC 9110 §5.3). Codings are case-insensitive (RFC 9112 §7).
    fn on_transfer_encoding(&mut self, value: &[u8]) {
        self.te_present = true;
        let mut any = false;
        for elem in list_elements(value) {
            if elem.is_empty() {
                continue; // RFC 9110 §5.6.1: empty list elements are ignored.
            }
            any = true;
            let (name, params) = match memchr(b';', elem) {
                Some(i) => (trim_ows(&elem[..i]), true),
                None => (elem, false),
            };
            if !is_token(name) {
                self.te_bad = true;
            } else if name.eq_ignore_ascii_case(b"chunked") {
                // RFC 9112 §6.1: chunked takes no parameters and "MUST NOT" be
                // applied more than once.
                if params || self.te_chunked {
                    self.te_bad = true;
                }
                self.te_chunked = true;
                self.te_last_chunked = true;
            } else {
                self.te_other = true;
                self.te_last_chunked = false;
            }
        }
        if !any {
            self.te_bad = true;
        }
    }

    /// Records one Connection line: comma-separated, case-insensitive options
    /// (RFC 9110 §7.6.1).
    fn on_connection(&mut self, value: &[u8]) {
        for token in list_elements(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            }
        }
    }

    /// Records one Expect line (RFC 9110 §10.1.1); `100-continue` is the only
    /// expectation defined.
    fn on_expect(&mut self, value: &[u8]) {
        for elem in list_elements(value) {
            if elem.is_empty() {
                continue;
            }
            if elem.eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                self.expect_other = true;
            }
        }
    }

    /// Applies the rules, most fundamental first: framing (RFC 9112 §6.1,
    /// §6.3), then Host (§3.2), then Content-Type (RFC 9110 §8.3), then
    /// Expect (RFC 9110 §10.1.1).
    pub(crate) fn judge(&self, head: &[u8], version: Version) -> Result<Verdict, ParseError> {
        let cl_present = self.content_length.is_some() || self.content_length_error.is_some();
        if self.te_present {
            // §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            if version == Version::Http10 {
                return Err(ParseError::TransferEncodingHttp10);
            }
            // §6.3 item 3: both at once is how requests are smuggled; refuse.
            if cl_present {
                return Err(ParseError::ConflictingFraming);
            }
            // §6.3 item 4: chunked not final means the length is unknowable.
            if self.te_bad || !self.te_last_chunked {
                return Err(ParseError::BadTransferEncoding);
            }
            // §6.1: a coding we do not implement (gzip, …) gets 501.
            if self.te_other {
                return Err(ParseError::UnsupportedTransferCoding);
            }
        }
        if let Some(e) = self.content_length_error {
            return Err(e);
        }

        // §3.2: 400 for an HTTP/1.1 request without Host, for any request with
        // more than one Host line or an invalid one. An empty Host is valid:
        // a client sends it when the target URI has no authority (§3.2), and
        // beside an absolute-form target the target's authority wins
        // (§3.2.2).
        if self.host_count > 1 {
            return Err(ParseError::MultipleHost);
        }
        match self.host {
            None if version == Version::Http11 => return Err(ParseError::MissingHost),
            Some(h) if !h.is_empty() && !is_valid_host(h.get(head)) => {
                return Err(ParseError::InvalidHost)
            }
            _ => {}
        }

        if self.content_type_conflict {
            return Err(ParseError::ConflictingContentType);
        }

        if self.expect_other {
            return Err(ParseError::ExpectationFailed);
        }

        let body = if self.te_present {
            BodyKind::Chunked
        } else if let Some((n, _)) = self.content_length {
            BodyKind::Length(n)
        } else {
            BodyKind::Empty // §6.3 item 7: no framing headers, no body.
        };
        // RFC 9112 §9.3: persistence by default in 1.1, opt-in in 1.0.
        let keep_alive = match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive && !self.close,
        };
        Ok(Verdict {
            body,
            keep_alive,
            // RFC 9110 §10.1.1: a 100-continue in HTTP/1.0 is ignored.
            expects_continue: self.expect_continue && version == Version::Http11,
            host: self.host,
            content_type: self.content_type,
            content_length: self.content_length.map(|(_, s)| s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"007", Some(7)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"99999999999999999999999", None),
            (b"", None),
            (b"+5", None),
            (b"-5", None),
            (b"0x10", None),
            (b"1 2", None),
            (b"5.0", None),
        ];
        for (v, want) in cases {
            assert_eq!(
                parse_content_length(v),
                *want,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    use crate::{parse_head, Limits, Parsed, RequestHead};

    fn head(raw: &[u8]) -> RequestHead {
        match parse_head(raw, &Limits::default()) {
            Ok(Parsed::Complete { head, .. }) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn keep_alive_per_version() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: foo,Keep-Alive\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: te\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(
                head(raw).keep_alive(),
                *want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn content_length_forms() {
        let cases: &[(&[u8], u64, &[u8])] = &[
            (b"Content-Length: 5\r\n", 5, b"5"),
            (b"Content-Length: 5\r\ncontent-length: 5\r\n", 5, b"5"),
            (b"Content-Length: 5, 5 ,5\r\n", 5, b"5"),
            (b"Content-Length: 0\r\n", 0, b"0"),
            (b"Content-Length: 007\r\n", 7, b"007"),
            (
                b"Content-Length: 18446744073709551615\r\n",
                u64::MAX,
                b"18446744073709551615",
            ),
        ];
        for (line, n, raw) in cases {
            let req = [&b"POST / HTTP/1.1\r\nHost: a\r\n"[..], line, b"\r\n"].concat();
            let h = head(&req);
            assert_eq!(h.body(), BodyKind::Length(*n));
            assert_eq!(h.content_length_raw(), Some(*raw));
        }
    }

    #[test]
    fn chunked_is_case_insensitive_and_may_span_lines() {
        let h = head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n");
        assert_eq!(h.body(), BodyKind::Chunked);
        let h = head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n");
        assert_eq!(h.body(), BodyKind::Chunked);
    }

    #[test]
    fn expect_continue() {
        let h = head(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.expects_continue());
        let h = head(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expects_continue());
    }

    #[test]
    fn framing_rules_apply_in_a_fixed_order() {
        let cases: &[(&[u8], ParseError)] = &[
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\n",
                ParseError::TransferEncodingHttp10,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\n",
                ParseError::ConflictingFraming,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                ParseError::BadTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: x\r\n\r\n",
                ParseError::MissingHost,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nExpect: x\r\n\r\n",
                ParseError::MultipleHost,
            ),
        ];
        for (raw, want) in cases {
            let got = parse_head(raw, &Limits::default());
            assert_eq!(got, Err(*want), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
