"""The smallest useful WSGI app: a fixed 13-byte body with an explicit Content-Length."""

BODY = b"Hello, World!"
HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(BODY))),
]


def app(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
