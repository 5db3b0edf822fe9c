"""Parsing-policy statements of docs/ROBUSTNESS.md that the smuggling table does not pin
down: the default field-count limit at its edge, and a zero-padded 17-digit chunk size."""

from __future__ import annotations

import pytest
from support import RawConn, Server, build_request


@pytest.fixture(scope="module")
def counter(module_servers) -> Server:
    return module_servers("apps.counter:app")


def calls(server: Server) -> int:
    return int(server.request("GET", "/__count").body)


def status_of(server: Server, raw: bytes) -> int:
    with RawConn(server.addr) as c:
        c.send(raw)
        return c.read_response().status


@pytest.mark.parametrize(("fields", "status"), [(100, 200), (101, 431)])
def test_default_field_count_limit(counter: Server, fields: int, status: int) -> None:
    # --limit-request-fields defaults to 100 header lines, Host included.
    headers = [(f"X-{i}", "v") for i in range(fields - 2)] + [("Connection", "close")]
    before = calls(counter)
    assert status_of(counter, build_request("GET", "/", headers=headers)) == status
    assert calls(counter) == before + (status == 200)


@pytest.mark.parametrize(
    ("size", "status"), [(b"0000000000000005", 200), (b"00000000000000005", 400)]
)
def test_chunk_size_of_17_digits_is_refused_even_zero_padded(
    counter: Server, size: bytes, status: int
) -> None:
    # 16 hex digits hold any 64-bit size; a longer size line is refused whatever it holds.
    raw = build_request(
        "POST",
        "/",
        headers=[("Transfer-Encoding", "chunked"), ("Connection", "close")],
        body=size + b"\r\nhello\r\n0\r\n\r\n",
    )
    before = calls(counter)
    assert status_of(counter, raw) == status
    assert calls(counter) == before + (status == 200)


H = "Host: a\r\n"
MANY = "".join(f"X-{i}: v\r\n" for i in range(120))  # past the 100 fields of the default
LONG = "X-Long: " + "v" * 9000 + "\r\n"  # past the 8190 bytes of a field line


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        # request line (505) before header syntax (obs-fold: 400)
        (f"GET / HTTP/2.0\r\n{H}X: a\r\n b\r\n\r\n", 505),
        # header syntax (400) before the size limits (431: a field over 8190 bytes) ...
        (f"GET / HTTP/1.1\r\n{H}{LONG}X : a\r\n\r\n", 400),
        # ... but lines past the field-count limit are not read: its 431 comes first
        (f"GET / HTTP/1.1\r\n{H}{MANY}X : a\r\n\r\n", 431),
        # size limits (431) before framing (TE in HTTP/1.0: 400)
        (f"POST / HTTP/1.0\r\n{MANY}Transfer-Encoding: chunked\r\n\r\n", 431),
        # framing (TE with CL: 400) before Expect (417)
        (
            f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 1\r\n"
            "Expect: x\r\n\r\n",
            400,
        ),
        # Host (missing: 400) before Expect (417)
        ("POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: x\r\n\r\n", 400),
        # Expect (417) before the body limit (413)
        (f"POST / HTTP/1.1\r\n{H}Content-Length: 2000000000\r\nExpect: x\r\n\r\n", 417),
    ],
    ids=[
        "line_then_syntax",
        "syntax_then_limits",
        "field_count_before_later_lines",
        "limits_then_framing",
        "framing_then_expect",
        "host_then_expect",
        "expect_then_body_limit",
    ],
)
def test_rules_apply_in_a_fixed_order(counter: Server, raw: str, status: int) -> None:
    # Each request breaks two rules whose answers differ; the earlier rule decides.
    before = calls(counter)
    assert status_of(counter, raw.encode()) == status
    assert calls(counter) == before


@pytest.mark.parametrize(("mode", "called"), [("local", 1), ("all", 1), ("none", 0)])
def test_framing_error_in_a_large_chunked_body(start_server, mode: str, called: int) -> None:
    # A chunked body over 256 KiB from this host streams with `local` and `all`: the
    # application is called as it arrives and a framing error found later reaches it as the
    # read's OSError; a stored body (`none`) is decoded whole first. The client gets its 400
    # and the connection closes either way.
    server = start_server("apps.counting:app", "--stream-bodies", mode)
    body = b"%x\r\n%s\r\n" % (300 * 1024, b"x" * 300 * 1024) + b"zz\r\nbad\r\n0\r\n\r\n"
    raw = build_request("POST", "/", headers=[("Transfer-Encoding", "chunked")], body=body)
    with RawConn(server.addr) as c:
        c.send(raw)
        resp = c.read_response()
        assert (resp.status, resp.closes) == (400, True)
        assert c.at_eof()
    assert int(server.request("GET", "/_count").body) == called
