//! Sans-I/O HTTP/1.1 for ferrowsgi: bytes in, decisions out.
//!
//! This crate knows no sockets and no Python. It
//!
//! * parses request heads ([`parse_head`]) into a validated [`RequestHead`],
//!   enforcing [`Limits`] even on incomplete input and rejecting anything
//!   ambiguous (conflicting framing, obs-fold, bare CR, bad Host, …) with a
//!   precise [`ParseError`] that carries its HTTP status;
//! * decodes request bodies ([`BodyDecoder`]) framed by Content-Length or
//!   chunked transfer coding, resumable at any byte;
//! * helps frame responses: status and field validation for what a WSGI
//!   application returns, chunk encoding, the cached `Date`, canned error
//!   responses.
//!
//! ```
//! use ferrowsgi_proto::{parse_head, BodyKind, Limits, Parsed};
//!
//! let buf = b"POST /submit?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello";
//! let Ok(Parsed::Complete { head, consumed }) = parse_head(buf, &Limits::default()) else {
//!     panic!("expected a complete head");
//! };
//! assert_eq!(head.path(), b"/submit");
//! assert_eq!(head.query(), b"x=1");
//! assert_eq!(head.body(), BodyKind::Length(5));
//! assert_eq!(&buf[consumed..], b"hello");
//! ```
//!
//! The rules applied are RFC 9110 and RFC 9112's; each decision point cites
//! its section.

#![deny(missing_docs, missing_debug_implementations)]
// Production code has no unsafe; the tests' counting allocator needs one impl.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

pub mod ajp;
pub mod error;
pub mod fastcgi;
pub mod forwarded;
pub mod gateway;
pub mod h1;
pub mod limits;
pub mod proxy;
pub mod response_head;
pub mod scgi;
pub mod uwsgi;

pub use error::{BodyError, ParseError};
pub use h1::body::BodyDecoder;
pub use h1::head::{
    parse_head, parse_head_into, BodyKind, HeadStorage, Parsed, RequestHead, Version,
    MAX_LEADING_EMPTY_LINES,
};
pub use h1::path::percent_decode;
pub use h1::response::{
    eq_lowercase, has_body, is_token, is_valid_field_value, parse_status, push_decimal,
    simple_error_response, status_reason, write_chunk, write_simple_error_response, DateCache,
    LAST_CHUNK,
};
pub use limits::Limits;
pub use response_head::{Field, ResponseHead};

#[cfg(test)]
mod alloc_count;
