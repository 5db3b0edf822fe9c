//! The process's spare body block ([`BodyBuf`]): kept after a body for the
//! next one, given back once no body has been buffered for a while. The
//! spare is the process's, so these checks run as this binary's only test.

mod support;

use std::time::{Duration, Instant};

use ferrowsgi_server::body_buf::BodyBuf;
use support::{big_body, post, TestServer};

/// Waits up to `limit` for the spare block's capacity to satisfy `ok`.
fn spare_becomes(ok: impl Fn(usize) -> bool, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let cap = BodyBuf::spare_capacity();
        if ok(cap) || start.elapsed() > limit {
            return cap;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_spare_block_is_kept_for_the_next_body_then_given_back_when_idle() {
    let server = TestServer::tcp();
    let mut c = server.connect();
    let body = big_body(100 * 1024);

    // A body buffered in memory leaves its block as the spare.
    c.send(&post("/echo", &body));
    let resp = c.read_response();
    assert!(resp.body == body, "echoed body differs");
    let cap = spare_becomes(|cap| cap >= body.len(), Duration::from_secs(2));
    assert!(cap >= body.len(), "no spare block after a body: {cap}");

    // Bodies coming more often than the sweeps keep it: each one takes it
    // and gives it back.
    for _ in 0..6 {
        c.send(&post("/echo", &body));
        assert!(c.read_response().body == body, "echoed body differs");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cap = spare_becomes(|cap| cap >= body.len(), Duration::from_secs(2));
    assert!(cap >= body.len(), "the spare went while bodies came: {cap}");

    // With no body for two sweeps (one to two seconds) it is freed.
    let cap = spare_becomes(|cap| cap == 0, Duration::from_secs(10));
    assert_eq!(cap, 0, "the spare block was kept while no body came");

    // The next body is served as before, and leaves a spare again.
    c.send(&post("/echo", &body));
    assert!(c.read_response().body == body, "echoed body differs");
    let cap = spare_becomes(|cap| cap >= body.len(), Duration::from_secs(2));
    assert!(
        cap >= body.len(),
        "no spare block after the next body: {cap}"
    );

    // A body that arrives slowly holds its block past the sweeps that find
    // no new body; the block it gives back at its end goes soon after.
    let half = body.len() / 2;
    let mut first =
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    first.extend(format!("{half:x}\r\n").as_bytes());
    first.extend(&body[..half]);
    first.extend(b"\r\n");
    let mut rest = format!("{:x}\r\n", body.len() - half).into_bytes();
    rest.extend(&body[half..]);
    rest.extend(b"\r\n0\r\n\r\n");
    c.send(&first);
    std::thread::sleep(Duration::from_millis(1800));
    c.send(&rest);
    assert!(c.read_response().body == body, "echoed body differs");
    let cap = spare_becomes(|cap| cap == 0, Duration::from_secs(10));
    assert_eq!(cap, 0, "the block of a slow body was kept after it");
}
