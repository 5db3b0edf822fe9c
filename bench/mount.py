"""What ``ferrowsgi.Mount`` adds to a request, timed in-process: no server, no sockets.

    python bench/mount.py

Calls the hello app bare and through a Mount of three prefixes (``/static``, ``/admin``,
``/api``) and a root application, with a fresh copy of an environ each call (the Mount
changes SCRIPT_NAME and PATH_INFO in place, as a server's own environ would be changed), and
prints one JSON object: µs per call of each case (best of 7 timeit repeats) and the cost of
the dispatch (the difference from the bare call). The cases:

* ``bare``: hello itself;
* ``mount_last``: a path that matches the prefix tried last (the shortest), so every
  prefix is compared;
* ``mount_root``: a path that matches none, so the root application gets it;
* ``mount_root_path``: the same Mount with ``root_path`` and the prefix present;
* ``werkzeug``: werkzeug's DispatcherMiddleware with the same three prefixes and the
  ``mount_last`` path, when werkzeug is installed (for comparison).

Run with the project's virtualenv (ferrowsgi installed); run.py's --mount rows measure the
same through the server.
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


def start_response(status, headers, exc_info=None):
    return None


def timed(app, path: str) -> float:
    env = dict(TEMPLATE, PATH_INFO=path)

    def one() -> None:
        for _ in app(env.copy(), start_response):
            pass

    number = 200_000
    best = min(timeit.repeat(one, number=number, repeat=7))
    return 1e6 * best / number


def main() -> int:
    mount = Mount({**{p: hello for p in PREFIXES}, "": hello})
    under_root = Mount({**{p: hello for p in PREFIXES}, "": hello}, root_path="/pre")
    out = {"python": sys.version.split()[0]}
    out["bare"] = timed(hello, "/api/users")
    out["mount_last"] = timed(mount, "/api/users")
    out["mount_root"] = timed(mount, "/other/page")
    out["mount_root_path"] = timed(under_root, "/pre/api/users")
    try:
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
    except ImportError:
        pass
    else:
        out["werkzeug"] = timed(
            DispatcherMiddleware(hello, {p: hello for p in PREFIXES}), "/api/users"
        )
    bare = out["bare"]
    for key in [k for k in out if k not in ("python", "bare")]:
        out[f"{key}_added"] = out[key] - bare
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
