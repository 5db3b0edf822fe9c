"""``/?s=S``: sleeps S seconds (default 0), then answers its path and query.

Used by bench/latency.py.
"""

import time
from urllib.parse import parse_qs


def app(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    time.sleep(float(qs.get("s", ["0"])[0]))
    body = (environ["PATH_INFO"] + "?" + environ.get("QUERY_STRING", "")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
