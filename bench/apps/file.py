"""wsgi.file_wrapper over a 10 MiB regular file (sendfile(2) where the server can).

run.py creates the file in a temporary directory and names it in BENCH_DATA_FILE.
"""

import os

PATH = os.environ.get("BENCH_DATA_FILE", "")
SIZE = os.path.getsize(PATH) if PATH else 0


def app(environ, start_response):
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE))]
    )
    f = open(PATH, "rb")  # closed by the wrapper's close()
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(f, 64 * 1024)
    return _blocks(f)


def _blocks(f):
    with f:
        while block := f.read(64 * 1024):
            yield block
