"""A generator of 100 blocks of 1 KiB and no Content-Length: chunked on HTTP/1.1."""

BLOCK = b"s" * 1024
BLOCKS = 100


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (BLOCK for _ in range(BLOCKS))
