"""Large streamed and file responses, for slow readers and backpressure.

``/stream?tag=T&blocks=N&size=S``: a generator of N blocks of S bytes (block i is the byte
i % 251 repeated), with no Content-Length; ``/file?tag=T&size=N``: ``wsgi.file_wrapper`` over a
real N-byte file (byte i is i % 253); ``/blob?size=N``: N bytes as a one-item list (a complete
response); ``/count?tag=T``: how many blocks each tag's response produced, and how many times
its ``close()`` ran; ``/alive``: "ok".
"""

import hashlib
import io
import json
import os
import tempfile
import threading
from urllib.parse import parse_qs

_lock = threading.Lock()
_counts: dict[str, dict[str, int]] = {}
_files: dict[int, str] = {}


def _bump(tag: str, key: str) -> None:
    with _lock:
        c = _counts.setdefault(tag, {"calls": 0, "blocks": 0, "closes": 0})
        c[key] += 1


def stream_block(i: int, size: int) -> bytes:
    return bytes([i % 251]) * size


def stream_digest(blocks: int, size: int) -> str:
    h = hashlib.sha256()
    for i in range(blocks):
        h.update(stream_block(i, size))
    return h.hexdigest()


def file_data(size: int) -> bytes:
    pattern = bytes(range(253))
    return (pattern * (size // 253 + 1))[:size]


class _Stream:
    def __init__(self, tag: str, blocks: int, size: int) -> None:
        self.tag, self.blocks, self.size = tag, blocks, size

    def __iter__(self):
        for i in range(self.blocks):
            _bump(self.tag, "blocks")
            yield stream_block(i, self.size)

    def close(self) -> None:
        _bump(self.tag, "closes")


class _TrackedFile(io.FileIO):
    tag = ""

    def close(self) -> None:
        if not self.closed:
            _bump(self.tag, "closes")
        super().close()


def _file_path(size: int) -> str:
    with _lock:
        path = _files.get(size)
        if path is None:
            fd, path = tempfile.mkstemp(prefix="ferrowsgi-bp-")
            with os.fdopen(fd, "wb") as f:
                f.write(file_data(size))
            _files[size] = path
        return path


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    tag = qs.get("tag", "")
    if path == "/stream":
        _bump(tag, "calls")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Stream(tag, int(qs.get("blocks", "100")), int(qs.get("size", "65536")))
    if path == "/file":
        _bump(tag, "calls")
        f = _TrackedFile(_file_path(int(qs.get("size", "1000000"))), "r")
        f.tag = tag
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/blob":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"b" * int(qs.get("size", "1000000"))]
    if path == "/count":
        with _lock:
            body = json.dumps(_counts.get(tag, {"calls": 0, "blocks": 0, "closes": 0}))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body.encode()]
    if path == "/alive":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route"]
