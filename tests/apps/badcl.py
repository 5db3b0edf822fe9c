"""Apps whose Content-Length does not match the body they return.

``/short``: CL 10, body b"abc"; ``/long``: CL 3, body b"abcdefgh"; ``/long_blocks``: CL 3,
blocks b"ab", b"cdef", b"gh"; ``/exact``: CL 5, body b"exact".
"""

from wsgiref.validate import validator


def _respond(start_response, cl, blocks):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(cl))])
    return blocks


def _badcl(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/short":
        return _respond(start_response, 10, [b"abc"])
    if path == "/long":
        return _respond(start_response, 3, [b"abcdefgh"])
    if path == "/long_blocks":
        return _respond(start_response, 3, iter([b"ab", b"cdef", b"gh"]))
    return _respond(start_response, 5, [b"exact"])


app = validator(_badcl)
