"""Applications for ``ferrowsgi cgi`` (tests/test_cgi.py), chosen by PATH_INFO.

* ``/env`` (any prefix before it): the environ's str values and the types of the ``wsgi.*``
  entries, with the body read by ``read(CONTENT_LENGTH)`` (its length and sha256), as JSON.
  ``?read=lines`` reads with ``readline()`` instead and ``?read=all`` with ``read()``.
* ``/hello``: ``[b"hello\\n"]``.
* ``/stream?n=N``: a generator of N blocks; ``?wait=PATH`` makes it wait, after its first
  block, until PATH exists (at most 20 s), and say in its last block whether it did.
* ``/write``: ``write()`` then an iterable.
* ``/excinfo``: start_response, an error, start_response again with exc_info (a 503 replaces
  the 200). ``/excinfo-late``: the same after a block was sent: the re-raised error is caught
  and named in the body.
* ``/close?mark=PATH&mode=ok|raise|wait``: an iterable whose close() creates PATH; ``raise``
  raises after its first block, ``wait`` waits after it until the file ``go`` names exists.
* ``/boom``: raises before start_response. ``/badheader``: a value with CR LF.
* ``/cl-short``, ``/cl-long``: a Content-Length of 10 with 3 and 6 bytes of body.
* ``/print``: prints to stdout, then answers.
* ``/file?path=PATH``: ``wsgi.file_wrapper`` over PATH, from byte 2.
* ``/nocontent``: 204 from a generator that yields a block anyway.
"""

import hashlib
import json
import os
import sys
import time
from urllib.parse import parse_qs


def _qs(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]


def _env(environ, start_response):
    inp = environ["wsgi.input"]
    mode = _qs(environ).get("read", "cl")
    if mode == "lines":
        body = b"".join(iter(inp.readline, b""))
    elif mode == "all":
        body = inp.read()
    else:
        body = inp.read(int(environ.get("CONTENT_LENGTH") or 0))
    info = {k: v for k, v in environ.items() if isinstance(v, str)}
    info["types"] = {k: type(v).__name__ for k, v in environ.items() if k.startswith("wsgi.")}
    info["wsgi.version"] = list(environ["wsgi.version"])
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"):
        info[key] = environ[key]
    info["errors_is_stderr"] = environ["wsgi.errors"] is sys.stderr
    info["body_len"] = len(body)
    info["body_sha256"] = hashlib.sha256(body).hexdigest()
    info["after_body"] = inp.read(10)
    info["after_body"] = info["after_body"].decode("latin-1")
    return _json(start_response, info)


class _Closing:
    def __init__(self, mark, mode, go=None):
        self.mark = mark
        self.mode = mode
        self.go = go

    def __iter__(self):
        yield b"first;"
        if self.mode == "raise":
            raise RuntimeError("boom-in-iteration")
        if self.mode == "wait":
            deadline = time.monotonic() + 20
            while not os.path.exists(self.go) and time.monotonic() < deadline:
                time.sleep(0.01)
        yield b"second;"

    def close(self):
        with open(self.mark, "w") as f:
            f.write("closed")


def _stream(environ, start_response):
    qs = _qs(environ)
    n = int(qs.get("n", "3"))
    wait = qs.get("wait")
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"block0;"
        seen = None
        if wait:
            deadline = time.monotonic() + 20
            while not os.path.exists(wait) and time.monotonic() < deadline:
                time.sleep(0.01)
            seen = os.path.exists(wait)
        for i in range(1, n):
            yield b"block%d;" % i
        if wait:
            yield b"saw-marker=%s" % str(seen).encode()

    return gen()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = _qs(environ)
    if path.endswith("/env"):
        return _env(environ, start_response)
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello\n"]
    if path == "/stream":
        return _stream(environ, start_response)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return iter([b"", b"returned;"])
    if path == "/excinfo":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("replaced")
        except ValueError:
            start_response("503 Service Unavailable", [("Retry-After", "5")], sys.exc_info())
        return [b"sorry"]
    if path == "/excinfo-late":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"started;")
        try:
            raise ValueError("too-late")
        except ValueError:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except ValueError as e:
                return [b"reraised:" + str(e).encode()]
        return [b"not-reraised"]
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Closing(qs["mark"], qs.get("mode", "ok"), qs.get("go"))
    if path == "/boom":
        raise RuntimeError("boom-before-head")
    if path == "/badheader":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"never"]
    if path == "/cl-short":
        start_response("200 OK", [("Content-Length", "10")])
        return iter([b"abc"])
    if path == "/cl-long":
        start_response("200 OK", [("Content-Length", "3")])
        return iter([b"abc", b"def"])
    if path == "/print":
        print("printed-by-app")
        sys.stdout.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"clean"]
    if path == "/file":
        f = open(qs["path"], "rb")  # noqa: SIM115 - the file wrapper closes it
        f.seek(2)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/nocontent":
        start_response("204 No Content", [])
        return iter([b"ignored"])
    if path == "/connection":
        start_response("200 OK", [("Connection", "close"), ("X-Kept", "1")])
        return [b"ok"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found: " + path.encode("latin-1")]
