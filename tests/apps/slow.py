"""``/sleep?s=S&id=X``: sleeps S seconds and answers ``X``; used for ordering and concurrency."""

import time
from urllib.parse import parse_qs
from wsgiref.validate import validator


def _slow(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    time.sleep(float(qs.get("s", "0")))
    body = qs.get("id", "done").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_slow)
