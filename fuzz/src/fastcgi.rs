//! The checks behind the `fastcgi` target: [`FcgiConn`] serving whatever
//! record stream the input holds.
//!
//! Input layout: byte 0 picks the limits (even: tiny, odd: default), byte 1
//! is the `max_out` of body reads (1..=256), bytes 2-3 a cut point (as a
//! fraction of the rest); the rest is the record stream.
//!
//! Invariants:
//! * nothing panics;
//! * the stream delivered whole, cut in two, or one byte at a time with
//!   `max_out` 1 is served the same way (same heads, bodies, output and
//!   ending);
//! * no call consumes more than it was offered, and a head read that
//!   returns no head consumed everything (unless the connection closes);
//! * every accepted head is a valid request (token method, origin-form
//!   target within the limits);
//! * the output is a sequence of well-formed records of the types an
//!   application may send, with no more `FCGI_END_REQUEST`s than
//!   `FCGI_BEGIN_REQUEST`s in the input.

use ferrowsgi_proto::fastcgi::{self, FcgiConn, Settings};
use ferrowsgi_proto::Limits;

use crate::tiny_limits;

/// A request head as seen: method, target, header count, keep-alive.
type HeadSeen = (Vec<u8>, Vec<u8>, usize, bool);

/// What one connection did with a stream.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    heads: Vec<HeadSeen>,
    bodies: Vec<Vec<u8>>,
    output: Vec<u8>,
    end: String,
}

/// Serves `wire` delivered at `cuts`, reading bodies `max_out` bytes at a
/// time, answering each request with a fixed response.
fn serve(wire: &[u8], cuts: &[usize], max_out: usize, limits: &Limits) -> Run {
    let mut c = FcgiConn::new(Settings::default());
    let mut run = Run {
        heads: vec![],
        bodies: vec![],
        output: vec![],
        end: String::new(),
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut cuts = cuts.iter().copied().chain([wire.len()]);
    let mut in_body = false;
    loop {
        if !in_body {
            match c.decode_head(&pending, limits) {
                Ok((n, head)) => {
                    assert!(n <= pending.len(), "consumed {n} of {}", pending.len());
                    pending.drain(..n);
                    c.take_output(&mut run.output);
                    if c.wants_close() {
                        run.end = "close".into();
                        return run;
                    }
                    if let Some(h) = head {
                        assert!(!h.method().is_empty());
                        assert!(h.target().starts_with(b"/"), "{:?}", h.target());
                        assert!(h.header_count() <= limits.max_header_count);
                        run.heads.push((
                            h.method().to_vec(),
                            h.target().to_vec(),
                            h.header_count(),
                            h.keep_alive(),
                        ));
                        run.bodies.push(vec![]);
                        in_body = true;
                        continue;
                    }
                    assert!(pending.is_empty(), "a head read left bytes with no head");
                }
                Err(e) => {
                    c.take_output(&mut run.output);
                    c.write_error(&mut run.output, e.status(), e.reason(), e.message());
                    run.end = e.message().into();
                    return run;
                }
            }
        } else {
            let Some(body) = run.bodies.last_mut() else {
                unreachable!("a body without a head")
            };
            let before = body.len();
            match c.decode(&pending, body, max_out) {
                Ok(n) => {
                    assert!(n <= pending.len());
                    assert!(body.len() - before <= max_out.min(n));
                    pending.drain(..n);
                    c.take_output(&mut run.output);
                    if c.is_done() {
                        assert_eq!(c.remaining_hint(), Some(0));
                        c.write_head(&mut run.output, b"200 OK", [(&b"X"[..], &b"y"[..])]);
                        c.write_block(&mut run.output, b"ok");
                        let keep = c.write_end(&mut run.output);
                        in_body = false;
                        if !keep {
                            run.end = "done".into();
                            return run;
                        }
                        continue;
                    }
                    if n > 0 {
                        continue;
                    }
                    assert!(
                        pending.is_empty() || body.len() - before == max_out,
                        "body read stalled with {} bytes offered",
                        pending.len()
                    );
                    if !pending.is_empty() {
                        continue;
                    }
                }
                Err(e) => {
                    c.take_output(&mut run.output);
                    c.write_error(&mut run.output, e.status(), e.reason(), e.message());
                    run.end = e.message().into();
                    return run;
                }
            }
        }
        match cuts.next() {
            Some(to) => {
                let to = to.clamp(fed, wire.len());
                pending.extend_from_slice(&wire[fed..to]);
                fed = to;
            }
            None => {
                run.end = "eof".into();
                return run;
            }
        }
    }
}

/// Checks that `out` is well-formed application records; returns the
/// number of `FCGI_END_REQUEST`s.
fn check_output(out: &[u8]) -> usize {
    let mut ends = 0;
    let mut rest = out;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "a torn record header in the output");
        assert_eq!(rest[0], fastcgi::VERSION_1);
        let kind = rest[1];
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        let pad = usize::from(rest[6]);
        assert!(
            matches!(
                kind,
                fastcgi::STDOUT
                    | fastcgi::END_REQUEST
                    | fastcgi::GET_VALUES_RESULT
                    | fastcgi::UNKNOWN_TYPE
            ),
            "record type {kind} in the output"
        );
        assert!(rest.len() >= 8 + len + pad, "a torn record in the output");
        if kind == fastcgi::END_REQUEST {
            assert_eq!(len, 8);
            ends += 1;
        }
        rest = &rest[8 + len + pad..];
    }
    ends
}

/// Counts the `FCGI_BEGIN_REQUEST` record headers at record boundaries of
/// `wire` (as far as it parses as records).
fn count_begins(wire: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = wire;
    while rest.len() >= 8 {
        if rest[1] == fastcgi::BEGIN_REQUEST {
            n += 1;
        }
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]])) + usize::from(rest[6]);
        rest = rest.get(8 + len..).unwrap_or(&[]);
    }
    n
}

/// Target `fastcgi`.
pub fn check_fastcgi(data: &[u8]) {
    let [sel, out, c1, c2, wire @ ..] = data else {
        return;
    };
    let limits = if sel % 2 == 0 {
        tiny_limits()
    } else {
        Limits::default()
    };
    let max_out = usize::from(*out) + 1;
    let cut = usize::from(u16::from_be_bytes([*c1, *c2])) % (wire.len() + 1);

    let whole = serve(wire, &[], usize::MAX, &limits);
    let ends = check_output(&whole.output);
    assert!(
        ends <= count_begins(wire),
        "{ends} END_REQUESTs for fewer BEGIN_REQUESTs"
    );
    assert_eq!(whole.heads.len(), whole.bodies.len());

    let split = serve(wire, &[cut], max_out, &limits);
    assert_eq!(split, whole, "cut at {cut}, max_out {max_out}");
    if wire.len() <= 512 {
        let bytewise: Vec<usize> = (1..=wire.len()).collect();
        assert_eq!(serve(wire, &bytewise, 1, &limits), whole, "byte at a time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach the interesting paths: a served request, a body.
    #[test]
    fn seeds_serve_requests() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/fastcgi");
        for (seed, heads, body) in [
            ("seed-get.bin", 1, &b""[..]),
            ("seed-post-length.bin", 1, b"hello world"),
            ("seed-multiplexed.bin", 1, b"hello world"),
        ] {
            let data = std::fs::read(dir.join(seed)).unwrap();
            let run = serve(&data[4..], &[], usize::MAX, &Limits::default());
            assert_eq!(run.heads.len(), heads, "{seed}");
            assert_eq!(run.bodies[0], body, "{seed}");
            assert!(check_output(&run.output) >= 1, "{seed}");
        }
    }
}
