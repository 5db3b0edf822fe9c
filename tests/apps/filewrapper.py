"""wsgi.file_wrapper over a real file and over a BytesIO.

Not wrapped in the validator: the server may use its fast path (sendfile) only when the app
returns the very object wsgi.file_wrapper made, and the validator would hide it behind its own
iterator.

``/file?offset=N&cl=M&blksize=K``: a real file, seeked to N, with an optional Content-Length;
``/bytesio?offset=N``: the same bytes in a BytesIO; ``/closed``: whether the file behind the
previous response was closed (wrapper.close() must close the file).
"""

import atexit
import io
import json
import os
import tempfile
from urllib.parse import parse_qs

SIZE = 300_000
_state = {"path": None, "last": None}


def make_data() -> bytes:
    """Deterministic, position-revealing content (no period that divides small offsets)."""
    return bytes((i * 7 + i // 251) % 256 for i in range(SIZE))


def _path():
    if _state["path"] is None:
        fd, path = tempfile.mkstemp(prefix="ferrowsgi-fw-")
        with os.fdopen(fd, "wb") as f:
            f.write(make_data())
        atexit.register(os.unlink, path)
        _state["path"] = path
    return _state["path"]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    offset = int(qs.get("offset", "0"))
    blksize = int(qs.get("blksize", "8192"))
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in qs:
        headers.append(("Content-Length", qs["cl"]))
    if path == "/file":
        f = open(_path(), "rb")  # noqa: SIM115 - closed by the file wrapper
        f.seek(offset)
        _state["last"] = f
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, blksize)
    if path == "/bytesio":
        f = io.BytesIO(make_data())
        f.seek(offset)
        _state["last"] = f
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, blksize)
    if path == "/closed":
        last = _state["last"]
        body = json.dumps({"closed": None if last is None else last.closed}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route"]
