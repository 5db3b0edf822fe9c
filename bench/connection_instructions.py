#!/usr/bin/env python3
"""User-space instructions and system calls per connection that carries one request, counted
without the machine's noise.

    python bench/connection_instructions.py [--protocols http,http+proxy,scgi,uwsgi]
                                            [--unix] [--low 100] [--high 300] [--repeat 3]
                                            [--syscalls]

Each protocol is served by ``python -m ferrowsgi apps.hello:app --bind SCHEME://ADDRESS``
(one worker) under valgrind's callgrind, which serves LOW and then HIGH connections, each
of one request as its front end sends it: HTTP/1.1 with ``Connection: close`` (``http``),
the same after a PROXY v1 line (``http+proxy``), and the variables nginx's stock
``scgi_params`` / ``uwsgi_params`` give a ``GET /`` (``scgi``, ``uwsgi``). Every answer is
read to the server's close. The difference of the two totals over HIGH - LOW is one
connection's user-space instructions (start-up and shutdown cancel out); the medians of
``--repeat`` runs are printed. Timers run by wall time, which valgrind stretches, so single
counts move by a few hundred instructions.

``--syscalls`` counts the system calls of the worker instead (the kernel's syscall
tracepoints through ``perf stat``, no valgrind) over HIGH connections made one after
another by one client: what a connection costs the server in calls at light load, when
each one finds the server idle.

Needs valgrind (Debian package) for the counts, perf for ``--syscalls`` (as root, or with
``kernel.perf_event_paranoid`` allowing tracepoints).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
BODY = b"Hello, World!"


def nginx_vars(port: int) -> list[tuple[bytes, bytes]]:
    """What nginx's stock params send for ``GET /`` from 127.0.0.1."""
    return [
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", b"/"),
        (b"QUERY_STRING", b""),
        (b"CONTENT_TYPE", b""),
        (b"DOCUMENT_URI", b"/"),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"40000"),
        (b"SERVER_PORT", str(port).encode()),
        (b"SERVER_NAME", b""),
        (b"HTTP_HOST", b"bench"),
        (b"HTTP_USER_AGENT", b"wrk"),
    ]


def request(protocol: str, port: int, client_port: int) -> bytes:
    if protocol.startswith("http"):
        req = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        if protocol == "http+proxy":
            line = f"PROXY TCP4 192.0.2.1 127.0.0.1 {client_port or 40000} {port}\r\n"
            req = line.encode() + req
        return req
    if protocol == "scgi":
        block = b"CONTENT_LENGTH\x000\x00SCGI\x001\x00"
        block += b"".join(k + b"\x00" + v + b"\x00" for k, v in nginx_vars(port))
        return str(len(block)).encode() + b":" + block + b","
    if protocol == "uwsgi":
        pairs = [(b"CONTENT_LENGTH", b""), *nginx_vars(port)]
        packet = b"".join(
            len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v for k, v in pairs
        )
        return b"\x00" + len(packet).to_bytes(2, "little") + b"\x00" + packet
    raise SystemExit(f"unknown protocol {protocol}")


def connect(addr: str | tuple[str, int], timeout: float = 60) -> socket.socket:
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    return socket.create_connection(addr, timeout=timeout)


def one(protocol: str, addr: str | tuple[str, int], port: int) -> None:
    with connect(addr) as sock:
        cport = sock.getsockname()[1] if isinstance(addr, tuple) else 0
        sock.sendall(request(protocol, port, cport))
        buf = b""
        while data := sock.recv(65536):
            buf += data
        if BODY not in buf:
            raise SystemExit(f"{protocol}: unexpected answer {buf[:200]!r}")


