"""Apps that break the rules on purpose, so they are NOT wrapped in the validator.

Every route takes ``?tag=T``; exception messages carry the tag so a test can find its own
traceback in the server log. Routes:

``/before`` raise before start_response; ``/after_start`` raise after start_response, before
returning; ``/mid`` a generator that raises after its first block; ``/str_first`` returns
a str block; ``/str_mid`` a str block after a bytes block; ``/status?s=S`` start_response with
status S; ``/status_obj?kind=int|bytes|none`` a status that is not a str; ``/header?case=C``
a bad header (see BAD_HEADERS); ``/hop?name=N&value=V`` a hop-by-hop header;
``/same_name?name=x|cl|conn&value=V`` a header whose name is the same object every time;
``/conn_close`` sends Connection: close; ``/twice`` calls start_response twice;
``/exc_replace`` replaces the headers with exc_info before anything is sent;
``/exc_reraise`` calls start_response with exc_info after the headers went out;
``/latin1`` sends a status and headers with latin-1 (non-ASCII) text and str subclasses;
``/call?form=F`` calls start_response with the arguments of form F (see CALL_FORMS).
"""

import sys
from urllib.parse import parse_qs

TEXT = ("Content-Type", "text/plain")

BAD_HEADERS = {
    "list_not_tuple": [["X-Bad", "list"]],
    "bytes_name": [(b"X-Bad", "bytes")],
    "bytes_value": [("X-Bad", b"bytes")],
    "int_value": [("X-Bad", 42)],
    "non_latin1": [("X-Bad", "\u20ac")],
    "name_space": [("X Bad", "v")],
    "name_colon": [("X-Bad:", "v")],
    "empty_name": [("", "v")],
    "crlf_injection": [("X-Bad", "v\r\nX-Injected: yes")],
    "lf_injection": [("X-Bad", "v\nX-Injected: yes")],
    "cr_value": [("X-Bad", "v\rX-Injected: yes")],
    "nul_value": [("X-Bad", "v\x00w")],
    "name_crlf": [("X-Injected: yes\r\nX-Bad", "v")],
    "three_tuple": [("X-Bad", "v", "extra")],
    "headers_tuple": (("X-Bad", "tuple-of-headers"),),
}


CALL_FORMS = {
    # Accepted: the parameters are (status, headers, exc_info=None), by position or name.
    "keywords": ((), {"status": "200 OK", "headers": [TEXT]}),
    "headers_keyword": (("200 OK",), {"headers": [TEXT]}),
    "exc_info_keyword": (("200 OK", [TEXT]), {"exc_info": None}),
    "exc_info_none": (("200 OK", [TEXT], None), {}),
    # Refused with a TypeError.
    "no_arguments": ((), {}),
    "no_headers": (("200 OK",), {}),
    "four_positional": (("200 OK", [TEXT], None, None), {}),
    "unknown_keyword": (("200 OK", [TEXT]), {"bogus": 1}),
    "status_twice": (("200 OK", [TEXT]), {"status": "200 OK"}),
}


class Boom(Exception):
    pass


class Text(str):
    """A str subclass: CPython stores its characters apart from the object."""


def _mid(tag):
    yield b"first block;"
    raise Boom(f"boom-mid-{tag}")


def _str_mid():
    yield b"bytes first;"
    yield "then a str"


def _reraise(start_response, tag):
    yield b"headers are out;"
    try:
        raise Boom(f"boom-reraise-{tag}")
    except Boom as original:
        try:
            start_response("500 Too Late", [TEXT], sys.exc_info())
        except Boom as again:
            if again is original:
                print(f"reraised-same-{tag}", file=sys.stderr, flush=True)
            raise
        print(f"not-reraised-{tag}", file=sys.stderr, flush=True)
        yield b"start_response did not re-raise"


# Header names passed as these very objects on every /same_name request.
SAME_X = "X-Same"
SAME_CL = "Content-Length"
SAME_CONN = "Connection"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    tag = qs.get("tag", "notag")
    if path == "/before":
        raise Boom(f"boom-before-{tag}")
    if path == "/after_start":
        start_response("200 OK", [TEXT])
        raise Boom(f"boom-after-start-{tag}")
    if path == "/mid":
        start_response("200 OK", [TEXT])
        return _mid(tag)
    if path == "/str_first":
        start_response("200 OK", [TEXT])
        return ["a str block"]
    if path == "/str_mid":
        start_response("200 OK", [TEXT])
        return _str_mid()
    if path == "/status":
        start_response(qs["s"], [TEXT])
        return [b"status was accepted"]
    if path == "/status_obj":
        status = {"int": 200, "bytes": b"200 OK", "none": None}[qs["kind"]]
        start_response(status, [TEXT])
        return [b"status was accepted"]
    if path == "/header":
        headers = BAD_HEADERS[qs["case"]]
        start_response("200 OK", headers)
        return [b"bad header was accepted"]
    if path == "/hop":
        start_response("200 OK", [TEXT, (qs["name"], qs.get("value", "x"))])
        return [b"hop-by-hop header was accepted"]
    if path == "/same_name":
        # The same name objects on every request, with the value from the
        # query: a name checked once must not let a later bad value through.
        name = {"x": SAME_X, "cl": SAME_CL, "conn": SAME_CONN}[qs["name"]]
        start_response("200 OK", [TEXT, (name, qs.get("value", ""))])
        return [b"same-name header was accepted"]
    if path == "/conn_close":
        start_response("200 OK", [TEXT, ("Connection", "close"), ("Content-Length", "6")])
        return [b"closed"]
    if path == "/twice":
        start_response("200 OK", [TEXT])
        start_response("201 Created", [TEXT])
        return [b"second start_response was accepted"]
    if path == "/exc_replace":
        start_response("200 OK", [TEXT, ("X-First", "yes")])
        try:
            raise Boom(f"boom-replace-{tag}")
        except Boom:
            start_response("500 Oops", [TEXT, ("X-Second", "yes")], sys.exc_info())
        return [b"replaced"]
    if path == "/call":
        args, kwargs = CALL_FORMS[qs["form"]]
        start_response(*args, **kwargs)
        return [b"called"]
    if path == "/latin1":
        headers = [
            TEXT,
            ("X-Latin", "caf\xe9 \xff"),
            (Text("X-Sub"), Text("sub-class value")),
            ("X-Sub-Latin", Text("\xe9t\xe9")),
        ]
        start_response(Text("200 Caf\xe9"), headers)
        return [b"latin-1 head"]
    if path == "/exc_reraise":
        start_response("200 OK", [TEXT])
        return _reraise(start_response, tag)
    start_response("404 Not Found", [TEXT])
    return [b"no such route"]
