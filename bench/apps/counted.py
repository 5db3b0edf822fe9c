"""Any bench app, counted: ``COUNTED_APP=apps.hello:app`` picks the app.

Each process counts the requests it answered; ``GET /__count`` answers
``PID COUNT`` without calling the app, so a benchmark can read how the
requests were spread over the worker processes of any server. The cost is
one Python call and one C-level counter step per request, the same for
every server.
"""

import importlib
import itertools
import os

_module, _, _attr = os.environ.get("COUNTED_APP", "apps.hello:app").partition(":")
_inner = getattr(importlib.import_module(_module), _attr or "app")
_counter = itertools.count()
_tick = _counter.__next__  # repr(_counter) is "count(N)": N requests so far


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/__count":
        body = f"{os.getpid()} {repr(_counter)[6:-1]}".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    _tick()
    return _inner(environ, start_response)
