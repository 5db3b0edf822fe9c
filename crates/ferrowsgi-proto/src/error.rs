//! Errors of the request parser and the body decoder, each mapped to the HTTP
//! status the server answers with before closing the connection.
//!
//! The `Display` text is one short line meant for logs; its exact wording is not
//! part of the API.

use std::fmt;

/// Why a request head was rejected. Every variant maps to a 4xx or 5xx status
/// through [`ParseError::status`]; after any of them the connection must close,
/// since nothing behind a bad head can be framed reliably.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// A malformed request that no more precise variant describes (400).
    BadRequest(&'static str),
    /// More empty lines before the request line than RFC 9112 §2.2's
    /// robustness allowance covers (400).
    TooManyEmptyLines,
    /// The request line is not `method SP request-target SP HTTP-version` (400).
    InvalidRequestLine,
    /// The method is empty or not a token (RFC 9110 §9.1) (400).
    InvalidMethod,
    /// The request-target has a forbidden byte (control, space, non-ASCII, `#`)
    /// or is not one of the forms RFC 9112 §3.2 allows for the method (400).
    InvalidTarget,
    /// The HTTP-version is missing or not shaped `HTTP/d.d` (400).
    InvalidVersion,
    /// A CR not followed by LF in the head (RFC 9112 §2.2) (400).
    BareCr,
    /// A header name is empty or not a token, or a header line has no colon (400).
    InvalidHeaderName,
    /// Whitespace between a header name and its colon (RFC 9112 §5.1) (400).
    WhitespaceBeforeColon,
    /// A header line starting with SP or HTAB: obsolete line folding
    /// (RFC 9112 §5.2), or whitespace before the first header (§2.2) (400).
    ObsFold,
    /// A header value holding NUL or another control character besides HTAB (400).
    InvalidHeaderValue,
    /// An HTTP/1.1 request without a Host header (RFC 9112 §3.2) (400).
    MissingHost,
    /// More than one Host header line (RFC 9112 §3.2) (400).
    MultipleHost,
    /// A Host value that is not `host [":" port]` (RFC 9112 §3.2) (400).
    InvalidHost,
    /// A Content-Length that is not 1*DIGIT or does not fit in 64 bits
    /// (RFC 9112 §6.3) (400).
    BadContentLength,
    /// Content-Length given more than once with differing values (RFC 9110 §8.6) (400).
    ConflictingContentLength,
    /// Content-Type given more than once with differing values: a singleton
    /// field (RFC 9110 §8.3, §5.3) that a front end and the application
    /// could read differently (400).
    ConflictingContentType,
    /// Both Transfer-Encoding and Content-Length (RFC 9112 §6.3) (400).
    ConflictingFraming,
    /// A Transfer-Encoding list that does not end in exactly one `chunked`
    /// (RFC 9112 §6.3) (400).
    BadTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1) (400).
    TransferEncodingHttp10,
    /// The request line is longer than `Limits::max_request_line` (414).
    UriTooLong,
    /// The head is larger than `Limits::max_head_size` (431).
    HeadTooLarge,
    /// One header line is longer than `Limits::max_header_field_size` (431).
    HeaderFieldTooLarge,
    /// More header lines than `Limits::max_header_count` (431).
    TooManyHeaders,
    /// An `HTTP/d.d` version other than 1.0 and 1.1 (505).
    VersionNotSupported,
    /// A method the server does not implement: CONNECT (501).
    MethodNotImplemented,
    /// A transfer coding other than chunked, e.g. gzip (RFC 9112 §6.1) (501).
    UnsupportedTransferCoding,
    /// An Expect value other than `100-continue` (RFC 9110 §10.1.1) (417).
    ExpectationFailed,
    /// A front end that did not prove it may send requests: an AJP13
    /// request without the configured secret, or with another (403).
    Forbidden(&'static str),
}

