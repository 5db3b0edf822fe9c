"""The runner the front-end benches share (bench/frontends_*.py, bench/frontend_ajp.py).

Each of those scripts states only its servers and its front end's configuration, and calls
``compare``. For every backend, in rounds whose order rotates so that drift on the machine
hits every server alike: the backend starts afresh as one process with one application
thread pinned to CPU 0; the front end (nginx with one worker, or apache2's event MPM) and
wrk share CPU 1; a request through the front end must return the hello body before wrk
runs; wrk warms up for a second, then drives the front end with keep-alive connections.
The figure that matters is the backend's CPU per request: utime+stime of its process tree
over the run, over the requests wrk completed (the front end's cost is the same for every
backend and is not counted). Errors are wrk's (socket errors, non-2xx answers) plus the
error lines of the front end's log.

The servers come from the interpreter running the script: uWSGI from the ``uwsgi`` beside
it, flup and gunicorn from its packages; a missing one is skipped with a note.

A backend named ``floor`` (``floor(protocol)``: bench/floor's ``--gateway`` responder, built
with cargo on first use) is no peer: it accepts, reads, answers with one send and closes,
with no Python, so its CPU per request is what the kernel costs for a request in that
arrangement. Its table line says how far the best peer is above it: the most any server
could show against that peer there, however little work it did itself.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from run import (
    BENCH_DIR,
    FLOOR_BIN,
    HOST,
    _stat_fields,
    build_floor,
    free_port,
    parse_wrk,
    spawn,
    stop,
    tree_cpu_seconds,
    tree_pids,
    tree_ticks,
)

APP = "apps.hello:app"
BODY = b"Hello, World!"
BACKEND_CPU = "0"
FRONT_CPU = "1"

# --------------------------------------------------------------------------------------------
# Front ends

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream backend {{
        server {backend};
        {upstream}
    }}
    server {{
        listen {host}:{port};
        location / {{
            {location}
        }}
    }}
}}
"""

APACHE_CONF = """
ServerRoot "{dir}"
Listen {host}:{port}
PidFile {dir}/httpd.pid
ErrorLog {dir}/error.log
LogLevel warn
{user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_{proto}_module {modules}/mod_proxy_{proto}.so
ServerName localhost
KeepAlive On
MaxKeepAliveRequests 0
StartServers 1
ServerLimit 1
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 16
MaxSpareThreads 64
ProxyPass / {proto}://{backend}/
"""


@dataclass(frozen=True)
class Front:
    """A front end: its configuration (a template of ``dir``, ``host``, ``port`` and
    ``backend``, the backend's ``HOST:PORT`` or ``unix:PATH``), the file it is written to,
    and the command that runs the front end on it in the foreground."""

    name: str
    conf: str
    conf_file: str
    argv: tuple[str, ...]
    unix: bool  # whether it can reach a backend over a unix socket here
    needs: tuple[Path, ...]  # files it cannot run without

    def missing(self) -> list[str]:
        return [str(p) for p in self.needs if not p.exists()]

    def start(self, where: Path, port: int, backend: str, log: Path) -> subprocess.Popen:
        (where / self.conf_file).write_text(
            self.conf.format(dir=where, host=HOST, port=port, backend=backend)
        )
        argv = [a.format(dir=where) for a in self.argv]
        return spawn(["taskset", "-c", FRONT_CPU, *argv], log)


def nginx(location: str, upstream: str = "") -> Front:
    """nginx passing every request to the upstream ``backend`` with ``location``'s
    directives; ``upstream`` adds to the upstream block (``keepalive 16;``)."""
    conf = NGINX_CONF.replace("{location}", escaped(location))
    conf = conf.replace("{upstream}", escaped(upstream))
    argv = (NGINX, "-p", "{dir}", "-c", "{dir}/nginx.conf", "-e", "{dir}/error.log")
    return Front("nginx", conf, "nginx.conf", argv, unix=True, needs=(Path(NGINX),))


