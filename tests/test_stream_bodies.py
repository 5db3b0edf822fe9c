"""Large request bodies, stored first or read as they arrive (``--stream-bodies``).

A body over the 256 KiB buffer from a client on this host (``local``, the default: a
front-end server over loopback or a unix socket) reaches the application as it arrives;
with ``none`` (what clients on other hosts get by default) it is stored completely before
the application is called. Both ways must give the application the same bytes, the same
read sizes and the same errors; only when the application runs differs.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import socket
import time

import pytest
from support import RawConn, Server, build_request, chunked, server_read_everything, wait_until

pytestmark = pytest.mark.timeout(90)

BODY = os.urandom(3 * 1024 * 1024 + 4099)  # random bytes hold a newline every 256 or so


def digest(body: bytes) -> dict:
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.fixture(scope="module", params=["local", "none"])
def bodies(request: pytest.FixtureRequest, module_servers, transport: str) -> Server:
    server = module_servers(
        "apps.bodies:app",
        "--stream-bodies",
        request.param,
        "--read-timeout",
        "2",
        transport=transport,
    )
    server.streams = request.param == "local"  # type: ignore[attr-defined]
    return server


def post(server: Server, target: str, body: bytes, **kw: object) -> dict:
    resp = server.request("POST", target, body=body, **kw)  # type: ignore[arg-type]
    assert resp.status == 200, (resp.status, resp.body[:300], server.stderr_text()[-2000:])
    return resp.json()


@pytest.mark.parametrize(
    "target", ["/?n=65536", "/?n=1000", "/?n=300000", "/?read=all", "/?read=cl"]
)
def test_large_body_reads_back_whole(bodies: Server, target: str) -> None:
    doc = post(bodies, target, BODY)
    assert {k: doc[k] for k in ("length", "sha256")} == digest(BODY)
    assert doc["early_short_reads"] == 0, doc


@pytest.mark.parametrize("mode", ["lines", "iter"])
def test_large_body_by_lines(bodies: Server, mode: str) -> None:
    doc = post(bodies, f"/?read={mode}", BODY)
    assert {k: doc[k] for k in ("length", "sha256")} == digest(BODY)
    assert doc["reads"] == BODY.count(b"\n") + (not BODY.endswith(b"\n"))


def test_read_all_of_a_body_larger_than_one_direct_read(bodies: Server) -> None:
    # read() of 20 MiB: past the 16 MiB that are read into one new bytes object at once
    # while the body is still arriving, so this one grows as the bytes come.
    body = os.urandom(20 * 1024 * 1024)
    doc = post(bodies, "/?read=all", body)
    assert {k: doc[k] for k in ("length", "sha256")} == digest(body)


def test_large_chunked_body(bodies: Server) -> None:
    pieces = [BODY[i : i + 65536] for i in range(0, len(BODY), 65536)]
    for target in ("/?n=65536", "/?read=all", "/?read=lines"):
        doc = post(bodies, target, chunked(*pieces), headers=[("Transfer-Encoding", "chunked")])
        assert {k: doc[k] for k in ("length", "sha256")} == digest(BODY), target


def test_when_the_application_runs(bodies: Server) -> None:
    req = build_request("POST", "/when", body=BODY)
    head = len(req) - len(BODY)
    before = bodies.stderr_text().count("called /when")
    with RawConn(bodies.addr) as c:
        c.send(req[: head + 400 * 1024])
        if bodies.streams:  # type: ignore[attr-defined]
            assert wait_until(lambda: bodies.stderr_text().count("called /when") > before), (
                "not called while the body arrived"
            )
        else:
            # The server has taken in all 400 KiB and still not called the application.
            assert wait_until(lambda: server_read_everything(c), timeout=10)
            assert bodies.stderr_text().count("called /when") == before, "called early"
        c.send(req[head + 400 * 1024 :])
        resp = c.read_response()
    assert resp.status == 200
    assert {k: resp.json()[k] for k in ("length", "sha256")} == digest(BODY)
    assert not resp.closes


def test_requests_pipelined_behind_a_large_body(bodies: Server) -> None:
    batch = (
        build_request("POST", "/first", body=BODY)
        + build_request("POST", "/second", body=b"small")
        + build_request("GET", "/third?read=none")
    )
    with RawConn(bodies.addr) as c:
        c.send(batch)
        first, second, third = (c.read_response() for _ in range(3))
    assert {k: first.json()[k] for k in ("length", "sha256")} == digest(BODY)
    assert second.json()["length"] == 5
    assert third.status == 200 and third.json()["reads"] == 0
    assert not third.closes


def test_unread_large_body(bodies: Server) -> None:
    with RawConn(bodies.addr) as c:
        c.send(build_request("POST", "/?read=none", body=BODY))
        resp = c.read_response()
        assert resp.status == 200
        if bodies.streams:  # type: ignore[attr-defined]
            # Megabytes left unread are not discarded: the connection closes.
            assert resp.closes
        else:
            # The stored body goes with its request.
            assert not resp.closes
            c.send(build_request("POST", "/", body=b"next"))
            assert c.read_response().json()["length"] == 4
    assert post(bodies, "/", b"after")["length"] == 5


def test_client_gone_in_the_middle_of_a_body(bodies: Server) -> None:
    req = build_request("POST", "/gone", body=BODY)
    before = bodies.stderr_text().count("called /gone")
    with RawConn(bodies.addr) as c:
        c.send(req[: len(req) // 2])
        c.sock.shutdown(socket.SHUT_WR)
        rest = c.read_to_eof()
    if bodies.streams:  # type: ignore[attr-defined]
        # The application was reading: its read raised, naming the problem, and the
        # half-closed client may still read the 500.
        assert bodies.wait_stderr(r"read failed: OSError: client disconnected", timeout=5)
        assert rest == b"" or rest.startswith(b"HTTP/1.1 500"), rest[:200]
    else:
        # The server closed the connection without an answer: it gave the request up
        # without calling the application.
        assert rest == b""
        assert bodies.stderr_text().count("called /gone") == before
    assert post(bodies, "/", b"still serving")["length"] == 13


def test_client_stalling_in_the_middle_of_a_body(bodies: Server) -> None:
    req = build_request("POST", "/stall", body=BODY)
    with RawConn(bodies.addr, timeout=10) as c:
        c.send(req[: len(req) // 2])
        start = time.monotonic()
        rest = c.read_to_eof()
        waited = time.monotonic() - start
    assert 1.5 < waited < 6, waited
    if bodies.streams:  # type: ignore[attr-defined]
        assert bodies.wait_stderr(r"read failed: TimeoutError: timed out reading", timeout=5)
        assert rest == b"" or rest.startswith(b"HTTP/1.1 500"), rest[:200]
    else:
        assert rest.startswith(b"HTTP/1.1 408"), rest[:200]
    assert post(bodies, "/", b"still serving")["length"] == 13


def test_stream_bodies_all_streams_from_this_host_too(start_server) -> None:
    # `all` streams every client's large body; over loopback it acts as `local` does (a
    # client on another host: tests/test_remote_clients.py).
    server = start_server("apps.bodies:app", "--stream-bodies", "all")
    req = build_request("POST", "/when-all", body=BODY)
    head = len(req) - len(BODY)
    with RawConn(server.addr) as c:
        c.send(req[: head + 400 * 1024])
        assert server.wait_stderr("called /when-all"), "not called while the body arrived"
        c.send(req[head + 400 * 1024 :])
        resp = c.read_response()
    assert {k: resp.json()[k] for k in ("length", "sha256")} == digest(BODY)


def test_concurrent_uploads_with_threads(start_server) -> None:
    server = start_server("apps.bodies:app", "--threads", "4")
    blobs = [os.urandom(2 * 1024 * 1024 + i) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        docs = list(pool.map(lambda b: post(server, "/?n=65536", b), blobs))
    for doc, blob in zip(docs, blobs):
        assert {k: doc[k] for k in ("length", "sha256")} == digest(blob)


def test_stream_bodies_option_is_checked() -> None:
    import ferrowsgi

    with pytest.raises(ValueError, match="stream-bodies"):
        ferrowsgi.Server(lambda e, s: [], ["127.0.0.1:0"], stream_bodies="remote")
