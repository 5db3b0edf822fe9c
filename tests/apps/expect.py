"""Reads the request body only on demand, for ``Expect: 100-continue``.

``/read?delay=S``: sleeps S seconds, then reads the whole body and echoes it. With
``&gate=PATH`` it writes ``called PATH_INFO`` to wsgi.errors and waits until the file PATH
exists (at most 30 s) instead.
``/noread``: answers at once without touching wsgi.input.
"""

import os
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator


def _expect(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if environ["PATH_INFO"] == "/read":
        if "gate" in qs:
            environ["wsgi.errors"].write(f"called /read gate={qs['gate']}\n")
            environ["wsgi.errors"].flush()
            end = time.monotonic() + 30
            while not os.path.exists(qs["gate"]) and time.monotonic() < end:
                time.sleep(0.02)
        time.sleep(float(qs.get("delay", "0")))
        chunks = []
        while data := environ["wsgi.input"].read(65536):
            chunks.append(data)
        body = b"got:" + b"".join(chunks)
    else:
        body = b"did not read"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_expect)
