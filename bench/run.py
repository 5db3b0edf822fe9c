#!/usr/bin/env python3
"""Benchmark ferrowsgi against other WSGI servers and a pure-Rust floor (standard library only).

    python bench/run.py --all --write-docs          # everything: every server × workload,
                                                    # then interleaved rounds (--rounds)
    python bench/run.py [--duration 10] [--connections 50] [--threads 1] [--servers a,b]
                        [--workloads hello,...] [--no-install] [--write-docs]

Each server runs as one worker process pinned to CPU 0 (with --threads application
threads where it has threads; the `sleep` workload uses 8); wrk runs pinned to CPU 1
and talks to 127.0.0.1 only.  Per server and workload the script measures
requests/s, p50/p99/p99.9 latency, errors, the server's CPU time per request
(utime+stime of the whole process tree from /proc), the server tree's peak RSS
(VmHWM), wrk's own CPU share (so that a saturated load generator is visible), and
whether every connection gets served (a parallel probe that opens all of them at
once and sends one request on each).  The floor (bench/floor/, a minimal Rust
epoll responder) runs the hello workloads under the same wrk command, and
bench/pycall.py times the bare Python work of one WSGI call, so the docs can say
how far ferrowsgi is from responder + Python.  Servers, wrk and helper processes
are always stopped, and the whole run is bounded in time (--max-total).

Servers and workloads are table entries (SERVERS, WORKLOADS below): a new
workload is an app in bench/apps/ plus one Workload(...) entry (and a Lua script in
bench/lua/ if wrk needs one).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import errno
import http.client
import json
import os
import platform
import re
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"
VENV_PY = VENV_DIR / "bin" / "python"
INSTALL_STATE = VENV_DIR / "bench-install.json"
RESULTS_DIR = BENCH_DIR / "results"
DOCS_FILE = REPO_DIR / "docs" / "BENCHMARKS.md"
KEPT_SECTIONS = "## Several workers"  # from here on, docs/BENCHMARKS.md is written by hand
CHARTS_DIR = BENCH_DIR / "charts"  # PNGs embedded in docs/BENCHMARKS.md
LUA_DIR = BENCH_DIR / "lua"
FLOOR_DIR = BENCH_DIR / "floor"
FLOOR_BIN = FLOOR_DIR / "target" / "release" / "ferrowsgi-floor"
EXTRA_REQUIREMENTS = ("flask", "django", "matplotlib")  # workload apps and charts

HOST = "127.0.0.1"  # the only address this script ever sends traffic to
SERVER_CPU = "0"
WRK_CPU = "1"
WARMUP_SECONDS = 2
# Pause between the warm-up and the measured run: wrk leaves its last requests unanswered when
# it stops, and a server still serves them (64 sleeping requests on 8 threads take 80 ms), so
# without it the measured run's first requests queue behind the warm-up's and set its p99.
DRAIN_SECONDS = 0.5
READY_TIMEOUT = 60.0
STOP_GRACE = 5.0
INSTALL_TIMEOUT = 600
FERRO_INSTALL_TIMEOUT = 900
CLK_TCK = os.sysconf("SC_CLK_TCK")
DISTURBED_PCT = 5.0  # other processes above this (% of a core) during a run: rerun the cell
STEAL_PCT = 25.0  # hypervisor steal above this (% of a core) during a run: rerun the cell too
QUIET_WAIT = 60.0  # seconds to wait for unrelated load to stop before a cell
PAGE_NOTE = "—"
PROBE_TIMEOUT = 5.0  # seconds the all-connections probe waits for every answer
PIPELINE_DEPTH = 16
DATA_FILE_SIZE = 10 * 1024 * 1024
SLEEP_THREADS = 8
ALL_DURATION = 5  # --all: seconds per cell unless --duration is given


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """How to install, identify and start one server (one worker process)."""

    name: str
    requirement: str  # what `pip install` gets ("@repo" = this repository, "@floor" = cargo)
    dist: str  # distribution name, for the version ("" = none)
    module: str  # importing it proves the install works
    argv: Callable[[str, int, int], list[str]]  # (app "mod:callable", port, threads) -> command
    threaded: bool = True  # has application threads (set to --threads, or 8 for `sleep`)
    workloads: tuple[str, ...] = ()  # only these workloads ("" = all)
    how: str = ""  # one line for the docs: how it is started

    def pip_target(self) -> str:
        if self.requirement == "@repo":
            return str(REPO_DIR)
        if self.requirement == "@floor":
            return str(FLOOR_DIR)
        return self.requirement

    def serves(self, workload: str) -> bool:
        return not self.workloads or workload in self.workloads


def _py(*args: str) -> list[str]:
    return [str(VENV_PY), *args]


def _launch(server: str) -> Callable[[str, int, int], list[str]]:
    return lambda app, port, threads: _py(
        str(BENCH_DIR / "launch.py"), server, app, HOST, str(port), str(threads)
    )


BIG_BODY_BYTES = 1024 * 1024  # apps/big.py's body


def _floor(app: str, port: int, threads: int) -> list[str]:
    """The floor responder: the hello answer, or in `big` the same 1 MiB answer as apps/big.py."""
    body = ["--body", str(BIG_BODY_BYTES)] if app == "apps.big:app" else []
    return [str(FLOOR_BIN), *body, f"{HOST}:{port}"]


def _uwsgi(socket_option: str) -> Callable[[str, int, int], list[str]]:
    return lambda app, port, threads: [
        str(VENV_DIR / "bin" / "uwsgi"),
        *(socket_option, f"{HOST}:{port}", "--module", app, "--home", str(VENV_DIR)),
        *("--processes", "1", "--threads", str(threads)),
        *"--single-interpreter --die-on-term --need-app --disable-logging".split(),
    ]


HELLO_ONLY = ("hello", "hello_pipelined", "hello_nokeepalive")

SERVERS: dict[str, Server] = {
    s.name: s
    for s in [
        Server(
            "ferrowsgi",
            "@repo",
            "ferrowsgi",
            "ferrowsgi._ferrowsgi",
            lambda app, port, threads: _py(
                "-m", "ferrowsgi", app, "--bind", f"{HOST}:{port}", "--threads", str(threads)
            ),
            how="`python -m ferrowsgi APP --threads T`",
        ),
        Server(
            "gunicorn-sync",
            "gunicorn",
            "gunicorn",
            "gunicorn",
            lambda app, port, threads: _py(
                *"-m gunicorn --workers 1 --worker-class sync --log-level warning".split(),
                *("--bind", f"{HOST}:{port}", app),
            ),
            threaded=False,
            how="`gunicorn --workers 1 --worker-class sync`",
        ),
        Server(
            "gunicorn-gthread",
            "gunicorn",
            "gunicorn",
            "gunicorn",
            lambda app, port, threads: _py(
                *"-m gunicorn --workers 1 --worker-class gthread --threads".split(),
                *(str(threads), "--log-level", "warning", "--bind", f"{HOST}:{port}", app),
            ),
            how="`gunicorn --workers 1 --worker-class gthread --threads T`",
        ),
        Server(
            "waitress",
            "waitress",
            "waitress",
            "waitress",
            lambda app, port, threads: _py(
                "-m", "waitress", f"--listen={HOST}:{port}", f"--threads={threads}", app
            ),
            how="`waitress-serve --threads=T`",
        ),
        Server(
            "granian",
            "granian",
            "granian",
            "granian",
            lambda app, port, threads: _py(
                *"-m granian --interface wsgi --workers 1 --blocking-threads".split(),
                *(str(threads), "--runtime-threads", "1", "--no-ws", "--log-level", "warning"),
                *("--host", HOST, "--port", str(port), app),
            ),
            how="`granian --interface wsgi --workers 1 --blocking-threads T --runtime-threads 1`",
        ),
        Server(
            "uwsgi",
            "uwsgi",
            "uWSGI",
            "bin:uwsgi",  # "bin:NAME": `NAME --version` in the venv proves the install
            _uwsgi("--http-socket"),
            how="`uwsgi --http-socket --processes 1 --threads T --disable-logging` "
            "(HTTP/1.0-style: one request per connection)",
        ),
        Server(
            "uwsgi-http11",
            "uwsgi",
            "uWSGI",
            "bin:uwsgi",
            _uwsgi("--http11-socket"),
            how="`uwsgi --http11-socket --processes 1 --threads T --disable-logging` (keep-alive)",
        ),
        Server(
            "pyruvate",
            "pyruvate",
            "pyruvate",
            "pyruvate",
            _launch("pyruvate"),
            how="`pyruvate.serve(app, addr, T)` (its default: no keep-alive; see launch.py)",
        ),
        Server(
            "cheroot",
            "cheroot",
            "cheroot",
            "cheroot",
            _launch("cheroot"),
            how="`cheroot.wsgi.Server(addr, app, numthreads=T, max=T)`",
        ),
        Server(
            "bjoern",
            "bjoern",
            "bjoern",
            "bjoern",
            _launch("bjoern"),
            threaded=False,
            how="`bjoern.run(app, host, port)`",
        ),
        Server(
            "fastwsgi",
            "fastwsgi",
            "fastwsgi",
            "fastwsgi",
            _launch("fastwsgi"),
            threaded=False,
            how="`fastwsgi.run(app, host, port, workers=1)`",
        ),
        Server(
            "meinheld",
            "meinheld",
            "meinheld",
            "meinheld",
            _launch("meinheld"),
            threaded=False,
            how="`meinheld.server.listen(addr); meinheld.server.run(app)`",
        ),
        Server(
            "floor",
            "@floor",
            "",
            "",
            _floor,
            threaded=False,
            workloads=(*HELLO_ONLY, "big"),
            how="bench/floor: pure-Rust epoll responder, no Python (the hello bytes; in `big` "
            "the same 1 MiB answer as ferrowsgi's, sent from one shared buffer)",
        ),
        Server(
            "floor-uring",
            "@floor",
            "",
            "",
            lambda app, port, threads: [str(FLOOR_BIN), "--uring", f"{HOST}:{port}"],
            threaded=False,
            workloads=HELLO_ONLY,
            how="bench/floor --uring: the same responder on io_uring (what a completion ring "
            "saves on this kernel; not a peer)",
        ),
    ]
}


# --------------------------------------------------------------------------- workloads


def _json_hello(body: bytes) -> bool:
    try:
        return json.loads(body) == {"message": "Hello, World!"}
    except ValueError:
        return False


def _data_file_bytes() -> bytes:
    """The content of the `file` workload's file (deterministic, so the check can compare)."""
    return bytes(range(256)) * (DATA_FILE_SIZE // 256)


def _is_data_file(body: bytes) -> bool:
    return body == _data_file_bytes()


@dataclass(frozen=True)
class Check:
    """One request sent before the load, and the answer it must get."""

    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    status: int = 200
    response_body: bytes | Callable[[bytes], bool] = b"Hello, World!"  # or a predicate
    pipeline: int = 0  # also send this many requests in one write and expect every answer

    def body_ok(self, body: bytes) -> bool:
        want = self.response_body
        return body == want if isinstance(want, bytes) else bool(want(body))


@dataclass(frozen=True)
class Workload:
    """One row set of the table: an app, the wrk options, and the correctness check."""

    name: str
    app: str  # "module:callable", importable from bench/
    description: str
    path: str = "/"
    wrk_args: tuple[str, ...] = ()  # extra wrk options, e.g. ("-H", "Connection: close")
    lua: str | None = None  # wrk script in bench/lua/ (pipelining, uploads, ...)
    lua_args: tuple[str, ...] = ()  # passed to the script's init(args)
    check: Check = field(default_factory=Check)
    connections: int = 0  # wrk -c for this workload (0 = --connections)
    threads: int = 0  # application threads for threaded servers (0 = --threads)
    slow_clients: int = 0  # slow connections held by bench/slowclients.py during the run
    pipeline: int = 1  # requests per write in the wrk script (latency is per batch)
    # The app does its own work in the iterable's close() (Django's request_finished
    # handlers, closing the file): a server that never calls close() skips that work, so
    # it is not a peer to compare with here (see close_check).
    close_does_work: bool = False
    # The issue's target here is throughput, not CPU per request: the interleaved rounds
    # hold ferrowsgi against the peer with the most req/s (see rival).
    by_rps: bool = False


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("hello", "apps.hello:app", "GET /, 13-byte body, keep-alive connections"),
        Workload(
            "hello_pipelined",
            "apps.hello:app",
            f"GET /, {PIPELINE_DEPTH} requests in one write per connection (wrk waits for all "
            f"{PIPELINE_DEPTH} answers; latency is per batch)",
            lua="pipeline.lua",
            lua_args=(str(PIPELINE_DEPTH),),
            check=Check(pipeline=PIPELINE_DEPTH),
            pipeline=PIPELINE_DEPTH,
            by_rps=True,
        ),
        Workload(
            "hello_nokeepalive",
            "apps.hello:app",
            "GET / with `Connection: close`: a new TCP connection per request",
            wrk_args=("-H", "Connection: close"),
            check=Check(headers=(("Connection", "close"),)),
        ),
        Workload(
            "stream",
            "apps.stream:app",
            "A generator of 100 × 1 KiB blocks and no Content-Length (chunked on HTTP/1.1)",
            check=Check(response_body=b"s" * 102400),
        ),
        Workload(
            "big",
            "apps.big:app",
            "One 1 MiB body in a one-item list",
            check=Check(response_body=b"b" * BIG_BODY_BYTES),
        ),
        Workload(
            "file",
            "apps.file:app",
            "`wsgi.file_wrapper` over a 10 MiB regular file in a temporary directory",
            check=Check(response_body=_is_data_file),
            close_does_work=True,
        ),
        Workload(
            "echo",
            "apps.echo:app",
            "POST a 64 KiB body, the app reads it in one read() and returns its length",
            lua="post.lua",
            lua_args=("65536",),
            check=Check(method="POST", body=b"e" * 65536, response_body=b"65536"),
        ),
        Workload(
            "upload",
            "apps.echo:chunked_app",
            "POST an 8 MiB body, the app reads it in 64 KiB chunks and returns its length",
            lua="post.lua",
            lua_args=(str(8 * 1024 * 1024),),
            check=Check(method="POST", body=b"u" * (8 * 1024 * 1024), response_body=b"8388608"),
        ),
        Workload(
            "flask_json",
            "apps.flask_json:app",
            "A minimal Flask app: one view returning a JSON object",
            check=Check(response_body=_json_hello),
        ),
        Workload(
            "django",
            "apps.django_app:application",
            "A minimal Django project (bench/apps/django_settings.py: no database, no "
            "middleware): one view returning a JsonResponse",
            check=Check(response_body=_json_hello),
            close_does_work=True,
        ),
        Workload(
            "sleep",
            "apps.sleep:app",
            f"A blocking app: 10 ms `time.sleep` per request, 64 connections, "
            f"{SLEEP_THREADS} application threads for every server that has threads "
            f"(ideal: {SLEEP_THREADS} / 10 ms = {SLEEP_THREADS * 100} req/s)",
            connections=64,
            threads=SLEEP_THREADS,
            by_rps=True,
        ),
        Workload(
            "mixed",
            "apps.hello:app",
            "`hello` under wrk while bench/slowclients.py holds 200 more keep-alive connections "
            "that trickle their requests 4 bytes every 100 ms (about 1 request/s each); the "
            "table shows wrk's figures, the notes what the slow clients got",
            slow_clients=200,
        ),
    ]
}


