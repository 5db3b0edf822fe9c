"""An application that restores the default SIGPIPE action, as some embedding programs and
libraries do: a write to a client that has gone must then still be an error the server
handles, never a signal that kills the worker."""

import os
import signal

signal.signal(signal.SIGPIPE, signal.SIG_DFL)

BIG = b"x" * (1 << 20)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/file":
        # A file sent with sendfile(2), which takes no flags of its own.
        f = open(environ["QUERY_STRING"], "rb")  # noqa: SIM115 (the server closes it)
        start_response("200 OK", [("Content-Length", str(os.fstat(f.fileno()).st_size))])
        return environ["wsgi.file_wrapper"](f)
    if environ["PATH_INFO"] == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = BIG
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
