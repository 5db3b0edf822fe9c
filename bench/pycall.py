"""The Python work of one WSGI call, timed in-process: no server, no sockets, no Rust.

    python pycall.py [APP]        (default apps.hello:app)

One call = copy an environ template and fill in the per-request keys (what a
server does per request), call the application with a start_response, iterate
the result and call its close() if it has one. Timed with timeit (best of 7
repeats); prints one JSON line with µs per call, and the same without the
environ work (the application call and iteration alone). run.py runs it pinned
to the server's CPU and adds it to the floor responder's CPU µs/request.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import timeit

TEMPLATE = {
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.input_terminated": True,
    "SCRIPT_NAME": "",
    "SERVER_SOFTWARE": "pycall",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "REMOTE_HOST": "127.0.0.1",
}


def load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


def main() -> int:
    app = load(sys.argv[1] if len(sys.argv) > 1 else "apps.hello:app")
    empty = io.BytesIO(b"")
    sink: list = []

    def start_response(status, headers, exc_info=None):
        sink.append((status, headers))
        return sink.append

    def environ() -> dict:
        env = TEMPLATE.copy()
        env["REQUEST_METHOD"] = "GET"
        env["PATH_INFO"] = "/"
        env["QUERY_STRING"] = ""
        env["RAW_URI"] = "/"
        env["SERVER_PROTOCOL"] = "HTTP/1.1"
        env["REMOTE_ADDR"] = "127.0.0.1"
        env["REMOTE_PORT"] = "54321"
        env["HTTP_HOST"] = "127.0.0.1:8000"
        env["wsgi.input"] = empty
        return env

    def call(env) -> None:
        result = app(env, start_response)
        try:
            for block in result:
                sink.append(block)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        sink.clear()

    def full() -> None:
        call(environ())

    fixed = environ()

    def app_only() -> None:
        call(fixed)

    out = {"python": sys.version.split()[0]}
    for name, fn in (("us_per_call", full), ("app_only_us", app_only)):
        number = 200_000
        best = min(timeit.repeat(fn, number=number, repeat=7))
        out[name] = round(1e6 * best / number, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
