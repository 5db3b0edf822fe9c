"""Counts close() calls on the response iterable, per ``tag``.

``/track?tag=T&mode=ok|raise|forever`` returns a tracked iterable: ``ok`` yields three blocks,
``raise`` raises after the first block, ``forever`` streams 64 KiB blocks until closed (or for
at most 30 s). ``/count?tag=T`` answers ``{"count": N, "iterated": M}``.
"""

import json
import threading
import time
from collections import Counter
from urllib.parse import parse_qs
from wsgiref.validate import validator

_lock = threading.Lock()
_closes: Counter = Counter()
_blocks: Counter = Counter()


class Tracked:
    def __init__(self, tag, mode):
        self.tag = tag
        self.mode = mode
        self.closed = False

    def __iter__(self):
        deadline = time.monotonic() + 30
        i = 0
        while True:
            if self.mode == "ok" and i == 3:
                return
            if self.mode == "raise" and i == 1:
                raise RuntimeError(f"boom-closetrack-{self.tag}")
            if self.mode == "forever" and (self.closed or time.monotonic() > deadline):
                return
            with _lock:
                _blocks[self.tag] += 1
            i += 1
            if self.mode == "forever":
                time.sleep(0.001)
                yield b"x" * 65536
            else:
                yield b"block%d;" % i

    def close(self):
        self.closed = True
        with _lock:
            _closes[self.tag] += 1


def _closetrack(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    tag = qs.get("tag", "")
    if environ["PATH_INFO"] == "/count":
        with _lock:
            body = json.dumps({"count": _closes[tag], "iterated": _blocks[tag]}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Tracked(tag, qs.get("mode", "ok"))


app = validator(_closetrack)
