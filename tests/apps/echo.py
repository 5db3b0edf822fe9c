"""Echo: answers with the request's environ (its str values) and the body it read, as JSON.

Query parameters:

* ``read=MODE`` chooses how wsgi.input is read: ``all`` (default: ``read(8192)`` until b""),
  ``cl`` (one ``read(CONTENT_LENGTH)``), ``none``, ``chunks`` (``read(n)`` until b""),
  ``readline``, ``readline_size`` (``readline(n)``), ``readlines``, ``readlines_hint``
  (``readlines(n)`` then ``readlines()``), ``iter``; ``raw_app`` also knows ``readall``
  (``read()``) and ``readneg`` (``read(-1)``).
* ``n=N`` the size for the sized modes.
* ``log=TEXT`` writes TEXT to wsgi.errors (write, writelines and flush).

``app`` is validated. ``raw_app`` is not, because PEP 3333 demands a size argument for
``read()`` and wsgiref.validate asserts that, while we also want to test ``read()``/``read(-1)``.
"""

import json
from urllib.parse import parse_qs
from wsgiref.validate import validator


def _read(inp, mode, n, environ):
    """Returns the list of what each call returned (bytes, or a list of bytes)."""
    calls = []
    if mode == "none":
        return calls
    if mode == "all":
        while data := inp.read(8192):
            calls.append(data)
    elif mode == "cl":
        calls.append(inp.read(int(environ.get("CONTENT_LENGTH") or 0)))
    elif mode == "chunks":
        while data := inp.read(n):
            calls.append(data)
    elif mode == "readline":
        while line := inp.readline():
            calls.append(line)
    elif mode == "readline_size":
        while line := inp.readline(n):
            calls.append(line)
    elif mode == "readlines":
        calls.append(inp.readlines())
    elif mode == "readlines_hint":
        calls.append(inp.readlines(n))
        calls.append(inp.readlines())
    elif mode == "iter":
        calls.extend(inp)
    elif mode == "readall":
        calls.append(inp.read())
    elif mode == "readneg":
        calls.append(inp.read(-1))
    else:
        raise ValueError(f"unknown read mode {mode!r}")
    return calls


def _flatten(calls):
    out = []
    for c in calls:
        out.extend(c if isinstance(c, list) else [c])
    return b"".join(out)


def _latin1(calls):
    return [
        [x.decode("latin-1") for x in c] if isinstance(c, list) else c.decode("latin-1")
        for c in calls
    ]


def echo(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    mode = qs.get("read", ["all"])[0]
    n = int(qs.get("n", ["1024"])[0])
    if "log" in qs:
        text = qs["log"][0]
        errors = environ["wsgi.errors"]
        errors.write(f"{text}\n")
        errors.writelines([f"{text}-lines-1\n", f"{text}-lines-2\n"])
        errors.flush()
    inp = environ["wsgi.input"]
    calls = _read(inp, mode, n, environ)
    after = inp.read(1) if mode != "none" else b""
    doc = {
        "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
        "non_str_keys": sorted(
            k for k, v in environ.items() if "." not in k and not isinstance(v, str)
        ),
        "wsgi": {
            "version": list(environ["wsgi.version"]),
            "version_is_tuple": isinstance(environ["wsgi.version"], tuple),
            "url_scheme": environ["wsgi.url_scheme"],
            "multithread": environ["wsgi.multithread"],
            "multiprocess": environ["wsgi.multiprocess"],
            "run_once": environ["wsgi.run_once"],
            "input_terminated": environ.get("wsgi.input_terminated"),
            "file_wrapper": callable(environ.get("wsgi.file_wrapper")),
            "errors_api": all(
                hasattr(environ["wsgi.errors"], a) for a in ("write", "writelines", "flush")
            ),
            "input_api": all(
                hasattr(inp, a) for a in ("read", "readline", "readlines", "__iter__")
            ),
        },
        "body": _flatten(calls).decode("latin-1"),
        "calls": _latin1(calls),
        "after": after.decode("latin-1"),
    }
    body = json.dumps(doc).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


raw_app = echo
app = validator(echo)
