"""Per-request context variables, for interleaved requests on one thread.

``/ctx?id=N``: sets a ContextVar to N in the application call, returns a generator that
reads it back for its two blocks, and a close() that reads it too; ``/log``: the events so far
(``call N``, ``iter N``, ``close N seen M``) as lines; ``/reset`` forgets them.
"""

import contextvars
import threading
from urllib.parse import parse_qs

current = contextvars.ContextVar("current", default="unset")
_lock = threading.Lock()
_events: list[str] = []


def _event(text: str) -> None:
    with _lock:
        _events.append(text)


class _Body:
    def __init__(self, rid: str) -> None:
        self.rid = rid

    def __iter__(self):
        _event(f"iter {self.rid}")
        yield f"id={self.rid};".encode()
        yield f"seen={current.get()}".encode()

    def close(self) -> None:
        _event(f"close {self.rid} seen {current.get()}")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ctx":
        rid = parse_qs(environ["QUERY_STRING"])["id"][0]
        before = current.get()
        current.set(rid)
        _event(f"call {rid} before {before}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body(rid)
    if path == "/log":
        with _lock:
            body = "\n".join(_events).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/reset":
        with _lock:
            _events.clear()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route"]
