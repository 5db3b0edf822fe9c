//! SCGI and the uwsgi protocol (`--bind scgi://…`, `--bind uwsgi://…`): one
//! request per connection, its variables in the protocol's own block (a
//! netstring for SCGI, a binary packet with modifier1 0 for uwsgi), its body
//! plain `CONTENT_LENGTH` bytes, the answer ended by closing the connection.
//! The two differ only in how the request's variables are packed and in the
//! answer's first line (`Status: 200 OK` for SCGI, as CGI answers;
//! `HTTP/1.1 200 OK` for uwsgi).
//!
//! The protocols themselves are `ferrowsgi_proto::scgi` and
//! `ferrowsgi_proto::uwsgi`; this adapter makes either a [`Gateway`] for the
//! connection.

use ferrowsgi_proto::{scgi, uwsgi, Limits, ParseError, RequestHead, ResponseHead};

use crate::codec::{BodyReader, Gateway};

/// Which of the two protocols a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneShotProtocol {
    /// SCGI.
    Scgi,
    /// The uwsgi protocol.
    Uwsgi,
}

/// The codec of one SCGI or uwsgi connection. The protocols keep no state
/// between the head and the answer; the buffer only holds the deadline
/// watcher's 504, made when it is asked for.
#[derive(Debug, Clone)]
pub struct OneShot {
    /// The protocol spoken.
    protocol: OneShotProtocol,
    /// The answer [`Gateway::timeout_answer`] hands out.
    timeout: Vec<u8>,
}

impl OneShot {
    /// A codec for a new connection speaking `protocol`.
    pub fn new(protocol: OneShotProtocol) -> OneShot {
        OneShot {
            protocol,
            timeout: Vec::new(),
        }
    }

    /// Appends an error answer in the protocol's form.
    fn error(&self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        match self.protocol {
            OneShotProtocol::Scgi => scgi::write_error(out, status, reason, message),
            OneShotProtocol::Uwsgi => uwsgi::write_error(out, status, reason, message),
        }
    }
}

impl Gateway for OneShot {
    fn decode_head(
        &mut self,
        input: &[u8],
        limits: &Limits,
        _out: &mut Vec<u8>,
    ) -> Result<Option<(RequestHead, usize)>, ParseError> {
        match self.protocol {
            OneShotProtocol::Scgi => scgi::parse_request(input, limits),
            OneShotProtocol::Uwsgi => uwsgi::parse_request(input, limits),
        }
    }

    fn body_reader(&mut self, head: &RequestHead, limits: &Limits) -> BodyReader {
        // Both bodies are plain CONTENT_LENGTH bytes.
        BodyReader::Http1(scgi::body_decoder(head, limits))
    }

    fn write_head(&mut self, out: &mut Vec<u8>, head: &ResponseHead, body_len: Option<u64>) {
        match self.protocol {
            OneShotProtocol::Scgi => scgi::write_response_head(out, head, body_len),
            OneShotProtocol::Uwsgi => uwsgi::write_response_head(out, head, body_len),
        }
    }

    fn write_block(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        // The body goes out raw in both protocols.
        scgi::write_block(out, data);
    }

    fn write_end(&mut self, _out: &mut Vec<u8>, _keep_alive: bool) {
        // The connection's close ends the answer; a request of these
        // protocols is never keep-alive.
    }

    fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        self.error(out, status, reason, message);
    }

    fn timeout_answer(&mut self, message: &str) -> Option<&[u8]> {
        // A plain error answer: nothing of the request's response can have
        // gone out before it, and the connection closes after it.
        let mut answer = std::mem::take(&mut self.timeout);
        answer.clear();
        self.error(&mut answer, 504, "Gateway Timeout", message);
        self.timeout = answer;
        Some(&self.timeout)
    }
}
