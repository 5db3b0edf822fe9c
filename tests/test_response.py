"""Response framing (Content-Length, chunked, close-delimited), HEAD, 204/304, Date and Server,
app Content-Length mismatches, close() on the iterable and wsgi.file_wrapper."""

from __future__ import annotations

import concurrent.futures
import email.utils
import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from support import RawConn, Server, new_tag, parse_responses, short_tmp_dir, wait_until

pytestmark = pytest.mark.timeout(30)


def fetch(server: Server, target: str, method: str = "GET", **kw: object):
    """One request on a keep-alive connection, then a second one to prove the framing."""
    with RawConn(server.addr) as c:
        c.request(method, target, **kw)  # type: ignore[arg-type]
        resp = c.read_response(method=method)
        c.request("GET", "/list", headers=[("Connection", "close")])
        follow = c.read_response()
    assert follow.body == b"hello list", "the response before was not framed correctly"
    return resp


# --- framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "body"), [("/list", b"hello list"), ("/tuple", b"hello tuple")])
def test_single_item_sequence_gets_content_length(stream_server, route, body) -> None:
    resp = fetch(stream_server, route)
    assert resp.framing == "length"
    assert resp.header("Content-Length") == str(len(body))
    assert not resp.has_header("Transfer-Encoding")
    assert resp.body == body


@pytest.mark.parametrize(
    ("route", "body"),
    [("/gen?n=5", b"block0;block1;block2;block3;block4;"), ("/two", b"part1;part2")],
)
def test_unknown_length_is_chunked_on_http11(stream_server, route, body) -> None:
    resp = fetch(stream_server, route)
    assert resp.framing == "chunked"
    assert resp.header("Transfer-Encoding") == "chunked"
    assert not resp.has_header("Content-Length")
    assert resp.body == body


def test_unknown_length_is_close_delimited_on_http10(stream_server: Server) -> None:
    with RawConn(stream_server.addr) as c:
        c.request("GET", "/gen?n=3", version="HTTP/1.0")
        resp = c.read_response()
        assert c.eof, "close-delimited body but the connection stayed open"
    assert resp.framing == "close"
    assert not resp.has_header("Transfer-Encoding")
    assert resp.closes
    assert resp.body == b"block0;block1;block2;"


