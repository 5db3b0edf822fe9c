#!/usr/bin/env python3
"""Benchmark ferrowsgi against other WSGI servers (standard library only).

    python bench/run.py [--duration 10] [--connections 50] [--servers a,b]
                        [--workloads hello] [--no-install] [--write-docs]

Each server runs as one worker process (one thread where it has threads) pinned
to CPU 0; wrk runs pinned to CPU 1 and talks to 127.0.0.1 only.  Per server and
workload the script measures requests/s, p50/p99 latency, errors, the server's
CPU time per request (utime+stime of the whole process tree from /proc), the
server tree's peak RSS (VmHWM) and wrk's own CPU share, so that a saturated load
generator is visible.  Servers and wrk are always stopped, and the whole run is
bounded in time (--max-total).

Servers and workloads are table entries (SERVERS, WORKLOADS below): a new
workload is an app in bench/apps/ plus one Workload(...) line.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
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

HOST = "127.0.0.1"  # the only address this script ever sends traffic to
SERVER_CPU = "0"
WRK_CPU = "1"
WARMUP_SECONDS = 2
READY_TIMEOUT = 60.0
STOP_GRACE = 5.0
INSTALL_TIMEOUT = 600
FERRO_INSTALL_TIMEOUT = 900
CLK_TCK = os.sysconf("SC_CLK_TCK")
DISTURBED_PCT = 5.0  # other processes above this (% of a core) during a run: rerun the cell
QUIET_WAIT = 60.0  # seconds to wait for unrelated load to stop before a cell
PAGE_NOTE = "—"


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """How to install, identify and start one server (one worker, one thread)."""

    name: str
    requirement: str  # what `pip install` gets ("@repo" = this repository)
    dist: str  # distribution name, for the version
    module: str  # importing it proves the install works
    argv: Callable[[str, int], list[str]]  # (app "mod:callable", port) -> command

    def pip_target(self) -> str:
        return str(REPO_DIR) if self.requirement == "@repo" else self.requirement


def _py(*args: str) -> list[str]:
    return [str(VENV_PY), *args]


def _launch(server: str) -> Callable[[str, int], list[str]]:
    return lambda app, port: _py(str(BENCH_DIR / "launch.py"), server, app, HOST, str(port))


SERVERS: dict[str, Server] = {
    s.name: s
    for s in [
        Server(
            "ferrowsgi",
            "@repo",
            "ferrowsgi",
            "ferrowsgi._ferrowsgi",
            lambda app, port: _py(
                "-m", "ferrowsgi", app, "--bind", f"{HOST}:{port}", "--threads", "1"
            ),
        ),
        Server(
            "gunicorn-sync",
            "gunicorn",
            "gunicorn",
            "gunicorn",
            lambda app, port: _py(
                *"-m gunicorn --workers 1 --worker-class sync --log-level warning".split(),
                *("--bind", f"{HOST}:{port}", app),
            ),
        ),
        Server(
            "gunicorn-gthread",
            "gunicorn",
            "gunicorn",
            "gunicorn",
            lambda app, port: _py(
                *"-m gunicorn --workers 1 --worker-class gthread --threads 1".split(),
                *("--log-level", "warning", "--bind", f"{HOST}:{port}", app),
            ),
        ),
        Server(
            "waitress",
            "waitress",
            "waitress",
            "waitress",
            lambda app, port: _py("-m", "waitress", f"--listen={HOST}:{port}", "--threads=1", app),
        ),
        Server(
            "granian",
            "granian",
            "granian",
            "granian",
            lambda app, port: _py(
                *"-m granian --interface wsgi --workers 1 --blocking-threads 1".split(),
                *"--runtime-threads 1 --no-ws --log-level warning".split(),
                *("--host", HOST, "--port", str(port), app),
            ),
        ),
        Server("bjoern", "bjoern", "bjoern", "bjoern", _launch("bjoern")),
        Server("fastwsgi", "fastwsgi", "fastwsgi", "fastwsgi", _launch("fastwsgi")),
        Server("meinheld", "meinheld", "meinheld", "meinheld", _launch("meinheld")),
    ]
}


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Check:
    """One request sent before the load, and the answer it must get."""

    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    status: int = 200
    response_body: bytes = b"Hello, World!"


@dataclass(frozen=True)
class Workload:
    """One row set of the table: an app, the wrk options, and the correctness check."""

    name: str
    app: str  # "module:callable", importable from bench/
    description: str
    path: str = "/"
    wrk_args: tuple[str, ...] = ()  # extra wrk options, e.g. ("-H", "Connection: close")
    lua: str | None = None  # wrk script in bench/lua/ (pipelining, uploads, ...)
    check: Check = field(default_factory=Check)


# Later entries (pipelined, stream, big, file, echo, upload, flask, django, sleep)
# are one line each here plus an app in bench/apps/ (and a Lua script if wrk needs one).
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("hello", "apps.hello:app", "GET /, 13-byte body, keep-alive connections"),
        Workload(
            "hello_nokeepalive",
            "apps.hello:app",
            "GET / with `Connection: close`: a new TCP connection per request",
            wrk_args=("-H", "Connection: close"),
            check=Check(headers=(("Connection", "close"),)),
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


def tree_cpu_seconds(root: int) -> float:
    """utime+stime (all threads) + reaped children's times, summed over the process tree."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / CLK_TCK


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
    r = subprocess.run(
        [str(VENV_PY), "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    last = (r.stderr.strip().splitlines() or ["import failed"])[-1]
    return r.returncode == 0, last


def install(servers: list[Server], deadline: float) -> dict[str, str]:
    """pip-install every selected server; returns {server: "" or 'not installable: ...'}."""
    state = load_install_state()
    done: dict[str, tuple[bool, str]] = {}
    for srv in servers:
        target = srv.pip_target()
        if target in done:
            continue
        remaining = deadline - time.monotonic()
        limit = FERRO_INSTALL_TIMEOUT if srv.requirement == "@repo" else INSTALL_TIMEOUT
        if remaining < 60:
            done[target] = (False, "install skipped: total time budget reached")
            continue
        cmd = [str(VENV_PY), "-m", "pip", "install", "--disable-pip-version-check"]
        if srv.requirement == "@repo":
            cmd += ["--force-reinstall", "--no-cache-dir"]
            source = source_state()
        cmd.append(target)
        print(f"installing {target} ...", flush=True)
        t0 = time.monotonic()
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
            reason = "" if ok else f"installed but `import {srv.module}` fails: {last}"
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
    dists = sorted({s.dist for s in servers})
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
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float | None = None
    cpu_us_per_req: float | None = None
    server_cpu_pct: float | None = None
    peak_rss_mib: float | None = None
    wrk_cpu_pct: float | None = None
    wall_s: float | None = None
    attempts: int = 1
    other_pct: float = 0.0  # CPU used by unrelated processes during the run, % of a core
    notes: list[str] = field(default_factory=list)


def http_check(port: int, wl: Workload, timeout: float = 2.0) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(wl.check.method, wl.path, body=wl.check.body, headers=dict(wl.check.headers))
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, wl: Workload, log: Path) -> str:
    """Poll connect+GET until the server answers; returns "" or why it never did."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before answering: {_log_tail(log)}"
        try:
            http_check(port, wl, timeout=1.0)
            return ""
        except (OSError, http.client.HTTPException):
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
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for name, val in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(val):
                res["errors"][name] = int(val)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["errors"]["non-2xx/3xx"] = int(m.group(1))
    return res


def run_wrk(port: int, wl: Workload, duration: int, connections: int, log: Path) -> dict:
    """Run wrk on WRK_CPU; returns the parsed output plus wrk's CPU time and wall time."""
    argv = ["taskset", "-c", WRK_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    argv += ["--latency", "--timeout", "5s", *wl.wrk_args]
    if wl.lua:
        argv += ["-s", str(BENCH_DIR / "lua" / wl.lua)]
    argv.append(f"http://{HOST}:{port}{wl.path}")
    proc = spawn(argv, log)
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


def bench_one(
    srv: Server, wl: Workload, args: argparse.Namespace, env: dict[str, str], logs: Path
) -> Result:
    res = Result(srv.name, wl.name)
    port = free_port()
    log = logs / f"{srv.name}-{wl.name}.server.log"
    argv = ["taskset", "-c", SERVER_CPU, *srv.argv(wl.app, port)]
    print(f"[{wl.name}] {srv.name}: {shlex.join(argv)}", flush=True)
    proc = spawn(argv, log, env)
    try:
        why = wait_ready(proc, port, wl, log)
        if why:
            res.status = f"failed to start: {why}"
            return res
        status, body, headers = http_check(port, wl)
        if status != wl.check.status or body != wl.check.response_body:
            res.status = f"wrong answer: status {status}, body {body[:40]!r}"
            return res
        if not wl.check.headers and headers.get("connection", "").lower() == "close":
            res.notes.append("closes the connection after every response (no keep-alive)")
        run_wrk(port, wl, WARMUP_SECONDS, args.connections, logs / f"{srv.name}-{wl.name}.warmup")
        if proc.poll() is not None:
            res.status = f"died during warm-up: {_log_tail(log)}"
            return res
        cpu0, machine0 = tree_cpu_seconds(proc.pid), machine_cpu_seconds()
        w = run_wrk(port, wl, args.duration, args.connections, logs / f"{srv.name}-{wl.name}.wrk")
        cpu1, machine1 = tree_cpu_seconds(proc.pid), machine_cpu_seconds()
        # Task time not spent by the server or wrk = other processes competing for the cores.
        other = (machine1[0] - machine0[0]) - (cpu1 - cpu0) - w["wrk_cpu_s"]
        res.other_pct = max(0.0, 100 * other / w["wall_s"])
        if res.other_pct > DISTURBED_PCT:
            res.notes.append(f"other processes used {res.other_pct:.0f}% of a core")
        steal = machine1[1] - machine0[1]
        if steal > 0.02 * w["wall_s"]:
            res.notes.append(f"hypervisor steal {100 * steal / w['wall_s']:.0f}% of a core")
        res.peak_rss_mib = tree_peak_rss_kib(proc.pid) / 1024
        if proc.poll() is not None:
            res.notes.append(f"server exited during the run: {_log_tail(log)}")
        res.rps, res.requests = w.get("rps"), w.get("requests")
        res.p50_us, res.p99_us, res.errors = w.get("p50_us"), w.get("p99_us"), w["errors"]
        res.wall_s = w["wall_s"]
        res.server_cpu_s = cpu1 - cpu0
        res.server_cpu_pct = 100 * res.server_cpu_s / w["wall_s"]
        res.wrk_cpu_pct = 100 * w["wrk_cpu_s"] / w["wall_s"]
        if res.requests:
            res.cpu_us_per_req = 1e6 * res.server_cpu_s / res.requests
        if res.rps is None:
            res.status = "wrk printed no result"
    except (RuntimeError, OSError, http.client.HTTPException) as exc:
        res.status = f"error: {exc}"[:200]
    finally:
        stop(proc)
    return res


def measure(
    srv: Server,
    wl: Workload,
    args: argparse.Namespace,
    env: dict[str, str],
    logs: Path,
    deadline: float,
    per_cell: float,
) -> Result:
    """bench_one on a quiet machine; a run disturbed by other processes is repeated."""
    best: Result | None = None
    for attempt in range(1 + args.retries):
        busy = wait_quiet(min(QUIET_WAIT, max(0.0, deadline - time.monotonic() - per_cell)))
        if busy >= 2 * DISTURBED_PCT:
            print(f"  machine still busy ({busy:.0f}% of a core); measuring anyway", flush=True)
        res = bench_one(srv, wl, args, env, logs)
        if best is None or (not res.status and (best.status or res.other_pct < best.other_pct)):
            best = res
        best.attempts = attempt + 1
        if best.status or best.other_pct <= DISTURBED_PCT:
            break
        if attempt < args.retries and deadline - time.monotonic() > per_cell + QUIET_WAIT:
            print(
                f"  disturbed ({best.other_pct:.0f}% of a core used by others); again", flush=True
            )
        else:
            break
    return best


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
        "server|req/s|p50|p99|errors|CPU µs/req|× ferrowsgi CPU|server CPU %|peak RSS MiB"
        "|wrk CPU %|notes"
    ).split("|")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 9 + ["---"]) + "|"]
    for r in rows:
        if r.status:
            cells = [r.server] + [PAGE_NOTE] * 9 + [r.status.replace("|", "/")]
        else:
            ratio = (
                f"{r.cpu_us_per_req / ref.cpu_us_per_req:.2f}"
                if ref and r.cpu_us_per_req
                else PAGE_NOTE
            )
            errors = ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "0"
            cells = [
                r.server,
                _fmt(r.rps, ",.0f"),
                _fmt_lat(r.p50_us),
                _fmt_lat(r.p99_us),
                errors,
                _fmt(r.cpu_us_per_req, ".1f"),
                ratio,
                _fmt(r.server_cpu_pct, ".0f"),
                _fmt(r.peak_rss_mib, ".1f"),
                _fmt(r.wrk_cpu_pct, ".0f"),
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
    best = ok[0]
    out.append(f"Highest throughput: {best.server} at {best.rps:,.0f} req/s.")
    with_cpu = [r for r in ok if r.cpu_us_per_req]
    if with_cpu:
        cheapest = min(with_cpu, key=lambda r: r.cpu_us_per_req or 0)
        out.append(
            f"Least server CPU per request: {cheapest.server} "
            f"({cheapest.cpu_us_per_req:.1f} µs/req)."
        )
    ferro = next((r for r in ok if r.server == "ferrowsgi"), None)
    if ferro and len(ok) > 1:
        rank = ok.index(ferro) + 1
        peers = [r for r in ok if r.server != "ferrowsgi"]
        top = peers[0]
        out.append(
            f"ferrowsgi ranks {rank} of {len(ok)} by req/s: {ferro.rps / top.rps:.2f}× the "
            f"best peer ({top.server})"
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
    if held:
        out.append(
            "Neither the server nor wrk used a full core for " + ", ".join(held) + ": something "
            "else held those runs back (other load on the machine, or the server waiting on "
            "itself), so their req/s understate them while their CPU µs/req stays comparable."
        )
    retried = [f"{r.server} ({r.attempts} runs)" for r in ok if r.attempts > 1]
    if retried:
        out.append(
            "The machine was not idle: other processes disturbed and forced repeats of "
            + ", ".join(retried)
            + "; the least disturbed run is shown."
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


def machine_info(vers: dict[str, str]) -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        wrk_version = (wrk_v.stdout + wrk_v.stderr).split("Copyright")[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        wrk_version = "unknown"
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
        f"- Load generator: {wrk_version}",
        f"- Packages: {pkgs}",
        f"- ferrowsgi built from: {source}",
    ]


def write_docs(command: str, args, vers, by_workload: dict[str, list[Result]], when: str) -> None:
    md = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py --write-docs`; rerun it to refresh this page.",
        "",
        "## Method",
        "",
        f"Each server runs as one worker process pinned to CPU {SERVER_CPU} with one application "
        "thread where it has threads (gunicorn gthread `--threads 1`, waitress `--threads=1`, "
        "granian `--workers 1 --blocking-threads 1 --runtime-threads 1`, ferrowsgi "
        f"`--threads 1`). After a readiness poll, a correctness check and a {WARMUP_SECONDS} s "
        f"warm-up, wrk runs pinned to CPU {WRK_CPU}: `wrk -t1 -c{args.connections} "
        f"-d{args.duration}s --latency` against 127.0.0.1. Server CPU is utime+stime of the "
        "server's whole process tree (all threads) read from /proc before and after the wrk "
        "run; CPU µs/req divides it by the requests wrk completed. Peak RSS is VmHWM summed over "
        "the tree. wrk CPU % is wrk's own utime+stime over the run's wall time: near 100 % means "
        "the load generator, not the server, is the limit. Before each cell the script waits "
        f"(up to {QUIET_WAIT:.0f} s) for the machine to be idle; a run during which other "
        "processes "
        f"used more than {DISTURBED_PCT:.0f}% of a core is repeated (up to {args.retries} times) "
        "and the least disturbed run is kept; a row that stayed disturbed says so in its notes. "
        "Each number comes from a single run.",
        "",
        "## Machine",
        "",
        *machine_info(vers),
        f"- Date: {when}",
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
    ]
    for name, results in by_workload.items():
        wl = WORKLOADS[name]
        md += [f"## Workload `{name}`", "", wl.description + ".", "", table(results), ""]
        md += ["Reading:", ""] + [f"- {line}" for line in reading(wl, results)] + [""]
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
        "- A server that closes every connection (gunicorn's sync worker does) pays for a TCP "
        "connect per request even in `hello`; its row says so in the notes column.",
        "",
    ]
    DOCS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_FILE.write_text("\n".join(md))
    print(f"wrote {DOCS_FILE}", flush=True)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds of measured load per cell")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (-c)")
    p.add_argument("--servers", default=",".join(SERVERS), help="comma list: " + ",".join(SERVERS))
    p.add_argument("--workloads", default="hello", help="comma list: " + ",".join(WORKLOADS))
    p.add_argument("--no-install", action="store_true", help="use the venv as it is")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="repeat a cell this many times when other processes disturbed it",
    )
    p.add_argument("--write-docs", action="store_true", help="also write docs/BENCHMARKS.md")
    p.add_argument(
        "--max-total",
        type=int,
        default=0,
        help="hard limit on the whole run in seconds (default: computed from the plan)",
    )
    args = p.parse_args(argv)
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
    if not 0 <= args.retries <= 10:
        p.error("--retries must be 0..10")
    return args


