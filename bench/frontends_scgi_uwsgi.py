#!/usr/bin/env python3
"""The hello app behind nginx over SCGI and uwsgi: the backend's CPU per request, ferrowsgi
against uWSGI on the same protocol (``--scgi-socket`` / ``--uwsgi-socket``) and flup's SCGI
server (standard library only; the servers come from a virtualenv).

    python bench/frontends_scgi_uwsgi.py [--python .venv/bin/python] [--rounds 5]
                                          [--duration 5] [--connections 32] [--unix]

nginx (one worker process, ``scgi_pass``/``uwsgi_pass`` with the stock parameters, so each
request is a new backend connection, as both protocols require) and wrk share CPU 1; the
backend, one process with one application thread, runs alone on CPU 0. Per run the script
counts the requests wrk completed and the backend process tree's utime+stime from /proc,
and prints CPU µs per request; the pairs run in interleaved rounds so that drift on the
machine hits every server alike, and the table gives each cell's median and the spread.
Every response is checked once before the runs (status and body). Servers, nginx and wrk
are always stopped.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HOST = "127.0.0.1"
BACKEND_CPU = "0"
FRONT_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
APP = "apps.hello:app"
BODY = b"Hello, World!"

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {host}:{port};
        location / {{
            include /etc/nginx/{proto}_params;
            {proto}_pass {backend};
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu_seconds(root: int) -> float:
    """utime+stime+cutime+cstime over root and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = stat_fields(int(entry))
            if f:
                children.setdefault(int(f[1]), []).append(int(entry))
    ticks, todo = 0, [root]
    while todo:
        pid = todo.pop()
        f = stat_fields(pid)
        if f:
            ticks += sum(int(f[i]) for i in (11, 12, 13, 14))
        todo.extend(children.get(pid, []))
    return ticks / CLK_TCK


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------
# Backends: (protocol, name) -> argv for an address ("host:port" or a unix path)

FLUP_SCGI = """
import sys
from flup.server.scgi import WSGIServer
from apps.hello import app
addr = sys.argv[1]
host, _, port = addr.rpartition(":")
bind = (host, int(port)) if port.isdigit() else addr
WSGIServer(app, bindAddress=bind).run()
"""


def ferrowsgi(proto: str) -> Callable[[str, str], list[str]]:
    def argv(python: str, addr: str) -> list[str]:
        where = addr if ":" in addr else f"unix:{addr}"
        return [python, "-m", "ferrowsgi", APP, "--bind", f"{proto}://{where}"]

    return argv


def uwsgi(option: str) -> Callable[[str, str], list[str]]:
    def argv(python: str, addr: str) -> list[str]:
        home = str(Path(python).resolve().parent.parent)
        return [
            str(Path(python).parent / "uwsgi"),
            *(option, addr, "--module", APP, "--home", home, "--chdir", str(BENCH_DIR)),
            *"--processes 1 --threads 1 --single-interpreter --die-on-term --need-app".split(),
            "--disable-logging",
        ]

    return argv


def flup(python: str, addr: str) -> list[str]:
    return [python, "-c", FLUP_SCGI, addr]


BACKENDS: dict[tuple[str, str], Callable[[str, str], list[str]]] = {
    ("scgi", "ferrowsgi"): ferrowsgi("scgi"),
    ("scgi", "uwsgi"): uwsgi("--scgi-socket"),
    ("scgi", "flup"): flup,
    ("uwsgi", "ferrowsgi"): ferrowsgi("uwsgi"),
    ("uwsgi", "uwsgi"): uwsgi("--uwsgi-socket"),
}


