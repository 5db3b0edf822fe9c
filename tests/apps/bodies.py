"""Reads a request body as the query asks and answers with its digest, as JSON.

Query parameters:

* ``read=MODE``: ``chunks`` (default: ``read(n)`` until b""), ``all`` (``read()``), ``cl``
  (one ``read(CONTENT_LENGTH)``), ``lines`` (``readline()`` until b""), ``iter``, ``none``.
* ``n=N``: the size for ``chunks`` (default 65536).

The answer holds the body's length and SHA-256, the number of reads, and how many reads
came back shorter than asked before the end of the body (PEP 3333 lets a server return
less, but applications read as if it did not). It writes ``called PATH`` to wsgi.errors
before it reads, and ``read failed: TYPE: MESSAGE`` when a read raises (then re-raises).
"""

import hashlib
import json
from urllib.parse import parse_qs


def _reads(inp, mode, n, environ):
    if mode == "chunks":
        while data := inp.read(n):
            yield data, n
    elif mode == "all":
        yield inp.read(), None
    elif mode == "cl":
        want = int(environ.get("CONTENT_LENGTH") or 0)
        yield inp.read(want), want
    elif mode == "lines":
        while line := inp.readline():
            yield line, None
    elif mode == "iter":
        for line in inp:
            yield line, None
    elif mode != "none":
        raise ValueError(f"unknown read mode {mode!r}")


def app(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    mode = qs.get("read", ["chunks"])[0]
    n = int(qs.get("n", ["65536"])[0])
    errors = environ["wsgi.errors"]
    errors.write(f"called {environ['PATH_INFO']}\n")
    errors.flush()
    digest = hashlib.sha256()
    length = 0
    short = []  # per read: whether it returned less than it asked for
    try:
        for data, asked in _reads(environ["wsgi.input"], mode, n, environ):
            short.append(asked is not None and len(data) < asked)
            digest.update(data)
            length += len(data)
    except Exception as e:
        errors.write(f"read failed: {type(e).__name__}: {e}\n")
        errors.flush()
        raise
    body = json.dumps(
        {
            "length": length,
            "sha256": digest.hexdigest(),
            "reads": len(short),
            # Only the last read may be short: the body ended there.
            "early_short_reads": sum(short[:-1]),
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
