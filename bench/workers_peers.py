"""Two worker processes against the peers' two: ``python bench/workers.py peers``.

Every server runs two processes serving one application (flask_json, hello),
unpinned, with wrk on the same two cores (``-t2 -c50``, keep-alive): ferrowsgi
``-w 2``, gunicorn ``-w 2`` (sync and gthread), granian ``--workers 2``, uWSGI
``--processes 2`` and two bjoern processes that each bind the port with
SO_REUSEPORT. The servers take turns in every round (the order rotates), so a
change of load on the machine touches them all alike; each figure is the median
over the rounds, and ferrowsgi's req/s over the best peer's is given per round.

Per run: wrk's req/s and p99 (bench/lua/common.lua), wrk's errors, the server's
CPU per request (utime+stime of its whole process tree over the run, divided by
wrk's requests), the connections served by a probe that opens 50 at once and
sends one request on each, and how the requests were shared between the two
worker processes: the app is wrapped by bench/apps/counted.py, whose per-process
count is read through new connections until both workers have answered.

Peers are the ones bench/run.py installs in bench/.venv (``run.py --install-only``
sets it up); ferrowsgi runs from the interpreter that runs this script.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from run import (
    BENCH_DIR,
    HOST,
    LUA_DIR,
    VENV_DIR,
    VENV_PY,
    free_port,
    parse_wrk,
    probe_connections,
    spawn,
    stop,
    tree_cpu_seconds,
    tree_pids,
)

APPS = {"hello": "apps.hello:app", "flask_json": "apps.flask_json:app"}
TARGET = "apps.counted:app"
BJOERN = (
    "import sys, bjoern; sys.path.insert(0, {dir!r}); from apps.counted import app; "
    "bjoern.run(app, {host!r}, {port}, reuse_port=True)"
)


def _ferrowsgi(port: int) -> list[str]:
    return [sys.executable, "-m", "ferrowsgi", TARGET, "-b", f"{HOST}:{port}", "-w", "2"]


def _gunicorn(kind: str):
    def argv(port: int) -> list[str]:
        return [
            str(VENV_PY),
            *f"-m gunicorn -w 2 -k {kind} --log-level warning".split(),
            *("-b", f"{HOST}:{port}", TARGET),
        ]

    return argv


def _granian(port: int) -> list[str]:
    return [
        str(VENV_PY),
        *"-m granian --interface wsgi --workers 2 --blocking-threads 1".split(),
        *"--runtime-threads 1 --no-ws --log-level warning".split(),
        *("--host", HOST, "--port", str(port), TARGET),
    ]


def _uwsgi(port: int) -> list[str]:
    return [
        str(VENV_DIR / "bin" / "uwsgi"),
        *("--http11-socket", f"{HOST}:{port}", "--module", TARGET, "--home", str(VENV_DIR)),
        *"--processes 2 --threads 1 --single-interpreter --die-on-term --need-app".split(),
        "--disable-logging",
    ]


def _bjoern(port: int) -> list[str]:
    # Two independent processes, each binding the port with SO_REUSEPORT (the kernel
    # spreads new connections over them by a hash of the address pair); one shell
    # parent so that the process tree and the process group cover both.
    code = BJOERN.format(dir=str(BENCH_DIR), host=HOST, port=port)
    one = f'{VENV_PY} -c "{code}"'
    return ["sh", "-c", f"{one} & {one} & wait"]


SERVERS = {
    "ferrowsgi": (_ferrowsgi, "`ferrowsgi -w 2` (threads 1: the app runs on each worker's loop)"),
    "gunicorn-sync": (_gunicorn("sync"), "`gunicorn -w 2 -k sync`"),
    "gunicorn-gthread": (_gunicorn("gthread"), "`gunicorn -w 2 -k gthread` (1 thread each)"),
    "granian": (
        _granian,
        "`granian --interface wsgi --workers 2 --blocking-threads 1 --runtime-threads 1`",
    ),
    "uwsgi": (_uwsgi, "`uwsgi --http11-socket --processes 2 --threads 1` (keep-alive)"),
    "bjoern": (_bjoern, "2 × `bjoern.run(app, host, port, reuse_port=True)`"),
}


@dataclass
class Run:
    rps: float = 0.0
    p99_us: float | None = None
    cpu_us: float | None = None
    errors: int = 0
    error_text: str = ""
    served: int = 0
    shares: list[float] = field(default_factory=list)  # per worker, largest first
    load: str = ""


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def ask_count(port: int) -> tuple[int, int] | None:
    """(pid, requests) of whichever worker takes a new connection."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(b"GET /__count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            # Read to the end of the body (some servers keep the connection open).
            while (chunk := s.recv(4096)) and not _complete(data := data + chunk):
                pass
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        return None
    pid, count = body.split()
    return int(pid), int(count)