def escaped(text: str) -> str:
    """``text`` for a place in a ``str.format`` template, its braces kept as they are."""
    return text.replace("{", "{{").replace("}", "}}")


def apache(proto: str) -> Front:
    """apache2 with ``mod_proxy_{proto}``: ``ProxyPass / {proto}://backend/`` over pooled
    connections."""
    user = "User daemon\nGroup daemon" if os.geteuid() == 0 else ""
    conf = APACHE_CONF.replace("{proto}", proto).replace("{user}", user)
    conf = conf.replace("{modules}", str(APACHE_MODULES))
    argv = (APACHE, "-f", "{dir}/httpd.conf", "-DFOREGROUND")
    needs = (Path(APACHE), APACHE_MODULES / f"mod_proxy_{proto}.so")
    return Front("apache2", conf, "httpd.conf", argv, unix=False, needs=needs)


# --------------------------------------------------------------------------------------------
# Backends: argv templates of ``{addr}`` (HOST:PORT, or the socket's path) and ``{bind}``
# (HOST:PORT, or unix:PATH), or None where the server is not installed

FLUP = """
import json, sys
from importlib import import_module
from apps.hello import app
addr, module, options = sys.argv[1:4]
host, _, port = addr.rpartition(":")
bind = (host, int(port)) if port.isdigit() else addr
server = import_module("flup.server." + module).WSGIServer
server(app, bindAddress=bind, **json.loads(options)).run()
"""


def ferrowsgi(scheme: str = "") -> list[str]:
    """ferrowsgi listening with ``--bind scheme://…`` (plain HTTP without a scheme)."""
    bind = f"{scheme}://{{bind}}" if scheme else "{bind}"
    return [sys.executable, "-m", "ferrowsgi", APP, "--bind", bind]


def uwsgi(socket_option: str) -> list[str] | None:
    """uWSGI listening with ``socket_option`` (``--scgi-socket`` …), one process, one thread."""
    binary = Path(sys.executable).with_name("uwsgi")
    if not binary.exists():
        return None
    return [
        str(binary),
        *(socket_option, "{addr}", "--module", APP),
        *("--home", sys.prefix, "--chdir", str(BENCH_DIR)),
        *"--processes 1 --threads 1 --single-interpreter --die-on-term".split(),
        *"--need-app --disable-logging".split(),
    ]


def floor(protocol: str, processes: int = 1) -> list[str] | None:
    """bench/floor's one-request-per-connection responder for ``protocol`` (scgi or uwsgi),
    in ``processes`` processes sharing the listener; built with cargo if it is not yet."""
    ok, why = build_floor(600)
    if not ok or not FLOOR_BIN.exists():
        print(f"note: the floor is not built: {why}", file=sys.stderr)
        return None
    argv = [str(FLOOR_BIN), "--gateway", protocol, "--processes", str(processes)]
    return [*argv, "{bind}"]


def flup(module: str, **options: object) -> list[str] | None:
    """flup's ``flup.server.{module}.WSGIServer`` (threaded) with ``options``."""
    if not installed(f"flup.server.{module}"):
        return None
    return [sys.executable, "-c", FLUP, "{addr}", module, json.dumps(options)]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


# --------------------------------------------------------------------------------------------
# Rounds and the table


@dataclass
class Case:
    """One protocol's comparison: its label, its front end and its backends by name."""

    label: str
    front: Front
    backends: dict[str, list[str] | None]
    results: dict[str, list[dict]] = field(default_factory=dict)


