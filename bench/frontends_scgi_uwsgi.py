"""The hello app behind nginx over SCGI and uwsgi: ``python bench/frontends_scgi_uwsgi.py
[--rounds 5] [--duration 5] [--connections 32] [--unix] [--only scgi/flup,...]``.

nginx passes every request with ``scgi_pass`` / ``uwsgi_pass`` and the stock
``scgi_params`` / ``uwsgi_params``, so each request is a new backend connection, as both
protocols require. The method (pinning, rounds, the CPU per request, the table with each
peer's ratio per round) is bench/frontends.py's; one table per protocol.

Backends, all serving bench/apps/hello.py:
* ferrowsgi ``--bind scgi://…`` / ``--bind uwsgi://…``
* uWSGI ``--scgi-socket`` / ``--uwsgi-socket`` (``--processes 1 --threads 1``)
* flup's ``flup.server.scgi.WSGIServer`` (threaded, its defaults), SCGI only
* the floor (bench/floor ``--gateway``: accept, read, one send, close; no Python), no peer:
  the best peer over it is the most any server could show against that peer here

uWSGI and flup are taken from the interpreter running this script (``pip install uwsgi
flup``); a missing one is skipped with a note.
"""

from __future__ import annotations

from frontends import Case, compare, ferrowsgi, floor, flup, nginx, uwsgi


def front(proto: str):
    return nginx(f"include /etc/nginx/{proto}_params;\n            {proto}_pass backend;")


def main() -> None:
    scgi = {
        "ferrowsgi": ferrowsgi("scgi"),
        "uwsgi": uwsgi("--scgi-socket"),
        "flup": flup("scgi"),
        "floor": floor("scgi"),
    }
    uwsgi_ = {
        "ferrowsgi": ferrowsgi("uwsgi"),
        "uwsgi": uwsgi("--uwsgi-socket"),
        "floor": floor("uwsgi"),
    }
    compare(
        __doc__,
        Case("scgi", front("scgi"), scgi),
        Case("uwsgi", front("uwsgi"), uwsgi_),
        rounds=5,
        duration=5,
        connections=32,
    )


if __name__ == "__main__":
    main()
