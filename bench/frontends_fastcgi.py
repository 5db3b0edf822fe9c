"""The hello app behind nginx over FastCGI: ``python bench/frontends_fastcgi.py``.

nginx (one worker) passes every request to the backend with ``fastcgi_pass`` over a
keep-alive upstream (``keepalive 16``, ``fastcgi_keep_conn on``); wrk drives nginx over
keep-alive connections. Each backend runs as one process with one application thread,
pinned to CPU 0; nginx and wrk share CPU 1. The figure that matters is the backend's CPU
per request: utime+stime of its whole process tree over the run, divided by the requests
wrk completed (nginx's cost is the same for every backend and is not counted).

Backends, all serving bench/apps/hello.py:
* ferrowsgi ``--bind fastcgi://127.0.0.1:PORT``
* uWSGI ``--fastcgi-socket 127.0.0.1:PORT`` (``--processes 1 --threads 1``)
* flup's ``flup.server.fcgi.WSGIServer`` (threaded, its default)

The backends take turns in every round (the order rotates), and each figure is the median
over the rounds. uWSGI and flup are taken from the interpreter running this script (``pip
install uwsgi flup``); a missing one is skipped with a note.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import BENCH_DIR, HOST, free_port, parse_wrk, spawn, stop, tree_cpu_seconds

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backend {{
        server {host}:{port};
        keepalive 16;
    }}
    server {{
        listen {host}:{nginx_port};
        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass backend;
            fastcgi_keep_conn on;
        }}
    }}
}}
"""

FLUP = (
    "import sys; sys.path.insert(0, {dir!r}); from apps.hello import app; "
    "from flup.server.fcgi import WSGIServer; "
    "WSGIServer(app, bindAddress=({host!r}, {port})).run()"
)


def backends() -> dict[str, list[str] | None]:
    py = sys.executable
    uwsgi = Path(py).with_name("uwsgi")
    try:
        import flup  # noqa: F401

        has_flup = True
    except ImportError:
        has_flup = False
    return {
        "ferrowsgi": [py, "-m", "ferrowsgi", "apps.hello:app", "--bind", "fastcgi://{addr}"],
        "uwsgi": (
            [
                str(uwsgi),
                *("--fastcgi-socket", "{addr}", "--module", "apps.hello:app"),
                *("--home", sys.prefix, "--chdir", str(BENCH_DIR)),
                *"--processes 1 --threads 1 --single-interpreter --die-on-term".split(),
                *"--need-app --disable-logging".split(),
            ]
            if uwsgi.exists()
            else None
        ),
        "flup": [py, "-c", "{flup}"] if has_flup else None,
    }


def wait_answering(port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", "/")
            resp = c.getresponse()
            body = resp.read()
            c.close()
            if resp.status == 200 and body == b"Hello, World!":
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def one_run(
    name: str, argv: list[str], duration: int, conns: int, logs: Path, conf: str = NGINX_CONF
) -> dict:
    port = free_port()
    addr = f"{HOST}:{port}"
    argv = [
        a.format(addr=addr, flup=FLUP.format(dir=str(BENCH_DIR), host=HOST, port=port))
        for a in argv
    ]
    backend = spawn(["taskset", "-c", "0", *argv], logs / f"{name}.log")
    ngx_dir = Path(tempfile.mkdtemp(prefix="fwngx", dir="/tmp"))
    nginx_port = free_port()
    (ngx_dir / "nginx.conf").write_text(
        conf.format(dir=ngx_dir, host=HOST, port=port, nginx_port=nginx_port)
    )
    nginx = spawn(
        [
            "taskset",
            "-c",
            "1",
            NGINX,
            "-p",
            str(ngx_dir),
            "-c",
            str(ngx_dir / "nginx.conf"),
            "-e",
            str(ngx_dir / "error.log"),
        ],
        logs / f"{name}-nginx.log",
    )
    try:
        if not wait_answering(nginx_port):
            err = (ngx_dir / "error.log").read_text(errors="replace")[-500:]
            return {"error": f"no answer through nginx: {err}"}
        # Warm-up, then the measured run.
        subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "wrk",
                "-t1",
                f"-c{conns}",
                "-d1s",
                f"http://{HOST}:{nginx_port}/",
            ],
            capture_output=True,
            check=False,
        )
        cpu0 = tree_cpu_seconds(backend.pid)
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "wrk",
                "-t1",
                f"-c{conns}",
                f"-d{duration}s",
                "--latency",
                f"http://{HOST}:{nginx_port}/",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        cpu = tree_cpu_seconds(backend.pid) - cpu0
        res = parse_wrk(out)
        n = res.get("requests", 0)
        res["cpu_us"] = cpu / n * 1e6 if n else None
        return res
    finally:
        stop(nginx)
        stop(backend)
        shutil.rmtree(ngx_dir, ignore_errors=True)


def compare(label: str, backends_now: dict[str, list[str] | None], conf: str = NGINX_CONF) -> None:
    """Runs the backends in rotating rounds behind nginx (``conf``) and prints the table;
    ``label`` names the protocol in its header. The command line sets rounds, duration and
    connections."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    os.chdir(BENCH_DIR)
    avail = {k: v for k, v in backends_now.items() if v}
    for k, v in backends_now.items():
        if not v:
            print(f"note: {k} is not installed; skipped", file=sys.stderr)
    logs = Path(tempfile.mkdtemp(prefix="fwbench"))
    results: dict[str, list[dict]] = {k: [] for k in avail}
    names = list(avail)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            res = one_run(name, avail[name], args.duration, args.connections, logs, conf)
            results[name].append(res)
            errors = res.get("errors") or res.get("error")
            print(
                f"round {r + 1} {name:10s} rps={res.get('rps', 0):9.0f} "
                f"cpu/req={res.get('cpu_us') or 0:6.1f}us errors={errors}",
                flush=True,
            )
    print()
    print(f"| backend ({label} behind nginx) | req/s (median) | backend CPU µs/request (median) |")
    print("|---|---:|---:|")
    cpu = {}
    for name, runs in results.items():
        rps = [x["rps"] for x in runs if x.get("rps")]
        us = [x["cpu_us"] for x in runs if x.get("cpu_us")]
        cpu[name] = statistics.median(us) if us else None
        print(
            f"| {name} | {statistics.median(rps) if rps else 0:.0f} | "
            f"{cpu[name] if cpu[name] else float('nan'):.1f} |"
        )
    peers = [v for k, v in cpu.items() if k != "ferrowsgi" and v]
    if cpu.get("ferrowsgi") and peers:
        print(
            f"\nbest peer / ferrowsgi CPU per request: {min(peers) / cpu['ferrowsgi']:.2f}x "
            "(target: at least 1.25x)"
        )


def main() -> None:
    compare("FastCGI", backends())


if __name__ == "__main__":
    main()
