"""Counts the calls that reach the app, to prove a request was (or was not) handed to it.

* ``GET /_count`` answers, as a decimal text body, how many calls this process has served so
  far; the ``/_count`` requests themselves are not counted.
* Any other path is counted, its whole body is read and echoed back. The response carries
  ``X-Call`` (this call's number), ``X-Path`` (PATH_INFO), ``X-Query`` (QUERY_STRING) and
  ``X-Host`` (HTTP_HOST, empty when absent), so a test can tell which request of a pipeline
  an answer belongs to and which host the server settled on.

The app is wrapped in :func:`wsgiref.validate.validator`, so every call is also checked
against PEP 3333.
"""

from __future__ import annotations

import threading
from wsgiref.validate import validator

COUNT_PATH = "/_count"

_lock = threading.Lock()
_calls = 0


def _count(environ, start_response):
    global _calls
    path = environ.get("PATH_INFO", "")
    if path == COUNT_PATH:
        with _lock:
            body = str(_calls).encode("ascii")
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]
    with _lock:
        _calls += 1
        call = _calls
    inp = environ["wsgi.input"]
    parts = []
    while True:
        data = inp.read(65536)
        if not data:
            break
        parts.append(data)
    body = b"".join(parts)
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(body))),
        ("X-Call", str(call)),
        ("X-Path", path),
        ("X-Query", environ.get("QUERY_STRING", "")),
        ("X-Host", environ.get("HTTP_HOST", "")),
    ]
    start_response("200 OK", headers)
    return [body]


app = validator(_count)
