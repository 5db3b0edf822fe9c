"""A client's last request with application threads: a request that says it is the last
(``Connection: close``, HTTP/1.0, or any SCGI or uwsgi request) goes to its thread without
the connection being watched by the event loop, and the thread that answers it closes it.

What must still hold: an answer the socket cannot take at once (a slow reader) is written
whole once the reader catches up, whether it is complete, streamed or a file; a reader that
stops is dropped after the write timeout; connections closed by their threads free their
places (``--worker-connections``); and the same with the inline mode, for comparison.
"""

from __future__ import annotations

import hashlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import gateway_cgi as g
import pytest
from apps.backpressure import file_data, stream_digest
from support import IO_TIMEOUT, RawConn, Server, build_request, free_port

BLOB = 8_000_000
BLOCKS, SIZE = 160, 64 * 1024  # 10 MiB streamed
FILE_SIZE = 12 * 1024 * 1024

# target, the body's length, and how its bytes are checked (None: all b"b")
ANSWERS = {
    "blob": (f"/blob?size={BLOB}", BLOB, None),
    "stream": (f"/stream?tag=t&blocks={BLOCKS}&size={SIZE}", BLOCKS * SIZE, "stream"),
    "file": (f"/file?tag=f&size={FILE_SIZE}", FILE_SIZE, "file"),
}


def small_buffer_socket() -> socket.socket:
    """A TCP socket with a small receive buffer, so that a large answer fills it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(IO_TIMEOUT)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        d = sock.recv(1 << 20)
        if not d:
            return b"".join(chunks)
        chunks.append(d)


def check_body(kind: str | None, body: bytes) -> None:
    if kind is None:
        assert body == b"b" * len(body), body[:40]
    elif kind == "stream":
        assert hashlib.sha256(body).hexdigest() == stream_digest(BLOCKS, SIZE)
    else:
        assert body == file_data(FILE_SIZE)


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("answer", list(ANSWERS))
def test_last_request_to_a_slow_reader_is_answered_whole(
    start_server, threads: int, answer: str
) -> None:
    # The answer fills the socket while the client reads nothing; the thread gives the
    # connection back unfinished, and the loop, which was not watching it, must watch it
    # now to learn when the socket has room.
    server = start_server("apps.backpressure:app", "--threads", str(threads))
    target, length, kind = ANSWERS[answer]
    sock = small_buffer_socket()
    sock.connect(server.addr)
    sock.sendall(build_request("GET", target, headers=[("Connection", "close")]))
    time.sleep(1.0)
    with RawConn(sock, timeout=30) as conn:
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.closes
        assert conn.at_eof()
    assert len(resp.body) == length, (len(resp.body), length)
    check_body(kind, resp.body)


@pytest.mark.parametrize("threads", [1, 4])
def test_last_request_of_a_reader_that_stops_is_dropped(start_server, threads: int) -> None:
    server = start_server(
        "apps.backpressure:app", "--threads", str(threads), "--write-timeout", "1"
    )
    sock = small_buffer_socket()
    sock.connect(server.addr)
    sock.sendall(build_request("GET", f"/blob?size={BLOB}", headers=[("Connection", "close")]))
    assert server.wait_stderr(r"\[INFO\] \S+: closing the connection: the client read nothing")
    sock.close()
    assert server.request("GET", "/alive").body == b"ok"


@pytest.mark.parametrize("proto", list(g.PROTOCOLS))
@pytest.mark.parametrize("threads", [1, 4])
def test_gateway_answer_to_a_slow_reader_is_whole(proto: str, threads: int) -> None:
    p = g.PROTOCOLS[proto]
    port = free_port()
    binds = [f"{proto}://127.0.0.1:{port}"]
    with Server("apps.backpressure:app", "--threads", str(threads), binds=binds).start():
        for answer in ANSWERS:
            target, length, kind = ANSWERS[answer]
            variables = g.base_vars("GET", target)
            sock = small_buffer_socket()
            sock.connect(("127.0.0.1", port))
            sock.sendall(p.request(variables))
            time.sleep(0.5)
            raw = read_all(sock)
            sock.close()
            status, _, body = g.parse_answer(raw)
            assert status == 200, raw[:200]
            assert len(body) == length, (answer, len(body), length)
            check_body(kind, body)


@pytest.mark.parametrize("proto", ["http", *g.PROTOCOLS])
def test_connections_closed_by_their_threads_free_their_places(proto: str) -> None:
    # Eight places in all: a connection closed by its thread whose place the loop did not
    # free would soon leave new connections waiting in the backlog, unanswered.
    port = free_port()
    scheme = "" if proto == "http" else f"{proto}://"
    binds = [f"{scheme}127.0.0.1:{port}"]
    opts = ("--threads", "4", "--worker-connections", "8")
    with Server("apps.proxied:app", *opts, binds=binds).start():

        def one(i: int) -> int:
            if proto == "http":
                with RawConn(("127.0.0.1", port), timeout=10) as c:
                    c.send(build_request("GET", f"/n{i}", headers=[("Connection", "close")]))
                    resp = c.read_response()
                    assert c.at_eof()
                    return resp.status
            variables = g.base_vars("GET", f"/n{i}")
            status, _, _ = g.ask(("127.0.0.1", port), g.PROTOCOLS[proto].request(variables))
            return status

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(400)))
        assert statuses == [200] * 400
        # Every place is free again: eight connections held open at once are answered.
        conns = []
        try:
            for _ in range(8):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                conns.append(s)
            for i, s in enumerate(conns):
                if proto == "http":
                    s.sendall(build_request("GET", f"/h{i}", headers=[("Connection", "close")]))
                else:
                    s.sendall(g.PROTOCOLS[proto].request(g.base_vars("GET", f"/h{i}")))
            for s in conns:
                assert g.read_to_eof(s)[:64].split(b" ")[1] == b"200"
        finally:
            for s in conns:
                s.close()


def test_connections_closed_while_others_arrive_keep_their_own_events() -> None:
    # Keep-alive connections that the server closes after their second request (watched by
    # the poller, closed by the loop when their thread gives them back) while new
    # connections keep arriving: each connection's answers say truthfully whether it stays
    # open, and every request on one that stays is answered. (The key a closed connection
    # frees must not carry that connection's last event over to a new one; the order of
    # events that would do it is not one this test can force.)
    port = free_port()
    opts = ("--threads", "4", "--keep-alive-requests", "2")
    with Server("apps.proxied:app", *opts, binds=[f"127.0.0.1:{port}"]).start():

        def client(i: int) -> list[str]:
            problems = []
            for j in range(100):
                with RawConn(("127.0.0.1", port), timeout=10) as c:
                    for k in range(2):
                        c.send(build_request("GET", f"/c{i}/{j}/{k}"))
                        resp = c.read_response()
                        if resp.status != 200:
                            problems.append(f"{i}/{j}/{k}: {resp.status}")
                        if resp.closes != (k == 1):
                            problems.append(f"{i}/{j}/{k}: closes={resp.closes}")
                            break
            return problems

        with ThreadPoolExecutor(8) as pool:
            problems = [p for ps in pool.map(client, range(8)) for p in ps]
        assert problems == [], problems[:10]
