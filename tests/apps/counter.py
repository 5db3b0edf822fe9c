"""Counts the requests that reach the app; ``GET /__count`` answers the count (not counted).

Used to prove that malformed requests never reach the application.
"""

import threading
from wsgiref.validate import validator

_lock = threading.Lock()
_count = 0


def _counter(environ, start_response):
    global _count
    if environ["PATH_INFO"] == "/__count":
        body = str(_count).encode()
    else:
        with _lock:
            _count += 1
        while environ["wsgi.input"].read(65536):
            pass
        body = b"counted"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_counter)
