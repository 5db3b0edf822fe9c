"""Responses without (and with) an app Content-Length, for the server's framing choices.

Routes: ``/list`` (one-item list), ``/tuple`` (one-item tuple), ``/two`` (two-item list),
``/gen?n=N`` (generator), ``/empty_blocks`` (generator with b"" blocks), ``/empty`` ([]),
``/cl_gen`` (generator with an app Content-Length), ``/head_cl`` (50 bytes with CL),
``/status?code=204|304`` (no body), ``/slowgen?n=N&delay=S`` (a block, then a pause;
with ``&gate=PATH`` the pause lasts until that file exists),
``/sized?n=N`` (an iterable with len() N), ``/list_backed`` (iterates as a list),
``/jitter?n=N&seed=S`` (blocks with short pauses in a seeded order),
``/burst?n=N&delay=S&busy=0|1[&gate=PATH]`` (N quick blocks, then a pause sleeping or
computing with the GIL held, then one more),
``/server_header`` and ``/date_header`` (app-supplied Server/Date), ``/big?size=N``.
"""

import os
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

TEXT = [("Content-Type", "text/plain")]
APP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


def _gen(n):
    for i in range(n):
        yield b"block%d;" % i


def _empty_blocks():
    yield b""
    yield b"ab"
    yield b""
    yield b""
    yield b"cd"
    yield b""


def _gate_open(gate):
    return gate is not None and os.path.exists(gate)


def _slowgen(n, delay, gate):
    for i in range(n):
        if i and gate is None:
            time.sleep(delay)
        elif i:
            end = time.monotonic() + 30
            while not _gate_open(gate) and time.monotonic() < end:
                time.sleep(0.02)
        yield b"slow%d;" % i


def _burst(n, delay, busy, gate):
    for i in range(n):
        yield b"burst%d;" % i
    # With a gate the pause lasts until that file exists (at most 30 s) instead of ``delay``.
    end = time.monotonic() + (30 if gate else delay)
    if busy:
        # Keeps the GIL (no other Python thread runs) but for a stat() every 50 ms.
        check = time.monotonic()
        while time.monotonic() < end:
            if gate and time.monotonic() >= check:
                if _gate_open(gate):
                    break
                check = time.monotonic() + 0.05
    else:
        while time.monotonic() < end and not _gate_open(gate):
            time.sleep(0.02 if gate else delay)
    yield b"end;"


class _Sized:
    """An iterable with a len(), which is neither a list nor a tuple."""

    def __init__(self, *blocks):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __iter__(self):
        yield from self.blocks  # a generator: only len() tells how many blocks come


class _ListBacked:
    """Iterates as a list's iterator (as Django's HttpResponse does)."""

    def __init__(self, *blocks):
        self.blocks = list(blocks)

    def __iter__(self):
        return iter(self.blocks)


def _jitter(n, seed):
    # Blocks with pauses of 0, 0.2 ms and 1.5 ms in a fixed pseudo-random order: some are
    # held and joined, some written at once, some written by the server's flusher while
    # the generator sleeps.
    state = seed
    for i in range(n):
        state = (state * 1103515245 + 12345) % 2**31
        pause = (0.0, 0.0, 0.0002, 0.0015)[state % 4]
        if pause:
            time.sleep(pause)
        yield b"j%d-%d;" % (seed, i)


def _stream(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/list":
        start_response("200 OK", TEXT)
        return [b"hello list"]
    if path == "/tuple":
        start_response("200 OK", TEXT)
        return (b"hello tuple",)
    if path == "/two":
        start_response("200 OK", TEXT)
        return [b"part1;", b"part2"]
    if path == "/gen":
        start_response("200 OK", TEXT)
        return _gen(int(qs.get("n", "3")))
    if path == "/empty_blocks":
        start_response("200 OK", TEXT)
        return _empty_blocks()
    if path == "/empty":
        start_response("200 OK", TEXT)
        return []
    if path == "/cl_gen":
        start_response("200 OK", [*TEXT, ("Content-Length", "21")])
        return _gen(3)
    if path == "/head_cl":
        start_response("200 OK", [*TEXT, ("Content-Length", "50")])
        return [b"x" * 50]
    if path == "/status":
        code = qs.get("code", "204")
        reason = {"204": "No Content", "304": "Not Modified"}[code]
        start_response(f"{code} {reason}", [("X-Status", code)])
        return []
    if path == "/slowgen":
        start_response("200 OK", TEXT)
        return _slowgen(int(qs.get("n", "2")), float(qs.get("delay", "1")), qs.get("gate"))
    if path == "/sized":
        start_response("200 OK", TEXT)
        return _Sized(*[b"sized%d;" % i for i in range(int(qs.get("n", "1")))])
    if path == "/list_backed":
        start_response("200 OK", TEXT)
        return _ListBacked(b"", b"lb0;", b"lb1;")
    if path == "/jitter":
        start_response("200 OK", TEXT)
        return _jitter(int(qs.get("n", "100")), int(qs.get("seed", "1")))
    if path == "/burst":
        start_response("200 OK", TEXT)
        n, delay = int(qs.get("n", "50")), float(qs.get("delay", "1"))
        return _burst(n, delay, qs.get("busy") == "1", qs.get("gate"))
    if path == "/server_header":
        start_response("200 OK", [*TEXT, ("Server", "custom-srv/1.0")])
        return [b"custom server"]
    if path == "/date_header":
        start_response("200 OK", [*TEXT, ("Date", APP_DATE)])
        return [b"custom date"]
    if path == "/big":
        size = int(qs.get("size", "1000000"))
        start_response("200 OK", TEXT)
        return [bytes(i % 256 for i in range(256)) * (size // 256) + b"z" * (size % 256)]
    start_response("404 Not Found", TEXT)
    return [b"no such route"]


_validated = validator(_stream)


def app(environ, start_response):
    # The validator wraps every iterable in its own iterator, hiding what /list, /tuple,
    # /sized and /list_backed return (iterables whose blocks are all known, which the server
    # frames with a Content-Length), so those routes are served without it.
    if environ["PATH_INFO"] in ("/list", "/tuple", "/sized", "/list_backed"):
        return _stream(environ, start_response)
    return _validated(environ, start_response)
