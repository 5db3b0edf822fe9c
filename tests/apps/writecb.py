"""Uses the write() callable returned by start_response.

``/mixed``: write(b"first;") then return [b"second"]; ``/only``: everything via write(),
returns []; ``/cl``: an app Content-Length of 12 split across write() and the iterable;
``/many``: several writes, then a generator.
"""

from wsgiref.validate import validator

TEXT = [("Content-Type", "text/plain")]


def _gen():
    yield b"gen1;"
    yield b"gen2"


def _writecb(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/mixed":
        write = start_response("200 OK", TEXT)
        write(b"first;")
        return [b"second"]
    if path == "/only":
        write = start_response("200 OK", TEXT)
        write(b"all via write")
        return []
    if path == "/cl":
        write = start_response("200 OK", [*TEXT, ("Content-Length", "12")])
        write(b"hello ")
        return [b"world!"]
    if path == "/many":
        write = start_response("200 OK", TEXT)
        for i in range(3):
            write(b"w%d;" % i)
        return _gen()
    start_response("404 Not Found", TEXT)
    return [b"no such route"]


app = validator(_writecb)
