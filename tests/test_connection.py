"""Connection handling: keep-alive on 1.1 and 1.0, pipelining in order, draining unread
bodies, clients that go away, and slow clients that must not block others."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from support import RawConn, Server, build_request, connect, new_tag, wait_stable, wait_until

pytestmark = pytest.mark.timeout(30)


def remote_port(resp) -> str:
    return resp.json()["environ"]["REMOTE_PORT"]


# --- keep-alive -------------------------------------------------------------------------------


def test_http11_keeps_alive_by_default(echo_server: Server) -> None:
    with RawConn(echo_server.addr) as c:
        paths = []
        for i in range(5):
            c.request("GET", f"/ka{i}")
            resp = c.read_response()
            assert resp.status == 200
            assert not resp.closes
            paths.append(resp.json()["environ"]["PATH_INFO"])
        assert paths == [f"/ka{i}" for i in range(5)]
        assert not c.at_eof(timeout=0.3), "server closed an idle HTTP/1.1 connection at once"


def test_http11_same_connection_seen_by_app(echo_tcp: Server) -> None:
    with RawConn(echo_tcp.addr) as c:
        c.request("GET", "/a")
        first = c.read_response()
        c.request("GET", "/b")
        second = c.read_response()
        local_port = c.local_port
    assert remote_port(first) == remote_port(second) == str(local_port)


def test_http11_connection_close_request(echo_server: Server) -> None:
    with RawConn(echo_server.addr) as c:
        c.request("GET", "/", headers=[("Connection", "close")])
        resp = c.read_response()
        assert resp.closes
        assert c.at_eof()


def test_connection_close_request_with_more_bytes_behind_it_gets_its_answer(
    echo_server: Server,
) -> None:
    # The client breaks its word (RFC 9112 §9.6) and sends more after its last
    # request, in the same write and more than one read takes: the server must
    # not close with those bytes unread (a reset, which would destroy the
    # answer on its way), but send the answer and its FIN first.
    junk = b"x" * (256 * 1024)
    with RawConn(echo_server.addr) as c:
        c.send(build_request("GET", "/last", headers=[("Connection", "close")]) + junk)
        resp = c.read_response()
        assert resp.status == 200
        assert resp.json()["environ"]["PATH_INFO"] == "/last"
        assert resp.closes
        assert c.at_eof()


def test_http10_closes_by_default(echo_server: Server) -> None:
    with RawConn(echo_server.addr) as c:
        c.request("GET", "/", version="HTTP/1.0")
        resp = c.read_response()
        assert resp.status == 200
        assert resp.closes
        assert c.at_eof()


def test_http10_keep_alive(echo_server: Server) -> None:
    with RawConn(echo_server.addr) as c:
        for i in range(3):
            c.request("GET", f"/k{i}", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
            resp = c.read_response()
            assert resp.status == 200
            assert "keep-alive" in resp.connection_tokens()
            assert resp.json()["environ"]["PATH_INFO"] == f"/k{i}"


def test_response_to_http10_is_http11_or_10(echo_server: Server) -> None:
    with RawConn(echo_server.addr) as c:
        c.request("GET", "/", version="HTTP/1.0")
        resp = c.read_response()
    assert resp.version in ("HTTP/1.0", "HTTP/1.1")
    assert not resp.has_header("Transfer-Encoding")


# --- pipelining -------------------------------------------------------------------------------


def test_pipelined_requests_answered_in_order(echo_server: Server) -> None:
    reqs = b"".join(build_request("GET", f"/p{i}") for i in range(10))
    reqs += build_request("GET", "/last", headers=[("Connection", "close")])
    with RawConn(echo_server.addr) as c:
        c.send(reqs)
        paths = [c.read_response().json()["environ"]["PATH_INFO"] for _ in range(11)]
        assert c.at_eof()
    assert paths == [f"/p{i}" for i in range(10)] + ["/last"]


def test_pipelined_order_kept_with_threads(slow_server: Server) -> None:
    # With four Python threads the fast requests may finish first; replies must stay in order.
    reqs = b"".join(
        build_request("GET", f"/sleep?s={s}&id=r{i}")
        for i, s in enumerate([0.4, 0.0, 0.2, 0.0, 0.1])
    )
    with RawConn(slow_server.addr) as c:
        c.send(reqs)
        bodies = [c.read_response().body for _ in range(5)]
    assert bodies == [b"r0", b"r1", b"r2", b"r3", b"r4"]


def test_pipelined_post_bodies(echo_server: Server) -> None:
    reqs = b"".join(build_request("POST", f"/post{i}", body=b"body%d" % i) for i in range(4))
    with RawConn(echo_server.addr) as c:
        c.send(reqs)
        docs = [c.read_response().json() for _ in range(4)]
    assert [d["body"] for d in docs] == [f"body{i}" for i in range(4)]


def test_request_split_into_tiny_writes(echo_server: Server) -> None:
    req = build_request("POST", "/split", body=b"0123456789", headers=[("Connection", "close")])
    with RawConn(echo_server.addr) as c:
        for i in range(0, len(req), 3):
            c.send(req[i : i + 3])
            time.sleep(0.005)
        resp = c.read_response()
    assert resp.json()["body"] == "0123456789"


# --- draining an unread body ------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 100_000])
def test_unread_body_is_drained(echo_server: Server, size: int) -> None:
    first = build_request("POST", "/?read=none", body=b"x" * size)
    second = build_request("GET", "/after-drain", headers=[("Connection", "close")])
    with RawConn(echo_server.addr) as c:
        c.send(first + second)
        r1 = c.read_response()
        assert r1.json()["body"] == ""
        if r1.closes:
            pytest.fail("server closed instead of draining a small unread body")
        r2 = c.read_response()
    assert r2.json()["environ"]["PATH_INFO"] == "/after-drain"


def test_partially_read_chunked_body_is_drained(echo_server: Server) -> None:
    body = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"
    first = build_request(
        "POST", "/?read=cl", headers=[("Transfer-Encoding", "chunked")], body=body
    )
    second = build_request("GET", "/after-chunked", headers=[("Connection", "close")])
    with RawConn(echo_server.addr) as c:
        c.send(first + second)
        c.read_response()
        r2 = c.read_response()
    assert r2.json()["environ"]["PATH_INFO"] == "/after-chunked"


# --- clients that go away ---------------------------------------------------------------------


def test_client_gone_mid_response_calls_close_and_server_lives(closetrack_server) -> None:
    tag = new_tag()
    sock = connect(closetrack_server.addr)
    sock.sendall(build_request("GET", f"/track?tag={tag}&mode=forever"))
    got = sock.recv(65536)
    assert got.startswith(b"HTTP/1.1 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert wait_until(
        lambda: closetrack_server.get_json(f"/count?tag={tag}")["count"] >= 1, timeout=10
    ), "close() not called after the client went away"
    # The app stops being iterated (long before its 30 s budget runs out), and close() ran once.
    assert wait_stable(lambda: closetrack_server.get_json(f"/count?tag={tag}")["iterated"])
    assert closetrack_server.get_json(f"/count?tag={tag}")["count"] == 1


def test_client_gone_before_response(slow_server: Server) -> None:
    for _ in range(3):
        sock = connect(slow_server.addr)
        sock.sendall(build_request("GET", "/sleep?s=0.2&id=gone"))
        sock.close()
    resp = slow_server.request("GET", "/sleep?id=alive")
    assert resp.body == b"alive"


def test_client_gone_mid_head(echo_server: Server) -> None:
    for partial in (b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b", b"POST / HTTP/1.1\r\n"):
        sock = connect(echo_server.addr)
        sock.sendall(partial)
        sock.close()
    with RawConn(echo_server.addr) as c:
        c.request("POST", "/alive", body=b"12345", headers=[("Content-Length", "5")])
        assert c.read_response().json()["environ"]["PATH_INFO"] == "/alive"


def test_client_gone_mid_body(start_server) -> None:
    # Three rounds: the shutdown hang this guards against shows up in about half the runs.
    for _ in range(3):
        server = start_server("apps.echo:app")
        sock = connect(server.addr)
        sock.sendall(build_request("POST", "/", headers=[("Content-Length", "1000")]) + b"x" * 10)
        sock.close()
        assert server.wait_stderr("client closed the connection during the body of POST /")
        assert server.request("GET", "/still-here").status == 200
        # The abandoned request must not hold up a graceful shutdown (stop() kills the server
        # after 5 s, which would not be status 0).
        assert server.stop(timeout=5) == 0, server.stderr_text()[-2000:]


# --- slow clients and concurrency -------------------------------------------------------------


def test_slow_client_does_not_block_others(start_server) -> None:
    server = start_server("apps.echo:app", "--threads", "1")
    idle = [connect(server.addr) for _ in range(3)]
    try:
        idle[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # head never finished
        idle[1].sendall(build_request("POST", "/", headers=[("Content-Length", "100")]) + b"x")
        # Were the only thread held by a stalled client, this would wait for --read-timeout
        # (30 s) and miss the client's 5 s timeout.
        resp = server.request("GET", "/quick")
        assert resp.status == 200
    finally:
        for s in idle:
            s.close()


def test_many_concurrent_connections(echo_server: Server) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            with RawConn(echo_server.addr, timeout=15) as c:
                for j in range(3):
                    c.request("GET", f"/c{i}-{j}")
                    results.append(c.read_response().json()["environ"]["PATH_INFO"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    assert not errors, errors[:3]
    assert sorted(results) == sorted(f"/c{i}-{j}" for i in range(40) for j in range(3))


def test_threads_run_requests_concurrently(slow_server: Server) -> None:
    # Each request waits (up to 10 s) until all four are inside the application at once;
    # run one after another, the first would give up waiting. (Speed: bench/latency.py.)
    out: list[bytes] = []
    group = new_tag()

    def one(i: int) -> None:
        out.append(slow_server.request("GET", f"/barrier?n=4&group={group}&id={i}").body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(out) == [b"0", b"1", b"2", b"3"]


def test_request_sent_while_the_thread_serves_the_one_before(slow_server: Server) -> None:
    # The second request arrives while an application thread has the connection: the event
    # loop sees it then, and must serve it when the connection comes back, in order. How
    # soon (the wake-up) is measured by bench/latency.py ("handback").
    with RawConn(slow_server.addr) as c:
        for i in range(5):
            c.send(build_request("GET", f"/sleep?s=0.15&id=a{i}"))
            time.sleep(0.05)  # pacing: the second request comes while the first is served
            c.send(build_request("GET", f"/sleep?s=0&id=b{i}"))
            assert c.read_response().body == b"a%d" % i
            assert c.read_response().body == b"b%d" % i


def test_keep_alive_requests_after_a_quiet_hand_back(slow_server: Server) -> None:
    # A connection given back with nothing to do wakes nobody; its next request must still be
    # seen (the poll that reports it takes the connection back first); a lost one would miss
    # the client's timeout. How soon is measured by bench/latency.py ("keepalive").
    with RawConn(slow_server.addr) as c:
        for i in range(30):
            c.send(build_request("GET", f"/sleep?s=0&id=k{i}"))
            assert c.read_response().body == b"k%d" % i
            time.sleep(0.01)  # pacing: each hand-back goes quiet before the next request
