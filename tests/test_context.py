"""Each request runs in its own contextvars.Context.

With one thread the event loop runs the application itself; when several requests are ready
in one wake-up, the server calls each application before it iterates any of their bodies (so
the answers go out together), and a response paused for a slow reader goes on later, maybe on
another thread. Context variables set by one request must still be invisible to every other,
in the application call, during iteration and in close().
"""

from __future__ import annotations

import pytest
from support import Server, build_request, connect, read_response, wait_until

N = 40


def burst(server: Server, n: int) -> list[bytes]:
    """Send ``n`` requests on ``n`` connections at once; return the bodies in order."""
    socks = [connect(server.addr) for _ in range(n)]
    for i, s in enumerate(socks):
        s.sendall(build_request("GET", f"/ctx?id={i}"))
    bodies = []
    for s in socks:
        resp, _ = read_response(s)
        assert resp.status == 200
        bodies.append(resp.body)
        s.close()
    return bodies


def count_closes(server: Server) -> int:
    log = server.request("GET", "/log").body.decode().splitlines()
    return sum(line.startswith("close ") for line in log)


@pytest.mark.parametrize("threads", [1, 4])
def test_context_variables_stay_with_their_request(start_server, threads: int) -> None:
    server = start_server("apps.ctxvars:app", "--threads", str(threads))
    interleaved = False
    for _ in range(5):
        assert server.request("GET", "/reset").status == 200
        bodies = burst(server, N)
        assert bodies == [f"id={i};seen={i}".encode() for i in range(N)]
        # close() runs after each answer went out: wait until all N have run.
        assert wait_until(lambda: count_closes(server) == N), count_closes(server)
        log = server.request("GET", "/log").body.decode().splitlines()
        calls = [line for line in log if line.startswith("call ")]
        closes = [line for line in log if line.startswith("close ")]
        # A request never sees another's value, not even the previous one on its thread.
        assert sorted(calls) == sorted(f"call {i} before unset" for i in range(N))
        assert sorted(closes) == sorted(f"close {i} seen {i}" for i in range(N))
        # Did some application call run between another request's call and its iteration?
        pending: set[str] = set()
        for line in log:
            kind, rid = line.split()[:2]
            if kind == "call":
                interleaved |= bool(pending)
                pending.add(rid)
            elif kind == "iter":
                pending.discard(rid)
        if interleaved or threads > 1:
            break
    if threads == 1:
        assert interleaved, "no burst was served interleaved; the test proved nothing"
