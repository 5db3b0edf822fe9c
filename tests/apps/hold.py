"""Requests the test holds in progress, and the order the application is called in.

* ``/hold?dir=D&tag=T``: writes ``holding T`` to wsgi.errors, then waits (up to 30 s) until
  the file ``D/T`` exists, then answers ``released T`` followed by 64 KiB of ``x``. The test
  decides when the request ends, so it can act while the request is in progress.
* ``/seq?s=S``: sleeps S seconds and answers the number of this call (1, 2, ...) counted
  over the whole process, so a client learns where its request came in the order the
  server called the application.
"""

import itertools
import os
import threading
import time
from urllib.parse import parse_qs

_calls = itertools.count(1)
_lock = threading.Lock()
PAD = b"x" * 65536


def app(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if environ["PATH_INFO"] == "/hold":
        tag = qs["tag"]
        environ["wsgi.errors"].write(f"holding {tag}\n")
        environ["wsgi.errors"].flush()
        flag = os.path.join(qs["dir"], tag)
        deadline = time.monotonic() + 30
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.02)
        body = f"released {tag}\n".encode() + PAD
    else:
        with _lock:
            n = next(_calls)
        time.sleep(float(qs.get("s", "0")))
        body = str(n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
