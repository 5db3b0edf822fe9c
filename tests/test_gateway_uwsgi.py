"""uwsgi listeners (``--bind uwsgi://HOST:PORT`` / ``uwsgi://unix:/path``): what only the uwsgi
protocol has — uWSGI's binary packet (its modifiers and sizes) spoken by hand, an empty
CONTENT_LENGTH as nginx sends it, the addresses a front end leaves out, and a unix
listener. What SCGI and uwsgi have in common (good requests, bad variables, limits, aborted
requests, and the WSGI checks through nginx ``uwsgi_pass`` and apache2 ``mod_proxy_uwsgi``)
is in tests/test_gateway_scgi_uwsgi.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
from collections.abc import Iterator

import gateway_cgi as g
import pytest
from support import Server, short_tmp_dir

# --------------------------------------------------------------------------------------------
# By hand


@pytest.fixture(scope="module", params=["1", "4"], ids=lambda t: f"threads{t}")
def uwsgi(request: pytest.FixtureRequest) -> Iterator[tuple[Server, tuple[str, int]]]:
    yield from g.by_hand_server(g.UWSGI, request.param)


def test_nginx_style_empty_content_length_is_no_body(uwsgi) -> None:
    _, addr = uwsgi
    req = g.uwsgi_request(
        [*g.base_vars("GET", "/e?read=all"), (b"CONTENT_LENGTH", b""), (b"CONTENT_TYPE", b"")],
        content_length=False,
    )
    status, _, data = g.ask(addr, req)
    assert status == 200
    out = json.loads(data)
    assert out["body"] == ""
    assert out["environ"].get("CONTENT_LENGTH", "") == ""


GOOD = g.uwsgi_vars(g.base_vars())


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (g.uwsgi_request(g.base_vars(), modifier1=5), 400, "modifier1"),
        (g.uwsgi_request(g.base_vars(), modifier1=30), 400, "modifier1"),
        (g.uwsgi_request(g.base_vars(), modifier2=1), 400, "modifier2"),
        # datasize one short of the variables, and one past them.
        (struct.pack("<BHB", 0, len(GOOD) - 1, 0) + GOOD, 400, "datasize"),
        (struct.pack("<BHB", 0, len(GOOD) + 1, 0) + GOOD + b"\0", 400, "datasize"),
        (struct.pack("<BHB", 0, 0, 0), 400, "method"),
        (g.uwsgi_request([*g.base_vars(), (b"", b"x")]), 400, "header name"),
        (g.uwsgi_request([*g.base_vars(), (b"HTTP_X", b"a\r\nb")]), 400, "header value"),
        (
            g.uwsgi_request([*g.base_vars(), (b"CONTENT_LENGTH", b"12a")], content_length=False),
            400,
            "Content-Length",
        ),
    ],
    ids=[
        "modifier1-5",
        "modifier1-30",
        "modifier2",
        "datasize-short",
        "datasize-long",
        "no-vars",
        "empty-key",
        "crlf-value",
        "bad-length",
    ],
)
def test_bad_packets_get_a_clear_answer(uwsgi, data: bytes, status: int, words: str) -> None:
    _, addr = uwsgi
    g.check_refused(g.UWSGI, g.exchange(addr, data), status, words)


def test_another_modifier_is_refused_at_the_first_byte(uwsgi) -> None:
    _, addr = uwsgi
    with socket.create_connection(addr, timeout=10) as s:
        # A uWSGI ping packet's first byte only: nothing more is needed to know.
        s.sendall(b"\x64")
        raw = g.read_to_eof(s)
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:200]
    assert b"modifier1" in raw


def without_addresses(variables: g.Vars) -> g.Vars:
    """``variables`` less the client's and the server's addresses."""
    addresses = (b"REMOTE_ADDR", b"REMOTE_PORT", b"SERVER_NAME", b"SERVER_PORT")
    return [(n, v) for n, v in variables if n not in addresses]


def test_the_listening_line_names_the_protocol() -> None:
    sock_dir = short_tmp_dir()
    sock = os.path.join(sock_dir, "u.sock")
    server = Server("apps.echo:app", binds=[f"uwsgi://unix:{sock}"]).start()
    try:
        assert server.urls == [f"uwsgi://unix:{sock}"]
        status, _, _ = g.parse_answer(g.exchange(sock, g.uwsgi_request(g.base_vars())))
        assert status == 200
        # Over a unix socket the server's name and port the front end did not send come
        # from the Host, as for HTTP; the client's address is unknown.
        bare = without_addresses(g.base_vars())
        status, _, data = g.parse_answer(g.exchange(sock, g.uwsgi_request(bare)))
        env = json.loads(data)["environ"]
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("gateway.example", "8080")
        assert env["REMOTE_ADDR"] == env["REMOTE_PORT"] == ""
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_addresses_the_front_end_did_not_send_are_the_connections(uwsgi) -> None:
    _, addr = uwsgi
    variables = without_addresses(g.base_vars("GET", "/bare"))
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(g.uwsgi_request(variables))
        local_port = s.getsockname()[1]
        status, _, data = g.parse_answer(g.read_to_eof(s))
    assert status == 200
    env = json.loads(data)["environ"]
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(addr[1]))
    # The ones it sent are its own, whatever the connection says.
    variables.append((b"REMOTE_ADDR", b"203.0.113.5"))
    status, _, data = g.ask(addr, g.uwsgi_request(variables))
    env = json.loads(data)["environ"]
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "203.0.113.5"
    assert env["REQUEST_METHOD"] == "GET" and env["REQUEST_URI"] == "/bare"
    assert env["QUERY_STRING"] == "" and env["PATH_INFO"] == "/bare"