class Server:
    """ferrowsgi on a fresh address, optionally under valgrind or strace."""

    def __init__(self, protocol: str, unix: bool, tmp: Path, wrap: list[str]) -> None:
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        scheme = protocol
        if unix:
            path = str(tmp / f"s{time.monotonic_ns()}.sock")
            self.addr: str | tuple[str, int] = path
            where = f"unix:{path}"
        else:
            self.addr = (HOST, self.port)
            where = f"{HOST}:{self.port}"
        argv = [*wrap, sys.executable, "-m", "ferrowsgi", "apps.hello:app"]
        argv += ["--bind", f"{scheme}://{where}", "--log-level", "warning"]
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(BENCH_DIR)}
        self.proc = subprocess.Popen(
            argv, cwd=BENCH_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                one(protocol, self.addr, self.port)
                return
            except (OSError, SystemExit):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise SystemExit(f"{protocol}: the server did not start") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def callgrind_total(protocol: str, unix: bool, n: int, tmp: Path) -> int:
    out = tmp / f"cg-{protocol}-{n}"
    srv = Server(
        protocol, unix, tmp, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    )
    try:
        for _ in range(n):
            one(protocol, srv.addr, srv.port)
    finally:
        srv.stop()
    total = 0
    for path in glob.glob(f"{out}.*"):
        for line in Path(path).read_text().splitlines():
            m = re.match(r"^(?:summary|totals): (\d+)", line)
            if m:
                total += int(m.group(1))
                break
        os.unlink(path)
    return total


CALLS = (
    "accept4 read recvfrom sendto write writev sendmsg shutdown close epoll_wait epoll_pwait "
    "epoll_ctl setsockopt getsockopt futex"
).split()


def syscalls(protocol: str, unix: bool, n: int, tmp: Path) -> None:
    """System calls of the worker per connection, from the kernel's syscall tracepoints
    (``perf stat``: counted in the kernel, so the server runs at its own speed, unlike under
    strace), with accept4 calls that failed counted apart."""
    srv = Server(protocol, unix, tmp, [])
    try:
        kids = subprocess.run(
            ["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        worker = kids[-1] if kids else str(srv.proc.pid)
        events = [a for c in CALLS for a in ("-e", f"syscalls:sys_enter_{c}")]
        events += ["-e", "syscalls:sys_exit_accept4", "--filter", "ret < 0"]
        out = tmp / "perf.txt"
        counter = subprocess.Popen(
            ["perf", "stat", "-x,", "-o", str(out), "-p", worker, *events],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        for _ in range(n):
            one(protocol, srv.addr, srv.port)
        time.sleep(0.2)
        counter.send_signal(signal.SIGINT)
        counter.wait()
    finally:
        srv.stop()
    calls, failed = [], 0
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue
        count, event = int(parts[0]), parts[2]
        if event == "syscalls:sys_exit_accept4":
            failed = count
        elif count:
            calls.append((event.rsplit("sys_enter_", 1)[1], count / n))
    calls.sort(key=lambda c: -c[1])
    total = sum(c[1] for c in calls)
    shown = ", ".join(
        f"{name} {per:.2f}" + (f" ({failed / n:.2f} found nothing)" if name == "accept4" else "")
        for name, per in calls
    )
    print(f"{protocol:10} {total:5.2f} system calls per connection: {shown}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocols", default="http,http+proxy,scgi,uwsgi")
    ap.add_argument("--unix", action="store_true", help="over a unix socket (not http+proxy)")
    ap.add_argument("--low", type=int, default=100)
    ap.add_argument("--high", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--syscalls", action="store_true", help="count system calls (perf)")
    args = ap.parse_args()
    protocols = args.protocols.split(",")
    with tempfile.TemporaryDirectory(prefix="ferrowsgi-conn-") as d:
        tmp = Path(d)
        if args.syscalls:
            for p in protocols:
                syscalls(p, args.unix, args.high, tmp)
            return
        per: dict[str, list[float]] = {p: [] for p in protocols}
        for r in range(args.repeat):
            for p in protocols:
                low = callgrind_total(p, args.unix, args.low, tmp)
                high = callgrind_total(p, args.unix, args.high, tmp)
                each = (high - low) / (args.high - args.low)
                per[p].append(each)
                print(f"run {r + 1} {p}: {each:,.0f} instructions per connection", flush=True)
        transport = "unix socket" if args.unix else "TCP loopback"
        print(f"\nuser-space instructions per connection of one request ({transport}):")
        base = statistics.median(per[protocols[0]])
        for p in protocols:
            m = statistics.median(per[p])
            print(f"  {p:10} {m:9,.0f}   {100 * (m - base) / base:+6.2f}% against {protocols[0]}")


if __name__ == "__main__":
    main()
