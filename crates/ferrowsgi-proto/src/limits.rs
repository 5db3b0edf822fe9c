//! Size limits applied while parsing a request head and body.
//!
//! Every limit is checked as bytes arrive, not only once a head is complete, so a
//! client can never make the server buffer more than the limit while it waits.

/// Default for [`Limits::max_request_line`]: 8190 bytes, the same as gunicorn's
/// `limit_request_line`, so applications moving from gunicorn see the same 414s.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8190;

/// Default for [`Limits::max_header_count`]: 100 header lines, gunicorn's
/// `limit_request_fields` and hyper's default; real browsers send fewer than 30.
pub const DEFAULT_MAX_HEADER_COUNT: usize = 100;

/// Default for [`Limits::max_header_field_size`]: 8190 bytes per `name: value`
/// line, gunicorn's `limit_request_field_size`; long cookies fit, abuse does not.
pub const DEFAULT_MAX_HEADER_FIELD_SIZE: usize = 8190;

/// Default for [`Limits::max_head_size`]: 64 KiB for the whole head (request
/// line plus all header lines), the order of nginx's `large_client_header_buffers`.
pub const DEFAULT_MAX_HEAD_SIZE: usize = 64 * 1024;

/// Default for [`Limits::max_chunk_ext_size`]: 4096 bytes of chunk extensions on
/// one chunk-size line. Nobody sends extensions in practice; the bound stops a
/// client from streaming an endless size line (RFC 9112 §7.1.1 lets us limit it).
pub const DEFAULT_MAX_CHUNK_EXT_SIZE: usize = 4096;

/// Default for [`Limits::max_trailer_size`]: 16 KiB of trailer section after the
/// last chunk. Trailers are read, validated and discarded (RFC 9112 §7.1.2).
pub const DEFAULT_MAX_TRAILER_SIZE: usize = 16 * 1024;

/// Limits on what a client may send before the server gives up with a 4xx.
///
/// `Limits::default()` uses the `DEFAULT_*` constants of this module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target and version, without the line
    /// ending), in bytes. Longer lines fail with
    /// [`ParseError::UriTooLong`](crate::ParseError::UriTooLong) (414).
    pub max_request_line: usize,
    /// Most header lines in one head. More fail with
    /// [`ParseError::TooManyHeaders`](crate::ParseError::TooManyHeaders) (431).
    pub max_header_count: usize,
    /// Longest single header line (`name: value`, without the line ending), in
    /// bytes. Longer lines fail with
    /// [`ParseError::HeaderFieldTooLarge`](crate::ParseError::HeaderFieldTooLarge) (431).
    pub max_header_field_size: usize,
    /// Largest whole head, from the request line to the empty line that ends it,
    /// in bytes. Larger heads fail with
    /// [`ParseError::HeadTooLarge`](crate::ParseError::HeadTooLarge) (431).
    pub max_head_size: usize,
    /// Most bytes of chunk extensions on one chunk-size line; more fail with
    /// [`BodyError::ChunkExtensionTooLong`](crate::BodyError::ChunkExtensionTooLong).
    pub max_chunk_ext_size: usize,
    /// Largest trailer section after the last chunk; larger fails with
    /// [`BodyError::TrailerTooLarge`](crate::BodyError::TrailerTooLarge).
    pub max_trailer_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_header_field_size: DEFAULT_MAX_HEADER_FIELD_SIZE,
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_chunk_ext_size: DEFAULT_MAX_CHUNK_EXT_SIZE,
            max_trailer_size: DEFAULT_MAX_TRAILER_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_documented_constants() {
        let l = Limits::default();
        assert_eq!(l.max_request_line, 8190);
        assert_eq!(l.max_header_count, 100);
        assert_eq!(l.max_header_field_size, 8190);
        assert_eq!(l.max_head_size, 65536);
        assert_eq!(l.max_chunk_ext_size, 4096);
        assert_eq!(l.max_trailer_size, 16384);
    }
}