# --------------------------------------------------------------------------- processes

_LIVE: dict[int, subprocess.Popen] = {}  # process groups this script started


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start argv in its own process group (so it and its children can be stopped)."""
    log = open(log_path, "wb")  # closed by stop()
    proc = subprocess.Popen(
        argv,
        cwd=BENCH_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc._bench_log = log  # type: ignore[attr-defined]
    _LIVE[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left of it."""
    pids = tree_pids(proc.pid) if proc.poll() is None else []
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        if proc.poll() is not None and not any(_alive(p) for p in pids):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            for pid in pids:  # descendants that left our process group, if still alive
                if pid != proc.pid and _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    _LIVE.pop(proc.pid, None)
    log = getattr(proc, "_bench_log", None)
    if log is not None:
        log.close()


def stop_all() -> None:
    for proc in list(_LIVE.values()):
        stop(proc)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (index 0 = state), or None if the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()


def tree_pids(root: int) -> list[int]:
    """root and all its descendants, found by scanning /proc for parent ids."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_ticks(root: int) -> int:
    """Clock ticks of root's process tree: utime+stime (all threads) + reaped children's."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks


def tree_cpu_seconds(root: int) -> float:
    """utime+stime (all threads) + reaped children's times, summed over the process tree."""
    return tree_ticks(root) / CLK_TCK


def machine_cpu_seconds() -> tuple[float, float]:
    """(user+nice+system, steal) over all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / CLK_TCK, fields[7] / CLK_TCK


def wait_quiet(limit: float) -> float:
    """Wait (at most `limit` s) until the machine is idle; returns the last busy % of a core."""
    deadline = time.monotonic() + limit
    while True:
        before = machine_cpu_seconds()[0]
        time.sleep(1.0)
        busy = 100 * (machine_cpu_seconds()[0] - before)
        if busy < 2 * DISTURBED_PCT or time.monotonic() >= deadline:
            return busy


def tree_peak_rss_kib(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- install


def pip_error_summary(output: str, python: str = "") -> str:
    """One line that says why a pip install failed."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    failed = ""
    for i, line in enumerate(lines):
        if line.startswith("╰─>") and i and "Failed to build" in lines[i - 1]:
            failed = line.removeprefix("╰─>").strip()
    for line in lines:
        m = re.search(r"\S+\.(?:c|h|cc|cpp|pyx|rs):\d+(?::\d+)?: (?:fatal )?error: (.*)", line)
        if m:
            where = f" for Python {python}" if python else ""
            prefix = f"{failed or 'extension'} fails to compile{where}"
            return f"{prefix}: {m.group(1)}"[:200]
    for line in lines:
        if re.match(r"(ERROR|error)(\[E\d+\])?:", line) and "subprocess-exited" not in line:
            return line[:200]
    if failed:
        return f"{failed} fails to build"
    return (lines[-1] if lines else "pip failed without output")[:200]


