"""Malformed, ambiguous or oversized requests: a clear 4xx/5xx with ``Connection: close``, the
connection closed (so nothing behind a framing error is parsed) and the app never called."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from support import RawConn, Server, build_request, chunked

pytestmark = pytest.mark.timeout(30)

H = b"Host: localhost\r\n"
LONG = 8200  # beyond the 8190-byte limits

# (id, raw request, acceptable statuses)
CASES: list[tuple[str, bytes, set[int]]] = [
    ("garbage_request_line", b"GARBAGE\r\n\r\n", {400}),
    ("missing_target", b"GET HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("space_in_target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("bad_version", b"GET / HTTX/1.1\r\n" + H + b"\r\n", {400}),
    ("lowercase_version", b"GET / http/1.1\r\n" + H + b"\r\n", {400}),
    ("http2_request_line", b"GET / HTTP/2.0\r\n" + H + b"\r\n", {505}),
    ("http3_request_line", b"GET / HTTP/3.0\r\n" + H + b"\r\n", {505}),
    ("missing_host_11", b"GET / HTTP/1.1\r\n\r\n", {400}),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("bad_host_value", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", {400}),
    (
        "cl_and_te",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    ("cl_not_a_number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", {400}),
    ("cl_negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", {400}),
    ("cl_plus_sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", {400}),
    (
        "cl_differing_repeats",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        {400},
    ),
    (
        "cl_differing_list",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
        {400},
    ),
    (
        "cl_overflow",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n",
        {400, 413},
    ),
    ("obs_fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n folded\r\n\r\n", {400}),
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n", {400}),
    ("space_before_colon_other", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", {400}),
    ("bare_cr_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", {400}),
    ("nul_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", {400}),
    ("nul_in_target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("bad_header_name", b"GET / HTTP/1.1\r\n" + H + b"X@A: b\r\n\r\n", {400}),
    ("header_without_colon", b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", {400}),
    (
        "te_unknown_coding",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        {501},
    ),
    (
        "te_gzip_only",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
        {400, 501},
    ),
    (
        "te_chunked_not_last",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    (
        "te_in_http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        {400},
    ),
    (
        "bad_chunk_size",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        {400},
    ),
    (
        "chunk_missing_crlf",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        {400},
    ),
    (
        "chunk_size_overflow",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n",
        {400, 413},
    ),
    ("long_request_line", b"GET /" + b"a" * LONG + b" HTTP/1.1\r\n" + H + b"\r\n", {414}),
    (
        "too_many_headers",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
        {431},
    ),
    ("header_too_long", b"GET / HTTP/1.1\r\n" + H + b"X-Long: " + b"v" * LONG + b"\r\n\r\n", {431}),
    ("expect_unknown", b"GET / HTTP/1.1\r\n" + H + b"Expect: something-else\r\n\r\n", {417}),
]


def app_calls(server: Server) -> int:
    with RawConn(server.addr) as c:
        c.request("GET", "/__count", headers=[("Connection", "close")])
        return int(c.read_response().body)


@pytest.mark.parametrize(("raw", "statuses"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request(counter_server: Server, raw: bytes, statuses: set[int]) -> None:
    before = app_calls(counter_server)
    with RawConn(counter_server.addr) as c:
        c.send(raw)
        resp = c.read_response()
        rest = c.read_to_eof()
    assert resp.status in statuses, (resp.status, resp.body[:200])
    assert resp.closes, f"no Connection: close on a {resp.status}"
    assert rest == b"", f"bytes after the error response: {rest[:200]!r}"
    assert app_calls(counter_server) == before, "the app was called for a malformed request"


@pytest.mark.parametrize(
    "smuggler",
    [
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\nContent-Length: 44\r\n\r\n",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n"
        b"0\r\n\r\n",
    ],
    ids=["cl_te", "double_cl", "double_te"],
)
def test_nothing_behind_a_framing_error_is_parsed(counter_server: Server, smuggler) -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
    before = app_calls(counter_server)
    with RawConn(counter_server.addr) as c:
        c.send(smuggler + smuggled)
        data = c.read_to_eof()
    assert data.count(b"HTTP/1.1 ") + data.count(b"HTTP/1.0 ") == 1, data[:500]
    assert data.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4", b"HTTP/1.1 5", b"HTTP/1.0 5"))
    assert app_calls(counter_server) == before


def test_valid_requests_still_served(counter_server: Server) -> None:
    # Positive controls for the table above: the same shapes, well formed.
    for raw in (
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\nConnection: close\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        ),
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        b"GET /" + b"a" * 4000 + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(90))
        + b"Connection: close\r\n\r\n",
    ):
        before = app_calls(counter_server)
        with RawConn(counter_server.addr) as c:
            c.send(raw)
            resp = c.read_response()
        assert resp.status == 200, (raw[:80], resp.status)
        assert app_calls(counter_server) == before + 1


def test_leading_empty_lines_are_ignored(counter_server: Server) -> None:
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    with RawConn(counter_server.addr) as c:
        c.send(b"\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert c.read_response().status == 200


# --- request body limit (only if the option exists) -------------------------------------------


@pytest.fixture(scope="module")
def has_body_limit() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "--limit-request-body" in out.stdout + out.stderr


def test_body_over_limit_is_413(start_server, has_body_limit: bool) -> None:
    if not has_body_limit:
        pytest.skip("ferrowsgi has no --limit-request-body option")
    server = start_server("apps.counter:app", "--limit-request-body", "1000")
    before = app_calls(server)
    with RawConn(server.addr) as c:
        c.send(build_request("POST", "/", body=b"x" * 1001))
        resp = c.read_response()
    assert resp.status == 413
    assert resp.closes
    assert app_calls(server) == before
    ok = server.request("POST", "/", body=b"x" * 1000)
    assert ok.status == 200


def test_chunked_body_over_limit_is_413(start_server, has_body_limit: bool) -> None:
    if not has_body_limit:
        pytest.skip("ferrowsgi has no --limit-request-body option")
    server = start_server("apps.counter:app", "--limit-request-body", "1000")
    before = app_calls(server)
    with RawConn(server.addr) as c:
        c.send(
            build_request(
                "POST",
                "/",
                headers=[("Transfer-Encoding", "chunked")],
                body=chunked(b"x" * 600, b"y" * 600),
            )
        )
        resp = c.read_response()
    assert resp.status == 413
    assert resp.closes
    assert app_calls(server) == before


# --- configurable limits and timeouts ---------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(module_servers) -> Server:
    return module_servers(
        "apps.counter:app",
        "--limit-request-line",
        "100",
        "--limit-request-fields",
        "5",
        "--limit-request-field-size",
        "100",
    )


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 120 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + H + b"X-Long: " + b"v" * 120 + b"\r\n\r\n", 431),
    ],
    ids=["request_line", "field_count", "field_size"],
)
def test_configured_limits(limited_server: Server, raw: bytes, status: int) -> None:
    before = app_calls(limited_server)
    with RawConn(limited_server.addr) as c:
        c.send(raw)
        resp = c.read_response()
    assert resp.status == status
    assert resp.closes
    assert app_calls(limited_server) == before


def test_configured_limits_allow_smaller_requests(limited_server: Server) -> None:
    raw = b"GET /" + b"a" * 50 + b" HTTP/1.1\r\n" + H + b"X-A: b\r\nConnection: close\r\n\r\n"
    with RawConn(limited_server.addr) as c:
        c.send(raw)
        assert c.read_response().status == 200


@pytest.fixture(scope="module")
def timeout_server(module_servers) -> Server:
    return module_servers("apps.counter:app", "--read-timeout", "1", "--keep-alive", "1")


def test_slow_request_head_gets_408(timeout_server: Server) -> None:
    with RawConn(timeout_server.addr, timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        resp = c.read_response()
        assert resp.status == 408
        assert resp.closes
        assert c.at_eof()
    assert 0.5 < time.monotonic() - start < 5


def test_idle_keepalive_connection_closed_silently(timeout_server: Server) -> None:
    with RawConn(timeout_server.addr, timeout=10) as c:
        c.request("GET", "/")
        assert c.read_response().status == 200
        start = time.monotonic()
        assert c.at_eof(timeout=8), f"unexpected bytes on an idle connection: {c.buf!r}"
    assert 0.5 < time.monotonic() - start < 5
