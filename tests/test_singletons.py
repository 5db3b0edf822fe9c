"""Header fields the server or the environ gives meaning to, sent more than once or empty.

docs/ROBUSTNESS.md ("Singleton and connection fields") states the policy each test here
checks over a real socket: Host (exactly one line in HTTP/1.1; an empty value is valid),
Content-Length and Content-Type (identical copies are one value, differing ones 400),
Transfer-Encoding, Expect and Connection (lists: repeated lines are one list), and the
other connection-specific fields (passed to the application, never acted on).
"""

from __future__ import annotations

import pytest
from support import RawConn, Server, build_request

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def echo(module_servers, transport: str) -> Server:
    return module_servers("apps.echo:app", transport=transport)


@pytest.fixture(scope="module")
def counting(module_servers) -> Server:
    return module_servers("apps.counting:app")


def environ_of(server: Server, raw: bytes) -> dict:
    """Sends one raw request and returns the environ the echo app saw."""
    with RawConn(server.addr) as c:
        c.send(raw)
        resp = c.read_response()
    assert resp.status == 200, (resp.status, resp.body[:300], server.stderr_text()[-2000:])
    return resp.json()["environ"]


def app_calls(server: Server) -> int:
    with RawConn(server.addr) as c:
        c.send(b"GET /_count HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        resp = c.read_response()
    assert resp.status == 200, resp
    return int(resp.body)


def rejected(server: Server, raw: bytes, status: int = 400) -> None:
    """``raw`` gets ``status`` with Connection: close, the connection closes, and the
    application is not called."""
    before = app_calls(server)
    with RawConn(server.addr) as c:
        c.send(raw)
        resp = c.read_response()
        assert resp.status == status, (resp.status, resp.body[:200])
        assert resp.closes
        assert c.at_eof()
    assert app_calls(server) == before


# --- Host ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /e HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        b"GET /e HTTP/1.1\r\nHost: \t \r\nConnection: close\r\n\r\n",
        b"GET /e HTTP/1.0\r\nHost:\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    ],
    ids=["http11", "whitespace_only", "http10", "asterisk_form"],
)
def test_empty_host_is_accepted_and_names_the_listener(echo: Server, raw: bytes) -> None:
    env = environ_of(echo, raw)
    assert env["HTTP_HOST"] == ""
    if echo.is_unix:
        # A unix socket has no address: the name is the one a missing Host gives.
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", "80")
    else:
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (echo.host, str(echo.port))


def test_empty_host_beside_absolute_form_takes_the_authority(echo: Server) -> None:
    env = environ_of(echo, b"GET http://named:81/x HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n")
    assert env["HTTP_HOST"] == "named:81"
    assert env["PATH_INFO"] == "/x"


def test_empty_host_keeps_the_connection(echo: Server) -> None:
    with RawConn(echo.addr) as c:
        for _ in range(2):
            c.send(b"GET /k HTTP/1.1\r\nHost:\r\n\r\n")
            resp = c.read_response()
            assert resp.status == 200 and not resp.closes


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
    ],
    ids=[
        "missing",
        "two_empty",
        "two_identical",
        "empty_and_named",
        "two_http10",
        "space",
        "userinfo",
    ],
)
def test_other_host_rules_hold(counting: Server, raw: bytes) -> None:
    rejected(counting, raw)


# --- Content-Type and Content-Length -------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        b"Content-Type: text/plain\r\nContent-Type: text/html\r\n",
        b"Content-Type: text/plain\r\ncontent-type: TEXT/PLAIN\r\n",
        b"Content-Type: a/b; charset=utf-8\r\nContent-Type: a/b\r\n",
        b"Content-Type: a/b\r\nContent-Type:\r\n",
        b"Content-Type: a/b\r\nX-Between: 1\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n",
    ],
    ids=["different", "case", "parameter", "empty", "third"],
)
def test_differing_content_types_are_refused(counting: Server, fields: bytes) -> None:
    rejected(counting, b"POST / HTTP/1.1\r\nHost: a\r\n" + fields + b"Content-Length: 2\r\n\r\nhi")


def test_identical_content_types_are_one_value(echo: Server) -> None:
    raw = (
        b"POST /ct HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"content-type:  text/plain; charset=utf-8 \r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nhi"
    )
    env = environ_of(echo, raw)
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert "HTTP_CONTENT_TYPE" not in env


def test_content_length_repeats(echo: Server, counting: Server) -> None:
    env = environ_of(
        echo,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n"
        b"Connection: close\r\n\r\nhi",
    )
    assert env["CONTENT_LENGTH"] == "2"
    rejected(
        counting, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi"
    )


# --- Transfer-Encoding, Expect, Connection: lists ----------------------------------------


def test_transfer_encoding_lines_form_one_list(counting: Server) -> None:
    te = b"POST / HTTP/1.1\r\nHost: a\r\n"
    rejected(
        counting, te + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    rejected(
        counting,
        te + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
    )
    # Every line must hold a coding: an empty one beside `chunked` is refused too.
    rejected(counting, te + b"Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


def test_repeated_expect_100_continue_gets_one_interim_answer(echo: Server) -> None:
    with RawConn(echo.addr) as c:
        c.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-Continue\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n"
        )
        interim = c.read_response(skip_1xx=False)
        assert interim.status == 100
        c.send(b"hi")
        resp = c.read_response(skip_1xx=False)
        assert resp.status == 200 and resp.json()["body"] == "hi"
        assert c.at_eof()


def test_an_unknown_expectation_among_repeats_is_417(counting: Server) -> None:
    rejected(
        counting,
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: x-other\r\n"
        b"Content-Length: 2\r\n\r\nhi",
        417,
    )


def test_connection_lines_form_one_list(echo: Server) -> None:
    with RawConn(echo.addr) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
        assert c.read_response().closes
        assert c.at_eof()
    with RawConn(echo.addr) as c:
        for _ in range(2):
            c.send(b"GET / HTTP/1.0\r\nConnection: x-foo\r\nConnection: Keep-Alive\r\n\r\n")
            resp = c.read_response()
            assert resp.status == 200 and resp.header("Connection", "").lower() == "keep-alive"


def test_other_connection_fields_reach_the_app_and_are_not_acted_on(echo: Server) -> None:
    env = environ_of(
        echo,
        build_request(
            "GET",
            "/u",
            headers=[
                ("Connection", "Upgrade, Keep-Alive, close"),
                ("Upgrade", "websocket"),
                ("Keep-Alive", "timeout=99"),
                ("Keep-Alive", "max=3"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
            ],
        ),
    )
    # No protocol switch: the application answered (200), and saw every field.
    assert env["HTTP_UPGRADE"] == "websocket"
    assert env["HTTP_KEEP_ALIVE"] == "timeout=99,max=3"
    assert env["HTTP_PROXY_CONNECTION"] == "keep-alive"
    assert env["HTTP_TE"] == "trailers"
    assert env["HTTP_CONNECTION"] == "Upgrade, Keep-Alive, close"