def worker_counts(port: int, workers: int = 2, tries: int = 400) -> dict[int, int]:
    """Each worker's request count, asking over new connections until all have answered."""
    counts: dict[int, int] = {}
    for _ in range(tries):
        got = ask_count(port)
        if got:
            counts[got[0]] = max(counts.get(got[0], 0), got[1])
        if len(counts) >= workers:
            break
    return counts


def wait_up(port: int, proc, limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ask_count(port):
            return True
        time.sleep(0.1)
    return False


def run_wrk(port: int, path: str, duration: int, threads: int, log: Path) -> dict:
    argv = ["wrk", f"-t{threads}", "-c50", f"-d{duration}s", "--latency", "--timeout", "5s"]
    argv += ["-s", str(LUA_DIR / "common.lua"), f"http://{HOST}:{port}{path}"]
    proc = spawn(argv, log)
    try:
        proc.wait(duration + 30)
    finally:
        stop(proc)
    return parse_wrk(log.read_text(errors="replace"))


def measure(name: str, app: str, args, logs: Path) -> Run | str:
    argv_for, _ = SERVERS[name]
    port = free_port()
    env = dict(os.environ, COUNTED_APP=APPS[app], PYTHONPATH=str(BENCH_DIR))
    proc = spawn(argv_for(port), logs / f"{name}-{app}.log", env=env)
    try:
        if not wait_up(port, proc):
            return "did not start: " + (logs / f"{name}-{app}.log").read_text()[-300:]
        # Both workers up before the clock starts (a worker may still be importing
        # the app, slowly on a loaded machine).
        deadline = time.monotonic() + 30
        while len(worker_counts(port, tries=50)) < 2:
            if time.monotonic() > deadline:
                return "fewer than two workers answered within 30 s"
            time.sleep(0.2)
        run_wrk(port, "/", 1, args.wrk_threads, logs / "warm.txt")
        before = worker_counts(port)
        load = loadavg()
        cpu0 = tree_cpu_seconds(proc.pid)
        res = run_wrk(port, "/", args.duration, args.wrk_threads, logs / f"{name}-{app}.wrk")
        cpu = tree_cpu_seconds(proc.pid) - cpu0
        after = worker_counts(port)
        served = probe_connections(port, "/", 50)
        n = res.get("requests") or 0
        run = Run(
            rps=res.get("rps", 0.0),
            p99_us=res.get("p99_us"),
            cpu_us=cpu / n * 1e6 if n else None,
            errors=sum(res["errors"].values()),
            error_text=", ".join(f"{k} {v}" for k, v in res["errors"].items()),
            served=served,
            load=load,
        )
        done = [after[p] - before.get(p, 0) for p in after]
        if len(after) >= 2 and sum(done) > 0:
            run.shares = sorted((100 * d / sum(done) for d in done), reverse=True)
        if name == "ferrowsgi" and len(tree_pids(proc.pid)) != 3:
            run.error_text += " (process tree is not a master and two workers)"
        return run
    finally:
        stop(proc)


def _med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt_us(us: float | None) -> str:
    if us is None:
        return "—"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def report(app: str, names: list[str], runs: dict[str, list[Run | str]]) -> list[str]:
    lines = [
        f"### {app}",
        "",
        "| server | req/s (median) | req/s per round | p99 | CPU µs/req | wrk errors "
        "| conns served | requests per worker |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    good: dict[str, list[Run]] = {}
    for name in names:
        ok = [r for r in runs[name] if isinstance(r, Run)]
        bad = [r for r in runs[name] if isinstance(r, str)]
        good[name] = ok
        if not ok:
            lines.append(f"| {name} | — | — | — | — | — | — | {bad[0] if bad else '—'} |")
            continue
        shares = [r.shares[0] for r in ok if r.shares]
        spread = (
            f"{_med(shares):.1f}/{100 - _med(shares):.1f} (largest share {min(shares):.1f}–"
            f"{max(shares):.1f}%)"
            if shares
            else "not read"
        )
        errs = sum(r.errors for r in ok)
        err_text = "; ".join(sorted({r.error_text for r in ok if r.error_text}))
        lines.append(
            f"| {name} | {_med([r.rps for r in ok]):,.0f} "
            f"| {' '.join(f'{r.rps / 1000:.1f}k' for r in ok)} "
            f"| {_fmt_us(_med([r.p99_us for r in ok]))} "
            f"| {_med([r.cpu_us for r in ok]):.1f} "
            f"| {errs}{' (' + err_text + ')' if err_text else ''} "
            f"| {min(r.served for r in ok)}/50 | {spread} |"
        )
    lines.append("")
    ferro = good.get("ferrowsgi", [])
    peers = {n: rs for n, rs in good.items() if n != "ferrowsgi" and rs}
    if ferro and peers:
        best = max(peers, key=lambda n: _med([r.rps for r in peers[n]]))
        # Pair the runs of the same round (a failed run leaves its round out).
        pairs = [
            (f, p)
            for f, p in zip(runs["ferrowsgi"], runs[best], strict=True)
            if isinstance(f, Run) and isinstance(p, Run)
        ]
        ratios = [f.rps / p.rps for f, p in pairs]
        cpu = [p.cpu_us / f.cpu_us for f, p in pairs if f.cpu_us and p.cpu_us]
        lines.append(
            f"- ferrowsgi against the best peer ({best}): req/s ratio per round "
            f"{' '.join(f'{x:.2f}' for x in ratios)} (median {_med(ratios):.2f}×); the peer's "
            f"CPU per request over ferrowsgi's per round {' '.join(f'{x:.2f}' for x in cpu)}."
        )
    loads = [r.load for rs in good.values() for r in rs]
    if loads:
        one = sorted(float(x.split()[0]) for x in loads)
        lines.append(
            f"- 1-minute load average at the runs' starts: {one[0]:.2f} to {one[-1]:.2f} "
            f"(first run {loads[0]}, last {loads[-1]}: 1, 5, 15 min)."
        )
    lines.append("")
    return lines


def peers(args) -> None:
    names = [n for n in args.servers.split(",") if n]
    for n in names:
        if n not in SERVERS:
            raise SystemExit(f"unknown server {n!r} (known: {', '.join(SERVERS)})")
    if not VENV_PY.exists():
        raise SystemExit(f"{VENV_PY} is missing: run `python bench/run.py --install-only` first")
    apps = args.apps.split(",")
    runs: dict[str, dict[str, list[Run | str]]] = {a: {n: [] for n in names} for a in apps}
    with tempfile.TemporaryDirectory() as d:
        logs = Path(d)
        for rnd in range(args.rounds):
            for app in apps:
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name in order:
                    r = measure(name, app, args, logs)
                    runs[app][name].append(r)
                    if isinstance(r, Run):
                        print(
                            f"round {rnd + 1} {app:10} {name:16} {r.rps:9.0f} req/s "
                            f"p99 {_fmt_us(r.p99_us):>9} {r.cpu_us or 0:6.1f} µs/req "
                            f"errors {r.errors} served {r.served}/50 "
                            f"shares {'/'.join(f'{s:.0f}' for s in r.shares) or '?'} "
                            f"load {r.load}",
                            flush=True,
                        )
                    else:
                        print(f"round {rnd + 1} {app:10} {name:16} {r}", flush=True)
    print()
    print("\n".join(f"- {n}: {SERVERS[n][1]}" for n in names))
    print()
    for app in apps:
        print("\n".join(report(app, names, runs[app])))


def add_parser(sub) -> None:
    p = sub.add_parser("peers", help="two workers against the peers' two processes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--apps", default="flask_json,hello")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--wrk-threads", type=int, default=2)