def test_unknown_length_http10_keepalive_request_still_closes(stream_server: Server) -> None:
    with RawConn(stream_server.addr) as c:
        c.request("GET", "/gen?n=2", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
        resp = c.read_response()
        assert c.eof
    assert resp.body == b"block0;block1;"
    assert resp.closes


def test_empty_blocks_are_skipped(stream_server: Server) -> None:
    # An empty block written as a chunk would be the terminating "0\r\n\r\n" chunk.
    with RawConn(stream_server.addr) as c:
        c.request("GET", "/empty_blocks", headers=[("Connection", "close")])
        resp = c.read_response()
        rest = c.read_to_eof()
    assert resp.body == b"abcd"
    assert rest == b""


def test_empty_iterable(stream_server: Server) -> None:
    resp = fetch(stream_server, "/empty")
    assert resp.status == 200
    assert resp.body == b""


def test_app_content_length_with_generator_is_not_chunked(stream_server: Server) -> None:
    resp = fetch(stream_server, "/cl_gen")
    assert resp.framing == "length"
    assert resp.header_all("Content-Length") == ["21"]
    assert not resp.has_header("Transfer-Encoding")
    assert resp.body == b"block0;block1;block2;"


def test_big_single_block(stream_server: Server) -> None:
    resp = fetch(stream_server, "/big?size=2000003")
    assert len(resp.body) == 2000003
    assert resp.body[:3] == b"\x00\x01\x02"
    assert resp.body.endswith(b"z" * (2000003 % 256))


def test_each_block_is_sent_before_the_next_is_requested(stream_server: Server, gate) -> None:
    # The generator makes its second block only once the gate opens, which the test does
    # only after the first block arrived.
    with RawConn(stream_server.addr) as c:
        c.request("GET", f"/slowgen?n=2&gate={gate}", headers=[("Connection", "close")])
        first = c.read_until(b"slow0;")
        assert first is not None, "first block held back until the next one"
        assert b"slow1;" not in c.buf
        open(gate, "w").close()
        data = first + c.read_to_eof()
    (resp,) = parse_responses(data)
    assert resp.body == b"slow0;slow1;"


def test_an_iterable_of_len_one_gets_a_content_length(stream_server: Server) -> None:
    one = fetch(stream_server, "/sized?n=1")
    assert one.body == b"sized0;"
    assert one.header("Content-Length") == "7"
    assert one.header("Transfer-Encoding") is None
    two = fetch(stream_server, "/sized?n=2")
    assert two.body == b"sized0;sized1;"
    assert two.header("Content-Length") is None
    assert two.header("Transfer-Encoding") == "chunked"


def test_an_iterable_that_iterates_as_a_list_is_sent_whole(stream_server: Server) -> None:
    resp = fetch(stream_server, "/list_backed")
    assert resp.body == b"lb0;lb1;"
    assert resp.header("Content-Length") == "8"
    assert resp.header("Transfer-Encoding") is None


@pytest.mark.parametrize("busy", ["0", "1"])
def test_quick_blocks_are_not_held_while_the_app_works_on(
    stream_server: Server, busy: str, gate: str
) -> None:
    # Blocks yielded in quick succession may leave together, but none may wait for the
    # application's next block: while it sleeps, or computes holding the GIL, they go out.
    n = 40
    expected = b"".join(b"burst%d;" % i for i in range(n))
    with RawConn(stream_server.addr) as c:
        target = f"/burst?n={n}&busy={busy}&gate={gate}"
        c.request("GET", target, headers=[("Connection", "close")])
        # The application works on until the gate opens, which happens only once every
        # quick block has arrived.
        first = c.read_until(b"burst%d;" % (n - 1))
        assert first is not None, "quick blocks held while the application worked"
        assert b"end;" not in c.buf
        open(gate, "w").close()
        data = first + c.read_to_eof()
    (resp,) = parse_responses(data)
    assert resp.body == expected + b"end;"


@pytest.mark.parametrize("threads", ["1", "4"])
def test_streams_with_pauses_arrive_whole_and_in_order(start_server, threads: str) -> None:
    # Concurrent streams whose blocks are held, written at once or written by the flusher
    # while the generator sleeps: every body arrives complete, in order, correctly framed.
    server = start_server("apps.stream:app", "--threads", threads)
    n = 120

    def one(seed: int) -> bytes:
        return fetch(server, f"/jitter?n={n}&seed={seed}").body

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        bodies = list(pool.map(one, range(1, 25)))
    for seed, body in zip(range(1, 25), bodies):
        assert body == b"".join(b"j%d-%d;" % (seed, i) for i in range(n))


# --- HEAD -------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/list", "/head_cl", "/cl_gen"])
def test_head_has_get_headers_and_no_body(stream_server: Server, route: str) -> None:
    get = fetch(stream_server, route)
    head = fetch(stream_server, route, method="HEAD")
    assert head.status == get.status
    assert head.header("Content-Length") == get.header("Content-Length")
    assert head.header("Content-Type") == get.header("Content-Type")
    assert head.body == b""


def test_head_keeps_app_content_length(stream_server: Server) -> None:
    head = fetch(stream_server, "/head_cl", method="HEAD")
    assert head.header("Content-Length") == "50"


def test_head_on_streamed_response_sends_no_body(stream_server: Server) -> None:
    with RawConn(stream_server.addr) as c:
        c.request("HEAD", "/gen?n=3")
        c.request("GET", "/list", headers=[("Connection", "close")])
        head = c.read_response(method="HEAD")
        after = c.read_response()
    assert head.status == 200
    assert after.body == b"hello list", "HEAD response carried a body"


# --- no-body statuses -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_status_has_no_framing_headers(stream_server: Server, code: int) -> None:
    with RawConn(stream_server.addr) as c:
        c.request("GET", f"/status?code={code}")
        c.request("GET", "/list", headers=[("Connection", "close")])
        resp = c.read_response()
        after = c.read_response()
    assert resp.status == code
    assert resp.header("X-Status") == str(code)
    assert not resp.has_header("Transfer-Encoding")
    assert not resp.has_header("Content-Length")
    assert after.body == b"hello list", "bytes after the bodiless response"


# --- Date and Server --------------------------------------------------------------------------


def test_date_header(stream_server: Server) -> None:
    resp = fetch(stream_server, "/list")
    dates = resp.header_all("Date")
    assert len(dates) == 1
    assert dates[0].endswith(" GMT")
    when = email.utils.parsedate_to_datetime(dates[0])
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60


def test_server_header(stream_server: Server) -> None:
    servers = fetch(stream_server, "/list").header_all("Server")
    assert len(servers) == 1
    assert "ferrowsgi" in servers[0].lower()


def test_app_server_header_wins(stream_server: Server) -> None:
    assert fetch(stream_server, "/server_header").header_all("Server") == ["custom-srv/1.0"]


def test_app_date_header_wins(stream_server: Server) -> None:
    from apps.stream import APP_DATE

    assert fetch(stream_server, "/date_header").header_all("Date") == [APP_DATE]


def test_no_server_header_option(start_server) -> None:
    server = start_server("apps.stream:app", "--no-server-header")
    resp = server.request("GET", "/list")
    assert resp.status == 200
    assert not resp.has_header("Server")
    assert resp.has_header("Date")


# --- app Content-Length mismatches ------------------------------------------------------------


def test_short_body_closes_connection(badcl_server: Server) -> None:
    with RawConn(badcl_server.addr) as c:
        c.request("GET", "/short")
        resp = c.read_response(allow_truncated=True)
        assert resp.header("Content-Length") == "10"
        assert resp.body == b"abc"
        assert not resp.complete
        assert c.eof
    assert badcl_server.request("GET", "/exact").body == b"exact"


@pytest.mark.parametrize("route", ["/long", "/long_blocks"])
def test_long_body_is_cut_at_content_length(badcl_server: Server, route: str) -> None:
    with RawConn(badcl_server.addr) as c:
        c.request("GET", route)
        resp = c.read_response()
        assert resp.body == b"abc"
        assert c.at_eof(), f"bytes beyond Content-Length or connection kept: {c.buf!r}"
    assert badcl_server.request("GET", "/exact").body == b"exact"


def test_exact_content_length_keeps_alive(badcl_server: Server) -> None:
    with RawConn(badcl_server.addr) as c:
        for _ in range(3):
            c.request("GET", "/exact")
            assert c.read_response().body == b"exact"


# --- close() on the iterable ------------------------------------------------------------------


def close_count(server: Server, tag: str) -> dict:
    return server.get_json(f"/count?tag={tag}")


def assert_closed_once(server: Server, tag: str) -> None:
    assert wait_until(lambda: close_count(server, tag)["count"] >= 1), "close() never called"
    # A second call would come with the first (the same end of the response), before the
    # server answers the next request, which this is.
    assert close_count(server, tag)["count"] == 1, "close() called more than once"


def test_close_called_once_after_success(closetrack_server: Server) -> None:
    tag = new_tag()
    resp = closetrack_server.request("GET", f"/track?tag={tag}&mode=ok")
    assert resp.body == b"block1;block2;block3;"
    assert_closed_once(closetrack_server, tag)


def test_close_called_once_after_app_exception(closetrack_server: Server) -> None:
    tag = new_tag()
    with RawConn(closetrack_server.addr) as c:
        c.request("GET", f"/track?tag={tag}&mode=raise")
        resp = c.read_response(allow_truncated=True)
    assert not resp.complete or resp.status == 500
    assert_closed_once(closetrack_server, tag)
    assert closetrack_server.wait_stderr(f"boom-closetrack-{tag}")


def test_close_called_once_after_head(closetrack_server: Server) -> None:
    tag = new_tag()
    resp = closetrack_server.request("HEAD", f"/track?tag={tag}&mode=ok")
    assert resp.status == 200
    assert_closed_once(closetrack_server, tag)


# --- wsgi.file_wrapper ------------------------------------------------------------------------


@pytest.fixture
def gate() -> Iterator[str]:
    """A path the test creates when the application may go on (see apps/stream.py)."""
    d = short_tmp_dir()
    yield os.path.join(d, "gate")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def file_data() -> bytes:
    from apps.filewrapper import make_data

    return make_data()


@pytest.mark.parametrize("offset", [0, 1, 4097, 299_999])
def test_file_wrapper_honours_position(filewrapper_server, file_data, offset) -> None:
    resp = fetch_fw(filewrapper_server, f"/file?offset={offset}")
    assert resp.body == file_data[offset:]


@pytest.mark.parametrize(("offset", "cl"), [(0, 10), (100, 65536), (5, 299_995)])
def test_file_wrapper_honours_content_length(filewrapper_server, file_data, offset, cl) -> None:
    resp = fetch_fw(filewrapper_server, f"/file?offset={offset}&cl={cl}")
    assert resp.framing == "length"
    assert resp.header("Content-Length") == str(cl)
    assert resp.body == file_data[offset : offset + cl]


@pytest.mark.parametrize("offset", [0, 12345])
def test_file_wrapper_over_bytesio(filewrapper_server, file_data, offset) -> None:
    resp = fetch_fw(filewrapper_server, f"/bytesio?offset={offset}&blksize=1000")
    assert resp.body == file_data[offset:]


def test_file_wrapper_closes_the_file(filewrapper_server: Server) -> None:
    fetch_fw(filewrapper_server, "/file?offset=0&cl=100")
    assert wait_until(lambda: filewrapper_server.get_json("/closed")["closed"] is True)


def test_file_wrapper_head(filewrapper_server: Server) -> None:
    with RawConn(filewrapper_server.addr) as c:
        c.request("HEAD", "/file?offset=0&cl=1000")
        c.request("GET", "/file?offset=299990", headers=[("Connection", "close")])
        head = c.read_response(method="HEAD")
        after = c.read_response()
    assert head.header("Content-Length") == "1000"
    assert len(after.body) == 10


def fetch_fw(server: Server, target: str):
    with RawConn(server.addr, timeout=10) as c:
        c.request("GET", target)
        resp = c.read_response()
        c.request("GET", "/closed", headers=[("Connection", "close")])
        follow = c.read_response()
    assert resp.status == 200
    assert "closed" in json.loads(follow.body), "the file response was not framed correctly"
    return resp


def test_pipelined_bodies_parse(stream_server: Server) -> None:
    with RawConn(stream_server.addr) as c:
        c.send(
            b"GET /list HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /gen?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /list HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /status?code=204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = c.read_to_eof()
    resps = parse_responses(data, ["GET", "GET", "HEAD", "GET"])
    assert [r.status for r in resps] == [200, 200, 200, 204]
    assert [r.body for r in resps] == [b"hello list", b"block0;block1;", b"", b""]
