"""``/sleep?s=S&id=X``: sleeps S seconds and answers ``X``; used for ordering and concurrency.

``/barrier?n=N&group=G&id=X``: waits (up to 10 s) until N requests of group G are in the
application at once, then answers ``X``; ``broken`` when they never were.

``/spin?s=S&mark=PATH&id=X``: computes (holding the GIL but for the interpreter's switches) for
S seconds, after creating the file PATH, and answers ``X``.
"""

import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

_barriers: dict[str, threading.Barrier] = {}
_lock = threading.Lock()


def _meet(group: str, n: int) -> bool:
    with _lock:
        barrier = _barriers.setdefault(group, threading.Barrier(n))
    try:
        barrier.wait(10)
    except threading.BrokenBarrierError:
        return False
    return True


def _slow(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if environ["PATH_INFO"] == "/barrier" and not _meet(qs["group"], int(qs["n"])):
        qs["id"] = "broken"
    if environ["PATH_INFO"] == "/spin":
        with open(qs["mark"], "w"):
            pass
        end = time.monotonic() + float(qs["s"])
        while time.monotonic() < end:
            sum(range(1000))
    else:
        time.sleep(float(qs.get("s", "0")))
    body = qs.get("id", "done").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_slow)
