"""``--keep-alive-requests`` and ``--max-pipelined`` given on the command line.

The Rust tests (crates/ferrowsgi-server/tests/http1.rs) check the engine with the options
set in its configuration; these run ``python -m ferrowsgi`` with the options spelled as a
user spells them, so the parsing, the defaults and the hand-over to the engine are covered.
"""

from __future__ import annotations

import pytest
from support import RawConn, build_request, parse_responses

pytestmark = pytest.mark.timeout(60)

ONE = build_request("GET", "/seq")


def serve_until_close(conn: RawConn, count: int) -> list[bool]:
    """Sends ``count`` requests one after another; per answer, whether it said close."""
    closes = []
    for _ in range(count):
        conn.send(ONE)
        resp = conn.read_response()
        assert resp.status == 200
        closes.append(resp.closes)
        if resp.closes:
            break
    return closes


def test_keep_alive_requests_closes_after_the_last(start_server) -> None:
    server = start_server("apps.hold:app", "--keep-alive-requests", "3")
    with server.conn() as c:
        assert serve_until_close(c, 5) == [False, False, True]
        assert c.at_eof()


def test_keep_alive_requests_default_is_1000(start_server) -> None:
    server = start_server("apps.hold:app")
    with server.conn() as c:
        closes = serve_until_close(c, 1001)
        assert len(closes) == 1000 and closes[-1] and not any(closes[:-1])
        assert c.at_eof()


def test_keep_alive_requests_zero_means_no_limit(start_server) -> None:
    server = start_server("apps.hold:app", "--keep-alive-requests", "0")
    with server.conn() as c:
        assert not any(serve_until_close(c, 1100))
        assert not c.at_eof(timeout=0.2)


@pytest.mark.parametrize(("max_pipelined", "answered"), [(4, 7), (32, 12)])
def test_keep_alive_requests_with_a_pipeline(start_server, max_pipelined, answered) -> None:
    # 12 requests pipelined at once against a limit of 3: the batch is answered up to
    # --max-pipelined past the limit (4: requests 4 to 7), then the connection closes; the
    # last answer says so. With the default 32 the whole batch is answered.
    server = start_server(
        "apps.hold:app",
        "--keep-alive-requests",
        "3",
        "--max-pipelined",
        str(max_pipelined),
        "--access-log",
    )
    with server.conn() as c:
        c.send(ONE * 12)
        data = c.read_to_eof()
    responses = parse_responses(data)
    assert len(responses) == answered
    assert [r.closes for r in responses] == [False] * (answered - 1) + [True]
    assert [r.body for r in responses] == [str(i).encode() for i in range(1, answered + 1)]


@pytest.mark.parametrize(("max_pipelined", "limited"), [(4, True), (64, False)])
def test_max_pipelined_lets_other_connections_in(start_server, max_pipelined, limited) -> None:
    # One connection pipelines 40 requests of 50 ms; another sends one request once the
    # first answer has come. /seq numbers the application's calls, so the other request's
    # number tells how many of the pipeline were served before it: with --max-pipelined 4
    # the other connection gets its turn after a few, with 64 only after all 40.
    server = start_server("apps.hold:app", "--threads", "1", "--max-pipelined", str(max_pipelined))
    with server.conn(timeout=30) as greedy, server.conn() as other:
        greedy.send(build_request("GET", "/seq?s=0.05") * 40)
        assert greedy.read_response().body == b"1"
        other.send(ONE)
        position = int(other.read_response().body)
        got = [int(greedy.read_response().body) for _ in range(39)]
    assert sorted([*got, position]) == list(range(2, 42))
    if limited:
        # At most a few turns of 4 went first, even on a loaded machine.
        assert position <= 21, position
    else:
        assert position == 41, position
