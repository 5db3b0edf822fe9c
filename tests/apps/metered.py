"""Routes for the metrics, health and reload tests.

* ``/`` answers 200 ``hello``; ``/missing`` 404; any other path 200 with the path.
* ``/wait?file=PATH`` waits (polling) until PATH exists, up to 30 s, then answers 200: a
  request that stays in flight exactly as long as a test wants.
* ``/calls`` answers how many times the application was called (the health path never is).
* ``/slow?s=N`` runs for N seconds (in short sleeps) before it answers.
"""

import os
import time
from urllib.parse import parse_qs

calls = 0


def app(environ, start_response):
    global calls
    calls += 1
    path = environ["PATH_INFO"]
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"missing\n"]
    if path == "/wait":
        target = parse_qs(environ["QUERY_STRING"])["file"][0]
        deadline = time.monotonic() + 30
        while not os.path.exists(target) and time.monotonic() < deadline:
            time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"waited\n"]
    if path == "/slow":
        end = time.monotonic() + float(parse_qs(environ["QUERY_STRING"])["s"][0])
        while time.monotonic() < end:
            time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow\n"]
    if path == "/calls":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(calls).encode()]
    body = b"hello" if path == "/" else path.encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