class _Stop(Exception):
    pass


def _on_signal(signum, _frame):
    raise _Stop(f"stopped by signal {signal.Signals(signum).name}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    cells = len(args.server_list) * len(args.workload_list)
    per_cell = args.duration + WARMUP_SECONDS + READY_TIMEOUT + 4 * STOP_GRACE + 40
    per_cell_all = (1 + args.retries) * (per_cell + QUIET_WAIT)
    install_budget = 0 if args.no_install else FERRO_INSTALL_TIMEOUT + 300
    max_total = args.max_total or int(install_budget + cells * per_cell_all + 60)
    start = time.monotonic()
    deadline = start + max_total
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(max_total + 30)  # backstop: even a hung step cannot outlive the budget
    command = "python bench/run.py " + shlex.join(argv) if argv else "python bench/run.py"
    servers = [SERVERS[n] for n in args.server_list]
    by_workload: dict[str, list[Result]] = {w: [] for w in args.workload_list}
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
        env = dict(os.environ)
        env["PYTHONPATH"] = str(BENCH_DIR)
        env["PYTHONUNBUFFERED"] = "1"
        env["PATH"] = f"{VENV_DIR / 'bin'}:{env.get('PATH', '')}"
        env.pop("PYTHONHOME", None)
        for wname in args.workload_list:
            wl = WORKLOADS[wname]
            for srv in servers:
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
                by_workload[wname].append(measure(srv, wl, args, env, logs, deadline, per_cell))
        for wname, results in by_workload.items():
            print(f"\n### {wname} ({WORKLOADS[wname].description})\n")
            print(table(results))
            print()
            for line in reading(WORKLOADS[wname], results):
                print(f"- {line}")
        (logs / "results.json").write_text(
            json.dumps(
                {
                    "command": command,
                    "versions": vers,
                    "when": when,
                    "results": {w: [r.__dict__ for r in rs] for w, rs in by_workload.items()},
                },
                indent=2,
            )
        )
        print(f"\nlogs and results.json in {logs}")
        if args.write_docs:
            write_docs(command, args, vers, by_workload, when)
        print(f"total time {time.monotonic() - start:.0f} s")
        return 0
    except (_Stop, KeyboardInterrupt) as exc:
        print(f"\naborted: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        stop_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
