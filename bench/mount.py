"""What ``ferrowsgi.Mount`` adds to a request, timed in-process: no server, no sockets.

    python bench/mount.py

Calls the hello app bare and through a Mount of three prefixes (``/static``, ``/admin``,
``/api``) and a root application, with a fresh copy of an environ each call (the Mount
changes SCRIPT_NAME and PATH_INFO in place, as a server's own environ would be changed), and
prints one JSON object: µs per call of each case (the best of 9 rounds, the cases taken in
turns) and the cost of the dispatch (the difference from the bare call). The cases:

* ``bare``: hello itself;
* ``mount_hit``: a path under ``/api``;
* ``mount_root``: a path that matches none, so the root application gets it;
* ``mount_root_path``: the same Mount with ``root_path`` and the prefix present;
* ``werkzeug``: werkzeug's DispatcherMiddleware with the same three prefixes and the
  ``mount_hit`` path, when werkzeug is installed (for comparison).

Run with the project's virtualenv (ferrowsgi installed). Through the server, bench/ab.py
compares hello with and without ``--mount`` (docs/DEPLOY.md, "What it costs").
"""

from __future__ import annotations

import io
import json
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apps.hello import app as hello  # noqa: E402
from ferrowsgi import Mount  # noqa: E402

TEMPLATE = {
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.input": io.BytesIO(b""),
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
}

PREFIXES = ("/static", "/admin", "/api")
ROUNDS = 9


def start_response(status, headers, exc_info=None):
    return None


def caller(app, path: str):
    env = dict(TEMPLATE, PATH_INFO=path)

    def one() -> None:
        for _ in app(env.copy(), start_response):
            pass

    return one


def main() -> int:
    mount = Mount({**{p: hello for p in PREFIXES}, "": hello})
    under_root = Mount({**{p: hello for p in PREFIXES}, "": hello}, root_path="/pre")
    cases = {
        "bare": caller(hello, "/api/users"),
        "mount_hit": caller(mount, "/api/users"),
        "mount_root": caller(mount, "/other/page"),
        "mount_root_path": caller(under_root, "/pre/api/users"),
    }
    try:
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
    except ImportError:
        pass
    else:
        werkzeug = DispatcherMiddleware(hello, {p: hello for p in PREFIXES})
        cases["werkzeug"] = caller(werkzeug, "/api/users")
    # The cases are timed in turns, round after round, and each keeps its
    # best round: on a shared machine a slow spell then hits every case
    # alike instead of whichever ran during it.
    number = 100_000
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in cases.items():
            best[name] = min(best[name], timeit.timeit(fn, number=number))
    out: dict = {"python": sys.version.split()[0]}
    out.update({name: 1e6 * t / number for name, t in best.items()})
    bare = out["bare"]
    for key in [k for k in out if k not in ("python", "bare")]:
        out[f"{key}_added"] = out[key] - bare
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
