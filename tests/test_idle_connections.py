"""Idle keep-alive connections: they give their buffers up, and that costs them nothing.

A connection that stays quiet for a sweep of the event loop (0.5 s) frees its input and
output buffers and its head storage; its next request gets new ones. These tests check
that requests after such an idle spell are served exactly (small and large, pipelined, with
bodies) in each thread mode, and that many idle connections keep the server's memory
bounded (bench/idle.py measures the figure beside other servers).
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from support import RawConn, rss_kib

IDLE = 1.2  # more than two sweeps


@pytest.mark.parametrize("threads", ["1", "4"])
def test_requests_after_an_idle_spell_are_served_exactly(start_server, threads: str) -> None:
    server = start_server("apps.echo:app", "--threads", threads)
    body = bytes(range(256)) * 4096  # 1 MiB, past every buffer

    def echoed(c: RawConn) -> tuple[str, bytes]:
        r = c.read_response()
        assert r.status == 200, r
        doc = json.loads(r.body)
        return doc["environ"]["PATH_INFO"], doc["body"].encode("latin-1")

    with RawConn(server.addr) as c:
        c.request("POST", "/first", body=b"x" * 10)
        assert echoed(c) == ("/first", b"x" * 10)
        time.sleep(IDLE)
        # Two requests in one write after the spell: the first read has no buffer.
        c.send(
            b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert echoed(c) == ("/a", b"abc")
        assert echoed(c) == ("/b", b"")
        time.sleep(IDLE)
        c.request("POST", "/big", body=body)
        assert echoed(c) == ("/big", body)
        time.sleep(IDLE)
        c.request("GET", "/last")
        assert echoed(c) == ("/last", b"")


def test_a_head_split_across_an_idle_spell_is_parsed(start_server) -> None:
    server = start_server("apps.echo:app")
    with RawConn(server.addr) as c:
        c.request("GET", "/one")
        assert c.read_response().status == 200
        time.sleep(IDLE)
        c.send(b"GET /two HTTP/1.1\r\nHo")
        time.sleep(0.1)
        c.send(b"st: t\r\n\r\n")
        assert json.loads(c.read_response().body)["environ"]["PATH_INFO"] == "/two"


def test_many_idle_connections_keep_memory_bounded(start_server) -> None:
    server = start_server("apps.counter:app", "--keep-alive", "60")
    pid = server.worker_pid
    warm = []
    for _ in range(20):
        s = socket.create_connection(server.addr)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        warm.append(s)
    for s in warm:
        assert b" 200 " in s.recv(65536)
    time.sleep(IDLE)
    before = rss_kib(pid)
    n = 1000
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(server.addr)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.settimeout(5)
            data = s.recv(65536)
            assert b" 200 " in data, data[:100]
        time.sleep(2 * IDLE)
        grown = rss_kib(pid) - before
        # About 1 KiB each (bench/idle.py); 16 KiB input buffers kept would be ~5 KiB.
        assert grown < 3 * n, json.dumps({"grown_kib": grown, "connections": n})
        # And every one of them still answers.
        for s in socks[:50]:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        for s in socks[:50]:
            assert b" 200 " in s.recv(65536)
    finally:
        for s in socks + warm:
            s.close()
