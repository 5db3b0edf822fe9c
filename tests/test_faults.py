"""Faults in the application and in the client, with the application on ``--threads 4``.

Already covered elsewhere, and not repeated here: an exception before/after the first block
and a str block inside a list (``test_start_response.py``, inline mode), a client gone before
the response, mid-head and mid-body, and a client that resets mid-response with close()
counted (``test_connection.py``, inline mode), close() after success/exception/HEAD
(``test_response.py``). This file covers the rest, all in the queue mode (``--threads 4``):

* the application returns the wrong type (None, an int, a bare str, a dict) or raises;
* it leaks memory on every request (the server's own memory must stay flat);
* it hangs: the other threads keep serving, and with every thread hung requests wait in the
  queue instead of being dropped;
* the client vanishes mid-upload (plain, and behind ``Expect: 100-continue`` where the app is
  already reading) and mid-download (FIN, not a reset): the server keeps serving and close()
  is called exactly once.

The application under test is ``app`` below; the server imports it as ``test_faults:app``
(it runs with ``cwd=tests``). The server runs with ``--log-level debug`` because a client
that goes away mid-download is only logged at debug level.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
from support import RawConn, Server, build_request, connect, new_tag, rss_kib, wait_until

# --------------------------------------------------------------------------------------------
# The application (the server process imports this module, pytest and support included)

_lock = threading.Lock()
_calls: Counter = Counter()  # app calls per tag
_closes: Counter = Counter()  # close() calls per tag
_blocks: Counter = Counter()  # blocks produced per tag
_hanging: Counter = Counter()  # requests currently hung per tag
_leak: list[bytes] = []
TEXT = [("Content-Type", "text/plain")]
HANG_LIMIT = 30.0  # a hung request gives up after this many seconds


class Tracked:
    """A response iterable that counts its close() calls under ``tag``.

    ``stream``: 64 KiB blocks until closed (at most 2000 blocks or 30 s);
    ``upload``: reads wsgi.input in 64 KiB pieces, then yields the size."""

    def __init__(self, tag: str, mode: str, environ: dict) -> None:
        self.tag = tag
        self.mode = mode
        self.environ = environ
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self.mode == "upload":
            size = 0
            for _ in range(1 << 20):
                data = self.environ["wsgi.input"].read(65536)
                if not data:
                    break
                size += len(data)
            yield str(size).encode()
            return
        deadline = time.monotonic() + 30
        for _ in range(2000):
            if self.closed or time.monotonic() > deadline:
                return
            with _lock:
                _blocks[self.tag] += 1
            yield b"s" * 65536

    def close(self) -> None:
        self.closed = True
        with _lock:
            _closes[self.tag] += 1


def _hang(tag: str, folder: str) -> bytes:
    """Sleeps until ``folder/release`` exists (at most HANG_LIMIT s); tells it started by
    creating ``folder/started-<uuid>``."""
    with _lock:
        _hanging[tag] += 1
    open(os.path.join(folder, f"started-{uuid.uuid4().hex}"), "w").close()
    deadline = time.monotonic() + HANG_LIMIT
    try:
        while time.monotonic() < deadline and not os.path.exists(os.path.join(folder, "release")):
            time.sleep(0.05)
    finally:
        with _lock:
            _hanging[tag] -= 1
    return b"woke"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    tag = qs.get("tag", "")
    if path != "/count":
        with _lock:
            _calls[tag] += 1
    if path == "/count":
        with _lock:
            doc = {
                "calls": _calls[tag],
                "closes": _closes[tag],
                "blocks": _blocks[tag],
                "hanging": _hanging[tag],
                "leaked": len(_leak),
            }
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(doc).encode()]
    if path == "/raise":
        raise RuntimeError(f"boom-faults-{tag}")
    if path == "/ret":
        start_response("200 OK", list(TEXT))
        kind = qs["kind"]
        if kind == "none":
            return None
        if kind == "int":
            return 42
        if kind == "str":
            return "a str body"
        if kind == "dict":
            return {"hello": "world"}
        raise ValueError(kind)
    if path == "/leak":
        _leak.append(b"L" * (int(qs.get("kb", "100")) * 1024))
    if path == "/hang":
        body = _hang(tag, qs["dir"])
        start_response("200 OK", list(TEXT))
        return [body]
    if path in ("/stream", "/upload"):
        start_response("200 OK", list(TEXT))
        return Tracked(tag, path[1:], environ)
    start_response("200 OK", list(TEXT))
    return [b"ok"]


# --------------------------------------------------------------------------------------------
# The tests

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server("test_faults:app", "--threads", "4", "--log-level", "debug")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def spooling_server() -> Iterator[Server]:
    """Stores every large body before the application runs, as for clients on other hosts."""
    srv = Server(
        "test_faults:app", "--threads", "4", "--log-level", "debug", "--stream-bodies", "none"
    )
    srv.start()
    yield srv
    srv.stop()


def counts(server: Server, tag: str) -> dict:
    return server.get_json(f"/count?tag={tag}")


ERROR_RECORD = r"\[ERROR\] Error handling request "


def error_records(server: Server, request: str) -> list[str]:
    """The error log lines that report an application error for ``request`` ("GET /x")."""
    rx = re.compile(ERROR_RECORD + re.escape(request) + r"$", re.M)
    return rx.findall(server.stderr_text())


def assert_alive(server: Server) -> None:
    resp = server.request("GET", "/alive")
    assert (resp.status, resp.body) == (200, b"ok")


# --- wrong results and exceptions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/ret?kind=none", "TypeError: 'NoneType' object is not iterable"),
        ("/ret?kind=int", "TypeError: 'int' object is not iterable"),
        ("/ret?kind=str", "TypeError: the application returned str in its response body"),
        ("/ret?kind=dict", "TypeError: the application returned str in its response body"),
        ("/raise", "RuntimeError: boom-faults-"),
    ],
)
def test_bad_result_is_500_and_one_log_record(server: Server, target: str, message: str) -> None:
    tag = new_tag()
    target = f"{target}{'&' if '?' in target else '?'}tag={tag}"
    with RawConn(server.addr) as c:
        c.request("GET", target)
        resp = c.read_response()
        assert resp.status == 500
        assert b"Traceback" not in resp.body and tag.encode() not in resp.body
        assert resp.closes and c.at_eof()
    # The record is written before the answer leaves, but the test reads the server's stderr
    # through a thread of its own: wait for this request's record, not just for the message
    # (an earlier case logged the same one).
    # Its traceback lines follow it, up to the next record (a line starting "[2026-...").
    record = re.compile(
        ERROR_RECORD
        + re.escape(f"GET {target}")
        + r"\n(?:(?!\[\d{4}-).*\n)*?.*"
        + re.escape(message)
    )
    assert server.stderr_matches(record), server.stderr_text()[-2000:]
    assert len(error_records(server, f"GET {target}")) == 1, server.stderr_text()[-2000:]
    assert counts(server, tag)["calls"] == 1
    assert_alive(server)


# --- a leaking application -----------------------------------------------------------------


def test_leaking_app_grows_by_its_leak_only(server: Server) -> None:
    n, kb = 200, 100
    with RawConn(server.addr) as c:
        for i in range(50):  # warm up: threads, buffers, allocator arenas
            c.request("GET", f"/warm{i}")
            assert c.read_response().status == 200
        flat0 = rss_kib(server.worker_pid)
        for i in range(n):
            c.request("GET", f"/plain{i}")
            assert c.read_response().status == 200
        flat1 = rss_kib(server.worker_pid)
        for i in range(n):
            c.request("GET", f"/leak?kb={kb}&i={i}")
            assert c.read_response().status == 200
        leak1 = rss_kib(server.worker_pid)
    assert flat1 - flat0 < 4096, f"{n} plain requests grew the server by {flat1 - flat0} KiB"
    leaked = n * kb
    grown = leak1 - flat1
    assert 0.9 * leaked < grown < leaked + 8192, f"leaked {leaked} KiB, RSS grew {grown} KiB"
    assert counts(server, "")["leaked"] >= n
    assert_alive(server)


# --- hung application threads --------------------------------------------------------------


def _send_hangs(server: Server, tag: str, folder: str, k: int) -> list[socket.socket]:
    socks = []
    for _ in range(k):
        s = connect(server.addr, timeout=HANG_LIMIT)
        s.sendall(build_request("GET", f"/hang?tag={tag}&dir={folder}"))
        socks.append(s)
    return socks


def _started(folder: str) -> int:
    return sum(name.startswith("started-") for name in os.listdir(folder))


def test_three_hung_threads_leave_one_serving(server: Server) -> None:
    tag, folder = new_tag(), tempfile.mkdtemp(prefix="fw-hang-")
    socks = _send_hangs(server, tag, folder, 3)
    try:
        assert wait_until(lambda: _started(folder) == 3, timeout=5)
        assert counts(server, tag)["hanging"] == 3
        with RawConn(server.addr) as c:
            for i in range(20):
                # The hung requests last until released (up to 30 s); one waiting behind
                # them would miss the client's 5 s timeout.
                c.request("GET", f"/quick{i}")
                assert c.read_response().status == 200
    finally:
        open(os.path.join(folder, "release"), "w").close()
    for s in socks:
        with RawConn(s, timeout=5) as c:
            assert c.read_response().body == b"woke"
    assert wait_until(lambda: counts(server, tag)["hanging"] == 0)
    shutil.rmtree(folder, ignore_errors=True)


def test_all_threads_hung_requests_wait_then_are_served(server: Server) -> None:
    tag, folder = new_tag(), tempfile.mkdtemp(prefix="fw-hang-")
    socks = _send_hangs(server, tag, folder, 4)
    try:
        assert wait_until(lambda: _started(folder) == 4, timeout=5)
        waiting = connect(server.addr, timeout=1.0)
        waiting.sendall(build_request("GET", "/queued"))
        with pytest.raises(socket.timeout):
            waiting.recv(1024)  # queued behind four hung threads, not dropped
    finally:
        open(os.path.join(folder, "release"), "w").close()
    with RawConn(waiting, timeout=5) as c:
        assert c.read_response().body == b"ok"
    for s in socks:
        with RawConn(s, timeout=5) as c:
            assert c.read_response().body == b"woke"
    shutil.rmtree(folder, ignore_errors=True)


# --- clients that vanish -------------------------------------------------------------------


def _vanish_mid_upload(server: Server, tag: str, times: int) -> None:
    for _ in range(times):
        s = connect(server.addr)
        head = build_request("POST", f"/upload?tag={tag}", headers=[("Content-Length", "1000000")])
        s.sendall(head + b"u" * 500_000)
        s.close()


def test_client_vanishes_mid_upload_app_never_called(spooling_server: Server) -> None:
    server = spooling_server
    tag = new_tag()
    dropped = re.compile(
        rf"\[INFO\] \S+: client closed the connection during the body of POST /upload\?tag={tag}"
    )
    _vanish_mid_upload(server, tag, 3)
    # The server has seen each client go (it logs each dropped request once).
    assert wait_until(lambda: len(dropped.findall(server.stderr_text())) == 3, timeout=10)
    assert_alive(server)
    # The body is read before the application is called: it never saw these requests.
    c = counts(server, tag)
    assert (c["calls"], c["closes"]) == (0, 0)


def test_client_vanishes_mid_streamed_upload_close_called(server: Server) -> None:
    # A local client's large body streams: the application is reading when the client goes.
    tag = new_tag()
    target = f"/upload?tag={tag}"
    before = len(error_records(server, f"POST {target}"))
    _vanish_mid_upload(server, tag, 3)
    assert wait_until(lambda: counts(server, tag)["closes"] >= 3), "close() not called"
    assert_alive(server)
    assert counts(server, tag) == {**counts(server, tag), "calls": 3, "closes": 3}
    assert len(error_records(server, f"POST {target}")) == before + 3
    assert "OSError: client disconnected before the end of the request body" in (
        server.stderr_text()
    )
    assert_alive(server)


def test_client_vanishing_mid_upload_is_logged(spooling_server: Server) -> None:
    server = spooling_server
    tag = new_tag()
    before = server.stderr_text()
    s = connect(server.addr)
    head = build_request("POST", f"/upload?tag={tag}", headers=[("Content-Length", "1000000")])
    s.sendall(head + b"u" * 500_000)
    s.close()
    assert_alive(server)
    rx = re.compile(r"(went away|disconnected|closed).*(body|upload|request)")
    assert wait_until(lambda: rx.search(server.stderr_text()[len(before) :])), server.stderr_text()[
        len(before) :
    ]


def test_client_vanishes_mid_upload_while_app_reads(server: Server) -> None:
    tag = new_tag()
    target = f"/upload?tag={tag}"
    s = connect(server.addr)
    head = [("Content-Length", "1000000"), ("Expect", "100-continue")]
    s.sendall(build_request("POST", target, headers=head))
    assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
    s.sendall(b"u" * 500_000)
    s.close()
    assert wait_until(lambda: counts(server, tag)["closes"] >= 1), "close() never called"
    assert server.wait_stderr("OSError: client disconnected before the end of the request body")
    assert_alive(server)
    assert counts(server, tag)["closes"] == 1
    assert counts(server, tag)["calls"] == 1
    assert len(error_records(server, f"POST {target}")) == 1
    assert_alive(server)


def test_client_vanishes_mid_download_close_called_once(server: Server) -> None:
    tag = new_tag()
    gone = re.compile(
        r"\[INFO\] GET /stream\S*: (client went away during the response|response abandoned)"
    )
    gone_before = len(gone.findall(server.stderr_text()))
    s = connect(server.addr)
    s.sendall(build_request("GET", f"/stream?tag={tag}"))
    got = s.recv(100)
    assert got.startswith(b"HTTP/1.1 200 ")
    s.close()  # an orderly FIN with unread data in the socket
    assert wait_until(lambda: counts(server, tag)["closes"] >= 1, timeout=10)
    assert wait_until(lambda: len(gone.findall(server.stderr_text())) > gone_before)
    assert_alive(server)
    c = counts(server, tag)
    assert c["closes"] == 1 and c["calls"] == 1
    assert c["blocks"] < 2000, "the app was iterated to the end for a client that left"
    assert len(gone.findall(server.stderr_text())) == gone_before + 1
    # Several at once, then the server still answers on every thread.
    tags = [new_tag() for _ in range(8)]
    socks = []
    for t in tags:
        s = connect(server.addr)
        s.sendall(build_request("GET", f"/stream?tag={t}"))
        socks.append(s)
    for s in socks:
        s.recv(10)
        s.close()
    assert wait_until(lambda: all(counts(server, t)["closes"] == 1 for t in tags), timeout=10)
    for _ in range(8):
        assert_alive(server)


def test_client_gone_before_a_large_answer_with_sigpipe_at_its_default(tmp_path) -> None:
    """Every write to a socket refuses SIGPIPE, the gathering write of a head with a large
    body too: with the signal's default action restored by the application, a client that
    closed before its answer costs an error, not the worker."""
    sock_path = str(tmp_path / "s.sock")
    srv = Server("apps.sigpipe:app", binds=[f"unix:{sock_path}"])
    srv.start()
    try:

        def get(path: str) -> bytes:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(sock_path)
            s.sendall(build_request("GET", path, headers=[("Connection", "close")]))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            s.close()
            return data

        big_file = tmp_path / "big.bin"
        big_file.write_bytes(b"y" * (16 << 20))
        pid = get("/pid").split(b"\r\n\r\n", 1)[1]
        for target in ["/big"] * 5 + [f"/file?{big_file}"] * 5:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            s.sendall(build_request("GET", target))
            s.close()  # gone before the answer: the server's write finds no reader
        for _ in range(5):
            # Gone in the middle of a file: sendfile(2), which takes no MSG_NOSIGNAL.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            s.sendall(build_request("GET", f"/file?{big_file}"))
            assert s.recv(1000).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.05)
            s.close()
        assert get("/big").endswith(b"x" * 1000)
        assert get(f"/file?{big_file}").endswith(b"y" * 1000)
        assert get("/pid").split(b"\r\n\r\n", 1)[1] == pid
        assert "signal" not in srv.stderr_text().lower()
    finally:
        srv.stop()
