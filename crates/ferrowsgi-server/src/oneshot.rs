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

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use ferrowsgi_proto::{scgi, uwsgi, Limits, ParseError, RequestHead, ResponseHead};

use crate::codec::{timeout_message, BodyReader, Gateway};

/// Which of the two protocols a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneShotProtocol {
    /// SCGI.
    Scgi,
    /// The uwsgi protocol.
    Uwsgi,
}

/// The codec of one SCGI or uwsgi connection. The protocols keep no state
/// between the head and the answer; the codec only holds the deadline
/// watcher's 504 while its request runs.
#[derive(Debug, Clone)]
pub struct OneShot {
    /// The protocol spoken.
    protocol: OneShotProtocol,
    /// The answer [`Gateway::timeout_answer`] hands out.
    timeout: Option<Arc<[u8]>>,
}

/// A 504 made for a protocol and a deadline.
type TimeoutAnswer = (OneShotProtocol, Duration, Arc<[u8]>);

thread_local! {
    /// The 504s made on this thread, by protocol and deadline. The answer
    /// is the same for every request of a protocol (one request per
    /// connection, no request id), and it is asked for with each one:
    /// made once, it costs each connection a reference count instead of a
    /// formatted message and an answer written anew.
    static TIMEOUT_ANSWERS: RefCell<Vec<TimeoutAnswer>> =
        const { RefCell::new(Vec::new()) };
}

impl OneShot {
    /// A codec for a new connection speaking `protocol`.
    pub fn new(protocol: OneShotProtocol) -> OneShot {
        OneShot {
            protocol,
            timeout: None,
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

    fn timeout_answer(&mut self, timeout: Duration) -> Option<&[u8]> {
        // A plain error answer: nothing of the request's response can have
        // gone out before it, and the connection closes after it.
        let answer = TIMEOUT_ANSWERS.with(|made| {
            let mut made = made.borrow_mut();
            if let Some((_, _, a)) = made
                .iter()
                .find(|(p, t, _)| *p == self.protocol && *t == timeout)
            {
                return Arc::clone(a);
            }
            let mut out = Vec::new();
            self.error(&mut out, 504, "Gateway Timeout", &timeout_message(timeout));
            let a: Arc<[u8]> = out.into();
            // A server has one deadline: a few entries at most, but never
            // an unbounded list.
            if made.len() >= 8 {
                made.clear();
            }
            made.push((self.protocol, timeout, Arc::clone(&a)));
            a
        });
        Some(&**self.timeout.insert(answer))
    }
}
