"""Server memory while large request bodies arrive: it must not grow with the bodies.

The server process runs this module's application (``test_body_memory:app``). Four
clients at once upload 64 MiB each, chunked in one batch and with a Content-Length in the
next, while a sampler reads the server's VmRSS from /proc every few milliseconds. The
four uploads of a batch are read four ways (``read(65536)``, ``read(7000)``,
``readline()`` and iteration over ``wsgi.input``), and one of them waits for
``100 Continue``. Every mode that decides where a body goes (``--stream-bodies local``,
``all``: read from the socket as it arrives; ``none``: stored in a temporary file first)
runs with ``--threads 1`` and ``--threads 4``.

docs/ROBUSTNESS.md ("Upload memory") documents the bound asserted here: the RSS peak
stays within 1 MiB per upload in progress plus 4 MiB for the process (the pieces the
application holds, the allocator's arenas), however large the bodies. Before chunked
bodies were bounded, the chunked batch took the server from 13 to 174 MiB.
"""

from __future__ import annotations

import json
import os
import threading
import time
import zlib

import pytest
from support import Server, connect, rss_kib

pytestmark = pytest.mark.timeout(240)

MIB = 1 << 20
UPLOAD = 64 * MIB
CONCURRENT = 4
PIECE = 65536
# A random period that is not a multiple of the piece size, so that bytes out of order
# change the checksum; random bytes hold a newline about every 256 bytes.
PERIOD = os.urandom(MIB + 4099)
READERS = ["/read?n=65536", "/read?n=7000", "/readline", "/iter"]
# The documented bound (docs/ROBUSTNESS.md, "Upload memory").
PER_UPLOAD_KIB = 1024
PROCESS_KIB = 4096


def app(environ, start_response):
    """Reads the body the way the path says and answers its size and CRC-32."""
    stream = environ["wsgi.input"]
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    size, crc = 0, 0
    if path == "/iter":
        for line in stream:
            size, crc = size + len(line), zlib.crc32(line, crc)
    else:
        n = int(query.partition("=")[2]) if query else -1
        read = stream.readline if path == "/readline" else stream.read
        for _ in range(1 << 30):
            data = read(n)
            if not data:
                break
            size, crc = size + len(data), zlib.crc32(data, crc)
    body = json.dumps({"size": size, "crc": crc}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def upload(server: Server, target: str, size: int, chunked: bool, expect: bool) -> dict:
    """POSTs ``size`` bytes of PERIOD (chunked or not), returns the answer and our CRC."""
    crc = 0
    doubled = PERIOD + PERIOD[:PIECE]
    with connect(server.addr, timeout=60) as sock:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        head = f"POST {target} HTTP/1.1\r\nHost: t\r\n{framing}\r\nConnection: close\r\n"
        if expect:
            head += "Expect: 100-continue\r\n"
        sock.sendall(head.encode() + b"\r\n")
        if expect:
            interim = b""
            while b"\r\n\r\n" not in interim:
                got = sock.recv(1024)
                assert got, "closed before 100 Continue"
                interim += got
            assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        sent = 0
        while sent < size:
            n = min(PIECE, size - sent)
            at = sent % len(PERIOD)
            piece = doubled[at : at + n]
            crc = zlib.crc32(piece, crc)
            sock.sendall(b"%x\r\n%s\r\n" % (n, piece) if chunked else piece)
            sent += n
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        answer = b""
        while True:
            got = sock.recv(65536)
            if not got:
                break
            answer += got
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 200 "), answer[:300]
    return {"answer": json.loads(body), "sent": {"size": size, "crc": crc}}


def batch(server: Server, size: int, chunked: bool) -> tuple[list[dict], int]:
    """CONCURRENT uploads at once, one per reader (the second waits for 100 Continue);
    returns their outcomes and the server's peak RSS in KiB meanwhile."""
    results: list[dict | BaseException] = [RuntimeError("not run")] * CONCURRENT

    def one(i: int) -> None:
        try:
            results[i] = upload(server, READERS[i], size, chunked, expect=i == 1)
        except BaseException as e:  # reported by the caller
            results[i] = e

    clients = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    worker = server.worker_pid  # the process that serves (the master only supervises)
    peak = rss_kib(worker)
    for t in clients:
        t.start()
    while any(t.is_alive() for t in clients):
        peak = max(peak, rss_kib(worker))
        time.sleep(0.005)
    for t in clients:
        t.join()
    peak = max(peak, rss_kib(worker))
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results, peak  # type: ignore[return-value]


@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize("stream", ["local", "all", "none"])
def test_memory_stays_flat_under_concurrent_large_uploads(
    start_server, stream: str, threads: str
) -> None:
    server = start_server("test_body_memory:app", "--threads", threads, "--stream-bodies", stream)
    # Warm-up: every reader and framing once, so that threads, arenas, spool files and
    # pipes exist before the idle figure is taken.
    for chunked in (True, False):
        batch(server, 2 * MIB, chunked)
    idle = rss_kib(server.worker_pid)
    bound = CONCURRENT * PER_UPLOAD_KIB + PROCESS_KIB
    for chunked in (True, False):
        results, peak = batch(server, UPLOAD, chunked)
        for r in results:
            assert r["answer"] == r["sent"], r
        framing = "chunked" if chunked else "Content-Length"
        print(f"{framing}, {stream}, threads {threads}: idle {idle} KiB, peak +{peak - idle} KiB")
        assert peak - idle <= bound, (
            f"{framing}, --stream-bodies {stream}, --threads {threads}: RSS {idle} KiB idle, "
            f"{peak} KiB peak during {CONCURRENT} x {UPLOAD // MIB} MiB uploads "
            f"(bound +{bound} KiB)"
        )
    assert "ERROR" not in server.stderr_text()
