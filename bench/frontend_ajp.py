"""The hello app behind Apache's mod_proxy_ajp: ferrowsgi (``--bind ajp://``) against flup's
AJP server (``flup.server.ajp``), the one other WSGI server that speaks AJP13.

    python bench/frontend_ajp.py [--rounds 3] [--duration 8] [--connections 16]

Apache (Debian's apache2, event MPM, started here with a config in a temporary directory)
listens on loopback and passes every request to the backend over pooled AJP connections;
wrk drives Apache with keep-alive. The backend under test takes turns with the other in
every round. Per run: wrk's req/s, p99 and errors, and the backend's CPU per request
(utime+stime of its process over the run, divided by wrk's requests), which is the figure
that compares the two servers: Apache's and wrk's CPU are the same for both.

flup must be installed in the interpreter that runs this script (``pip install flup``);
ferrowsgi runs from that interpreter too. Nothing is pinned: the figures are ratios of one
run on a shared machine, not absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from run import BENCH_DIR, HOST, parse_wrk, spawn, stop, tree_cpu_seconds

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")

CONF = """
ServerRoot "{dir}"
Listen {host}:{port}
PidFile {dir}/httpd.pid
ErrorLog {dir}/error.log
LogLevel warn
{user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_ajp_module {modules}/mod_proxy_ajp.so
ServerName localhost
KeepAlive On
MaxKeepAliveRequests 0
StartServers 1
ServerLimit 1
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 16
MaxSpareThreads 64
ProxyPass / ajp://{host}:{backend}/
"""

FLUP = (
    "import sys; sys.path.insert(0, {dir!r}); from apps.hello import app; "
    "from flup.server.ajp import WSGIServer; "
    "WSGIServer(app, bindAddress=({host!r}, {port}), maxThreads=16).run()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc, limit: float = 20.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def backend_argv(name: str, port: int) -> list[str]:
    if name == "ferrowsgi":
        return [
            sys.executable,
            "-m",
            "ferrowsgi",
            "apps.hello:app",
            "--bind",
            f"ajp://{HOST}:{port}",
        ]
    return [sys.executable, "-c", FLUP.format(dir=str(BENCH_DIR), host=HOST, port=port)]


def one_run(name: str, args, logs: Path) -> dict | str:
    backend = free_port()
    proc = spawn(backend_argv(name, backend), logs / f"{name}.log", env=dict(os.environ))
    apache_dir = Path(tempfile.mkdtemp(prefix="fwajp", dir="/tmp"))
    apache = None
    try:
        if not wait_port(backend, proc):
            return f"{name} did not start: " + (logs / f"{name}.log").read_text()[-300:]
        port = free_port()
        user = "User daemon\nGroup daemon" if os.geteuid() == 0 else ""
        (apache_dir / "httpd.conf").write_text(
            CONF.format(
                dir=apache_dir, host=HOST, port=port, backend=backend, modules=MODULES, user=user
            )
        )
        apache = spawn(
            [APACHE, "-f", str(apache_dir / "httpd.conf"), "-DFOREGROUND"], logs / "apache.log"
        )
        if not wait_port(port, apache):
            return "apache2 did not start: " + (logs / "apache.log").read_text()[-300:]
        url = f"http://{HOST}:{port}/"
        warm = spawn(["wrk", "-t1", f"-c{args.connections}", "-d1s", url], logs / "warm.txt")
        warm.wait(30)
        cpu0 = tree_cpu_seconds(proc.pid)
        wrk_log = logs / f"{name}.wrk"
        argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url]
        w = spawn(argv, wrk_log)
        try:
            w.wait(args.duration + 30)
        finally:
            stop(w)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
        res = parse_wrk(wrk_log.read_text(errors="replace"))
        n = res.get("requests") or 0
        errors = (apache_dir / "error.log").read_text(errors="replace").count(":error]")
        return {
            "rps": res.get("rps", 0.0),
            "p99_us": res.get("p99_us"),
            "cpu_us": cpu / n * 1e6 if n else None,
            "errors": sum(res.get("errors", {}).values()) + errors,
        }
    finally:
        if apache is not None:
            stop(apache)
        if (apache_dir / "error.log").exists():
            shutil.copy(apache_dir / "error.log", logs / f"apache-{name}-error.log")
        stop(proc)
        shutil.rmtree(apache_dir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args()
    if not (MODULES / "mod_proxy_ajp.so").exists() or not shutil.which("wrk"):
        raise SystemExit("needs apache2 with mod_proxy_ajp and wrk")
    try:
        import flup.server.ajp  # noqa: F401
    except ImportError:
        raise SystemExit("needs flup: pip install flup") from None
    logs = Path(tempfile.mkdtemp(prefix="fwajp-logs"))
    names = ["ferrowsgi", "flup"]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            res = one_run(name, args, logs)
            if isinstance(res, str):
                raise SystemExit(res)
            runs[name].append(res)
            print(
                f"round {r + 1} {name:10} {res['rps']:9.0f} req/s  "
                f"cpu {res['cpu_us']:7.1f} us/req  p99 {res['p99_us'] or 0:8.0f} us  "
                f"errors {res['errors']}",
                flush=True,
            )
    print()
    print("| backend | req/s (median) | backend CPU µs/req (median) | errors |")
    print("|---|---:|---:|---:|")
    med = {}
    for name in names:
        cpu = statistics.median(x["cpu_us"] for x in runs[name])
        rps = statistics.median(x["rps"] for x in runs[name])
        med[name] = cpu
        errs = sum(x["errors"] for x in runs[name])
        print(f"| {name} | {rps:.0f} | {cpu:.1f} | {errs} |")
    print()
    print(f"flup's CPU per request over ferrowsgi's: {med['flup'] / med['ferrowsgi']:.2f}x")
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
