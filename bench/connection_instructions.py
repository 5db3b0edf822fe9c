#!/usr/bin/env python3
"""User-space instructions and system calls per connection that carries one request, counted
without the machine's noise.

    python bench/connection_instructions.py [--protocols http,http+proxy,scgi,uwsgi]
                                            [--unix] [--low 100] [--high 300] [--repeat 3]
                                            [--server ferrowsgi,uwsgi] [--uwsgi PATH]
                                            [--syscalls] [--cpu N]

Each protocol is served by ``python -m ferrowsgi apps.hello:app --bind SCHEME://ADDRESS``
(one worker) under valgrind's callgrind, which serves LOW and then HIGH connections, each
of one request as its front end sends it: HTTP/1.1 with ``Connection: close`` (``http``),
the same after a PROXY v1 line (``http+proxy``), and the variables nginx's stock
``scgi_params`` / ``uwsgi_params`` give a ``GET /`` (``scgi``, ``uwsgi``). Every answer is
read to the server's close. The difference of the two totals over HIGH - LOW is one
connection's user-space instructions (start-up and shutdown cancel out); the medians of
``--repeat`` runs are printed. Timers run by wall time, which valgrind stretches, so single
counts move by a few hundred instructions.

``--server`` picks the servers, each counted the same way: ferrowsgi (the default) and
uWSGI (``--scgi-socket`` / ``--uwsgi-socket`` / ``--http-socket``, one process without a
master, one thread, logging off: the process that serves is the one started, so it is the
one valgrind counts). uWSGI is taken from ``--uwsgi`` or the ``uwsgi`` beside this
interpreter, its Python home from the virtualenv that holds it; it has no PROXY protocol on
a socket of its own, so ``http+proxy`` is ferrowsgi's alone. A connection per protocol is
checked to get the hello body before anything is counted.

``--syscalls`` counts the system calls of the worker instead (the kernel's syscall
tracepoints through ``perf stat``, no valgrind) over HIGH connections made one after
another by one client: what a connection costs the server in calls at light load, when
each one finds the server idle.

``--cpu N`` times the worker instead (hold the machine's bench lock: these are times): N
connections one after another, ``--repeat`` times, and per connection the worker's CPU
time (the scheduler's nanosecond run time, /proc/PID/schedstat), then as many more under
``perf record -e cpu-clock -F 5000`` for its split into user and kernel time (the share of
the samples taken in the kernel; the process's utime and stime come from 100 Hz ticks, too
few here, and the sampling slows the worker, so the time is taken without it); the medians
are printed.

Needs valgrind (Debian package) for the counts, perf for ``--syscalls`` (as root, or with
``kernel.perf_event_paranoid`` allowing tracepoints).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from proxy_protocol import callgrind_files_total  # noqa: E402

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


UWSGI_SOCKET = {"scgi": "--scgi-socket", "uwsgi": "--uwsgi-socket", "http": "--http-socket"}


def uwsgi_argv(binary: str, protocol: str, addr: str) -> list[str]:
    """uWSGI serving the hello app on ``addr`` with ``protocol``: one process, no master (so
    the process started is the one that serves), one thread, no request log."""
    option = UWSGI_SOCKET.get(protocol)
    if option is None:
        raise SystemExit(f"uWSGI: no {protocol} socket to compare")
    home = str(Path(binary).resolve().parent.parent)
    return [
        binary,
        *(option, addr, "--module", "apps.hello:app", "--home", home),
        *("--chdir", str(BENCH_DIR)),
        *"--processes 1 --threads 1 --single-interpreter --disable-logging".split(),
        *"--need-app --die-on-term".split(),
    ]


class Server:
    """ferrowsgi (or uWSGI) on a fresh address, optionally under valgrind."""

    def __init__(
        self,
        protocol: str,
        unix: bool,
        tmp: Path,
        wrap: list[str],
        server: str = "ferrowsgi",
        uwsgi: str = "",
    ) -> None:
        self.server = server
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
        if server == "uwsgi":
            argv = [*wrap, *uwsgi_argv(uwsgi, protocol, path if unix else where)]
        else:
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
                    raise SystemExit(f"{server} {protocol}: the server did not start") from None
                time.sleep(0.3)

    def worker(self) -> str:
        """The pid of the process that serves: ferrowsgi's worker under its master, or uWSGI's
        process itself."""
        kids = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        return kids[-1] if kids and self.server == "ferrowsgi" else str(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # uWSGI without a master ends on TERM (--die-on-term); ferrowsgi on INT.
            self.proc.send_signal(signal.SIGTERM if self.server == "uwsgi" else signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def callgrind_total(protocol: str, unix: bool, n: int, tmp: Path, server: str, uwsgi: str) -> int:
    out = tmp / f"cg-{server}-{protocol}-{n}"
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    srv = Server(protocol, unix, tmp, wrap, server, uwsgi)
    try:
        for _ in range(n):
            one(protocol, srv.addr, srv.port)
    finally:
        srv.stop()
    return callgrind_files_total(f"{out}.*", remove=True)


CALLS = (
    "accept4 read recvfrom sendto write writev sendmsg shutdown close epoll_wait epoll_pwait "
    "epoll_ctl poll ppoll setsockopt getsockopt getsockname getpeername fcntl ioctl futex"
).split()


def syscalls(protocol: str, unix: bool, n: int, tmp: Path, server: str, uwsgi: str) -> None:
    """System calls of the worker per connection, from the kernel's syscall tracepoints
    (``perf stat``: counted in the kernel, so the server runs at its own speed, unlike under
    strace), with accept4 calls that failed counted apart."""
    srv = Server(protocol, unix, tmp, [], server, uwsgi)
    try:
        worker = srv.worker()
        events = [a for c in CALLS for a in ("-e", f"syscalls:sys_enter_{c}")]
        events += ["-e", "raw_syscalls:sys_enter"]
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
    calls, failed, every = [], 0, 0
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue
        count, event = int(parts[0]), parts[2]
        if event == "syscalls:sys_exit_accept4":
            failed = count
        elif event == "raw_syscalls:sys_enter":
            every = count
        elif count:
            calls.append((event.rsplit("sys_enter_", 1)[1], count / n))
    calls.sort(key=lambda c: -c[1])
    # Every call is counted by the raw tracepoint; what the named ones leave is shown apart,
    # so that no call a server makes goes unseen.
    named = sum(c[1] for c in calls)
    total = every / n
    if total - named >= 0.005:
        calls.append(("other", total - named))
    shown = ", ".join(
        f"{name} {per:.2f}" + (f" ({failed / n:.2f} found nothing)" if name == "accept4" else "")
        for name, per in calls
    )
    print(f"{server:9} {protocol:10} {total:5.2f} system calls per connection: {shown}")


def run_ns(pid: str) -> int:
    """The process's run time in ns (the scheduler's, not sampled)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def kernel_share(data: Path) -> float:
    """The share of a ``perf record`` file's samples taken in the kernel."""
    out = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--sort", "dso", "-q"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    share = 0.0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("[kernel") and parts[0].endswith("%"):
            share += float(parts[0].rstrip("%")) / 100
    return share


def cpu(
    protocol: str, unix: bool, n: int, tmp: Path, server: str, uwsgi: str
) -> tuple[float, float, float]:
    """The worker's CPU µs per connection over ``n`` connections made one after another:
    in all, in user space and in the kernel."""
    srv = Server(protocol, unix, tmp, [], server, uwsgi)
    data = tmp / "cpu.data"
    try:
        worker = srv.worker()
        for _ in range(200):
            one(protocol, srv.addr, srv.port)
        run0 = run_ns(worker)
        for _ in range(n):
            one(protocol, srv.addr, srv.port)
        run1 = run_ns(worker)
        rec = subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "5000", "-o", str(data)]
            + ["-p", worker],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        for _ in range(n):
            one(protocol, srv.addr, srv.port)
        rec.send_signal(signal.SIGINT)
        rec.wait()
    finally:
        srv.stop()
    each = (run1 - run0) / n / 1000
    kernel = kernel_share(data)
    return each, each * (1 - kernel), each * kernel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocols", default="http,http+proxy,scgi,uwsgi")
    ap.add_argument("--unix", action="store_true", help="over a unix socket (not http+proxy)")
    ap.add_argument("--low", type=int, default=100)
    ap.add_argument("--high", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--syscalls", action="store_true", help="count system calls (perf)")
    ap.add_argument("--cpu", type=int, default=0, metavar="N", help="time N connections")
    ap.add_argument("--server", default="ferrowsgi", help="ferrowsgi, uwsgi or both, by comma")
    ap.add_argument("--uwsgi", default=str(Path(sys.executable).with_name("uwsgi")))
    args = ap.parse_args()
    protocols = args.protocols.split(",")
    servers = args.server.split(",")
    if "uwsgi" in servers and not Path(args.uwsgi).exists():
        raise SystemExit(f"no uWSGI at {args.uwsgi} (pip install uwsgi, or --uwsgi PATH)")
    # Each server with the protocols it speaks.
    rows = [
        (srv, p) for srv in servers for p in protocols if srv == "ferrowsgi" or p in UWSGI_SOCKET
    ]
    transport = "unix socket" if args.unix else "TCP loopback"
    with tempfile.TemporaryDirectory(prefix="ferrowsgi-conn-") as d:
        tmp = Path(d)
        if args.syscalls:
            for srv, p in rows:
                syscalls(p, args.unix, args.high, tmp, srv, args.uwsgi)
            return
        if args.cpu:
            times: dict[tuple[str, str], list[tuple[float, float, float]]] = {r: [] for r in rows}
            for r in range(args.repeat):
                for row in rows:
                    t = cpu(row[1], args.unix, args.cpu, tmp, row[0], args.uwsgi)
                    times[row].append(t)
                    print(
                        f"run {r + 1} {row[0]} {row[1]}: {t[0]:.2f} µs per connection "
                        f"(user {t[1]:.2f}, kernel {t[2]:.2f})",
                        flush=True,
                    )
            print(f"\nworker CPU µs per connection of one request ({transport}), medians:")
            for (srv, p), ts in times.items():
                a, u, k = (statistics.median(t[i] for t in ts) for i in range(3))
                print(f"  {srv:9} {p:10} {a:7.2f}   user {u:6.2f}   kernel {k:6.2f}")
            return
        per: dict[tuple[str, str], list[float]] = {r: [] for r in rows}
        for r in range(args.repeat):
            for srv, p in rows:
                low = callgrind_total(p, args.unix, args.low, tmp, srv, args.uwsgi)
                high = callgrind_total(p, args.unix, args.high, tmp, srv, args.uwsgi)
                each = (high - low) / (args.high - args.low)
                per[(srv, p)].append(each)
                print(f"run {r + 1} {srv} {p}: {each:,.0f} instructions per connection", flush=True)
        print(f"\nuser-space instructions per connection of one request ({transport}):")
        base = statistics.median(per[rows[0]])
        for (srv, p), counts in per.items():
            m = statistics.median(counts)
            print(
                f"  {srv:9} {p:10} {m:9,.0f}   {100 * (m - base) / base:+6.2f}% against "
                f"{rows[0][0]} {rows[0][1]}"
            )


if __name__ == "__main__":
    main()
