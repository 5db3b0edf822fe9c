"""Slow readers of large responses: the response pauses, nobody waits for them.

When a client reads slower than a streamed (or file) response is made, the socket fills; the
server then pauses the application's iteration (backpressure: the app makes at most about a
socket buffer's worth ahead) and the event loop sends what is buffered. No application thread
waits for the slow reader, so with a single thread (the default, which runs the app on the
event loop) or more slow readers than threads, every other client is still answered. When the
reader catches up the response resumes, byte for byte; when it stops reading for the write
timeout the response is abandoned and the iterable's close() still runs, once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import socket
import struct
import termios
import time

import pytest
from apps.backpressure import file_data, stream_digest
from support import IO_TIMEOUT, RawConn, Server, build_request, new_tag, rss_kib, wait_stable

BLOCKS, SIZE = 320, 64 * 1024  # 20 MiB: far more than the socket buffers hold
FILE_SIZE = 24 * 1024 * 1024


def slow_client(server: Server, target: str) -> RawConn:
    """A client with a small receive buffer that asks for ``target`` and reads nothing yet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(IO_TIMEOUT)
    sock.connect(server.addr)
    conn = RawConn(sock, timeout=30)
    conn.send(build_request("GET", target))
    return conn


TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    """The socket's TCP state (tcpi_state, the first byte of struct tcp_info)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def unread(sock: socket.socket) -> int:
    """Bytes waiting in a client socket's receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def counts(server: Server, tag: str) -> dict:
    return server.get_json(f"/count?tag={tag}")


def assert_answered(server: Server) -> None:
    """One ordinary request is answered (within IO_TIMEOUT, the client's socket timeout)."""
    resp = server.request("GET", "/alive")
    assert (resp.status, resp.body) == (200, b"ok")


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def blocks_made(server: Server, tags: list[str]) -> list[int]:
    return [counts(server, t)["blocks"] for t in tags]


@pytest.mark.parametrize(("threads", "readers"), [(1, 3), (2, 6)])
def test_slow_stream_readers_hold_no_thread(start_server, threads: int, readers: int) -> None:
    # The write timeout is long: before pausing existed, each slow reader held a thread (or,
    # with one thread, the event loop) for up to this long.
    server = start_server(
        "apps.backpressure:app", "--threads", str(threads), "--write-timeout", "120"
    )
    tags = [new_tag() for _ in range(readers)]
    clients = [slow_client(server, f"/stream?tag={t}&blocks={BLOCKS}&size={SIZE}") for t in tags]
    assert wait_for(lambda: all(counts(server, t)["blocks"] > 0 for t in tags))
    # The applications stop making blocks: paused, not finished.
    assert wait_stable(lambda: blocks_made(server, tags))
    assert_answered(server)
    # Backpressure: each app was paused long before the end.
    for t in tags:
        c = counts(server, t)
        assert c["calls"] == 1 and c["closes"] == 0
        assert c["blocks"] < BLOCKS // 2, c
    # Now the readers catch up: every byte arrives in order, and close() runs once each.
    want = stream_digest(BLOCKS, SIZE)
    for t, client in zip(tags, clients):
        resp = client.read_response()
        assert resp.status == 200 and resp.framing == "chunked"
        assert len(resp.body) == BLOCKS * SIZE
        assert hashlib.sha256(resp.body).hexdigest() == want
        client.close()
        assert wait_for(lambda t=t: counts(server, t)["closes"] == 1)
        assert counts(server, t) == {"calls": 1, "blocks": BLOCKS, "closes": 1}
    assert "response abandoned" not in server.stderr_text()


def test_slow_file_reader_holds_no_thread(start_server) -> None:
    server = start_server("apps.backpressure:app", "--write-timeout", "120")
    tags = [new_tag() for _ in range(2)]
    clients = [slow_client(server, f"/file?tag={t}&size={FILE_SIZE}") for t in tags]
    assert wait_for(lambda: all(counts(server, t)["calls"] == 1 for t in tags))
    assert_answered(server)
    assert all(counts(server, t)["closes"] == 0 for t in tags)
    want = hashlib.sha256(file_data(FILE_SIZE)).hexdigest()
    for t, client in zip(tags, clients):
        resp = client.read_response()
        assert resp.status == 200 and resp.framing == "length"
        assert resp.header("content-length") == str(FILE_SIZE)
        assert hashlib.sha256(resp.body).hexdigest() == want
        client.close()
        assert wait_for(lambda t=t: counts(server, t)["closes"] == 1)


