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
use std::time::Duration;

use ferrowsgi_proto::fastcgi::{FcgiConn, Settings};
use ferrowsgi_proto::{BodyError, Limits, ParseError, RequestHead, ResponseHead};

use crate::codec::{timeout_message, BodyReader, Gateway, GatewayBody};
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
    /// Body bytes still due by the response's Content-Length: the end of
    /// the response goes out right behind the block that completes it, in
    /// the same write, rather than in a write of its own once the
    /// application's iterable is exhausted (a front end that has passed the
    /// whole body on may otherwise see its client leave first, and drop
    /// the connection with the request unfinished).
    left: Option<u64>,
    /// The deadline's 504 for the request id it was made for (see
    /// [`Gateway::timeout_answer`]); front ends reuse one id, so it is
    /// made once per connection.
    timeout: Option<(u16, Vec<u8>)>,
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
            left: None,
            timeout: None,
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
        let Some(fresh) = input.get(self.seen..) else {
            // The connection consumed input the decoder had not handed
            // back: the two no longer agree on where the stream stands.
            return Err(ParseError::BadRequest(
                "fastcgi: the record stream lost its place",
            ));
        };
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
        self.left = head.content_length().or(body_len).filter(|&n| n > 0);
        lock(&self.conn).write_head_lines(out, head.status_line(), head.field_lines(), body_len);
    }

    fn write_block(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        let mut c = lock(&self.conn);
        c.write_block(out, data);
        if let Some(left) = self.left {
            let left = left.saturating_sub(data.len() as u64);
            self.left = (left > 0).then_some(left);
            if left == 0 {
                c.write_end(out);
            }
        }
    }

    fn write_end(&mut self, out: &mut Vec<u8>, _keep_alive: bool) {
        // Whether the connection stays is the connection's decision (from
        // the request's FCGI_KEEP_CONN and the response); the records are
        // the same either way. After the block that completed the body
        // this writes nothing: the request has ended already.
        self.left = None;
        lock(&self.conn).write_end(out);
    }

    fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        lock(&self.conn).write_error(out, status, reason, message);
    }

    fn timeout_answer(&mut self, timeout: Duration) -> Option<&[u8]> {
        let c = lock(&self.conn);
        let id = c.request_id();
        if !matches!(&self.timeout, Some((made_for, _)) if *made_for == id) {
            // The CGI head and text in one FCGI_STDOUT record, the empty
            // FCGI_STDOUT, then FCGI_END_REQUEST (application status 0,
            // FCGI_REQUEST_COMPLETE): what `write_error` writes, made
            // without ending the request in the codec.
            let text = format!("{}\n", timeout_message(timeout));
            let payload = format!(
                "Status: 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\n\r\n{text}",
                text.len()
            );
            let mut out = Vec::with_capacity(payload.len() + 32);
            let (header, n) = c.stdout_header(payload.len());
            if n < payload.len() {
                return None;
            }
            out.extend_from_slice(&header);
            out.extend_from_slice(payload.as_bytes());
            out.extend_from_slice(&c.stdout_header(0).0);
            let [hi, lo] = id.to_be_bytes();
            // version 1, FCGI_END_REQUEST (3), the id, 8 bytes of content.
            out.extend_from_slice(&[1, 3, hi, lo, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            self.timeout = Some((id, out));
        }
        drop(c);
        self.timeout.as_ref().map(|(_, a)| a.as_slice())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
        let mut v = vec![
            1,
            kind,
            (id >> 8) as u8,
            id as u8,
            0,
            content.len() as u8,
            0,
            0,
        ];
        v.extend_from_slice(content);
        v
    }

    fn request(body: &[u8]) -> Vec<u8> {
        let mut w = record(1, 1, &[0, 1, 1, 0, 0, 0, 0, 0]);
        let params = b"\x0e\x04REQUEST_METHODPOST\x0b\x01REQUEST_URI/\x0e\x01CONTENT_LENGTH3";
        w.extend(record(4, 1, params));
        w.extend(record(4, 1, b""));
        w.extend(record(5, 1, body));
        w.extend(record(5, 1, b""));
        w
    }

    /// The connection offers its unconsumed input again, with more, until a
    /// head is complete; the adapter reads each byte once.
    #[test]
    fn input_offered_again_is_read_once() {
        let limits = Limits::default();
        let mut wire = record(9, 0, b"\x0f\x00FCGI_MPXS_CONNS");
        wire.extend(request(b"abc"));
        let mut g = FastCgi::new(5);
        let mut out = Vec::new();
        let mut got = None;
        for end in 1..=wire.len() {
            match g.decode_head(&wire[..end], &limits, &mut out).unwrap() {
                Some((head, consumed)) => {
                    got = Some((head, consumed));
                    break;
                }
                None => continue,
            }
        }
        let (head, consumed) = got.unwrap();
        assert_eq!(head.method(), b"POST");
        // One answer to the one management record.
        assert_eq!(out.iter().filter(|&&b| b == 10).count(), 1, "{out:?}");
        let mut body = g.body_reader(&head, &limits);
        let mut data = Vec::new();
        let n = body.decode(&wire[consumed..], &mut data, 1 << 20).unwrap();
        assert_eq!(data, b"abc");
        assert!(body.is_done());
        assert_eq!(consumed + n, wire.len());
        let mut resp = Vec::new();
        let mut h = ResponseHead::new(200, b"200 OK");
        h.push_header(b"X-A", b"1");
        g.write_head(&mut resp, &h, Some(2));
        g.write_block(&mut resp, b"ok");
        assert!(resp.starts_with(b"\x01\x06\x00\x01"));
        assert!(resp.windows(7).any(|w| w == b"X-A: 1\r"));
        // The block that completes the body carries the end with it.
        let end = [1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(resp.ends_with(&end));
        let n = resp.len();
        g.write_end(&mut resp, true);
        assert_eq!(resp.len(), n, "the end is not written twice");

        // Without a length, the end comes with write_end.
        let mut g = FastCgi::new(5);
        let (head, consumed) = g.decode_head(&wire, &limits, &mut out).unwrap().unwrap();
        let mut body = g.body_reader(&head, &limits);
        body.decode(&wire[consumed..], &mut Vec::new(), 1 << 20)
            .unwrap();
        let mut resp = Vec::new();
        g.write_head(&mut resp, &ResponseHead::new(200, b"200 OK"), None);
        g.write_block(&mut resp, b"ok");
        assert!(!resp.ends_with(&end));
        g.write_end(&mut resp, true);
        assert!(resp.ends_with(&end));
    }

    /// Input that never completes a head is not held without end.
    #[test]
    fn records_without_a_head_are_bounded() {
        let limits = Limits {
            max_head_size: 1024,
            ..Limits::default()
        };
        let wire = record(77, 0, b"").repeat(20_000);
        let mut g = FastCgi::new(5);
        let mut out = Vec::new();
        // Offered as a connection reads it, 4 KiB more at a time.
        let mut end = 0;
        let err = loop {
            end = (end + 4096).min(wire.len());
            match g.decode_head(&wire[..end], &limits, &mut out) {
                Ok(None) => assert!(end < wire.len()),
                Ok(Some(_)) => panic!("a head from management records"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, ParseError::HeadTooLarge);
        assert!(end <= 4 * 1024 + SLACK + 4096, "{end}");
        assert_eq!(out.len(), 2 * end, "each record answered once");
    }
}