class Stack:
    """One backend on CPU 0 and nginx in front of it on CPU 1."""

    def __init__(self, proto: str, name: str, python: str, unix: bool, tmp: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"fe-{proto}-{name}-", dir=tmp))
        addr = str(self.dir / "b.sock") if unix else f"{HOST}:{free_port()}"
        self.log = open(self.dir / "backend.log", "wb")  # noqa: SIM115 - closed in close()
        env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
        self.backend = subprocess.Popen(
            ["taskset", "-c", BACKEND_CPU, *BACKENDS[proto, name](python, addr)],
            cwd=BENCH_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.port = free_port()
        backend = f"unix:{addr}" if unix else addr
        conf = NGINX_CONF.format(
            dir=self.dir, host=HOST, port=self.port, proto=proto, backend=backend
        )
        (self.dir / "nginx.conf").write_text(conf)
        self.nginx = subprocess.Popen(
            ["taskset", "-c", FRONT_CPU, "nginx", "-p", str(self.dir), "-c", "nginx.conf"]
            + ["-e", str(self.dir / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ready(f"{proto}/{name}")

    def ready(self, who: str) -> None:
        deadline = time.monotonic() + 30
        last = ""
        while time.monotonic() < deadline:
            if self.backend.poll() is not None or self.nginx.poll() is not None:
                break
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                last = data.decode("latin-1")
                if data.startswith(b"HTTP/1.1 200") and data.endswith(BODY):
                    return
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        self.close()
        log = (self.dir / "backend.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"{who} did not answer the hello request: {last[:300]}\n{log}")

    def close(self) -> None:
        stop(self.nginx)
        stop(self.backend, signal.SIGINT)
        self.log.close()


def run_wrk(port: int, duration: int, connections: int) -> tuple[int, int]:
    """(requests answered with 2xx, errors) of one wrk run."""
    out = subprocess.run(
        ["taskset", "-c", FRONT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
        + [f"http://{HOST}:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    requests = int(m.group(1)) if m else 0
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
        requests -= int(m.group(1))
    return requests, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=str(REPO_DIR / ".venv" / "bin" / "python"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--unix", action="store_true", help="nginx reaches the backend over unix")
    ap.add_argument("--only", default="", help="comma-separated proto/name cells")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    cells = list(BACKENDS)
    if args.only:
        wanted = set(args.only.split(","))
        cells = [c for c in cells if f"{c[0]}/{c[1]}" in wanted]
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {c: [] for c in cells}
    tmp = Path(tempfile.mkdtemp(prefix="frontends-"))
    try:
        for r in range(args.rounds):
            for cell in cells:
                stack = Stack(*cell, args.python, args.unix, tmp)
                try:
                    run_wrk(stack.port, 1, args.connections)  # warm-up
                    cpu0 = tree_cpu_seconds(stack.backend.pid)
                    n, errors = run_wrk(stack.port, args.duration, args.connections)
                    cpu = tree_cpu_seconds(stack.backend.pid) - cpu0
                finally:
                    stack.close()
                us = 1e6 * cpu / max(n, 1)
                results[cell].append((us, n / args.duration, errors))
                print(
                    f"round {r + 1} {cell[0]:5} {cell[1]:9} {us:7.1f} µs/req "
                    f"{n / args.duration:8.0f} req/s errors={errors}",
                    file=sys.stderr,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    transport = "unix socket" if args.unix else "TCP loopback"
    print(f"\nnginx → backend over {transport}; {args.rounds} rounds × {args.duration} s, ")
    print(f"wrk -c{args.connections}; backend CPU µs per request (median, min–max)\n")
    print("| protocol | server | CPU µs/req | req/s | errors | CPU ratio per round | median |")
    print("|---|---|---|---|---|---|---|")
    for cell in cells:
        us = [x[0] for x in results[cell]]
        rps = statistics.median(x[1] for x in results[cell])
        errors = sum(x[2] for x in results[cell])
        ours = results.get((cell[0], "ferrowsgi"))
        # The peer's CPU per request over ferrowsgi's in the same round:
        # above 1, ferrowsgi spends less.
        ratios = [p[0] / o[0] for p, o in zip(results[cell], ours)] if ours else []
        per_round = " ".join(f"{r:.2f}" for r in ratios) if cell[1] != "ferrowsgi" else "—"
        median = f"{statistics.median(ratios):.2f}×" if ratios and cell[1] != "ferrowsgi" else "—"
        print(
            f"| {cell[0]} | {cell[1]} | {statistics.median(us):.1f} ({min(us):.1f}–{max(us):.1f})"
            f" | {rps:.0f} | {errors} | {per_round} | {median} |"
        )


if __name__ == "__main__":
    main()
