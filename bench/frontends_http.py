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

import sys
from pathlib import Path

from frontends_fastcgi import compare
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
    compare("HTTP", backends(), NGINX_CONF)


if __name__ == "__main__":
    main()
