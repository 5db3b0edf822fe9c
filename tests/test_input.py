"""wsgi.input: read/readline/readlines/iteration, bodies framed by length or chunked, never
reading past the body, and ``Expect: 100-continue`` sent on the first read."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time

import pytest
from support import RawConn, Server, build_request, chunked, short_tmp_dir

pytestmark = pytest.mark.timeout(30)

LINES = b"first line\nsecond line\r\n\nlast line without newline"


def post(server: Server, target: str, body: bytes, **kw: object) -> dict:
    resp = server.request("POST", target, body=body, **kw)  # type: ignore[arg-type]
    assert resp.status == 200, (resp.status, resp.body[:500], server.stderr_text()[-3000:])
    return resp.json()


def latin1(b: bytes) -> str:
    return b.decode("latin-1")


def test_read_sized_until_empty(echo_server: Server) -> None:
    body = bytes(range(256)) * 100
    doc = post(echo_server, "/?read=all", body)
    assert doc["body"] == latin1(body)
    assert doc["after"] == ""


def test_read_content_length_at_once(echo_server: Server) -> None:
    doc = post(echo_server, "/?read=cl", b"exactly this")
    assert doc["calls"] == ["exactly this"]
    assert doc["after"] == ""


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_read_in_small_pieces(echo_server: Server, n: int) -> None:
    body = bytes(i % 251 for i in range(5000))
    doc = post(echo_server, f"/?read=chunks&n={n}", body)
    assert doc["body"] == latin1(body)
    assert all(0 < len(piece) <= n for piece in doc["calls"])
    assert doc["after"] == ""


@pytest.mark.parametrize("mode", ["readall", "readneg"])
def test_read_without_size_returns_whole_body(raw_echo_server: Server, mode: str) -> None:
    doc = post(raw_echo_server, f"/?read={mode}", LINES)
    assert doc["calls"] == [latin1(LINES)]
    assert doc["after"] == ""


def test_readline(echo_server: Server) -> None:
    doc = post(echo_server, "/?read=readline", LINES)
    assert doc["calls"] == ["first line\n", "second line\r\n", "\n", "last line without newline"]


def test_readline_with_size(echo_server: Server) -> None:
    doc = post(echo_server, "/?read=readline_size&n=4", b"abcdefghij\nxy\n")
    assert doc["calls"] == ["abcd", "efgh", "ij\n", "xy\n"]


def test_readlines(echo_server: Server) -> None:
    doc = post(echo_server, "/?read=readlines", LINES)
    assert doc["calls"] == [["first line\n", "second line\r\n", "\n", "last line without newline"]]


def test_readlines_with_hint(echo_server: Server) -> None:
    # The hint may be honoured or ignored (PEP 3333); either way nothing is lost or repeated.
    doc = post(echo_server, "/?read=readlines_hint&n=3", LINES)
    first, rest = doc["calls"]
    assert first, "readlines(hint) returned nothing"
    assert "".join(first + rest) == latin1(LINES)
    assert first[0] == "first line\n"


def test_iteration(echo_server: Server) -> None:
    doc = post(echo_server, "/?read=iter", LINES)
    assert doc["calls"] == ["first line\n", "second line\r\n", "\n", "last line without newline"]


def test_empty_body_reads_empty(echo_server: Server) -> None:
    doc = post(echo_server, "/?read=all", b"", headers=[("Content-Length", "0")])
    assert doc["body"] == ""
    assert doc["environ"]["CONTENT_LENGTH"] == "0"


def test_get_without_body_does_not_block(echo_server: Server) -> None:
    # A keep-alive GET has no body: read() must return b"" at once, not wait for more bytes.
    with RawConn(echo_server.addr, timeout=5) as c:
        c.request("GET", "/?read=all")
        # Were read() waiting for a body, the answer would miss the client's 5 s timeout.
        resp = c.read_response()
    assert resp.status == 200
    assert resp.json()["body"] == ""


def test_large_body(echo_server: Server) -> None:
    body = hashlib.sha256(b"seed").digest() * 40000  # 1.28 MB
    resp = echo_server.request("POST", "/?read=all", body=body)
    assert resp.status == 200
    assert resp.json()["body"].encode("latin-1") == body


# --- never past the body ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["all", "readline", "readlines", "iter", "chunks"])
def test_read_stops_at_body_end_with_pipelined_request(echo_server: Server, mode: str) -> None:
    first = build_request("POST", f"/?read={mode}&n=100", body=b"abc")
    second = build_request("GET", "/second", headers=[("Connection", "close")])
    with RawConn(echo_server.addr) as c:
        c.send(first + second)
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.status == 200
    assert r1.json()["body"] == "abc"
    assert r1.json()["after"] == ""
    assert r2.status == 200
    assert r2.json()["environ"]["PATH_INFO"] == "/second"


# --- chunked request bodies -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["all", "readline", "iter", "chunks"])
def test_chunked_request_body(echo_server: Server, mode: str) -> None:
    body = chunked(b"hello ", b"chunked\n", b"world" * 1000)
    doc = post(
        echo_server, f"/?read={mode}&n=333", body, headers=[("Transfer-Encoding", "chunked")]
    )
    assert doc["body"] == "hello chunked\n" + "world" * 1000
    assert doc["after"] == ""


def test_chunked_with_extensions_and_trailers(echo_server: Server) -> None:
    body = b"5;ext=1\r\nhello\r\n6;a=b;c\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    doc = post(echo_server, "/?read=all", body, headers=[("Transfer-Encoding", "chunked")])
    assert doc["body"] == "hello world"


def test_chunked_body_then_pipelined_request(echo_server: Server) -> None:
    first = build_request(
        "POST",
        "/?read=all",
        headers=[("Transfer-Encoding", "chunked")],
        body=chunked(b"abc", b"def"),
    )
    second = build_request("GET", "/after-chunked", headers=[("Connection", "close")])
    with RawConn(echo_server.addr) as c:
        c.send(first + second)
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.json()["body"] == "abcdef"
    assert r2.json()["environ"]["PATH_INFO"] == "/after-chunked"


def test_chunked_body_sent_slowly(echo_server: Server) -> None:
    with RawConn(echo_server.addr) as c:
        c.send(
            build_request(
                "POST",
                "/?read=all",
                headers=[("Transfer-Encoding", "chunked"), ("Connection", "close")],
            )
        )
        for piece in (b"3\r\nabc\r\n", b"4\r\nde", b"fg\r\n", b"0\r\n", b"\r\n"):
            time.sleep(0.05)
            c.send(piece)
        resp = c.read_response()
    assert resp.json()["body"] == "abcdefg"


# --- Expect: 100-continue ---------------------------------------------------------------------


def test_100_continue_sent_on_first_read_not_before(expect_server: Server) -> None:
    d = short_tmp_dir()
    gate = os.path.join(d, "gate")
    head = build_request(
        "POST",
        f"/read?gate={gate}",
        headers=[("Expect", "100-continue"), ("Content-Length", "5"), ("Connection", "close")],
    )
    with RawConn(expect_server.addr) as c:
        c.send(head)
        # The application has been called and waits for the gate before it reads: nothing
        # may have been sent yet (a 100 sent on receipt would be out before the call).
        assert expect_server.wait_stderr(f"called /read gate={re.escape(gate)}")
        early = c.recv_within(0.2)
        assert early == b"", f"server answered before the app read: {early!r}"
        open(gate, "w").close()
        interim = c.read_until(b"\r\n\r\n")
        assert interim is not None
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        c.send(b"hello")
        resp = c.read_response()
    shutil.rmtree(d, ignore_errors=True)
    assert resp.status == 200
    assert resp.body == b"got:hello"


def test_no_100_continue_when_app_does_not_read(expect_server: Server) -> None:
    head = build_request(
        "POST",
        "/noread",
        headers=[("Expect", "100-continue"), ("Content-Length", "5"), ("Connection", "close")],
    )
    with RawConn(expect_server.addr) as c:
        c.send(head)
        resp = c.read_response(skip_1xx=False)
    assert resp.status == 200, "a 100 Continue went out though the app never read"
    assert resp.body == b"did not read"


def test_100_continue_case_insensitive(expect_server: Server) -> None:
    head = build_request(
        "POST",
        "/read",
        headers=[("Expect", "100-Continue"), ("Content-Length", "2"), ("Connection", "close")],
    )
    with RawConn(expect_server.addr) as c:
        c.send(head)
        interim = c.read_response(skip_1xx=False)
        assert interim.status == 100
        c.send(b"ok")
        resp = c.read_response()
    assert resp.body == b"got:ok"


def test_no_100_continue_for_http10(expect_server: Server) -> None:
    # RFC 9110 §10.1.1: a server must not send 100 Continue to an HTTP/1.0 client.
    req = build_request(
        "POST", "/read", version="HTTP/1.0", headers=[("Expect", "100-continue")], body=b"ten"
    )
    with RawConn(expect_server.addr) as c:
        c.send(req)
        resp = c.read_response(skip_1xx=False)
    assert resp.status == 200
    assert resp.body == b"got:ten"
