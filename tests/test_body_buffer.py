"""Request bodies kept in memory: one block sized from Content-Length, reused by the next body.

A Content-Length body within the in-memory limit (256 KiB) is read from the socket
straight into a block of its size, with what follows it (a pipelined request) read into
the connection's buffer by the same system call, and the process keeps the block for the
next body. These tests send bodies of sizes around every edge of that path (the 16 KiB
first read that holds the head, the in-memory limit, one byte past it into a spool file),
larger ones before smaller ones so that a reused block must hold only its own body, all
pipelined in one send or in pieces that split heads and bodies anywhere, Content-Length
and chunked mixed, with one application thread and with four. Every answer carries the
body's length and SHA-256 as the application read it.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from support import RawConn, build_request, chunked

KIB = 1024
# In order: large ones first, then smaller ones that reuse the block; the in-memory limit
# and one byte past it (spooled); a small one after the spooled one.
SIZES = [
    64 * KIB,
    1,
    16 * KIB - 200,
    16 * KIB,
    16 * KIB + 1,
    48 * KIB + 7,
    256 * KIB,
    100,
    256 * KIB + 1,
    3,
    65536,
]
READS = ["cl", "chunks&n=7000", "lines"]


def digest(data: bytes) -> dict:
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def answered(resp) -> dict:
    assert resp.status == 200, (resp.status, resp.body[:200])
    doc = resp.json()
    return {"length": doc["length"], "sha256": doc["sha256"]}


@pytest.fixture(params=["1", "4"], ids=lambda t: f"threads{t}")
def server(request, start_server):
    return start_server("apps.bodies:app", "--threads", request.param)


@pytest.mark.parametrize("read", READS)
def test_bodies_pipelined_in_one_send(server, read: str) -> None:
    bodies = [os.urandom(n) for n in SIZES]
    requests = [build_request("POST", f"/?read={read}", body=b) for b in bodies]
    with RawConn(server.addr) as c:
        c.send(b"".join(requests) + build_request("GET", "/?read=none"))
        for body in bodies:
            assert answered(c.read_response()) == digest(body)
        assert answered(c.read_response()) == digest(b"")


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def test_bodies_in_pieces_with_the_next_head_behind(server) -> None:
    # Each request's last piece carries the start of the next one's head, so the read
    # that completes a body also brings the next request.
    bodies = [os.urandom(n) for n in SIZES]
    stream = b"".join(build_request("POST", "/?read=cl", body=b) for b in bodies)
    stream += build_request("GET", "/?read=none")
    cuts, at = [], 0
    for b in bodies:
        head = len(build_request("POST", "/?read=cl", body=b)) - len(b)
        cuts += [at + head // 2, at + head, at + head + 1, at + head + len(b) // 2]
        cuts += [at + head + len(b) + 10]
        at += head + len(b)
    with RawConn(server.addr) as c:
        for piece in pieces(stream, cuts):
            c.send(piece)
            # Apart, so that the server reads the pieces one by one.
            time.sleep(0.005)
        for body in bodies:
            assert answered(c.read_response()) == digest(body)
        assert answered(c.read_response()) == digest(b"")


def test_chunked_and_length_bodies_take_turns(server) -> None:
    bodies = [os.urandom(n) for n in (64 * KIB, 300, 200 * KIB, 5, 70 * KIB)]
    with RawConn(server.addr) as c:
        for i, body in enumerate(bodies):
            if i % 2:
                half = len(body) // 2
                c.request(
                    "POST",
                    "/?read=chunks&n=4096",
                    headers=[("Transfer-Encoding", "chunked")],
                    body=chunked(body[:half], body[half:]),
                )
            else:
                c.request("POST", "/?read=all", body=body)
            assert answered(c.read_response()) == digest(body)


def test_a_body_cut_short_leaves_the_next_one_whole(server) -> None:
    # The client closes inside its body; the block it was read into goes back, and the
    # next body, shorter, must come out exactly as sent.
    first = os.urandom(64 * KIB)
    req = build_request("POST", "/?read=cl", body=first)
    with RawConn(server.addr) as c:
        c.send(req[: len(req) - 20 * KIB])
        time.sleep(0.05)
    for size in (40 * KIB, 64 * KIB):
        body = os.urandom(size)
        with RawConn(server.addr) as c:
            c.request("POST", "/?read=cl", body=body)
            assert answered(c.read_response()) == digest(body)
