"""Reads the whole request body (POST) and answers with its length in bytes.

`app` reads it in one read(); `chunked_app` reads 64 KiB at a time (the upload workload).
"""

CHUNK = 64 * 1024


def _length(environ):
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _answer(start_response, n):
    body = str(n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    n = _length(environ)
    data = environ["wsgi.input"].read(n) if n else b""
    return _answer(start_response, len(data))


def chunked_app(environ, start_response):
    remaining, got = _length(environ), 0
    stream = environ["wsgi.input"]
    while remaining > 0:
        block = stream.read(min(CHUNK, remaining))
        if not block:
            break
        got += len(block)
        remaining -= len(block)
    return _answer(start_response, got)
