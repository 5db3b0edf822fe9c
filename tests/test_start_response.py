"""start_response: validation of status and headers, hop-by-hop headers, exc_info rules,
write(), and what the client sees when an app fails before or after the headers went out."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from support import RawConn, Server, new_tag, wait_until

pytestmark = pytest.mark.timeout(30)

ERROR_LINE = "Error handling request"


def error_count(server: Server) -> int:
    return server.stderr_text().count(ERROR_LINE)


def get_keepalive(server: Server, target: str) -> tuple:
    """GET on a keep-alive connection; returns (response, bytes left over after it)."""
    with RawConn(server.addr) as c:
        c.request("GET", target)
        resp = c.read_response(allow_truncated=True)
        if resp.closes or not resp.complete or c.eof:
            # Everything the server sent on this connection is in once it closes.
            leftover = c.read_to_eof()
        else:
            # The connection stays: bytes after this answer would come before the next one.
            c.request("GET", "/after", headers=[("Connection", "close")])
            leftover = c.read_until(b"HTTP/1.1 ") or b""
            leftover = leftover[: -len(b"HTTP/1.1 ")]
    return resp, leftover


def assert_app_error_500(server: Server, target: str) -> None:
    before = error_count(server)
    resp, leftover = get_keepalive(server, target)
    assert resp.status == 500, (resp.status, resp.headers, resp.body[:300])
    assert leftover == b"", f"bytes after the 500 response (split response?): {leftover!r}"
    assert not resp.has_header("X-Injected")
    assert wait_until(lambda: error_count(server) > before), "app error was not logged"


# --- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        "200",
        "OK 200",
        "20 OK",
        "2000 OK",
        "abc OK",
        "",
        "200\tOK",
        "200 OK\r\nX-Injected: yes",
        "200 OK\nX-Injected: yes",
    ],
)
def test_bad_status_is_app_error(errors_server: Server, status: str) -> None:
    assert_app_error_500(errors_server, f"/status?s={quote(status, safe='')}")


@pytest.mark.parametrize("kind", ["int", "bytes", "none"])
def test_non_str_status_is_app_error(errors_server: Server, kind: str) -> None:
    assert_app_error_500(errors_server, f"/status_obj?kind={kind}")


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [("200 OK", 200, "OK"), ("599 Custom Reason Phrase", 599, "Custom Reason Phrase")],
)
def test_valid_status_is_sent_verbatim(errors_server: Server, status, code, reason) -> None:
    resp = errors_server.request("GET", f"/status?s={quote(status)}")
    assert (resp.status, resp.reason) == (code, reason)
    assert resp.body == b"status was accepted"


def test_latin1_status_and_headers_go_out_as_latin1_bytes(errors_server: Server) -> None:
    # PEP 3333: status and headers are str of latin-1 characters, sent one byte each;
    # str subclasses (stored apart from the object) are read the same way.
    resp = errors_server.request("GET", "/latin1")
    assert resp.status == 200
    assert resp.body == b"latin-1 head"
    assert resp.raw_head.startswith(b"HTTP/1.1 200 Caf\xe9\r\n")
    assert b"\r\nX-Latin: caf\xe9 \xff\r\n" in resp.raw_head
    assert b"\r\nX-Sub: sub-class value\r\n" in resp.raw_head
    assert b"\r\nX-Sub-Latin: \xe9t\xe9\r\n" in resp.raw_head


@pytest.mark.parametrize(
    "form", ["keywords", "headers_keyword", "exc_info_keyword", "exc_info_none"]
)
def test_start_response_takes_its_arguments_by_position_or_name(
    errors_server: Server, form: str
) -> None:
    resp = errors_server.request("GET", f"/call?form={form}")
    assert (resp.status, resp.body) == (200, b"called")


@pytest.mark.parametrize(
    "form", ["no_arguments", "no_headers", "four_positional", "unknown_keyword", "status_twice"]
)
def test_start_response_called_wrongly_is_a_type_error(errors_server: Server, form: str) -> None:
    before = errors_server.stderr_text().count("TypeError: start_response()")
    assert_app_error_500(errors_server, f"/call?form={form}")
    assert wait_until(
        lambda: errors_server.stderr_text().count("TypeError: start_response()") > before
    ), errors_server.stderr_text()[-2000:]


# --- headers ----------------------------------------------------------------------------------

BAD_HEADER_CASES = [
    "list_not_tuple",
    "bytes_name",
    "bytes_value",
    "int_value",
    "non_latin1",
    "name_space",
    "name_colon",
    "empty_name",
    "crlf_injection",
    "lf_injection",
    "cr_value",
    "nul_value",
    "name_crlf",
    "three_tuple",
    "headers_tuple",
]


@pytest.mark.parametrize("case", BAD_HEADER_CASES)
def test_bad_header_is_app_error(errors_server: Server, case: str) -> None:
    assert_app_error_500(errors_server, f"/header?case={case}")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Connection", "keep-alive"),
        ("Connection", "upgrade"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("transfer-encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authenticate", "Basic"),
        ("PROXY-AUTHORIZATION", "Basic eA=="),
        ("Trailers", "x"),
        ("te", "trailers"),
        ("UPGRADE", "h2c"),
        ("Connection", "closed"),
    ],
)
def test_hop_by_hop_header_is_app_error(errors_server: Server, name: str, value: str) -> None:
    assert_app_error_500(errors_server, f"/hop?name={quote(name)}&value={quote(value)}")


def test_connection_close_from_app_is_honoured(errors_server: Server) -> None:
    with RawConn(errors_server.addr) as c:
        c.request("GET", "/conn_close")
        resp = c.read_response()
        assert resp.status == 200
        assert resp.body == b"closed"
        assert resp.closes
        assert c.at_eof(), "server kept the connection open after the app's Connection: close"


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("x", "ok", "a\r\nX-Injected: yes"),
        ("x", "ok", "nul\x00"),
        ("cl", "29", "29 "),
        ("cl", "29", ""),
        ("conn", "close", "keep-alive"),
    ],
)
def test_a_header_name_seen_before_still_has_its_value_checked(
    errors_server: Server, name: str, good: str, bad: str
) -> None:
    # The application passes the same name object each time; after requests
    # that accepted it, a bad value with it is still refused.
    target = f"/same_name?name={name}&value="
    for _ in range(3):
        with RawConn(errors_server.addr) as c:
            c.request("GET", target + quote(good))
            resp = c.read_response()
        assert resp.status == 200, (resp.status, resp.body[:300])
        assert resp.body == b"same-name header was accepted"
    assert_app_error_500(errors_server, target + quote(bad))
    with RawConn(errors_server.addr) as c:
        c.request("GET", target + quote(good))
        assert c.read_response().status == 200


# --- calling start_response twice -------------------------------------------------------------


def test_second_call_without_exc_info_is_error(errors_server: Server) -> None:
    assert_app_error_500(errors_server, "/twice")


def test_exc_info_before_headers_sent_replaces_them(errors_server: Server) -> None:
    resp = errors_server.request("GET", "/exc_replace")
    assert resp.status == 500
    assert resp.reason == "Oops"
    assert resp.header("X-Second") == "yes"
    assert not resp.has_header("X-First")
    assert resp.body == b"replaced"


def test_exc_info_after_headers_sent_reraises(errors_server: Server) -> None:
    tag = new_tag()
    resp, _ = get_keepalive(errors_server, f"/exc_reraise?tag={tag}")
    assert resp.status == 200
    assert not resp.complete, "response was completed although the app failed mid-body"
    assert resp.body.startswith(b"headers are out;")
    assert b"did not re-raise" not in resp.body
    assert errors_server.wait_stderr(f"reraised-same-{tag}")
    assert f"not-reraised-{tag}" not in errors_server.stderr_text()


# --- app exceptions ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["before", "after_start"])
def test_exception_before_body_is_500(errors_server: Server, route: str) -> None:
    tag = new_tag()
    resp, leftover = get_keepalive(errors_server, f"/{route}?tag={tag}")
    assert resp.status == 500
    assert leftover == b""
    assert tag.encode() not in resp.body, "traceback leaked into the 500 page without --debug"
    assert b"Traceback" not in resp.body
    marker = f"boom-{route.replace('_', '-')}-{tag}"
    assert errors_server.wait_stderr(marker), "exception not logged"
    text = errors_server.stderr_text()
    assert ERROR_LINE in text
    assert "Traceback" in text


def test_exception_after_first_block_aborts(errors_server: Server) -> None:
    tag = new_tag()
    with RawConn(errors_server.addr) as c:
        c.request("GET", f"/mid?tag={tag}")
        resp = c.read_response(allow_truncated=True)
        assert resp.status == 200
        assert resp.framing == "chunked"
        assert not resp.complete, "terminating chunk sent although the app failed"
        assert resp.body == b"first block;"
        assert c.at_eof()
    assert errors_server.wait_stderr(f"boom-mid-{tag}")


def test_str_block_first_is_500(errors_server: Server) -> None:
    assert_app_error_500(errors_server, "/str_first")


def test_str_block_after_bytes_aborts(errors_server: Server) -> None:
    before = error_count(errors_server)
    with RawConn(errors_server.addr) as c:
        c.request("GET", "/str_mid")
        resp = c.read_response(allow_truncated=True)
        assert resp.status == 200
        assert not resp.complete
        assert b"then a str" not in resp.body
        assert c.at_eof()
    assert wait_until(lambda: error_count(errors_server) > before)


def test_server_survives_app_errors(errors_server: Server) -> None:
    for route in ("/before", "/mid", "/str_first", "/str_mid", "/twice", "/exc_reraise"):
        with RawConn(errors_server.addr) as c:
            c.request("GET", route, headers=[("Connection", "close")])
            c.read_response(allow_truncated=True)
    resp = errors_server.request("GET", f"/status?s={quote('200 Still Alive')}")
    assert (resp.status, resp.reason) == (200, "Still Alive")


def test_debug_error_page_has_traceback(start_server) -> None:
    server = start_server("apps.errors:app", "--debug")
    tag = new_tag()
    resp = server.request("GET", f"/before?tag={tag}")
    assert resp.status == 500
    assert f"boom-before-{tag}".encode() in resp.body
    assert b"Traceback" in resp.body


# --- write() ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/mixed", b"first;second"),
        ("/only", b"all via write"),
        ("/cl", b"hello world!"),
        ("/many", b"w0;w1;w2;gen1;gen2"),
    ],
)
def test_write_callable_output_precedes_iterable(writecb_server, route, body) -> None:
    with RawConn(writecb_server.addr) as c:
        c.request("GET", route)
        resp = c.read_response()
        assert resp.status == 200
        assert resp.body == body
        # the connection is still usable: the response was framed correctly
        c.request("GET", "/mixed", headers=[("Connection", "close")])
        assert c.read_response().body == b"first;second"


def test_write_with_app_content_length_is_not_chunked(writecb_server: Server) -> None:
    resp = writecb_server.request("GET", "/cl")
    assert resp.framing == "length"
    assert resp.header("Content-Length") == "12"
    assert not re.search("chunked", resp.header("Transfer-Encoding") or "")
