"""A blocking application: 10 ms of time.sleep per request (threads decide the throughput)."""

import time

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    time.sleep(0.010)
    start_response("200 OK", list(HEADERS))
    return [BODY]
