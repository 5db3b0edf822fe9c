"""Requests that overrun their deadline (``--timeout``) in every way a thread can be busy.

Each route takes ``s`` (seconds) and ``mark`` (a file path): when the request's code ends, its
``finally`` block writes there what reached it (``RequestTimeout``, ``none``, or ``swallowed``
if an ``except Exception`` caught it), so a test can wait for that event.

* ``/loop``: Python code sleeping in 20 ms steps, wrapped in ``except Exception`` (which must
  not catch the deadline's exception);
* ``/sleep``: one ``time.sleep(s)`` (the exception waits for it to return);
* ``/csleep``: libc ``sleep(s)`` through ``ctypes.CDLL`` (C code, GIL released);
* ``/cgil``: libc ``sleep(s)`` through ``ctypes.PyDLL`` (C code holding the GIL);
* ``/lock``: waits ``s`` for a lock that is held (C code, GIL released);
* ``/stream``: starts a streamed response, then loops like ``/loop``;
* ``/wait?go=PATH``: answers once ``PATH`` exists (up to ``s`` seconds);
* ``/read``: reads the whole request body (the server's own wait for the client);
* ``/hello``: answers the worker's PID at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time
from contextvars import ContextVar
from urllib.parse import parse_qs

_current_input: ContextVar = ContextVar("_current_input")

if os.environ.get("DEADLINES_PY_LOGGING"):
    # With --log-to-python the server's lines reach this handler (on stderr, where the tests
    # look for them).
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[py] %(message)s")

_held = threading.Lock()
_held.acquire()


def _mark(path: str | None, what: str) -> None:
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(what)
        os.replace(path + ".tmp", path)


def _busy(route: str, secs: float, go: str | None) -> None:
    if route == "/loop" or route == "/stream":
        end = time.monotonic() + secs
        try:
            while time.monotonic() < end:
                time.sleep(0.02)
        except Exception:
            raise AssertionError("swallowed") from None
    elif route == "/sleep":
        time.sleep(secs)
    elif route == "/csleep":
        ctypes.CDLL(None).sleep(int(secs))
    elif route == "/cgil":
        ctypes.PyDLL(None).sleep(int(secs))
    elif route == "/lock":
        _held.acquire(timeout=secs)
    elif route == "/read":
        environ_input = _current_input.get()
        environ_input.read()
    elif route == "/wait":
        end = time.monotonic() + secs
        while go and not os.path.exists(go) and time.monotonic() < end:
            time.sleep(0.02)


def app(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    route = environ["PATH_INFO"]
    secs = float(qs.get("s", "0"))
    mark = qs.get("mark")
    if route == "/hello":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if route == "/stream":
        return _stream(secs, mark, start_response)
    seen = "none"
    _current_input.set(environ["wsgi.input"])
    try:
        _busy(route, secs, qs.get("go"))
    except AssertionError:
        seen = "swallowed"
        raise
    except BaseException as e:
        seen = type(e).__name__
        raise
    finally:
        _mark(mark, seen)
    body = f"{route} done".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _stream(secs, mark, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    seen = "none"
    try:
        yield b"started\n"
        _busy("/stream", secs, None)
        yield b"ended\n"
    except BaseException as e:
        seen = type(e).__name__
        raise
    finally:
        _mark(mark, seen)
