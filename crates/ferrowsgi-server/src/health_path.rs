//! `--health-path`: a path the server answers itself, without calling the
//! application, so that a load balancer can tell a server that accepts
//! requests from one that is draining (stopping gracefully), and take it
//! out of rotation before its connections close.

use crate::exchange::{Exchange, ResponseHead};

/// Answers the health request in `ex`: `200` while the server accepts
/// requests, `503` with `Connection: close` once it is draining (a stop
/// was asked for). GET and HEAD only (RFC 9110 §15.5.6: a 405 names the
/// allowed methods).
pub(crate) fn answer(ex: &mut Exchange<'_>) {
    let draining = ex.is_draining();
    let method = ex.head().method();
    let (mut head, body): (ResponseHead, &[u8]) = if method != b"GET" && method != b"HEAD" {
        let mut h = ResponseHead::new(405, b"405 Method Not Allowed");
        h.push_header(b"Allow", b"GET, HEAD");
        (h, b"method not allowed\n")
    } else if draining {
        let mut h = ResponseHead::new(503, b"503 Service Unavailable");
        h.push_header(b"Connection", b"close");
        (h, b"draining\n")
    } else {
        (ResponseHead::new(200, b"200 OK"), b"ok\n")
    };
    head.push_header(b"Content-Type", b"text/plain");
    // A cached answer would hide the moment the server starts draining.
    head.push_header(b"Cache-Control", b"no-store");
    // A failed write shows on the connection, which the loop then closes.
    let _ = ex.respond(&head, &[body]);
}
