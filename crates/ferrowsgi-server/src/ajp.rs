//! AJP13 as a [`Gateway`] codec: the protocol crate's
//! [`ferrowsgi_proto::ajp`] behind the connection's trait.
//!
//! Two things need state here. A CPING that comes before a request is
//! answered at once, but the connection only consumes input together with
//! a whole request head, so the adapter remembers how many bytes of the
//! input it has answered already and skips them on the next call. And the
//! copy of a body reader that the exchange makes to discard an unread body
//! is an abandoned one: for AJP13 discarding means reading the body packet
//! the web server already owes and asking for nothing more (the web server
//! throws away the rest of the client's body itself), after which the
//! connection can carry the next request.

use std::sync::Arc;
use std::time::Duration;

use ferrowsgi_proto::ajp::{Ajp, AjpBodyDecoder, Decoded};
use ferrowsgi_proto::{BodyError, Limits, ParseError, RequestHead, ResponseHead};

use crate::codec::{timeout_message, BodyReader, Gateway, GatewayBody};

/// The AJP13 codec of one connection.
#[derive(Debug)]
pub struct AjpGateway {
    ajp: Arc<Ajp>,
    /// Bytes at the start of the input that are control packets answered
    /// already (CPINGs ahead of a request still incomplete).
    answered: usize,
    /// The deadline watcher's 504, made when first asked for.
    timeout: Vec<u8>,
    /// The deadline `timeout` was made for.
    timeout_for: Option<Duration>,
}

impl AjpGateway {
    /// A codec with the listener's settings.
    pub fn new(ajp: Arc<Ajp>) -> AjpGateway {
        AjpGateway {
            ajp,
            answered: 0,
            timeout: Vec::new(),
            timeout_for: None,
        }
    }
}

impl Gateway for AjpGateway {
    fn decode_head(
        &mut self,
        input: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
    ) -> Result<Option<(RequestHead, usize)>, ParseError> {
        let mut pos = self.answered.min(input.len());
        loop {
            match self.ajp.parse_request(&input[pos..], limits) {
                Ok(Decoded::Incomplete) => {
                    self.answered = pos;
                    return Ok(None);
                }
                Ok(Decoded::Cping { consumed }) => {
                    self.ajp.write_cpong(out);
                    pos += consumed;
                }
                Ok(Decoded::Request { head, consumed }) => {
                    self.answered = 0;
                    return Ok(Some((head, pos + consumed)));
                }
                Ok(Decoded::Shutdown { .. }) => {
                    self.answered = 0;
                    return Err(ParseError::BadRequest(
                        "AJP shutdown request (not obeyed; closing the connection)",
                    ));
                }
                Err(e) => {
                    self.answered = 0;
                    return Err(e);
                }
            }
        }
    }

    fn body_reader(&mut self, head: &RequestHead, _limits: &Limits) -> BodyReader {
        BodyReader::Gateway(Box::new(AjpBody(self.ajp.body_decoder(head.body()))))
    }

    fn write_head(&mut self, out: &mut Vec<u8>, head: &ResponseHead, body_len: Option<u64>) {
        let mut len_buf = itoa::Buffer::new();
        // A known length the application did not give goes to the web
        // server as Content-Length, so that it need not chunk the answer.
        let extra = body_len.map(|n| (&b"Content-Length"[..], len_buf.format(n).as_bytes()));
        let fields = head.fields().chain(extra);
        if let Err(e) = self.ajp.write_head(out, head.status_line(), fields) {
            crate::log::error(&format!(
                "cannot send the response head over AJP ({e}); sending 500 instead"
            ));
            let fallback: [(&[u8], &[u8]); 0] = [];
            let _ = self
                .ajp
                .write_head(out, b"500 Internal Server Error", fallback);
        }
    }

    fn write_block(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        self.ajp.write_block(out, data);
    }

    fn write_flush(&mut self, out: &mut Vec<u8>) {
        self.ajp.write_flush(out);
    }

    fn write_end(&mut self, out: &mut Vec<u8>, keep_alive: bool) {
        self.ajp.write_end(out, keep_alive);
    }

    fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        self.ajp.write_error(out, status, reason, message);
    }

    fn timeout_answer(&mut self, timeout: Duration) -> Option<&[u8]> {
        // AJP13 has one request per connection at a time and no request
        // id, so the answer is the same whatever the request (made once
        // per connection and deadline); it ends without reuse, and the
        // connection closes after it.
        if self.timeout_for != Some(timeout) || self.timeout.is_empty() {
            self.timeout.clear();
            self.ajp.write_error(
                &mut self.timeout,
                504,
                "Gateway Timeout",
                &timeout_message(timeout),
            );
            self.timeout_for = Some(timeout);
        }
        Some(&self.timeout)
    }
}

/// An AJP13 request body.
#[derive(Debug, Clone)]
struct AjpBody(AjpBodyDecoder);

impl GatewayBody for AjpBody {
    fn decode_with(
        &mut self,
        input: &[u8],
        max_out: usize,
        put: &mut dyn FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError> {
        self.0.decode_with(input, max_out, put)
    }

    fn data_ahead(&self) -> u64 {
        self.0.data_ahead()
    }

    fn consume_data(&mut self, n: u64) -> u64 {
        self.0.consume_data(n)
    }

    fn is_done(&self) -> bool {
        self.0.is_done()
    }

    fn remaining_hint(&self) -> Option<u64> {
        self.0.remaining_hint()
    }

    fn discard_hint(&self) -> Option<u64> {
        Some(self.0.discard_hint())
    }

    fn take_output(&mut self, out: &mut Vec<u8>) {
        self.0.take_output(out);
    }

    fn boxed_clone(&self) -> Box<dyn GatewayBody> {
        // Only made to discard the rest of an unread body (see the module
        // text): the copy asks for nothing more.
        let mut copy = self.0.clone();
        copy.abandon();
        Box::new(AjpBody(copy))
    }
}
