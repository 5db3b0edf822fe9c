"""Latency and segment goals that are speed, not behaviour, measured over loopback.

    python bench/latency.py [--rounds N]

The functional tests (tests/) prove what the server does; these are how fast or how lean it
does it, which depends on the machine's load, so they are measured here and not asserted in
the suite. Each line names a goal; the exit status is 1 when one is missed.

* ``fin``: segments the client receives for a connection whose one answer closes it
  (HTTP/1.1 ``Connection: close`` and HTTP/1.0, ``--threads`` 1 and 2). The answer leaves
  with the FIN (MSG_MORE, then the close, or the shutdown of the write side where the close
  does not follow at once or could be a reset), so 3 in all: the SYN-ACK, the acknowledgement
  of the request and the answer with the FIN. Goal: 3 every time.
* ``handback``: with ``--threads 4``, a request sent while a thread serves the one before it
  on the same connection (a 150 ms one). The loop sees it then and must be woken when the
  connection comes back; its next poll could otherwise be half a second away. Measured: the
  gap between the two answers. Goal: under 0.25 s every round.
* ``keepalive``: 30 requests one after another on one connection, 10 ms apart, with
  ``--threads 4`` (each hand-back is quiet, and the next request must still be seen at once).
  Goal: 30 requests in under 3 s.
* ``concurrency``: 4 requests of 0.6 s at once with ``--threads 4``. Goal: under 1.8 s.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serverproc import HOST, ServerProc  # noqa: E402

TCP_INFO_SEGS_IN = 140  # offset of tcpi_segs_in in Linux's struct tcp_info


def request(path: str, close: bool = False, version: str = "HTTP/1.1") -> bytes:
    head = f"GET {path} {version}\r\nHost: bench\r\n"
    if close and version == "HTTP/1.1":
        head += "Connection: close\r\n"
    return (head + "\r\n").encode()


def read_answer(sock: socket.socket, buf: bytearray) -> bytes:
    """One Content-Length answer from ``sock``; what follows stays in ``buf``."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before an answer")
        buf += data
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    end = len(head) + 4 + length
    while len(buf) < end:
        buf += sock.recv(65536)
    answer = bytes(buf[:end])
    del buf[:end]
    return answer


def server(threads: int, log_dir: Path, name: str) -> ServerProc:
    return ServerProc(
        "apps.latency_app:app", ["--threads", str(threads)], log_dir / f"{name}.log", name
    )


def fin(log_dir: Path, rounds: int) -> bool:
    ok = True
    for threads in (1, 2):
        srv = server(threads, log_dir, f"fin-{threads}")
        try:
            for version in ("HTTP/1.1", "HTTP/1.0"):
                counts = []
                for i in range(rounds):
                    with socket.create_connection((HOST, srv.port), timeout=10) as sock:
                        sock.sendall(request(f"/fin{i}", close=True, version=version))
                        while sock.recv(65536):
                            pass
                        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
                    counts.append(struct.unpack_from("I", info, TCP_INFO_SEGS_IN)[0])
                hist = {n: counts.count(n) for n in sorted(set(counts))}
                good = max(counts) <= 3
                ok &= good
                verdict = "ok" if good else "MISSED"
                print(f"fin threads={threads} {version}: segments {hist} (goal: 3) {verdict}")
        finally:
            srv.stop()
    return ok


def handback(log_dir: Path, rounds: int) -> bool:
    srv = server(4, log_dir, "handback")
    gaps = []
    try:
        with socket.create_connection((HOST, srv.port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = bytearray()
            for i in range(rounds):
                sock.sendall(request(f"/a{i}?s=0.15"))
                time.sleep(0.05)
                sock.sendall(request(f"/b{i}"))
                read_answer(sock, buf)
                first = time.monotonic()
                read_answer(sock, buf)
                gaps.append(time.monotonic() - first)
    finally:
        srv.stop()
    good = max(gaps) < 0.25
    print(
        f"handback: gap median {statistics.median(gaps) * 1000:.1f} ms,"
        f" max {max(gaps) * 1000:.1f} ms"
        f" over {rounds} rounds (goal: < 250 ms) {'ok' if good else 'MISSED'}"
    )
    return good


def keepalive(log_dir: Path, rounds: int) -> bool:
    srv = server(4, log_dir, "keepalive")
    totals = []
    try:
        for _ in range(max(1, rounds // 10)):
            with socket.create_connection((HOST, srv.port), timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = bytearray()
                start = time.monotonic()
                for i in range(30):
                    sock.sendall(request(f"/k{i}"))
                    read_answer(sock, buf)
                    time.sleep(0.01)
                totals.append(time.monotonic() - start)
    finally:
        srv.stop()
    good = max(totals) < 3.0
    print(
        f"keepalive: 30 requests in {statistics.median(totals):.2f} s median,"
        f" {max(totals):.2f} s max"
        f" (goal: < 3 s; 0.3 s of it are the client's pauses) {'ok' if good else 'MISSED'}"
    )
    return good


def concurrency(log_dir: Path, rounds: int) -> bool:
    srv = server(4, log_dir, "concurrency")
    walls = []
    try:
        for _ in range(max(1, rounds // 10)):

            def one(i: int) -> None:
                with socket.create_connection((HOST, srv.port), timeout=10) as sock:
                    sock.sendall(request(f"/c{i}?s=0.6", close=True))
                    read_answer(sock, bytearray())

            threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
            start = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            walls.append(time.monotonic() - start)
    finally:
        srv.stop()
    good = max(walls) < 1.8
    print(
        f"concurrency: 4 x 0.6 s with --threads 4 in {statistics.median(walls):.2f} s median,"
        f" {max(walls):.2f} s max (goal: < 1.8 s) {'ok' if good else 'MISSED'}"
    )
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fw-latency-") as d:
        results = [check(Path(d), args.rounds) for check in (fin, handback, keepalive, concurrency)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
