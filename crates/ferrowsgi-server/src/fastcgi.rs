//! FastCGI on a connection: the protocol crate's [`FcgiConn`] behind the
//! [`Gateway`] and [`GatewayBody`] traits.
//!
//! FastCGI's state is one thing per connection — the record being read
//! runs on from a request's head into its body, and management records or
//! a refused second request can arrive in either — while the connection
//! holds a codec and, per request, a separate body reader. Both therefore
//! share one [`FcgiConn`] behind a mutex; they are never used at the same
//! time (the body reader during the request, the codec between requests
//! and for the response), so the lock is never contended. A copy of the
//! body reader (made to discard an unread body after the response) shares
//! it too, which is what draining needs: the rest of the body is read from
//! the same record stream.

use std::sync::{Arc, Mutex};

use ferrowsgi_proto::fastcgi::{FcgiConn, Settings};
use ferrowsgi_proto::{BodyError, Limits, ParseError, RequestHead, ResponseHead};

use crate::codec::{BodyReader, Gateway, GatewayBody};
use crate::sync::lock;

/// Bytes of record stream held unconsumed while no request head is
/// complete, beyond the head-size limit: the connection keeps them in its
/// buffer until a head is (the seam's heads are consumed whole), so a
/// front end that sends only management records or records of other
/// request ids is cut off here rather than growing that buffer. Four times
/// the head limit covers variables split into tiny records.
const SLACK: usize = 64 * 1024;

/// The FastCGI codec of one connection.
#[derive(Debug)]
pub struct FastCgi {
    /// The protocol state, shared with the current request's body reader.
    conn: Arc<Mutex<FcgiConn>>,
    /// Bytes at the start of the connection's unconsumed input that the
    /// decoder has read already (the input is offered again, with more,
    /// until a head is complete).
    seen: usize,
}

impl FastCgi {
    /// A codec answering `FCGI_GET_VALUES` with `max_connections` as both
    /// FCGI_MAX_CONNS and FCGI_MAX_REQS (one request per connection).
    pub fn new(max_connections: usize) -> FastCgi {
        let n = u32::try_from(max_connections).unwrap_or(u32::MAX);
        FastCgi {
            conn: Arc::new(Mutex::new(FcgiConn::new(Settings {
                max_conns: n,
                max_reqs: n,
            }))),
            seen: 0,
        }
    }
}

impl Gateway for FastCgi {
    fn decode_head(
        &mut self,
        input: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
    ) -> Result<Option<(RequestHead, usize)>, ParseError> {
        let mut c = lock(&self.conn);
        let fresh = input.get(self.seen..).unwrap_or(&[]);
        let decoded = c.decode_head(fresh, limits);
        c.take_output(out);
        match decoded {
            Ok((n, Some(head))) => {
                let consumed = self.seen + n;
                self.seen = 0;
                Ok(Some((head, consumed)))
            }
            Ok((n, None)) => {
                self.seen += n;
                if c.wants_close() {
                    // A refused request without FCGI_KEEP_CONN: its answer
                    // is in `out`, and the connection ends after it.
                    return Err(ParseError::BadRequest(
                        "fastcgi: refused a request that did not keep the connection",
                    ));
                }
                if self.seen > limits.max_head_size.saturating_mul(4) + SLACK {
                    return Err(ParseError::HeadTooLarge);
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn body_reader(&mut self, _head: &RequestHead, _limits: &Limits) -> BodyReader {
        BodyReader::Gateway(Box::new(FastCgiBody {
            conn: Arc::clone(&self.conn),
        }))
    }

    fn write_head(&mut self, out: &mut Vec<u8>, head: &ResponseHead, body_len: Option<u64>) {
        lock(&self.conn).write_head_lines(out, head.status_line(), head.field_lines(), body_len);
    }

    fn write_block(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        lock(&self.conn).write_block(out, data);
    }

    fn write_end(&mut self, out: &mut Vec<u8>, _keep_alive: bool) {
        // Whether the connection stays is the connection's decision (from
        // the request's FCGI_KEEP_CONN and the response); the records are
        // the same either way.
        lock(&self.conn).write_end(out);
    }

    fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        lock(&self.conn).write_error(out, status, reason, message);
    }
}

/// A request body read from `FCGI_STDIN` records.
#[derive(Debug)]
struct FastCgiBody {
    /// The connection's protocol state.
    conn: Arc<Mutex<FcgiConn>>,
}

impl GatewayBody for FastCgiBody {
    fn decode_with(
        &mut self,
        input: &[u8],
        max_out: usize,
        put: &mut dyn FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError> {
        lock(&self.conn).decode_with(input, max_out, put)
    }

    fn data_ahead(&self) -> u64 {
        lock(&self.conn).data_ahead()
    }

    fn consume_data(&mut self, n: u64) -> u64 {
        lock(&self.conn).consume_data(n)
    }

    fn is_done(&self) -> bool {
        lock(&self.conn).is_done()
    }

    fn remaining_hint(&self) -> Option<u64> {
        lock(&self.conn).remaining_hint()
    }

    fn take_output(&mut self, out: &mut Vec<u8>) {
        lock(&self.conn).take_output(out);
    }

    fn boxed_clone(&self) -> Box<dyn GatewayBody> {
        Box::new(FastCgiBody {
            conn: Arc::clone(&self.conn),
        })
    }
}
