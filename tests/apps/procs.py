"""For the process tests: answers with the worker's pid.

``/`` answers ``pid``; ``/sleep?s=0.2`` sleeps first; ``/alloc?mib=N`` keeps N more MiB
alive for the life of the process (to cross ``--max-rss``); ``/ppid`` answers the parent's
pid; ``/whoami`` answers ``pid REMOTE_ADDR``; ``/ids`` answers ``uid gid``; ``/env`` the
names of the LISTEN_* and NOTIFY_* variables; ``/imported`` the pid of the process that
imported this module.

Environment: ``PROCS_FAIL_IMPORT=1`` makes the import fail (with ``PROCS_FAIL_FLAG=PATH``:
only while PATH exists); ``PROCS_IMPORT_LOG=PATH`` appends a line per import (to count
imports across processes).
"""

import os
import time
from urllib.parse import parse_qs

_kept: list[bytes] = []

if os.environ.get("PROCS_IMPORT_LOG"):
    with open(os.environ["PROCS_IMPORT_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")

_flag = os.environ.get("PROCS_FAIL_FLAG")
if os.environ.get("PROCS_FAIL_IMPORT") == "1" and (_flag is None or os.path.exists(_flag)):
    raise RuntimeError("procs: import refused on purpose")

IMPORTED_IN = os.getpid()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/sleep":
        time.sleep(float(query.get("s", ["0.2"])[0]))
    if path == "/alloc":
        _kept.append(bytearray(int(query.get("mib", ["1"])[0]) << 20))
    if path == "/ppid":
        body = str(os.getppid())
    elif path == "/whoami":
        body = f"{os.getpid()} {environ.get('REMOTE_ADDR', '')}"
    elif path == "/ids":
        body = f"{os.getuid()} {os.getgid()}"
    elif path == "/env":
        body = repr(sorted(k for k in os.environ if k.startswith(("LISTEN_", "NOTIFY_"))))
    elif path == "/imported":
        body = str(IMPORTED_IN)
    else:
        body = str(os.getpid())
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
