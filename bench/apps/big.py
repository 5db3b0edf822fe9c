"""One 1 MiB body in a one-item list (the server adds or keeps the Content-Length)."""

BODY = b"b" * (1024 * 1024)
HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
