"""The application that bench/uploads.py serves: reads wsgi.input in 64 KiB pieces and
answers ``{"sha256": HEX, "size": N}``."""

import hashlib
import json

PIECE = 65536
MAX_PIECES = 1 << 24  # 1 TiB of 64 KiB pieces: a bound, never reached


def app(environ, start_response):
    inp = environ["wsgi.input"]
    digest = hashlib.sha256()
    size = 0
    for _ in range(MAX_PIECES):
        data = inp.read(PIECE)
        if not data:
            break
        digest.update(data)
        size += len(data)
    body = json.dumps({"sha256": digest.hexdigest(), "size": size}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
