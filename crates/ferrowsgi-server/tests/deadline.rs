//! Request deadlines (`Config::timeout`) with no Python at all: the server's
//! watcher answers 504 while the Rust test handler is still busy, and the
//! handler's own answer never reaches the client.

mod support;

use std::time::{Duration, Instant};

use support::{get, TestServer, HELLO};

fn late_request_gets_504(threads: usize) {
    let server = TestServer::tcp_with(|cfg| {
        cfg.threads = threads;
        cfg.timeout = Duration::from_millis(300);
        cfg.timeout_grace = Duration::from_secs(60);
    });
    let mut late = server.connect();
    let start = Instant::now();
    late.send(&get("/slow?1500"));
    let resp = late.read_response();
    let waited = start.elapsed();
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(resp.says_close());
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1300),
        "answered after {waited:?}"
    );
    // The handler's own answer, when it comes back, is not sent.
    late.expect_closed();
    // The server goes on serving.
    let mut next = server.connect();
    next.send(&get("/hello"));
    let resp = next.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, HELLO);
}

#[test]
fn a_late_request_gets_504_inline() {
    late_request_gets_504(1);
}

#[test]
fn a_late_request_gets_504_from_a_pool() {
    late_request_gets_504(2);
}

#[test]
fn no_deadline_when_the_timeout_is_zero() {
    let server = TestServer::tcp_with(|cfg| cfg.timeout = Duration::ZERO);
    let mut c = server.connect();
    c.send(&get("/slow?400"));
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, HELLO);
}
