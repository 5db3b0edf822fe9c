"""The hello app behind nginx over HTTP: ``python bench/frontends_http.py``.

The same method as bench/frontends_fastcgi.py (whose runner it uses): nginx (one worker)
passes every request with ``proxy_pass`` over a keep-alive upstream (``keepalive 16``,
HTTP/1.1); wrk drives nginx; each backend is one process with one application thread,
pinned to CPU 0, and the figure is its CPU per request.

Backends, all serving bench/apps/hello.py:
* ferrowsgi ``--bind 127.0.0.1:PORT``
* uWSGI ``--http11-socket 127.0.0.1:PORT`` (keep-alive; ``--processes 1 --threads 1``)
* gunicorn, sync worker, ``-w 1``

uWSGI and gunicorn are taken from the interpreter running this script (``pip install uwsgi
gunicorn``); a missing one is skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from frontends_fastcgi import one_run
from run import BENCH_DIR

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
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def backends() -> dict[str, list[str] | None]:
    py = sys.executable
    uwsgi = Path(py).with_name("uwsgi")
    try:
        import gunicorn  # noqa: F401

        has_gunicorn = True
    except ImportError:
        has_gunicorn = False
    return {
        "ferrowsgi": [py, "-m", "ferrowsgi", "apps.hello:app", "--bind", "{addr}"],
        "uwsgi": (
            [
                str(uwsgi),
                *("--http11-socket", "{addr}", "--module", "apps.hello:app"),
                *("--home", sys.prefix, "--chdir", str(BENCH_DIR)),
                *"--processes 1 --threads 1 --single-interpreter --die-on-term".split(),
                *"--need-app --disable-logging".split(),
            ]
            if uwsgi.exists()
            else None
        ),
        "gunicorn": (
            [py, "-m", "gunicorn", "-w", "1", "-b", "{addr}", "apps.hello:app"]
            if has_gunicorn
            else None
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    os.chdir(BENCH_DIR)
    avail = {k: v for k, v in backends().items() if v}
    for k, v in backends().items():
        if not v:
            print(f"note: {k} is not installed; skipped", file=sys.stderr)
    logs = Path(tempfile.mkdtemp(prefix="fwbench"))
    results: dict[str, list[dict]] = {k: [] for k in avail}
    names = list(avail)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            res = one_run(name, avail[name], args.duration, args.connections, logs, NGINX_CONF)
            results[name].append(res)
            errors = res.get("errors") or res.get("error")
            print(
                f"round {r + 1} {name:10s} rps={res.get('rps', 0):9.0f} "
                f"cpu/req={res.get('cpu_us') or 0:6.1f}us errors={errors}",
                flush=True,
            )
    print()
    print("| backend (HTTP behind nginx) | req/s (median) | backend CPU µs/request (median) |")
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


if __name__ == "__main__":
    main()