def wait_answering(port: int, proc, timeout: float = 30.0) -> str:
    """'' once a request through the front end returns the hello body, else what went
    wrong."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the front end exited with {proc.returncode}"
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", "/")
            resp = c.getresponse()
            body = resp.read()
            c.close()
            if resp.status == 200 and body == BODY:
                return ""
            last = f"{resp.status} {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    return last


def wrk(port: int, seconds: int, connections: int) -> str:
    url = f"http://{HOST}:{port}/"
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = subprocess.run(
        ["taskset", "-c", FRONT_CPU, *argv], capture_output=True, text=True, check=False
    )
    return out.stdout


def logged_errors(log: Path, start: int) -> int:
    """Error lines (nginx's ``[error]``, apache2's ``[proxy:error]`` …, and ``crit``) the
    front end wrote to ``log`` after its first ``start`` bytes."""
    if not log.exists():
        return 0
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return sum(1 for line in text.splitlines() if "error]" in line or "crit]" in line)


def tree_kernel_ticks(root: int) -> int:
    """Clock ticks the kernel spent for root's process tree (stime and reaped children's)."""
    total = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[12]) + int(fields[14])
    return total


def one_run(front: Front, name: str, argv: list[str], args, logs: Path) -> dict:
    """One measured run of backend ``name`` (``argv``) behind ``front``."""
    work = Path(tempfile.mkdtemp(prefix=f"fw{front.name[:3]}-", dir="/tmp"))
    started: list[subprocess.Popen] = []
    try:
        if args.unix:
            addr = str(work / "backend.sock")
            bind = f"unix:{addr}"
        else:
            addr = bind = f"{HOST}:{free_port()}"
        argv = [a.replace("{addr}", addr).replace("{bind}", bind) for a in argv]
        backend = spawn(["taskset", "-c", BACKEND_CPU, *argv], logs / f"{name}.log")
        started.append(backend)
        port = free_port()
        proc = front.start(work, port, bind, logs / f"{front.name}-{name}.log")
        started.append(proc)
        trouble = wait_answering(port, proc)
        if trouble:
            log = (logs / f"{name}.log").read_text(errors="replace")[-500:]
            return {"error": f"no hello through {front.name}: {trouble}\n{log}"}
        # Errors the front end logged while the backend was still starting are not counted.
        log = work / "error.log"
        start = log.stat().st_size if log.exists() else 0
        wrk(port, 1, args.connections)  # warm-up
        cpu0 = tree_cpu_seconds(backend.pid)
        ticks0, kernel0 = tree_ticks(backend.pid), tree_kernel_ticks(backend.pid)
        out = wrk(port, args.duration, args.connections)
        (logs / f"{name}.wrk").write_text(out)
        res = parse_wrk(out)
        cpu = tree_cpu_seconds(backend.pid) - cpu0
        ticks = tree_ticks(backend.pid) - ticks0
        # The kernel's share of the backend's CPU (its system time over its whole time).
        res["kernel_share"] = (tree_kernel_ticks(backend.pid) - kernel0) / ticks if ticks else None
        n = res.get("requests", 0)
        res["cpu_us"] = cpu / n * 1e6 if n else None
        res["failed"] = sum(res["errors"].values())
        res["logged"] = logged_errors(log, start)
        return res
    finally:
        for proc in reversed(started):
            stop(proc)
        if (work / "error.log").exists():
            shutil.copy(work / "error.log", logs / f"{front.name}-{name}-error.log")
        shutil.rmtree(work, ignore_errors=True)


def compare(
    doc: str, *cases: Case, rounds: int = 3, duration: int = 8, connections: int = 16
) -> None:
    """Runs each case's backends in rotating rounds behind its front end and prints a table
    per case. The command line (described by ``doc``, the calling script's docstring) sets
    the rounds, duration and connections (the defaults are the script's), picks backends
    (``--only``) and a unix socket between front end and backend (``--unix``)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--duration", type=int, default=duration, help="seconds a run")
    ap.add_argument("--connections", type=int, default=connections, help="wrk's")
    ap.add_argument("--unix", action="store_true", help="front end to backend over unix")
    ap.add_argument("--only", default="", help="comma-separated backends (NAME or LABEL/NAME)")
    args = ap.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    wanted = {w.lower() for w in args.only.split(",") if w}
    logs = Path(tempfile.mkdtemp(prefix="fwbench"))
    for case in cases:
        if case.front.missing():
            raise SystemExit(f"{case.label}: {case.front.name} needs {case.front.missing()}")
        if args.unix and not case.front.unix:
            raise SystemExit(f"{case.label}: {case.front.name} is run over TCP only here")
        for name, argv in case.backends.items():
            if wanted and not wanted & {name.lower(), f"{case.label}/{name}".lower()}:
                continue
            if argv:
                case.results[name] = []
            else:
                print(f"note: {name} ({case.label}) is not installed; skipped", file=sys.stderr)
        names = list(case.results)
        for r in range(args.rounds if names else 0):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                argv = case.backends[name]
                assert argv is not None
                res = one_run(case.front, name, argv, args, logs)
                case.results[name].append(res)
                print(
                    f"round {r + 1} {case.label} {name:10s} rps={res.get('rps', 0):9.0f} "
                    f"cpu/req={res.get('cpu_us') or 0:6.1f}us "
                    f"kernel={100 * (res.get('kernel_share') or 0):4.1f}% "
                    f"p99={res.get('p99_us') or 0:8.0f}us "
                    f"failed={res.get('error') or res.get('failed')} "
                    f"front-end log errors={res.get('logged')}",
                    flush=True,
                )
    transport = "unix socket" if args.unix else "TCP loopback"
    print(
        f"\n{args.rounds} rounds × {args.duration} s, wrk -c{args.connections}, front end → "
        f"backend over {transport}; logs in {logs}"
    )
    for case in cases:
        table(case)


def table(case: Case) -> None:
    """The case's table: medians with the spread, errors, and each peer's CPU per request
    over ferrowsgi's in the same round (above 1, ferrowsgi spends less)."""
    print(
        f"\n| backend ({case.label} behind {case.front.name}) | req/s (median) "
        "| backend CPU µs/request (median, min–max) | p99 µs (median) | failed requests "
        "| front-end log errors | CPU over ferrowsgi's, per round | median |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    ours = case.results.get("ferrowsgi", [])
    best: float | None = None
    best_name = ""
    for name, runs in case.results.items():
        us = [x["cpu_us"] for x in runs if x.get("cpu_us")]
        rps = [x["rps"] for x in runs if x.get("rps")]
        p99 = [x["p99_us"] for x in runs if x.get("p99_us")]
        # A run that never got going counts as one failure.
        failed = sum(x.get("failed", 0) for x in runs) + sum(1 for x in runs if "error" in x)
        logged = sum(x.get("logged", 0) for x in runs)
        ratios = per_round_ratios(runs, ours)
        cpu = f"{statistics.median(us):.1f} ({min(us):.1f}–{max(us):.1f})" if us else "—"
        per_round, median = "—", "—"
        if name != "ferrowsgi" and ratios:
            per_round = " ".join(f"{x:.2f}" for x in ratios)
            median = f"{statistics.median(ratios):.2f}×"
            if name != "floor" and statistics.median(ratios) < (best or 1e9):
                best, best_name = statistics.median(ratios), name
        print(
            f"| {name} | {statistics.median(rps) if rps else 0:.0f} | {cpu} "
            f"| {statistics.median(p99) if p99 else 0:.0f} | {failed} | {logged} "
            f"| {per_round} | {median} |"
        )
    if best is not None:
        print(
            f"\nbest peer / ferrowsgi CPU per request: {best:.2f}× (target: at least 1.25×)",
            flush=True,
        )
    ceiling = per_round_ratios(case.results.get(best_name, []), case.results.get("floor", []))
    if ceiling:
        print(
            f"{best_name} / floor CPU per request: {statistics.median(ceiling):.2f}× (per round "
            f"{' '.join(f'{x:.2f}' for x in ceiling)}): the most any server could show "
            f"against {best_name} here",
            flush=True,
        )


def per_round_ratios(runs: list[dict], under: list[dict]) -> list[float]:
    """CPU per request of ``runs`` over ``under``'s, round by round (where both ran)."""
    pairs = zip(runs, under)
    return [a["cpu_us"] / b["cpu_us"] for a, b in pairs if a.get("cpu_us") and b.get("cpu_us")]