def test_pipelined_request_waits_behind_a_paused_stream(start_server) -> None:
    server = start_server("apps.backpressure:app")
    tag = new_tag()
    client = slow_client(server, f"/stream?tag={tag}&blocks={BLOCKS}&size={SIZE}")
    client.send(build_request("GET", "/alive"))
    assert wait_for(lambda: counts(server, tag)["blocks"] > 0)
    assert wait_stable(lambda: blocks_made(server, [tag]))
    assert counts(server, tag)["blocks"] < BLOCKS
    assert_answered(server)
    first = client.read_response()
    assert hashlib.sha256(first.body).hexdigest() == stream_digest(BLOCKS, SIZE)
    second = client.read_response()
    assert (second.status, second.body) == (200, b"ok")
    client.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_reader_that_stops_is_dropped_and_close_runs_once(start_server, threads: int) -> None:
    server = start_server(
        "apps.backpressure:app", "--threads", str(threads), "--write-timeout", "1"
    )
    tag = new_tag()
    client = slow_client(server, f"/stream?tag={tag}&blocks={BLOCKS}&size={SIZE}")
    assert wait_for(lambda: counts(server, tag)["closes"] == 1, timeout=15)
    assert server.wait_stderr(
        r"\[INFO\] GET /stream\?tag=" + re.escape(tag) + r".*: response abandoned: the client"
    )
    c = counts(server, tag)
    assert c["calls"] == 1 and c["blocks"] < BLOCKS // 2, c
    # The connection was closed: what the client gets is a cut-off body, then EOF.
    resp = client.read_response(allow_truncated=True)
    assert resp.status == 200 and not resp.complete
    client.close()
    assert_answered(server)
    assert counts(server, tag)["closes"] == 1


@pytest.mark.parametrize("threads", [1, 2])
def test_reader_of_a_complete_answer_that_stops_is_reset(start_server, threads: int) -> None:
    # A complete 8 MB answer to a client that reads nothing: after the write timeout the
    # server resets the connection, so the kernel drops what it still held (megabytes in the
    # autotuned send buffer) instead of trickling it to a client it gave up on.
    server = start_server(
        "apps.backpressure:app", "--threads", str(threads), "--write-timeout", "1"
    )
    client = slow_client(server, "/blob?size=8000000")
    assert server.wait_stderr(
        r"\[INFO\] \S+: closing the connection: the client read nothing for 1 s"
    )
    # The reset has arrived when the client's socket leaves ESTABLISHED (a FIN would wait
    # behind the unread bytes, so the state would stay).
    assert wait_for(lambda: tcp_state(client.sock) != TCP_ESTABLISHED), "no reset came"
    received, reset = 0, False
    client.sock.settimeout(IO_TIMEOUT)
    for _ in range(10_000):
        try:
            data = client.sock.recv(1 << 20)
        except ConnectionResetError:
            reset = True
            break
        if not data:
            break
        received += len(data)
    client.close()
    assert reset, f"the connection ended with a FIN after {received} bytes, not a reset"
    assert received < 1 << 20, received
    assert_answered(server)


def test_client_gone_during_paused_stream_close_runs_once(start_server) -> None:
    server = start_server("apps.backpressure:app", "--threads", "2")
    tag = new_tag()
    client = slow_client(server, f"/stream?tag={tag}&blocks={BLOCKS}&size={SIZE}")
    assert wait_for(lambda: counts(server, tag)["blocks"] > 0)
    assert wait_stable(lambda: blocks_made(server, [tag]))
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # a reset
    assert wait_for(lambda: counts(server, tag)["closes"] == 1)
    assert server.wait_stderr(
        r"\[INFO\] GET /stream\?tag=" + re.escape(tag) + r".*: response abandoned: the client"
    )
    assert_answered(server)
    c = counts(server, tag)
    assert c["closes"] == 1 and c["blocks"] < BLOCKS, c
    assert json.loads(server.request("GET", f"/count?tag={tag}").body)["closes"] == 1


@pytest.mark.parametrize("threads", [1, 2])
def test_pipelined_large_answers_do_not_pile_up(start_server, threads: int) -> None:
    # 24 slow readers each pipeline 8 requests for a 1 MB complete body: the server must stop
    # serving a connection's pipeline while its answers wait (about one answer buffered per
    # connection), not make all 8 (192 MB in all).
    server = start_server(
        "apps.backpressure:app", "--threads", str(threads), "--write-timeout", "60"
    )
    before = rss_kib(server.worker_pid)
    batch = build_request("GET", "/blob?size=1000000") * 8
    clients = []
    for _ in range(24):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(server.addr)
        sock.sendall(batch)
        clients.append(sock)
    # Every connection is being answered, and the server's memory has stopped growing.
    worker = server.worker_pid
    assert wait_for(lambda: all(unread(sock) > 0 for sock in clients), timeout=20)
    assert wait_stable(lambda: rss_kib(worker), timeout=20, still=0.5)
    grown_mib = (rss_kib(worker) - before) / 1024
    assert grown_mib < 96, f"server RSS grew by {grown_mib:.0f} MiB"
    assert_answered(server)
    # Every answer still arrives, in order, to a client that reads.
    conn = RawConn(clients[0], timeout=30)
    for _ in range(8):
        resp = conn.read_response()
        assert resp.status == 200 and len(resp.body) == 1000000
    for sock in clients:
        sock.close()
