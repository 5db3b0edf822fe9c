"""Keeps, or changes, what a request gave it, to show that later requests are not affected.

* ``/keep?tag=T``: keeps the environ, ``start_response``, ``write``, ``wsgi.input`` and
  ``wsgi.errors`` of this request (all of them, or only the one named by ``what=``).
* ``/check``: reports whether this request got any object kept by ``/keep`` (by identity),
  and what using the kept ones does now; the kept ``wsgi.errors`` writes ``T-late``.
* ``/mutate``: changes and deletes environ keys, as proxy-fixing middleware does.
* anything else: the environ's str values, as JSON.
"""

import json
from urllib.parse import parse_qs

KEPT: dict = {}


def _answer(start_response, doc):
    body = json.dumps(doc).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _try(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the kind of failure is the answer
        return type(e).__name__
    return "ok"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = parse_qs(environ["QUERY_STRING"])
    if path == "/keep":
        KEPT.clear()
        objects = {
            "environ": environ,
            "start_response": start_response,
            "input": environ["wsgi.input"],
            "errors": environ["wsgi.errors"],
        }
        what = qs.get("what", [None])[0]
        if what is None:
            KEPT.update(objects)
        elif what in objects:
            KEPT[what] = objects[what]
        KEPT["tag"] = qs.get("tag", [""])[0]
        body = b"kept"
        write = start_response("200 OK", [("Content-Length", str(len(body)))])
        if what in (None, "write"):
            KEPT["write"] = write
        return [body]
    if path == "/check":
        mine = {
            "environ": environ,
            "start_response": start_response,
            "input": environ["wsgi.input"],
            "errors": environ["wsgi.errors"],
        }
        same = {k: KEPT[k] is v for k, v in mine.items() if k in KEPT}
        used = {}
        if "input" in KEPT:
            used["input"] = _try(lambda: KEPT["input"].read(1))
        if "write" in KEPT:
            used["write"] = _try(lambda: KEPT["write"](b"late"))
        if "errors" in KEPT:
            KEPT["errors"].write(f"{KEPT['tag']}-late\n")
        if "start_response" in KEPT:
            used["start_response"] = _try(lambda: KEPT["start_response"]("200 OK", []))
        write = start_response("200 OK", [("Content-Type", "application/json")])
        if "write" in KEPT:
            same["write"] = write is KEPT["write"]
        return [json.dumps({"same": same, "used": used}).encode()]
    if path == "/mutate":
        environ["REMOTE_ADDR"] = "203.0.113.9"
        environ["REQUEST_METHOD"] = "BREW"
        environ["SERVER_PROTOCOL"] = "HTTP/9.9"
        environ["SERVER_NAME"] = "elsewhere"
        del environ["REMOTE_PORT"]
        environ["HTTP_X_ADDED"] = "yes"
    doc = {k: v for k, v in environ.items() if isinstance(v, str)}
    return _answer(start_response, doc)