impl ParseError {
    /// The HTTP status code the server should answer with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::UriTooLong => 414,
            ParseError::HeadTooLarge
            | ParseError::HeaderFieldTooLarge
            | ParseError::TooManyHeaders => 431,
            ParseError::VersionNotSupported => 505,
            ParseError::MethodNotImplemented | ParseError::UnsupportedTransferCoding => 501,
            ParseError::ExpectationFailed => 417,
            ParseError::Forbidden(_) => 403,
            _ => 400,
        }
    }

    /// The canonical reason phrase for [`ParseError::status`], e.g. `"Bad Request"`.
    pub fn reason(&self) -> &'static str {
        crate::h1::response::status_reason(self.status())
    }

    /// A short description of the problem, the same text as `Display`.
    pub fn message(&self) -> &'static str {
        match self {
            ParseError::BadRequest(m) => m,
            ParseError::TooManyEmptyLines => "too many empty lines before the request line",
            ParseError::InvalidRequestLine => "malformed request line",
            ParseError::InvalidMethod => "invalid method",
            ParseError::InvalidTarget => "invalid request target",
            ParseError::InvalidVersion => "missing or invalid HTTP version",
            ParseError::BareCr => "bare CR in request head",
            ParseError::InvalidHeaderName => "invalid header name",
            ParseError::WhitespaceBeforeColon => "whitespace between header name and colon",
            ParseError::ObsFold => "obsolete line folding in header",
            ParseError::InvalidHeaderValue => "invalid character in header value",
            ParseError::MissingHost => "missing Host header",
            ParseError::MultipleHost => "more than one Host header",
            ParseError::InvalidHost => "invalid Host header",
            ParseError::BadContentLength => "invalid Content-Length",
            ParseError::ConflictingContentLength => "conflicting Content-Length values",
            ParseError::ConflictingContentType => "conflicting Content-Type values",
            ParseError::ConflictingFraming => "both Transfer-Encoding and Content-Length",
            ParseError::BadTransferEncoding => "invalid Transfer-Encoding",
            ParseError::TransferEncodingHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            ParseError::UriTooLong => "request line too long",
            ParseError::HeadTooLarge => "request head too large",
            ParseError::HeaderFieldTooLarge => "header line too long",
            ParseError::TooManyHeaders => "too many headers",
            ParseError::VersionNotSupported => "HTTP version not supported",
            ParseError::MethodNotImplemented => "method not implemented",
            ParseError::UnsupportedTransferCoding => "unsupported transfer coding",
            ParseError::ExpectationFailed => "unsupported Expect value",
            ParseError::Forbidden(m) => m,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ParseError {}

/// Why a request body could not be decoded. All are 400: the body framing is
/// broken, so the connection must close after the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyError {
    /// A chunk-size that is not 1*HEXDIG followed by `;`, BWS or CRLF (RFC 9112 §7.1).
    InvalidChunkSize,
    /// A chunk-size of more than 16 hex digits (it would overflow 64 bits).
    ChunkSizeOverflow,
    /// A chunk extension that does not follow RFC 9112 §7.1.1's grammar.
    InvalidChunkExtension,
    /// Chunk extensions longer than `Limits::max_chunk_ext_size`.
    ChunkExtensionTooLong,
    /// A chunk line or chunk data not ended by CRLF (a bare LF included).
    MissingChunkCrlf,
    /// A trailer line that is not `field-name ":" field-value` (RFC 9112 §7.1.2).
    InvalidTrailer,
    /// A trailer section larger than `Limits::max_trailer_size`.
    TrailerTooLarge,
    /// A gateway front end gave the request up while its body was read
    /// (FastCGI's `FCGI_ABORT_REQUEST`): no answer is expected.
    Aborted,
    /// A gateway protocol's body framing is broken (the message says how,
    /// e.g. FastCGI's `FCGI_STDIN` longer than `CONTENT_LENGTH`).
    Gateway(&'static str),
}

impl BodyError {
    /// The HTTP status code the server should answer with: always 400.
    pub fn status(&self) -> u16 {
        400
    }

    /// The canonical reason phrase for [`BodyError::status`]: `"Bad Request"`.
    pub fn reason(&self) -> &'static str {
        "Bad Request"
    }

    /// A short description of the problem, the same text as `Display`.
    pub fn message(&self) -> &'static str {
        match self {
            BodyError::InvalidChunkSize => "invalid chunk size",
            BodyError::ChunkSizeOverflow => "chunk size too large",
            BodyError::InvalidChunkExtension => "invalid chunk extension",
            BodyError::ChunkExtensionTooLong => "chunk extension too long",
            BodyError::MissingChunkCrlf => "missing CRLF in chunked body",
            BodyError::InvalidTrailer => "invalid trailer field",
            BodyError::TrailerTooLarge => "trailer section too large",
            BodyError::Aborted => "the front end aborted the request",
            BodyError::Gateway(m) => m,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for BodyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons() {
        let cases: &[(ParseError, u16, &str)] = &[
            (ParseError::BadRequest("x"), 400, "Bad Request"),
            (ParseError::InvalidHost, 400, "Bad Request"),
            (ParseError::UriTooLong, 414, "URI Too Long"),
            (
                ParseError::HeadTooLarge,
                431,
                "Request Header Fields Too Large",
            ),
            (
                ParseError::TooManyHeaders,
                431,
                "Request Header Fields Too Large",
            ),
            (
                ParseError::HeaderFieldTooLarge,
                431,
                "Request Header Fields Too Large",
            ),
            (
                ParseError::VersionNotSupported,
                505,
                "HTTP Version Not Supported",
            ),
            (ParseError::MethodNotImplemented, 501, "Not Implemented"),
            (
                ParseError::UnsupportedTransferCoding,
                501,
                "Not Implemented",
            ),
            (ParseError::ExpectationFailed, 417, "Expectation Failed"),
            (ParseError::Forbidden("x"), 403, "Forbidden"),
        ];
        for (e, status, reason) in cases {
            assert_eq!(e.status(), *status, "{e:?}");
            assert_eq!(e.reason(), *reason, "{e:?}");
        }
    }

    #[test]
    fn display_is_one_line() {
        assert_eq!(
            ParseError::BadContentLength.to_string(),
            "invalid Content-Length"
        );
        assert_eq!(ParseError::BadRequest("odd").to_string(), "odd");
        assert_eq!(
            BodyError::InvalidChunkSize.to_string(),
            "invalid chunk size"
        );
        assert_eq!(BodyError::TrailerTooLarge.status(), 400);
        assert!(!ParseError::ObsFold.to_string().contains('\n'));
    }
}
