"""The hello app behind nginx over HTTP: ``python bench/frontends_http.py``.

nginx passes every request with ``proxy_pass`` over a keep-alive upstream (``keepalive 16``,
HTTP/1.1). The method (pinning, rounds, the CPU per request, the table) is
bench/frontends.py's.

Backends, all serving bench/apps/hello.py:
* ferrowsgi ``--bind 127.0.0.1:PORT``
* uWSGI ``--http11-socket 127.0.0.1:PORT`` (keep-alive; ``--processes 1 --threads 1``)
* gunicorn, sync worker, ``-w 1``

uWSGI and gunicorn are taken from the interpreter running this script (``pip install uwsgi
gunicorn``); a missing one is skipped with a note.
"""

from __future__ import annotations

import sys

from frontends import APP, Case, compare, ferrowsgi, installed, nginx, uwsgi

FRONT = nginx(
    """proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";""",
    upstream="keepalive 16;",
)


def main() -> None:
    gunicorn = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "{bind}", APP]
    backends = {
        "ferrowsgi": ferrowsgi(),
        "uwsgi": uwsgi("--http11-socket"),
        "gunicorn": gunicorn if installed("gunicorn") else None,
    }
    compare(__doc__, Case("HTTP", FRONT, backends))


if __name__ == "__main__":
    main()
