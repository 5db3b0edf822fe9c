"""The pool of application threads (``--threads N``): what it promises besides concurrency for
blocking applications (tests/test_connection.py), which the arrangement in pool.rs could break.
"""

from __future__ import annotations

import os
import select
import time

from support import RawConn, short_tmp_dir


def _wait_for_file(path: str, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


def test_quick_requests_are_not_held_behind_a_long_computation(start_server) -> None:
    # A thread that computes is left alone while it takes the queued jobs itself; one that
    # computes a single request for long gets company, and the interpreter's switch interval
    # shares the GIL, as between any Python threads. Inline (--threads 1) the quick request
    # would wait for the whole computation.
    server = start_server("apps.slow:app", "--threads", "4")
    mark = os.path.join(short_tmp_dir(), "spinning")
    with RawConn(server.addr, timeout=30) as spin, RawConn(server.addr, timeout=30) as quick:
        spin.send(f"GET /spin?s=8&id=spun&mark={mark} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        assert _wait_for_file(mark, 10), "the long request never started"
        quick.send(b"GET /sleep?s=0&id=quick HTTP/1.1\r\nHost: a\r\n\r\n")
        resp = quick.read_response()
        assert resp.status == 200 and resp.body == b"quick"
        # The long request is still computing: nothing of its answer has come.
        readable, _, _ = select.select([spin.sock], [], [], 0)
        assert not readable, "the quick request was answered only after the long one"
        spin_resp = spin.read_response()
        assert spin_resp.status == 200 and spin_resp.body == b"spun"


def test_the_loop_moves_on_when_its_thread_blocks(start_server) -> None:
    # The thread that runs the event loop also runs the requests it finds. When one of them
    # blocks, another thread must take over the loop: with two threads and one of them asleep
    # in a request, a connection made afterwards is still accepted and answered first.
    server = start_server("apps.slow:app", "--threads", "2")
    with RawConn(server.addr, timeout=30) as sleeper:
        sleeper.send(b"GET /sleep?s=3&id=slept HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.2)  # the request is in the application, its thread asleep
        for i in range(3):
            with RawConn(server.addr, timeout=30) as quick:
                quick.send(f"GET /sleep?s=0&id=q{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                resp = quick.read_response()
                assert resp.status == 200 and resp.body == b"q%d" % i
        readable, _, _ = select.select([sleeper.sock], [], [], 0)
        assert not readable, "the quick requests were answered only after the sleeping one"
        slept = sleeper.read_response()
        assert slept.status == 200 and slept.body == b"slept"
