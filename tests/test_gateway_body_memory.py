"""Server memory while large bodies arrive through a gateway protocol: it must not grow with
the bodies, as for HTTP/1.x (tests/test_body_memory.py, whose application this uses).

Two uploads of 32 MiB at once, through FastCGI (STDIN records, with and without
CONTENT_LENGTH), SCGI and the uwsgi protocol (plain CONTENT_LENGTH bytes after the
variables) and AJP13 (body packets the server asks for with GET_BODY_CHUNK, with a
Content-Length and chunked from the client), with ``--threads 1`` and ``--threads 4``,
while a sampler reads the server's VmRSS. The bound is docs/ROBUSTNESS.md's ("Upload
memory"): 1 MiB per upload in progress plus 4 MiB for the process. The application reads
each body in 64 KiB pieces and answers its size and CRC-32, so a lost or reordered piece
fails too.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator

import ajp_wire as ajp
import fcgi_wire as fw
import gateway_cgi as g
import pytest
from support import Server, rss_kib

pytestmark = pytest.mark.timeout(240)

MIB = 1 << 20
UPLOAD = 32 * MIB
CONCURRENT = 2
PIECE = 65535
PERIOD = bytes(range(251)) * 4177  # not a multiple of the piece size
PER_UPLOAD_KIB = 1024
PROCESS_KIB = 4096


def body_pieces(size: int = PIECE) -> Iterator[bytes]:
    sent = 0
    while sent < UPLOAD:
        n = min(size, UPLOAD - sent)
        start = sent % len(PERIOD)
        piece = (PERIOD[start:] + PERIOD)[:n]
        sent += n
        yield piece


def expected_crc() -> int:
    crc = 0
    for piece in body_pieces():
        crc = zlib.crc32(piece, crc)
    return crc


def fastcgi_wire(with_length: bool) -> Iterator[bytes]:
    items = fw.cgi_params("POST", "/read?n=65536", b"x", content_length=False)
    items = [(n, v) for n, v in items if n != b"CONTENT_LENGTH"]
    if with_length:
        items.append((b"CONTENT_LENGTH", str(UPLOAD).encode()))
    yield fw.begin(1, keep=False) + fw.params_records(1, items)
    for piece in body_pieces():
        yield fw.record(fw.STDIN, 1, piece)
    yield fw.record(fw.STDIN, 1)


def scgi_wire() -> Iterator[bytes]:
    variables = [(b"CONTENT_LENGTH", str(UPLOAD).encode()), (b"SCGI", b"1")]
    variables += g.base_vars("POST", "/read?n=65536")
    yield g.scgi_request(variables, content_length=False)
    yield from body_pieces()


def uwsgi_wire() -> Iterator[bytes]:
    variables = [*g.base_vars("POST", "/read?n=65536"), (b"CONTENT_LENGTH", str(UPLOAD).encode())]
    yield g.uwsgi_request(variables, content_length=False)
    yield from body_pieces()


def ajp_upload(addr: tuple[str, int], with_length: bool) -> dict:
    """One upload over AJP13, as mod_proxy_ajp sends it: the forward request, the first
    body packet right behind it, the others as the server asks for them. Without a
    Content-Length (a chunked body from the client) every packet is asked for, the first
    too, and the body ends with an empty packet."""
    headers = [("Host", "gateway.example"), ("Content-Type", "application/octet-stream")]
    headers.append(
        ("Content-Length", str(UPLOAD)) if with_length else ("Transfer-Encoding", "chunked")
    )
    pieces = body_pieces(ajp.MAX_BODY_PIECE)
    with ajp.AjpConn(addr, timeout=60) as c:
        request = ajp.forward_request("POST", "/read", headers, query="n=65536")
        c.send(request + ajp.body_packet(next(pieces)) if with_length else request)
        r = c.reply(pieces)
        assert r.status == 200, (r.status, r.body[:300])
        assert r.reuse is True
        # Every piece was asked for, and nothing more: none was left over, and (for a
        # chunked body) the empty packet that ends it was the last question.
        assert next(pieces, None) is None
        count = -(-UPLOAD // ajp.MAX_BODY_PIECE)
        assert len(r.asked) == (count - 1 if with_length else count + 1), len(r.asked)
        return json.loads(r.body)


def answer_json(scheme: str, data: bytes) -> dict:
    if scheme == "fastcgi":
        reader = fw.Reader(_Replay(data))
        ans = reader.answer(1)
        assert ans.status == 200, ans
        return json.loads(ans.body)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] + b" ", head
    return json.loads(body)


class _Replay:
    """A socket-like object over bytes already received, for fcgi_wire.Reader."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


def stream_upload(scheme: str, wire):
    """An upload over a protocol whose body follows the head as it is (the connection is
    closed after the answer)."""

    def upload(addr: tuple[str, int]) -> dict:
        with socket.create_connection(addr, timeout=60) as s:
            for part in wire():
                s.sendall(part)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return answer_json(scheme, data)

    return upload


CASES = [
    ("fastcgi", stream_upload("fastcgi", lambda: fastcgi_wire(True))),
    ("fastcgi", stream_upload("fastcgi", lambda: fastcgi_wire(False))),
    ("scgi", stream_upload("scgi", scgi_wire)),
    ("uwsgi", stream_upload("uwsgi", uwsgi_wire)),
    ("ajp", lambda addr: ajp_upload(addr, True)),
    ("ajp", lambda addr: ajp_upload(addr, False)),
]


@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize(
    ("scheme", "upload"),
    CASES,
    ids=["fastcgi-length", "fastcgi-stream", "scgi", "uwsgi", "ajp-length", "ajp-chunked"],
)
def test_gateway_uploads_keep_memory_flat(threads: str, scheme: str, upload) -> None:
    server = Server(
        "test_body_memory:app", "--threads", threads, binds=[f"{scheme}://127.0.0.1:0"]
    ).start()
    try:
        host, port = server.urls[0].split("://", 1)[1].rsplit(":", 1)
        pid = server.worker_pid
        time.sleep(0.3)
        idle = rss_kib(pid)
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(pid))
                time.sleep(0.005)

        answers: list[dict | BaseException | None] = [None] * CONCURRENT

        def one(i: int) -> None:
            try:
                answers[i] = upload((host, int(port)))
            except BaseException as e:  # reported below
                answers[i] = e

        sampler = threading.Thread(target=sample)
        sampler.start()
        clients = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(200)
        done.set()
        sampler.join()
        crc = expected_crc()
        for a in answers:
            assert isinstance(a, dict), a
            assert a == {"size": UPLOAD, "crc": crc}, a
        grown = peak[0] - idle
        bound = CONCURRENT * PER_UPLOAD_KIB + PROCESS_KIB
        assert grown <= bound, f"RSS grew {grown} KiB (bound {bound} KiB) from {idle} KiB"
    finally:
        server.stop()
