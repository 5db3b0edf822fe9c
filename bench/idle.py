"""Memory per idle keep-alive connection: RSS growth of the server at N open connections.

    python bench/idle.py [--connections 10000] [--servers ferrowsgi,gunicorn,granian,bjoern]
                         [--python PATH] [--rounds 1]

Each server (one process serving, hello app) is started on 127.0.0.1; the script opens
N connections, sends one keep-alive GET on each and reads its answer, then leaves them all
open and reads the RSS of the server's processes (the sum over the process tree, from
/proc). The figure is (RSS with N idle connections - RSS with one) / N, in KiB: what a
server behind a load balancer's keep-alive pool, or facing many slow clients, pays for
each connection it holds. Peers come from the interpreter given with --python (a venv
with gunicorn, granian, bjoern installed); a server that is not installed is skipped
with a line saying so. Traffic goes to loopback only; every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def argv_for(server: str, python: str, port: int, n: int) -> list[str] | None:
    """The command line of `server` serving apps.hello:app with room for `n` connections."""
    bind = f"{HOST}:{port}"
    if server == "ferrowsgi":
        return [
            sys.executable,
            "-m",
            "ferrowsgi",
            "apps.hello:app",
            "--bind",
            bind,
            "--worker-connections",
            str(n + 100),
            "--backlog",
            "4096",
            "--keep-alive",
            "600",
            "--log-level",
            "warning",
        ]
    if server == "gunicorn":
        return [
            python,
            "-m",
            "gunicorn",
            "-k",
            "gthread",
            "--threads",
            "8",
            "-w",
            "1",
            "--worker-connections",
            str(n + 100),
            "--backlog",
            "4096",
            "--keep-alive",
            "600",
            "-b",
            bind,
            "apps.hello:app",
        ]
    if server == "granian":
        return [
            python,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--workers",
            "1",
            "--host",
            HOST,
            "--port",
            str(port),
            "--backlog",
            "4096",
            "apps.hello:app",
        ]
    if server == "bjoern":
        return [python, str(BENCH_DIR / "launch.py"), "bjoern", "apps.hello:app", HOST, str(port)]
    return None


def installed(server: str, python: str) -> bool:
    if server == "ferrowsgi":
        return True
    r = subprocess.run([python, "-c", f"import {server}"], capture_output=True)
    return r.returncode == 0


def tree_rss_kib(pid: int) -> int:
    """RSS of `pid` and its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def open_idle(port: int, n: int, deadline: float) -> list[socket.socket]:
    """N connections, each answered once and left open."""
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, bytes] = {}
    batch = 200
    while len(socks) < n and time.monotonic() < deadline:
        new = []
        for _ in range(min(batch, n - len(socks))):
            s = socket.create_connection((HOST, port), timeout=10)
            s.sendall(REQUEST)
            s.setblocking(False)
            new.append(s)
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
        socks.extend(new)
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                data = s.recv(65536)
                if not data:
                    raise SystemExit("a server closed an idle connection early")
                pending[s] += data
                if b"Hello" in pending[s]:
                    del pending[s]
                    sel.unregister(s)
    if pending or len(socks) < n:
        raise SystemExit(f"only {len(socks) - len(pending)} of {n} connections were answered")
    return socks


def wait_up(port: int, proc: subprocess.Popen, limit: float = 30.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def measure(server: str, python: str, n: int) -> float | str:
    port = free_port()
    argv = argv_for(server, python, port, n)
    if argv is None or not installed(server, python):
        return "not installed"
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
    proc = subprocess.Popen(
        argv,
        cwd=BENCH_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    socks: list[socket.socket] = []
    try:
        if not wait_up(port, proc):
            return "did not start"
        warm = open_idle(port, 50, time.monotonic() + 30)
        time.sleep(0.5)
        base = tree_rss_kib(proc.pid)
        socks = open_idle(port, n, time.monotonic() + 120)
        # Long enough for a server that lets go of an idle connection's
        # buffers after a while (ferrowsgi: after a sweep, every 0.5 s).
        time.sleep(2.0)
        full = tree_rss_kib(proc.pid)
        for s in warm:
            s.close()
        return (full - base) / n
    finally:
        for s in socks:
            s.close()
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--servers", default="ferrowsgi,gunicorn,granian,bjoern")
    ap.add_argument("--python", default=sys.executable, help="interpreter with the peers")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    results: dict[str, list[float | str]] = {s: [] for s in names}
    for _ in range(args.rounds):
        for s in names:
            results[s].append(measure(s, args.python, args.connections))
    print(f"\nRSS per idle keep-alive connection, {args.connections} connections, hello app\n")
    print("| server | KiB per connection |")
    print("|---|---:|")
    for s in names:
        vals = [v for v in results[s] if isinstance(v, float)]
        if vals:
            vals.sort()
            print(f"| {s} | {vals[len(vals) // 2]:.2f} |")
        else:
            print(f"| {s} | {results[s][0]} |")


if __name__ == "__main__":
    main()
