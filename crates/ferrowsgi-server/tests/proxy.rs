//! The PROXY protocol header on a listener, through the real event loop
//! with a Rust handler (`/peer` answers with the connection's `PeerInfo`).

mod support;

use support::{get, TestServer};

fn proxied() -> TestServer {
    TestServer::tcp_with(|cfg| cfg.proxy_protocol = true)
}

#[test]
fn v1_header_names_the_peer_for_every_request() {
    let server = proxied();
    let mut c = server.connect();
    let mut wire = b"PROXY TCP4 192.0.2.1 198.51.100.2 4000 443\r\n".to_vec();
    wire.extend(get("/peer"));
    wire.extend(get("/peer"));
    c.send(&wire);
    for _ in 0..2 {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "192.0.2.1 4000 198.51.100.2 443 false");
    }
}

#[test]
fn v2_ssl_marks_https_and_local_keeps_the_peer() {
    let server = proxied();
    let mut c = server.connect();
    let mut wire = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x14".to_vec();
    wire.extend([192, 0, 2, 9, 127, 0, 0, 1, 0x1f, 0x90, 0, 80]);
    wire.extend([0x20, 0, 5, 1, 0, 0, 0, 0]);
    wire.extend(get("/peer"));
    c.send(&wire);
    assert_eq!(c.read_response().text(), "192.0.2.9 8080 127.0.0.1 80 true");

    let mut c = server.connect();
    let mut wire = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    wire.extend(get("/peer"));
    c.send(&wire);
    let text = c.read_response().text();
    assert!(text.starts_with("127.0.0.1 "), "{text}");
    assert!(text.ends_with(" false"), "{text}");
}

#[test]
fn missing_or_bad_header_closes_without_an_answer() {
    let server = proxied();
    for wire in [
        get("/peer"),
        b"PROXY TCP4 192.0.2.1 198.51.100.2 4000 0443\r\n".to_vec(),
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec(),
    ] {
        let mut c = server.connect();
        c.send(&wire);
        assert!(c.read_to_close().is_empty());
    }
    assert_eq!(server.calls(), 0, "the handler never ran");
}

#[test]
fn plain_listener_does_not_read_a_header() {
    let server = TestServer::tcp();
    let mut c = server.connect();
    c.send(&get("/peer"));
    let text = c.read_response().text();
    assert!(text.starts_with("127.0.0.1 "), "{text}");
}
