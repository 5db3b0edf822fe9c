//! SCGI (`--bind scgi://…`): one request per connection, its variables as
//! a netstring, its body plain `CONTENT_LENGTH` bytes, the answer CGI-style
//! (`Status: 200 OK`) and ended by closing the connection.
//!
//! The protocol itself is `ferrowsgi_proto::scgi`; this adapter makes it a
//! [`Gateway`] for the connection.

use ferrowsgi_proto::{scgi, Limits, ParseError, RequestHead, ResponseHead};

use crate::codec::{BodyReader, Gateway};

/// The Scgi codec of one connection. The protocol keeps no state between
/// the head and the answer; the buffer only holds the deadline watcher's
/// 504, made when it is asked for.
#[derive(Debug, Default, Clone)]
pub struct Scgi {
    /// The answer [`Gateway::timeout_answer`] hands out.
    timeout: Vec<u8>,
}

impl Gateway for Scgi {
    fn decode_head(
        &mut self,
        input: &[u8],
        limits: &Limits,
        _out: &mut Vec<u8>,
    ) -> Result<Option<(RequestHead, usize)>, ParseError> {
        scgi::parse_request(input, limits)
    }

    fn body_reader(&mut self, head: &RequestHead, limits: &Limits) -> BodyReader {
        BodyReader::Http1(scgi::body_decoder(head, limits))
    }

    fn write_head(&mut self, out: &mut Vec<u8>, head: &ResponseHead, body_len: Option<u64>) {
        scgi::write_response_head(out, head, body_len);
    }

    fn write_block(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        scgi::write_block(out, data);
    }

    fn write_end(&mut self, out: &mut Vec<u8>, _keep_alive: bool) {
        // The connection's close ends the answer; a request of this
        // protocol is never keep-alive.
        scgi::write_end(out);
    }

    fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        scgi::write_error(out, status, reason, message);
    }

    fn timeout_answer(&mut self, message: &str) -> Option<&[u8]> {
        // A plain error answer: nothing of the request's response can have
        // gone out before it, and the connection closes after it.
        self.timeout.clear();
        scgi::write_error(&mut self.timeout, 504, "Gateway Timeout", message);
        Some(&self.timeout)
    }
}
