"""The hello app behind nginx over FastCGI: ``python bench/frontends_fastcgi.py``.

nginx passes every request to the backend with ``fastcgi_pass`` and Debian's
``fastcgi_params`` over a keep-alive upstream (``keepalive 16``, ``fastcgi_keep_conn on``).
The method (pinning, rounds, the CPU per request, the table) is bench/frontends.py's.

Backends, all serving bench/apps/hello.py:
* ferrowsgi ``--bind fastcgi://127.0.0.1:PORT``
* uWSGI ``--fastcgi-socket 127.0.0.1:PORT`` (``--processes 1 --threads 1``)
* flup's ``flup.server.fcgi.WSGIServer`` (threaded, its default)

uWSGI and flup are taken from the interpreter running this script (``pip install uwsgi
flup``); a missing one is skipped with a note.
"""

from __future__ import annotations

from frontends import Case, compare, ferrowsgi, flup, nginx, uwsgi

FRONT = nginx(
    """include /etc/nginx/fastcgi_params;
            fastcgi_pass backend;
            fastcgi_keep_conn on;""",
    upstream="keepalive 16;",
)


def main() -> None:
    backends = {
        "ferrowsgi": ferrowsgi("fastcgi"),
        "uwsgi": uwsgi("--fastcgi-socket"),
        "flup": flup("fcgi"),
    }
    compare(__doc__, Case("FastCGI", FRONT, backends))


if __name__ == "__main__":
    main()