def venv_python_version() -> str:
    try:
        r = subprocess.run(
            [str(VENV_PY), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def source_state() -> str:
    """The commit of the repository and the files that differ from it, at install time."""
    git = ["git", "-C", str(REPO_DIR)]
    try:
        head = subprocess.run(
            [*git, "log", "-1", "--format=%h %s"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", "crates", "python"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split()[1::2]
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    source = f"commit {head}" if head else "no commit"
    if dirty:
        source += " + uncommitted changes to " + ", ".join(dirty)
    return source


def ensure_venv() -> None:
    if VENV_PY.exists():
        return
    print(f"creating {VENV_DIR}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True, timeout=300)


def load_install_state() -> dict[str, dict]:
    try:
        return json.loads(INSTALL_STATE.read_text())
    except (OSError, ValueError):
        return {}


def importable(module: str) -> tuple[bool, str]:
    """Does the install work? "" = the floor binary; "bin:NAME" = `NAME --version` in the venv."""
    if not module:
        return FLOOR_BIN.exists(), f"{FLOOR_BIN} not built"
    if module.startswith("bin:"):
        argv = [str(VENV_DIR / "bin" / module[4:]), "--version"]
    else:
        argv = [str(VENV_PY), "-c", f"import {module}"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    except OSError as exc:
        return False, str(exc)
    last = (r.stderr.strip().splitlines() or ["import failed"])[-1]
    return r.returncode == 0, last


def build_floor(timeout: float) -> tuple[bool, str]:
    """cargo build --release of bench/floor (its own workspace)."""
    if not shutil.which("cargo"):
        return False, "cargo is not installed"
    cmd = [
        "cargo",
        "build",
        "--release",
        "--quiet",
        "--manifest-path",
        str(FLOOR_DIR / "Cargo.toml"),
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"cargo build timed out after {timeout:.0f} s"
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error")] or ["build failed"]
        return False, lines[0][:200]
    return True, ""


def install(servers: list[Server], deadline: float) -> dict[str, str]:
    """Install every selected server (pip, or cargo for the floor) and the workload packages.

    Returns {server: "" or why it is not usable}.
    """
    state = load_install_state()
    done: dict[str, tuple[bool, str]] = {}
    extras = [Server(r, r, r, r, lambda *_: []) for r in EXTRA_REQUIREMENTS]
    for srv in [*servers, *extras]:
        target = srv.pip_target()
        if target in done:
            continue
        remaining = deadline - time.monotonic()
        limit = FERRO_INSTALL_TIMEOUT if srv.requirement in ("@repo", "@floor") else INSTALL_TIMEOUT
        if remaining < 60:
            done[target] = (False, "install skipped: total time budget reached")
            continue
        t0 = time.monotonic()
        print(f"installing {target} ...", flush=True)
        if srv.requirement == "@floor":
            ok, reason = build_floor(min(limit, remaining))
        else:
            cmd = [str(VENV_PY), "-m", "pip", "install", "--disable-pip-version-check"]
            if srv.requirement == "@repo":
                cmd += ["--force-reinstall", "--no-cache-dir"]
                source = source_state()
            cmd.append(target)
            try:
                r = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=min(limit, remaining), cwd="/"
                )
                ok, out = r.returncode == 0, r.stdout + r.stderr
                reason = "" if ok else pip_error_summary(out, venv_python_version())
            except subprocess.TimeoutExpired:
                ok, reason = False, f"pip install timed out after {min(limit, remaining):.0f} s"
        if ok:
            ok, last = importable(srv.module)
            reason = "" if ok else f"installed but `{srv.module or 'floor'}` fails: {last}"
        took = time.monotonic() - t0
        print(f"  {'ok' if ok else 'FAILED: ' + reason} ({took:.0f} s)", flush=True)
        done[target] = (ok, reason)
        state[target] = {"ok": ok, "reason": reason, "when": _now()}
        if srv.requirement == "@repo":
            state[target]["source"] = source
    INSTALL_STATE.write_text(json.dumps(state, indent=2))
    return {s.name: ("" if done[s.pip_target()][0] else done[s.pip_target()][1]) for s in servers}


def check_installed(servers: list[Server]) -> dict[str, str]:
    """--no-install: use what is in the venv, with the reasons recorded by the last install."""
    state = load_install_state()
    status = {}
    for srv in servers:
        ok, last = importable(srv.module) if VENV_PY.exists() else (False, "no venv")
        if ok:
            status[srv.name] = ""
        elif srv.pip_target() in state and not state[srv.pip_target()]["ok"]:
            status[srv.name] = state[srv.pip_target()]["reason"]
        else:
            status[srv.name] = f"not installed (run without --no-install): {last}"
    return status


def versions(servers: list[Server]) -> dict[str, str]:
    dists = sorted({s.dist for s in servers if s.dist} | {r for r in EXTRA_REQUIREMENTS})
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        f"for d in {dists!r}:\n"
        "    try: out[d] = m.version(d)\n"
        "    except Exception: out[d] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        r = subprocess.run([str(VENV_PY), "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


# --------------------------------------------------------------------------- one run


@dataclass
class Result:
    server: str
    workload: str
    status: str = ""  # "" = measured; otherwise why there are no numbers
    rps: float | None = None
    requests: int | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float | None = None
    cpu_us_per_req: float | None = None
    server_cpu_pct: float | None = None
    peak_rss_mib: float | None = None
    wrk_cpu_pct: float | None = None
    wall_s: float | None = None
    served: int | None = None  # connections answered by the all-connections probe
    probed: int | None = None  # connections the probe opened
    threads: int | None = None  # application threads it ran with (None: has none)
    attempts: int = 1
    skips_close: bool = False  # the server never called the iterable's close() (close_check)
    other_pct: float = 0.0  # CPU used by unrelated processes during the run, % of a core
    steal_pct: float = 0.0  # CPU time the hypervisor took from this VM during the run
    notes: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)  # the server's command line


class _NoClose:
    """A shared buffered reader that http.client's responses cannot close."""

    def __init__(self, f) -> None:
        self._f = f

    def makefile(self, *_args, **_kwargs):
        return self

    def close(self) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._f, name)


def _request_bytes(wl: Workload, port: int) -> bytes:
    head = f"{wl.check.method} {wl.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    for name, value in wl.check.headers:
        head += f"{name}: {value}\r\n"
    if wl.check.body is not None:
        head += f"Content-Length: {len(wl.check.body)}\r\n"
    return head.encode() + b"\r\n" + (wl.check.body or b"")


def http_check(port: int, wl: Workload, timeout: float = 2.0) -> tuple[int, bytes, dict, bool]:
    """One request as the workload sends it: (status, body, headers, connection still open)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(_request_bytes(wl, port))
        resp = http.client.HTTPResponse(sock, method=wl.check.method)  # type: ignore[arg-type]
        resp.begin()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        sock.settimeout(0.3)  # an open keep-alive connection stays silent; a closed one: EOF
        try:
            still_open = sock.recv(1, socket.MSG_PEEK) != b""
        except TimeoutError:
            still_open = True
        except OSError:
            still_open = False
        return resp.status, body, headers, still_open


def pipeline_check(port: int, wl: Workload, timeout: float = 3.0) -> tuple[str, str]:
    """Send wl.check.pipeline requests in one write and read every answer.

    Returns (status, note): status says why the server cannot be measured (it stalls: the
    connection stays open and the answers never come; or it answers wrongly); note says
    that it closed the connection before answering all (legal: the client resends).
    """
    n = wl.check.pipeline
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(_request_bytes(wl, port) * n)
        reader = _NoClose(sock.makefile("rb"))
        for i in range(n):
            resp = http.client.HTTPResponse(reader)  # type: ignore[arg-type]
            try:
                resp.begin()
                body = resp.read()
            except TimeoutError:
                return f"stalls: answered {i} of {n} pipelined requests sent in one write", ""
            except (OSError, http.client.HTTPException):
                return "", (
                    f"closed the connection after answering {i} of {n} pipelined requests "
                    "(the rest must be resent)"
                )
            if resp.status != wl.check.status or not wl.check.body_ok(body):
                return (
                    f"wrong answers: pipelined answer {i + 1} of {n} is "
                    f"status {resp.status}, body {body[:40]!r}"
                ), ""
            if resp.will_close and i < n - 1:
                return "", (
                    f"closes the connection after answering {i + 1} of {n} pipelined requests "
                    "(the rest must be resent)"
                )
    return "", ""


def probe_connections(port: int, path: str, n: int, timeout: float = PROBE_TIMEOUT) -> int:
    """Open n connections at once, send one request on each and keep them all open.

    Returns how many got a response head within `timeout`. Everything received is read
    and discarded, so large bodies cannot block the server. A server that gives each
    keep-alive connection a thread of its own answers only as many as it has threads.
    """
    sel = selectors.DefaultSelector()
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    pending: dict[socket.socket, bytes] = {}
    served = 0
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.setblocking(False)
            if sock.connect_ex((HOST, port)) not in (0, errno.EINPROGRESS):
                sock.close()
                continue
            pending[sock] = b""
            sel.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, events in sel.select(timeout=min(left, 0.2)):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    try:
                        sock.sendall(request)  # small: fits the empty send buffer
                    except OSError:
                        pass
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(262144)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if sock not in pending:
                    if not data:
                        sel.unregister(sock)
                    continue  # answered already: keep draining its body
                if not data:
                    sel.unregister(sock)
                    del pending[sock]
                    continue
                pending[sock] += data
                if b"\r\n\r\n" in pending[sock]:
                    served += 1
                    del pending[sock]
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        for sock in pending:
            sock.close()
        sel.close()
    return served


def wait_ready(proc: subprocess.Popen, port: int, wl: Workload, log: Path) -> str:
    """Poll connect+GET until the server answers; returns "" or why it never did."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before answering: {_log_tail(log)}"
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return ""
        except OSError:
            time.sleep(0.05)
    return f"not ready after {READY_TIMEOUT:.0f} s: {_log_tail(log)}"


def _log_tail(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return (lines[-1] if lines else "(empty log)")[:160]


_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _to_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"bad wrk time {text!r}")
    return float(m.group(1)) * _UNITS_US[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {"errors": {}}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", out, re.M)
        if m:
            res[key] = _to_us(m.group(1))
    m = re.search(
        r"^BENCH requests (\d+) p50 (\d+) p99 (\d+) p999 (\d+) sent (\d+) status (\d+)", out, re.M
    )
    if m:  # from bench/lua/common.lua: exact percentiles in µs, and p99.9
        res["requests"] = int(m.group(1))
        # wrk's histogram sometimes reports 0 for a high percentile (seen with pipelining):
        # an unknown, not a zero latency.
        res["p50_us"], res["p99_us"], res["p999_us"] = (
            float(m.group(i)) or None for i in (2, 3, 4)
        )
        res["sent"] = int(m.group(5))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for name, val in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(val):
                res["errors"][name] = int(val)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["errors"]["non-2xx/3xx"] = int(m.group(1))
    return res


def wrk_script(wl: Workload, logs: Path) -> Path:
    """The workload's Lua (if any) followed by bench/lua/common.lua, written into the logs."""
    parts = [(LUA_DIR / wl.lua).read_text()] if wl.lua else []
    parts.append((LUA_DIR / "common.lua").read_text())
    path = logs / f"{wl.name}.lua"
    path.write_text("\n".join(parts))
    return path


def wrk_argv(
    port: int, wl: Workload, duration: int, connections: int, script: Path | str
) -> list[str]:
    argv = ["taskset", "-c", WRK_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    argv += ["--latency", "--timeout", "5s", *wl.wrk_args, "-s", str(script)]
    argv.append(f"http://{HOST}:{port}{wl.path}")
    if wl.lua_args:
        argv += ["--", *wl.lua_args]
    return argv


def run_wrk(port: int, wl: Workload, duration: int, connections: int, log: Path) -> dict:
    """Run wrk on WRK_CPU; returns the parsed output plus wrk's CPU time and wall time."""
    proc = spawn(wrk_argv(port, wl, duration, connections, wrk_script(wl, log.parent)), log)
    t0 = time.monotonic()
    deadline = t0 + duration + 30
    rusage = None
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            rusage = ru
            break
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"wrk did not finish within {duration + 30} s")
        time.sleep(0.02)
    wall = time.monotonic() - t0
    stop(proc)
    out = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {_log_tail(log)}")
    res = parse_wrk(out)
    res["wall_s"] = wall
    res["wrk_cpu_s"] = rusage.ru_utime + rusage.ru_stime
    return res


def _threads_for(srv: Server, wl: Workload, args: argparse.Namespace) -> int:
    return (wl.threads or args.threads) if srv.threaded else 1


def _connections_for(wl: Workload, args: argparse.Namespace) -> int:
    return wl.connections or args.connections


CLOSE_CHECK = Workload(
    "close_check",
    "apps.closecheck:app",
    "two GETs on new connections; the second answers how often close() was called",
    check=Check(response_body=lambda body: body.isdigit()),
)
CLOSE_NOTE = "never calls the response iterable's close() (PEP 3333)"


def close_check(srv: Server, args: argparse.Namespace, env: dict[str, str], logs: Path) -> str:
    """CLOSE_NOTE if srv answered twice without calling close() once; "" otherwise.

    A server that could not be checked (it failed to start or answered wrongly) gets "":
    its cells report that failure themselves.
    """
    port = free_port()
    log = logs / f"{srv.name}-close_check.server.log"
    argv = srv.argv(CLOSE_CHECK.app, port, _threads_for(srv, CLOSE_CHECK, args))
    proc = spawn(["taskset", "-c", SERVER_CPU, *argv], log, env)
    try:
        if wait_ready(proc, port, CLOSE_CHECK, log):
            return ""
        bodies = []
        for _ in range(2):
            status, body, _headers, _open = http_check(port, CLOSE_CHECK, timeout=5.0)
            if status != 200 or not CLOSE_CHECK.check.body_ok(body):
                return ""
            bodies.append(body)
            time.sleep(0.2)  # a server may call close() just after the answer is out
        return CLOSE_NOTE if bodies[-1] == b"0" else ""
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        stop(proc)


def bench_one(
    srv: Server, wl: Workload, args: argparse.Namespace, env: dict[str, str], logs: Path
) -> Result:
    res = Result(srv.name, wl.name)
    port = free_port()
    threads = _threads_for(srv, wl, args)
    connections = _connections_for(wl, args)
    res.threads = threads if srv.threaded else None
    log = logs / f"{srv.name}-{wl.name}.server.log"
    res.argv = srv.argv(wl.app, port, threads)
    argv = ["taskset", "-c", SERVER_CPU, *res.argv]
    print(f"[{wl.name}] {srv.name}: {shlex.join(argv)}", flush=True)
    proc = spawn(argv, log, env)
    side: subprocess.Popen | None = None
    try:
        why = wait_ready(proc, port, wl, log)
        if why:
            res.status = f"failed to start: {why}"
            return res
        try:
            status, body, headers, still_open = http_check(port, wl, timeout=10.0)
        except (OSError, http.client.HTTPException) as exc:
            res.status = f"wrong answer: the check request failed: {exc or type(exc).__name__}"
            return res
        if status != wl.check.status or not wl.check.body_ok(body):
            res.status = f"wrong answer: status {status}, body {len(body)} bytes {body[:40]!r}"
            return res
        if not wl.check.headers and not still_open:
            res.notes.append("closes the connection after every response (no keep-alive)")
        if wl.check.pipeline:
            why, note = pipeline_check(port, wl)
            if why:
                res.status = why
                return res
            if note:
                res.notes.append(note)
        if wl.slow_clients:
            side_seconds = WARMUP_SECONDS + args.duration + 15
            side = spawn(
                [
                    "taskset",
                    "-c",
                    WRK_CPU,
                    sys.executable,
                    str(BENCH_DIR / "slowclients.py"),
                    HOST,
                    str(port),
                    str(wl.slow_clients),
                    str(side_seconds),
                    wl.path,
                ],
                logs / f"{srv.name}-{wl.name}.slow",
            )
        run_wrk(port, wl, WARMUP_SECONDS, connections, logs / f"{srv.name}-{wl.name}.warmup")
        if proc.poll() is not None:
            res.status = f"died during warm-up: {_log_tail(log)}"
            return res
        time.sleep(DRAIN_SECONDS)
        side_cpu0 = tree_cpu_seconds(side.pid) if side else 0.0
        cpu0, machine0 = tree_cpu_seconds(proc.pid), machine_cpu_seconds()
        w = run_wrk(port, wl, args.duration, connections, logs / f"{srv.name}-{wl.name}.wrk")
        cpu1, machine1 = tree_cpu_seconds(proc.pid), machine_cpu_seconds()
        side_cpu = (tree_cpu_seconds(side.pid) - side_cpu0) if side else 0.0
        # Task time not spent by the server, wrk or our slow clients = other processes.
        other = (machine1[0] - machine0[0]) - (cpu1 - cpu0) - w["wrk_cpu_s"] - side_cpu
        res.other_pct = max(0.0, 100 * other / w["wall_s"])
        if res.other_pct > DISTURBED_PCT:
            res.notes.append(f"other processes used {res.other_pct:.0f}% of a core")
        res.steal_pct = max(0.0, 100 * (machine1[1] - machine0[1]) / w["wall_s"])
        if res.steal_pct > 2:
            res.notes.append(f"hypervisor steal {res.steal_pct:.0f}% of a core")
        if side is not None:
            stop(side)
            side_log = (logs / f"{srv.name}-{wl.name}.slow").read_text(errors="replace")
            m = re.search(r"SLOW connections (\d+) responses (\d+) reconnects (\d+)", side_log)
            if m:
                n, got, again = (int(m.group(i)) for i in (1, 2, 3))
                secs = WARMUP_SECONDS + args.duration
                res.notes.append(
                    f"{n} slow clients got {got:,} responses in about {secs} s "
                    f"({got / n / secs:.2f}/s each, about 1/s if never held back), "
                    f"{again} reconnects"
                )
            side = None
        res.peak_rss_mib = tree_peak_rss_kib(proc.pid) / 1024
        if proc.poll() is not None:
            res.notes.append(f"server exited during the run: {_log_tail(log)}")
        res.rps, res.requests = w.get("rps"), w.get("requests")
        res.p50_us, res.p99_us, res.p999_us = w.get("p50_us"), w.get("p99_us"), w.get("p999_us")
        res.errors = w["errors"]
        res.wall_s = w["wall_s"]
        res.server_cpu_s = cpu1 - cpu0
        res.server_cpu_pct = 100 * res.server_cpu_s / w["wall_s"]
        res.wrk_cpu_pct = 100 * w["wrk_cpu_s"] / w["wall_s"]
        if res.requests:
            res.cpu_us_per_req = 1e6 * res.server_cpu_s / res.requests
        if res.rps is None:
            res.status = "wrk printed no result"
        elif not res.requests:
            res.status = "; ".join(
                ["wrk completed no request: no connection was served"] + res.notes
            )
        if wl.pipeline > 1 and w.get("sent"):
            # At the end of the run at most one batch per connection is still in flight; more
            # unanswered requests were dropped when the server closed connections (legal, but
            # the client must resend them).
            gap = w["sent"] - (res.requests or 0) - wl.pipeline  # init's verify call counts once
            if gap > connections * wl.pipeline:
                res.notes.append(
                    f"{gap:,} pipelined requests ({100 * gap / w['sent']:.1f}%) left unanswered "
                    "(connections closed with requests pending)"
                )
            closes = any("pipelined requests (the rest" in n for n in res.notes)
            if not closes and (gap > 0.1 * w["sent"] or res.errors.get("timeout")):
                res.notes.append("stalls: pipelined requests went unanswered for long")
            if res.errors.get("non-2xx/3xx"):
                res.notes.append("wrong answers: non-2xx responses to pipelined requests")
        if proc.poll() is None:
            res.probed = connections
            res.served = probe_connections(port, wl.path, connections)
            if res.served < connections:
                res.notes.append(
                    f"starves connections: the probe got answers on {res.served} of "
                    f"{connections} connections opened at once within {PROBE_TIMEOUT:.0f} s"
                )
    except (RuntimeError, OSError, http.client.HTTPException) as exc:
        res.status = f"error: {exc}"[:200]
    finally:
        if side is not None:
            stop(side)
        stop(proc)
    return res


def disturbance(res: Result) -> float:
    """How much of a core others took during the run: unrelated processes and steal."""
    return res.other_pct + res.steal_pct


def measure(
    srv: Server,
    wl: Workload,
    args: argparse.Namespace,
    env: dict[str, str],
    logs: Path,
    deadline: float,
    per_cell: float,
) -> Result:
    """bench_one on a quiet machine; a run disturbed by other processes or by the hypervisor
    (steal) is repeated, and the least disturbed one kept."""
    best: Result | None = None
    for attempt in range(1 + args.retries):
        limit = min(args.quiet_wait, max(0.0, deadline - time.monotonic() - per_cell))
        busy = wait_quiet(limit) if limit > 0 else 0.0
        if busy >= 2 * DISTURBED_PCT:
            print(f"  machine still busy ({busy:.0f}% of a core); measuring anyway", flush=True)
        res = bench_one(srv, wl, args, env, logs)
        if best is None or (
            not res.status and (best.status or disturbance(res) < disturbance(best))
        ):
            best = res
        best.attempts = attempt + 1
        if best.status or (best.other_pct <= DISTURBED_PCT and best.steal_pct <= STEAL_PCT):
            break
        if attempt < args.retries and deadline - time.monotonic() > per_cell + args.quiet_wait:
            print(
                f"  disturbed ({best.other_pct:.0f}% of a core used by others, "
                f"{best.steal_pct:.0f}% stolen); again",
                flush=True,
            )
        else:
            break
    return best


FLOORS = ("floor", "floor-uring")


def rival(wl: Workload, results: list[Result]) -> Result | None:
    """The peer ferrowsgi is held against in the interleaved rounds: the best peer that
    produced numbers, served every connection of the probe, answered pipelined requests
    without stalling or closing, and (where the application works in close()) called close().
    Best means the least CPU per request, or the most req/s in the workloads whose target is
    throughput (``Workload.by_rps``)."""
    bad = ("starves", "stalls", "wrong answers", "left unanswered", "pipelined requests (the")
    peers = [
        r
        for r in results
        if r.server != "ferrowsgi"
        and r.server not in FLOORS
        and not r.status
        and r.rps
        and r.cpu_us_per_req
        and (r.served is None or r.served == r.probed)
        and not any(b in n for n in r.notes for b in bad)
        and not (wl.close_does_work and r.skips_close)
    ]
    if not peers:
        return None
    if wl.by_rps:
        return max(peers, key=lambda r: r.rps or 0)
    return min(peers, key=lambda r: r.cpu_us_per_req or 0)


def interleave(
    wl: Workload,
    pair: list[Server],
    args: argparse.Namespace,
    env: dict[str, str],
    logs: Path,
    deadline: float,
    per_cell: float,
) -> list[list[dict]]:
    """``args.rounds`` rounds of ``pair`` taken in turns (each server started afresh, warmed up
    and measured as in its cell, without repeats), so that a slow spell of the machine falls on
    both: per round, one dict of figures per server."""
    rounds: list[list[dict]] = []
    for _ in range(args.rounds):
        if deadline - time.monotonic() < 2 * per_cell:
            break
        row = []
        for srv in pair:
            wait_quiet(min(10.0, args.quiet_wait))
            res = bench_one(srv, wl, args, env, logs)
            row.append(
                {
                    "server": srv.name,
                    "status": res.status,
                    "cpu_us_per_req": res.cpu_us_per_req,
                    "rps": res.rps,
                    "p99_us": res.p99_us,
                    "steal_pct": res.steal_pct,
                }
            )
        rounds.append(row)
    return rounds


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _complete_rounds(c: dict) -> list[list[dict]]:
    return [
        r
        for r in c["rounds"]
        if len(r) == 2 and not r[0]["status"] and not r[1]["status"] and r[0]["rps"]
    ]


def _ratios(rounds: list[list[dict]], key: str, peer_over_ferro: bool) -> list[float]:
    """Per round, the peer's ``key`` over ferrowsgi's (or the inverse)."""
    out = []
    for ferro, peer in rounds:
        if ferro[key] and peer[key]:
            out.append(peer[key] / ferro[key] if peer_over_ferro else ferro[key] / peer[key])
    return out


def interleaved_line(c: dict) -> str:
    """One reading line for a workload's interleaved rounds."""
    rounds = _complete_rounds(c)
    if not rounds:
        return f"The interleaved rounds with {c['peer']} produced no complete round."
    cr = _ratios(rounds, "cpu_us_per_req", True)
    rr = _ratios(rounds, "rps", False)
    ahead = sum(1 for x in cr if x > 1)
    return (
        f"In {len(rounds)} interleaved rounds with {c['peer']} (see Interleaved rounds), "
        f"{c['peer']} used {_fmt(_median(cr), '.2f')}× ferrowsgi's CPU per request in the "
        f"median (ferrowsgi used less in {ahead} of {len(cr)}), and ferrowsgi served "
        f"{_fmt(_median(rr), '.2f')}× its req/s."
    )


CELL_ROUNDS_SPREAD = 1.3  # a cell this far from its rounds' median CPU is called out


def cell_against_rounds(c: dict, results: list[Result]) -> str | None:
    """A reading line when a server's cell and its own interleaved rounds disagree by more than
    ``CELL_ROUNDS_SPREAD`` in CPU per request (a slow spell the disturbance check missed)."""
    rounds = _complete_rounds(c)
    notes = []
    for i, name in enumerate(("ferrowsgi", c["peer"])):
        cell = next((r for r in results if r.server == name and r.cpu_us_per_req), None)
        median = _median([r[i]["cpu_us_per_req"] for r in rounds if r[i]["cpu_us_per_req"]])
        if not cell or not median or not cell.cpu_us_per_req:
            continue
        ratio = cell.cpu_us_per_req / median
        if ratio > CELL_ROUNDS_SPREAD or ratio < 1 / CELL_ROUNDS_SPREAD:
            notes.append(
                f"{name}'s cell ({cell.cpu_us_per_req:.1f} µs/req) is {ratio:.2f}× its own "
                f"median in the rounds ({median:.1f})"
            )
    if not notes:
        return None
    return (
        "Cell and rounds disagree: "
        + "; ".join(notes)
        + ". The machine ran differently in that cell than in the rounds, for a reason the "
        "disturbance check (other processes, steal) did not see, so the rounds are the "
        "better measure here."
    )


def interleaved_section(confirm: dict[str, dict]) -> list[str]:
    """The markdown of the interleaved rounds: medians and each round's ratio."""
    if not confirm:
        return []
    md = [
        "## Interleaved rounds",
        "",
        "Single cells of this machine swing by a fifth or more from run to run (steal, the "
        "other core's work). After the cells, ferrowsgi and the best peer of each workload "
        "(the one ferrowsgi is compared with: it served every connection, answered without "
        "stalling and, in `django` and `file`, called close(); the least CPU per request, or "
        "the most req/s in `hello_pipelined` and `sleep`) were run again in turns, round "
        "after round, each started afresh and measured as in its cell. The CPU and p99 ratios "
        "are the peer's figure over ferrowsgi's, the req/s ratio ferrowsgi's over the peer's: "
        "above 1, ferrowsgi is ahead.",
        "",
        "| workload | peer | rounds | CPU µs/req, ferrowsgi | CPU µs/req, peer | CPU ratio per "
        "round | median CPU ratio | req/s ratio (median) | p99 ms, ferrowsgi and peer "
        "(medians) | p99 ratio per round |",
        "|---|---|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for name, c in confirm.items():
        rounds = _complete_rounds(c)
        if not rounds:
            md.append(f"| `{name}` | {c['peer']} | 0 | — | — | — | — | — | — | — |")
            continue
        fc = [r[0]["cpu_us_per_req"] for r in rounds if r[0]["cpu_us_per_req"]]
        pc = [r[1]["cpu_us_per_req"] for r in rounds if r[1]["cpu_us_per_req"]]
        cr = _ratios(rounds, "cpu_us_per_req", True)
        rr = _ratios(rounds, "rps", False)
        fp = [r[0]["p99_us"] for r in rounds if r[0]["p99_us"]]
        pp = [r[1]["p99_us"] for r in rounds if r[1]["p99_us"]]
        pr = _ratios(rounds, "p99_us", True)
        mfp, mpp = _median(fp), _median(pp)
        md.append(
            f"| `{name}` | {c['peer']} | {len(rounds)} | {_fmt(_median(fc), '.1f')} | "
            f"{_fmt(_median(pc), '.1f')} | {' '.join(f'{x:.2f}' for x in cr)} | "
            f"{_fmt(_median(cr), '.2f')} | {_fmt(_median(rr), '.2f')} | "
            + (f"{mfp / 1000:.2f} and {mpp / 1000:.2f}" if mfp and mpp else "—")
            + f" | {' '.join(f'{x:.2f}' for x in pr) or '—'} |"
        )
    return md + [""]


def python_call_cost(env: dict[str, str]) -> dict:
    """bench/pycall.py pinned to the server's CPU: µs of bare Python per WSGI hello call."""
    argv = ["taskset", "-c", SERVER_CPU, str(VENV_PY), str(BENCH_DIR / "pycall.py")]
    try:
        r = subprocess.run(
            argv, capture_output=True, text=True, timeout=300, env=env, cwd=BENCH_DIR
        )
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)[:200]}


# --------------------------------------------------------------------------- report


def _fmt_lat(us: float | None) -> str:
    if us is None:
        return PAGE_NOTE
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def _fmt(v: float | None, spec: str) -> str:
    return PAGE_NOTE if v is None else format(v, spec)


def table(results: list[Result]) -> str:
    ref = next((r for r in results if r.server == "ferrowsgi" and r.cpu_us_per_req), None)
    rows = sorted(results, key=lambda r: (r.status != "", -(r.rps or 0)))
    head = (
        "server|threads|req/s|p50|p99|p99.9|errors|CPU µs/req|× ferrowsgi CPU|server CPU %"
        "|peak RSS MiB|wrk CPU %|conns served|notes"
    ).split("|")
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|",
    ]
    for r in rows:
        if r.status:
            cells = [r.server] + [PAGE_NOTE] * (len(head) - 2) + [r.status.replace("|", "/")]
        else:
            ratio = (
                f"{r.cpu_us_per_req / ref.cpu_us_per_req:.2f}"
                if ref and r.cpu_us_per_req
                else PAGE_NOTE
            )
            errors = ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "0"
            served = f"{r.served}/{r.probed}" if r.probed else PAGE_NOTE
            cells = [
                r.server,
                str(r.threads) if r.threads else PAGE_NOTE,
                _fmt(r.rps, ",.0f"),
                _fmt_lat(r.p50_us),
                _fmt_lat(r.p99_us),
                _fmt_lat(r.p999_us),
                errors,
                _fmt(r.cpu_us_per_req, ".1f"),
                ratio,
                _fmt(r.server_cpu_pct, ".0f"),
                _fmt(r.peak_rss_mib, ".1f"),
                _fmt(r.wrk_cpu_pct, ".0f"),
                served,
                "; ".join(r.notes).replace("|", "/"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reading(wl: Workload, results: list[Result]) -> list[str]:
    """Plain statements that follow from the numbers (no judgement beyond them)."""
    ok = sorted((r for r in results if not r.status and r.rps), key=lambda r: -(r.rps or 0))
    out: list[str] = []
    if not ok:
        return ["No server produced numbers for this workload."]
    servers = [r for r in ok if r.server != "floor"]
    if not servers:
        return ["Only the floor produced numbers for this workload."]
    best = servers[0]
    out.append(f"Highest throughput: {best.server} at {best.rps:,.0f} req/s.")
    with_cpu = [r for r in servers if r.cpu_us_per_req]
    if with_cpu:
        cheapest = min(with_cpu, key=lambda r: r.cpu_us_per_req or 0)
        out.append(
            f"Least server CPU per request: {cheapest.server} "
            f"({cheapest.cpu_us_per_req:.1f} µs/req)."
        )
    floor = next((r for r in ok if r.server == "floor"), None)
    ferro = next((r for r in servers if r.server == "ferrowsgi"), None)
    if floor and floor.cpu_us_per_req:
        line = (
            f"The pure-Rust floor responder (no Python) spent {floor.cpu_us_per_req:.1f} µs/req "
            f"at {floor.rps:,.0f} req/s"
        )
        if ferro and ferro.cpu_us_per_req:
            line += f"; ferrowsgi {ferro.cpu_us_per_req / floor.cpu_us_per_req:.2f}× that"
        out.append(line + ".")
    if ferro and len(servers) > 1:
        rank = servers.index(ferro) + 1
        peers = [r for r in servers if r.server != "ferrowsgi"]
        calling = [r for r in peers if not r.skips_close]
        if wl.close_does_work and calling and len(calling) < len(peers):
            out.append(
                ", ".join(r.server for r in peers if r.skips_close) + " never called the "
                "response iterable's close(), which PEP 3333 requires and in which this "
                "application does part of its work, so they did less per request; ferrowsgi "
                "is compared with the best peer that calls it."
            )
            peers = calling
        top = peers[0]
        out.append(
            f"ferrowsgi ranks {rank} of {len(servers)} servers by req/s: "
            f"{ferro.rps / top.rps:.2f}× the best peer ({top.server})"
            + (
                f", and uses {ferro.cpu_us_per_req / top.cpu_us_per_req:.2f}× its CPU per request."
                if ferro.cpu_us_per_req and top.cpu_us_per_req
                else "."
            )
        )
    elif not ferro:
        fr = next((r for r in results if r.server == "ferrowsgi"), None)
        if fr:
            out.append(f"ferrowsgi has no numbers: {fr.status.rstrip('.')}.")
    busy = [r.server for r in ok if (r.wrk_cpu_pct or 0) >= 85]
    if busy:
        out.append(
            "wrk used ≥85% of its core against " + ", ".join(busy) + ": there the load "
            "generator may be the limit, so those req/s are lower bounds of the server's "
            "capacity and the CPU µs/req column is the fairer comparison."
        )
    held = [
        r.server
        for r in ok
        if (r.server_cpu_pct or 0) < 90 and (r.wrk_cpu_pct or 0) < 85 and r.server_cpu_pct
    ]
    if held and wl.name != "sleep":
        out.append(
            "Neither the server nor wrk used a full core for " + ", ".join(held) + ": something "
            "else held those runs back (other load on the machine, waiting on the network "
            "stack, or the server waiting on itself), so their req/s understate them while "
            "their CPU µs/req stays comparable."
        )
    starving = [
        f"{r.server} ({r.served}/{r.probed})" for r in ok if r.probed and r.served != r.probed
    ]
    if starving:
        out.append(
            "Not every connection was served when all were opened at once: "
            + ", ".join(starving)
            + ". Such a server gives each connection a thread (or its one process) for as "
            "long as the connection stays open, so the other clients wait."
        )
    elif any(r.probed for r in ok):
        out.append("Every server answered on every connection of the probe.")
    retried = [f"{r.server} ({r.attempts} runs)" for r in ok if r.attempts > 1]
    if retried:
        out.append(
            "The machine was not idle: other processes or the hypervisor (steal) disturbed and "
            "forced repeats of " + ", ".join(retried) + "; the least disturbed run is shown."
        )
    errs = [r.server for r in ok if r.errors]
    if errs:
        out.append("Errors were reported for: " + ", ".join(errs) + " (see the errors column).")
    failed = [
        f"{r.server} ({r.status.rstrip('.')})"
        for r in results
        if r.status and r.server != "ferrowsgi"  # ferrowsgi's status is stated above
    ]
    if failed:
        out.append("Without numbers: " + "; ".join(failed) + ".")
    return out


def floor_section(by_workload: dict[str, list[Result]], pycall: dict) -> list[str]:
    """How far ferrowsgi is from (floor responder CPU µs/req + bare Python µs/call)."""
    py = pycall.get("us_per_call")
    md = [
        "## The floor",
        "",
        "Two measurements bound what a Python WSGI server can cost per request on this machine:",
        "",
        "- **Responder**: bench/floor/ is a minimal pure-Rust HTTP responder (one thread, "
        "edge-triggered epoll through libc, TCP_NODELAY; per wake-up one read, every complete "
        "request head in the buffer answered, one write for the batch; the answer before a "
        "close is sent with MSG_MORE and followed by a shutdown, so the FIN leaves in the same "
        "segment) sending the same bytes "
        "as ferrowsgi's hello answer. It runs on the same core under the same wrk command; its "
        "rows are the `floor` rows of the hello tables. The `floor-uring` rows are the same "
        "responder on io_uring (bench/floor/src/uring.rs: one multishot accept, a receive in "
        "flight per connection, one `io_uring_enter` per turn of its loop): they show what a "
        "completion ring would save on this kernel, and are not the floor ferrowsgi is "
        "measured against. In `big` the same responder (`--body 1048576`) sends the same "
        "1 MiB answer as ferrowsgi, one send per request from one shared buffer: there no "
        "server can do less than it besides the kernel's copy and TCP work, so its row shows "
        "what that kernel work costs.",
        "- **Python**: bench/pycall.py times the bare Python work of one WSGI call in-process "
        "(copy an environ template and fill the per-request keys, call the hello app with a "
        "start_response, iterate the result, close it), pinned to the server's core, best of 7 "
        "× 200,000 calls with timeit: "
        + (
            f"**{py:.3f} µs/call** ({pycall.get('app_only_us', 0):.3f} µs without the environ "
            f"work), Python {pycall.get('python', '?')}."
            if py
            else f"not measured ({pycall.get('error', 'no result')})."
        ),
        "",
        "ferrowsgi's distance from the floor is its CPU µs/req minus (responder CPU µs/req + "
        "Python µs/call):",
        "",
        "| workload | ferrowsgi CPU µs/req | responder CPU µs/req | Python µs/call | floor sum "
        "| ferrowsgi − floor | ferrowsgi ÷ floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = 0
    for name in HELLO_ONLY:
        results = by_workload.get(name, [])
        ferro = next((r for r in results if r.server == "ferrowsgi" and r.cpu_us_per_req), None)
        floor = next((r for r in results if r.server == "floor" and r.cpu_us_per_req), None)
        if not (ferro and floor and py):
            continue
        total = floor.cpu_us_per_req + py
        md.append(
            f"| {name} | {ferro.cpu_us_per_req:.2f} | {floor.cpu_us_per_req:.2f} | {py:.2f} "
            f"| {total:.2f} | {ferro.cpu_us_per_req - total:+.2f} "
            f"| {ferro.cpu_us_per_req / total:.2f}× |"
        )
        rows += 1
    if not rows:
        md.append("| (needs ferrowsgi and floor rows of a hello workload) | | | | | | |")
    md += [
        "",
        "The Python figure is measured from Python: a call into the app from Rust "
        "(PyO3, with interned keys and a builtin start_response) may cost somewhat less, so the "
        "floor sum is an upper estimate of the floor and the distance a lower estimate of "
        "ferrowsgi's overhead.",
        "",
    ]
    return md


def _tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).split("Copyright")[0].strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info(vers: dict[str, str]) -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    record = load_install_state().get(str(REPO_DIR), {})
    source = record.get("source", "unknown") + (f", installed {record['when']}" if record else "")
    pkgs = ", ".join(f"{k} {v or 'not installed'}" for k, v in vers.items() if k != "python")
    return [
        f"- CPU: {os.cpu_count()} × {model}{mem}",
        f"- Kernel: {platform.system()} {platform.release()}",
        f"- Python (bench venv): {vers.get('python', '?')}",
        f"- Load generator: {_tool_version(['wrk', '-v'])}",
        f"- Floor responder built with: {_tool_version(['rustc', '--version'])}",
        f"- Packages: {pkgs}",
        f"- ferrowsgi built from: {source}",
    ]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_DIR))
    except ValueError:
        return str(path)


def server_commands(by_workload: dict[str, list[Result]]) -> list[str]:
    """One exact command line per server, as started for the `hello` cell (or its first cell)."""
    md = ["| server | how | command line (PORT and paths as in that run) |", "|---|---|---|"]
    seen: set[str] = set()
    for results in by_workload.values():
        for r in results:
            if r.server in seen or not r.argv:
                continue
            seen.add(r.server)
            cmd = " ".join(_rel(Path(a)) if a.startswith("/") else a for a in r.argv)
            md.append(f"| {r.server} | {SERVERS[r.server].how} | `{cmd}` |")
    return md


def write_docs(
    command: str,
    args,
    vers,
    by_workload: dict[str, list[Result]],
    when: str,
    pycall: dict,
    charts: dict[str, Path],
    confirm: dict[str, dict],
) -> None:
    wl_lines = []
    for name in by_workload:
        wl = WORKLOADS[name]
        argv = wrk_argv(0, wl, args.duration, _connections_for(wl, args), "SCRIPT")
        cmd = shlex.join(argv).replace(f"{HOST}:0", f"{HOST}:PORT")
        script = f"bench/lua/{wl.lua} + common.lua" if wl.lua else "bench/lua/common.lua"
        wl_lines.append(f"| `{name}` | `{wl.app}` | {script} | `{cmd}` |")
    md = [
        "# Benchmarks",
        "",
        "Generated by `python bench/run.py --all --write-docs` (or a subset of it); rerun it to "
        "refresh this page and the charts in bench/charts/.",
        "",
        *([f"> **Note:** {args.note}", ""] if args.note else []),
        "## Method",
        "",
        f"Each server runs as one worker process pinned to CPU {SERVER_CPU}. Servers that have "
        f"application threads run {args.threads} (`--threads`), except in the `sleep` workload, "
        f"where every one of them runs {SLEEP_THREADS}; the threads column says what each row "
        "used. Servers without threads (bjoern, fastwsgi, meinheld, gunicorn's sync worker, the "
        "floor) run their single loop. After a readiness poll, a correctness check (the "
        "workload's request with its expected status and body; for `hello_pipelined` also "
        f"{PIPELINE_DEPTH} requests in one write, every answer checked: a server that answers "
        "fewer is reported as stalling, a wrong one as giving wrong answers) and a "
        f"{WARMUP_SECONDS} s warm-up, wrk runs pinned to CPU {WRK_CPU} against 127.0.0.1 with "
        "the command line below. Server CPU is utime+stime of the server's whole process tree "
        "(all threads) read from /proc before and after the wrk run; CPU µs/req divides it by "
        "the requests wrk completed. Latency percentiles come from wrk's histogram through "
        "bench/lua/common.lua. Peak RSS is VmHWM summed over the tree. wrk CPU % is wrk's own "
        "utime+stime over the run's wall time: near 100 % means the load generator, not the "
        "server, is the limit. After the run, a probe opens as many connections as wrk used, "
        "all at once, sends one request on each and keeps them open: conns served counts those "
        f"that got an answer within {PROBE_TIMEOUT:.0f} s (a server that gives each keep-alive "
        "connection a thread serves only as many as it has threads). Before each cell the "
        f"script waits (up to {args.quiet_wait:.0f} s) for the machine to be idle; a run during "
        f"which other processes used more than {DISTURBED_PCT:.0f}% of a core, or the "
        f"hypervisor stole more than {STEAL_PCT:.0f}%, is repeated (up "
        f"to {args.retries} times) and the least disturbed run is kept; a row that stayed "
        "disturbed says so in its notes. Each number comes from a single run. Before the cells, "
        "each server is started once with bench/apps/closecheck.py, whose body counts the "
        "calls of its iterable's close(): a server that answers twice without calling it is "
        "noted in every row (PEP 3333 requires the call), and in the workloads whose "
        "application does part of its work in close() (`django`: the request_finished "
        "handlers; `file`: closing the file) it is left out when ferrowsgi is compared with "
        "the best peer.",
        "",
        "## Machine",
        "",
        *machine_info(vers),
        f"- Date: {when}",
        "",
        "## Commands",
        "",
        "The whole page (later lines re-rendered or replaced workloads):"
        if "\n" in command
        else "The whole page:",
        "",
        "```",
        command,
        "```",
        "",
        "Servers (T = application threads):",
        "",
        *server_commands(by_workload),
        "",
        "Workloads (apps in bench/apps/, wrk scripts in bench/lua/):",
        "",
        "| workload | app | SCRIPT | wrk command line |",
        "|---|---|---|---|",
        *wl_lines,
        "",
    ]
    if "mixed" in by_workload:
        md += [
            "`mixed` also runs `python bench/slowclients.py 127.0.0.1 PORT "
            f"{WORKLOADS['mixed'].slow_clients} SECONDS /` pinned to CPU {WRK_CPU} from before "
            "the warm-up to the end of the run.",
            "",
        ]
    md += floor_section(by_workload, pycall)
    md += interleaved_section(confirm)
    for name, results in by_workload.items():
        wl = WORKLOADS[name]
        md += [f"## Workload `{name}`", "", wl.description + "."]
        md += [""]
        if name in charts:
            md += [f"![{name}]({os.path.relpath(charts[name], DOCS_FILE.parent)})", ""]
        md += [table(results), ""]
        lines = reading(wl, results)
        if name in confirm:
            lines.append(interleaved_line(confirm[name]))
            disagree = cell_against_rounds(confirm[name], results)
            if disagree:
                lines.append(disagree)
        md += ["Reading:", ""] + [f"- {line}" for line in lines] + [""]
    md += [
        "## Caveats",
        "",
        f"- One run per cell on a {os.cpu_count()}-core VM: differences of a few percent are "
        "noise.",
        "- Server and wrk share the machine's two cores (one each) and the loopback device; "
        "kernel networking work of both sides lands on their respective cores.",
        "- Loopback packet processing runs partly in softirq context, which the kernel charges to "
        "whichever task is on the CPU (or to ksoftirqd): CPU µs/req is close to, not exactly, "
        "the server's own cost.",
        "- A server that closes every connection (gunicorn's sync worker, uWSGI's "
        "`--http-socket`) pays for a TCP connect per request even in `hello`; its row says so in "
        "the notes column.",
        f"- `hello_pipelined` latency is per batch of {PIPELINE_DEPTH} requests; req/s counts "
        "requests. wrk's histogram returns 0 for the high percentiles of some pipelined runs; "
        "those cells show —. A server that closes the connection after the first pipelined "
        "answer is measured as it is: wrk opens a new connection and writes a new batch, and only "
        "answers count.",
        "- In `mixed`, `sleep` and the large-body workloads the server does not always use a "
        "full core; compare CPU µs/req there with care.",
        "",
    ]
    # Sections measured by other scripts (bench/workers.py peers) are kept as they are.
    kept = DOCS_FILE.read_text().partition(KEPT_SECTIONS)[1:] if DOCS_FILE.exists() else ()
    md += ["".join(kept)] if kept and kept[0] else []
    DOCS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_FILE.write_text("\n".join(md))
    print(f"wrote {DOCS_FILE}", flush=True)


def draw_charts(results_json: Path) -> dict[str, Path]:
    """bench/charts.py under the venv's Python (matplotlib); returns {workload: png}."""
    try:
        r = subprocess.run(
            [str(VENV_PY), str(BENCH_DIR / "charts.py"), str(results_json), str(CHARTS_DIR)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"charts: {exc}", flush=True)
        return {}
    if r.returncode != 0:
        print(f"charts failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
        return {}
    data = json.loads(results_json.read_text())
    return {
        w: CHARTS_DIR / f"{w}.png" for w in data["results"] if (CHARTS_DIR / f"{w}.png").exists()
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--all",
        action="store_true",
        help=f"every server and workload (duration {ALL_DURATION} s per cell unless --duration)",
    )
    p.add_argument("--duration", type=int, default=0, help="seconds of measured load per cell")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (-c)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help=f"application threads for servers that have them (`sleep` uses {SLEEP_THREADS})",
    )
    p.add_argument("--servers", default="", help="comma list: " + ",".join(SERVERS))
    p.add_argument("--workloads", default="", help="comma list: " + ",".join(WORKLOADS))
    p.add_argument("--no-install", action="store_true", help="use the venv as it is")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="after the cells, run ferrowsgi and each workload's best peer this many times in "
        "turns (0: no interleaved rounds)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="repeat a cell this many times when other processes or steal disturbed it",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT,
        help="seconds to wait for an idle machine before each cell (0: do not wait)",
    )
    p.add_argument("--write-docs", action="store_true", help="also write docs/BENCHMARKS.md")
    p.add_argument("--note", default="", help="a line shown at the top of the docs page")
    p.add_argument(
        "--render",
        default="",
        metavar="DIR[,DIR...]",
        help="measure nothing: write the docs and charts from earlier runs' results "
        "(bench/results/STAMP); a later run's workloads replace an earlier one's",
    )
    p.add_argument(
        "--max-total",
        type=int,
        default=0,
        help="hard limit on the whole run in seconds (default: computed from the plan)",
    )
    args = p.parse_args(argv)
    if args.all:
        args.servers = args.servers or ",".join(SERVERS)
        args.workloads = args.workloads or ",".join(WORKLOADS)
        args.duration = args.duration or ALL_DURATION
    args.servers = args.servers or ",".join(SERVERS)
    args.workloads = args.workloads or "hello"
    args.duration = args.duration or 10
    args.server_list = [s for s in args.servers.split(",") if s]
    args.workload_list = [w for w in args.workloads.split(",") if w]
    for name in args.server_list:
        if name not in SERVERS:
            p.error(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    for name in args.workload_list:
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    if not 1 <= args.duration <= 600 or not 1 <= args.connections <= 10000:
        p.error("--duration must be 1..600 and --connections 1..10000")
    if not 1 <= args.threads <= 256:
        p.error("--threads must be 1..256")
    if not 0 <= args.retries <= 10 or not 0 <= args.quiet_wait <= 600:
        p.error("--retries must be 0..10 and --quiet-wait 0..600")
    if not 0 <= args.rounds <= 10:
        p.error("--rounds must be 0..10")
    return args


class _Stop(Exception):
    pass


def _on_signal(signum, _frame):
    raise _Stop(f"stopped by signal {signal.Signals(signum).name}")


def plan(args: argparse.Namespace) -> tuple[int, float, float, int]:
    """(cells, expected seconds of one undisturbed cell, expected total, hard cap) of a run."""
    cells = sum(1 for w in args.workload_list for s in args.server_list if SERVERS[s].serves(w))
    # start + check ~2 s, warm-up, run, probe ~1 s, stop ~1 s, idle check 1 s
    typical = 5 + WARMUP_SECONDS + args.duration
    install = 0 if args.no_install else 240
    paired = len(args.workload_list) if "ferrowsgi" in args.server_list else 0
    rounds = paired * args.rounds * 2  # interleaved rounds: ferrowsgi and one peer each
    runs = cells + rounds
    expected = install + runs * typical + 30  # + the Python micro-benchmark
    # A cell may wait for a quiet machine and be repeated when disturbed; a starved probe,
    # a slow stop or a server that never comes up adds up to a minute more.
    worst_cell = (1 + args.retries) * (typical + args.quiet_wait + PROBE_TIMEOUT)
    cap = args.max_total or int(
        min(install + runs * worst_cell + 120, 3 * expected + 600)
        if args.retries or args.quiet_wait
        else 2 * expected + 300
    )
    return cells, typical, expected, cap


def render(args: argparse.Namespace, argv: list[str]) -> int:
    """--render: docs/BENCHMARKS.md and the charts from stored results.json files."""
    by_workload: dict[str, list[Result]] = {}
    commands, vers, when, pycall = [], {}, "", {}
    confirm: dict[str, dict] = {}
    known = set(Result.__dataclass_fields__)
    for item in args.render.split(","):
        path = Path(item)
        path = path / "results.json" if path.is_dir() else path
        data = json.loads(path.read_text())
        commands.append(data["command"])
        vers, when = data.get("versions") or vers, data.get("when") or when
        pycall = data.get("pycall") or pycall
        # A later file's rounds replace an earlier one's for the same workload.
        confirm.update(data.get("interleaved") or {})
        for w, rows in data["results"].items():
            by_workload[w] = [Result(**{k: v for k, v in r.items() if k in known}) for r in rows]
    ordered = {w: by_workload[w] for w in WORKLOADS if w in by_workload}
    run_args = parse_args(shlex.split(commands[0])[2:])
    run_args.note = args.note or run_args.note
    out = RESULTS_DIR / (datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-render")
    out.mkdir(parents=True, exist_ok=True)
    results_json = out / "results.json"
    merged = {"command": commands, "versions": vers, "when": when, "pycall": pycall}
    merged["results"] = {w: [r.__dict__ for r in rs] for w, rs in ordered.items()}
    confirm = {w: confirm[w] for w in ordered if w in confirm}
    merged["interleaved"] = confirm
    results_json.write_text(json.dumps(merged, indent=2))
    command = "\n".join([*commands, "python bench/run.py " + shlex.join(argv)])
    write_docs(command, run_args, vers, ordered, when, pycall, draw_charts(results_json), confirm)
    return 0


# What the run needs from the system, by the file that shows it is there: the load
# generator, taskset, and libev's headers (bjoern builds against them).
SYSTEM_PACKAGES = {"wrk": "wrk", "taskset": "util-linux", "/usr/include/ev.h": "libev-dev"}


def install_system_packages() -> None:
    """Install the missing Debian packages of SYSTEM_PACKAGES when running as root with apt."""
    missing = [
        pkg
        for need, pkg in SYSTEM_PACKAGES.items()
        if not (Path(need).exists() if need.startswith("/") else shutil.which(need))
    ]
    if not missing or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print(f"installing Debian packages: {' '.join(missing)} ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"  {' '.join(cmd[:2])} failed: {last[0]}", flush=True)
            return


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        return render(args, argv)
    install_system_packages()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            print(
                f"{tool} is not installed (apt-get install {SYSTEM_PACKAGES[tool]})",
                file=sys.stderr,
            )
            return 2
    cells, typical, expected, max_total = plan(args)
    per_cell = typical + READY_TIMEOUT + 4 * STOP_GRACE + PROBE_TIMEOUT
    print(
        f"plan: {cells} cells ({len(args.server_list)} servers × {len(args.workload_list)} "
        f"workloads) and {args.rounds} interleaved rounds per workload, × ~{typical:.0f} s = "
        f"about {expected / 60:.0f} min on a quiet machine; "
        f"hard cap {max_total / 60:.0f} min (--max-total {max_total})",
        flush=True,
    )
    start = time.monotonic()
    deadline = start + max_total
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(max_total + 30)  # backstop: even a hung step cannot outlive the budget
    command = "python bench/run.py " + shlex.join(argv) if argv else "python bench/run.py"
    servers = [SERVERS[n] for n in args.server_list]
    by_workload: dict[str, list[Result]] = {w: [] for w in args.workload_list}
    data_dir = Path(tempfile.mkdtemp(prefix="ferrowsgi-bench-"))
    try:
        ensure_venv()
        install_status = check_installed(servers) if args.no_install else install(servers, deadline)
        vers = versions(list(SERVERS.values()))
        if len(os.sched_getaffinity(0)) > 1 and int(WRK_CPU) in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {int(WRK_CPU)})  # keep this script off the server's core
        when = _now()
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        logs = RESULTS_DIR / stamp
        logs.mkdir(parents=True, exist_ok=True)
        data_file = data_dir / "data.bin"
        data_file.write_bytes(_data_file_bytes())
        env = dict(os.environ)
        env["PYTHONPATH"] = str(BENCH_DIR)
        env["PYTHONUNBUFFERED"] = "1"
        env["PATH"] = f"{VENV_DIR / 'bin'}:{env.get('PATH', '')}"
        env["BENCH_DATA_FILE"] = str(data_file)
        env.pop("PYTHONHOME", None)
        pycall = python_call_cost(env) if any(s.name == "floor" for s in servers) else {}
        if pycall:
            print(f"python work of one WSGI hello call: {pycall}", flush=True)
        skips_close = set()
        for srv in servers:
            if srv.name != "floor" and not install_status[srv.name]:
                if close_check(srv, args, env, logs):
                    skips_close.add(srv.name)
        if skips_close:
            print(f"{CLOSE_NOTE}: {', '.join(sorted(skips_close))}", flush=True)
        for wname in args.workload_list:
            wl = WORKLOADS[wname]
            for srv in servers:
                if not srv.serves(wname):
                    continue
                if install_status[srv.name]:
                    reason = install_status[srv.name]
                    if not reason.startswith("not installed"):
                        reason = f"not installable: {reason}"
                    by_workload[wname].append(Result(srv.name, wname, status=reason))
                    continue
                if deadline - time.monotonic() < per_cell:
                    by_workload[wname].append(
                        Result(srv.name, wname, status="skipped: total time budget reached")
                    )
                    continue
                res = measure(srv, wl, args, env, logs, deadline, per_cell)
                if srv.name in skips_close:
                    res.skips_close = True
                    res.notes.append(CLOSE_NOTE)
                by_workload[wname].append(res)
        by_name = {s.name: s for s in servers}
        confirm: dict[str, dict] = {}
        for wname, results in by_workload.items() if "ferrowsgi" in by_name else ():
            wl = WORKLOADS[wname]
            ferro = next((r for r in results if r.server == "ferrowsgi" and not r.status), None)
            peer = rival(wl, results)
            if not args.rounds or ferro is None or peer is None:
                continue
            print(f"[{wname}] interleaved rounds: ferrowsgi and {peer.server}", flush=True)
            pair = [by_name["ferrowsgi"], by_name[peer.server]]
            rounds = interleave(wl, pair, args, env, logs, deadline, per_cell)
            confirm[wname] = {"peer": peer.server, "rounds": rounds}
        for wname, results in by_workload.items():
            print(f"\n### {wname} ({WORKLOADS[wname].description})\n")
            print(table(results))
            print()
            for line in reading(WORKLOADS[wname], results):
                print(f"- {line}")
        results_json = logs / "results.json"
        results_json.write_text(
            json.dumps(
                {
                    "command": command,
                    "versions": vers,
                    "when": when,
                    "pycall": pycall,
                    "results": {w: [r.__dict__ for r in rs] for w, rs in by_workload.items()},
                    "interleaved": confirm,
                },
                indent=2,
            )
        )
        print(f"\nlogs and results.json in {logs}")
        if pycall:
            for line in floor_section(by_workload, pycall)[-9:]:
                print(line)
        for line in interleaved_section(confirm):
            print(line)
        if args.write_docs:
            charts = draw_charts(results_json)
            write_docs(command, args, vers, by_workload, when, pycall, charts, confirm)
        print(f"total time {time.monotonic() - start:.0f} s")
        return 0
    except (_Stop, KeyboardInterrupt) as exc:
        print(f"\naborted: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        stop_all()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
