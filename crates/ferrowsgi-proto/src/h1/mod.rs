//! HTTP/1.x: request heads in, request bodies decoded, responses framed.
//!
//! Sans-I/O throughout: every function takes bytes and returns a decision.

pub mod body;
pub mod head;
pub mod path;
pub mod response;

mod diagnose;
mod fields;
pub(crate) mod syntax;
mod target;

pub use body::BodyDecoder;
pub use head::{
    parse_head, parse_head_into, BodyKind, HeadStorage, Parsed, RequestHead, Version,
    MAX_LEADING_EMPTY_LINES,
};
pub use path::percent_decode;
pub use response::{
    eq_lowercase, has_body, is_token, is_valid_field_value, parse_status, push_decimal,
    simple_error_response, status_reason, write_chunk, write_simple_error_response, DateCache,
    LAST_CHUNK,
};
