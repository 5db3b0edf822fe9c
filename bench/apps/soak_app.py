"""The application that bench/soak.py serves.

``/``: a 13-byte hello with a Content-Length. ``/big``: about 1 MiB as a one-item list (the
server sends it at once and a slow reader holds only the connection's buffer).
``/stream?blocks=N``: N 64 KiB blocks (default 256, 16 MiB) from a generator; each block is
written before the next is asked for, so a slow reader holds an application thread until
``--write-timeout``.
"""

from urllib.parse import parse_qs

HELLO = b"Hello, World!"
BIG = bytes(range(256)) * 4096  # 1 MiB
BLOCK = b"s" * 65536
STREAM_BLOCKS = 256


def _stream(n):
    for _ in range(n):
        yield BLOCK


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))],
        )
        return [BIG]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        qs = parse_qs(environ["QUERY_STRING"])
        return _stream(min(int(qs.get("blocks", [STREAM_BLOCKS])[0]), 1 << 16))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]
