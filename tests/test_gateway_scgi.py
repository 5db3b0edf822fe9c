"""SCGI listeners (``--bind scgi://HOST:PORT`` / ``scgi://unix:/path``): what only SCGI has —
its netstring framing and the SCGI variable spoken by hand, and the bind scheme, stalled
heads and file responses over it. What SCGI and uwsgi have in common (good requests, bad
variables, limits, aborted requests, and the WSGI checks through nginx ``scgi_pass`` and
apache2 ``mod_proxy_scgi``) is in tests/test_gateway_scgi_uwsgi.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import gateway_cgi as g
import pytest
from support import Server, free_port

# --------------------------------------------------------------------------------------------
# By hand


@pytest.fixture(scope="module", params=["1", "4"], ids=lambda t: f"threads{t}")
def scgi(request: pytest.FixtureRequest) -> Iterator[tuple[Server, tuple[str, int]]]:
    yield from g.by_hand_server(g.SCGI, request.param)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"x:", 400, "netstring length"),
        (b"01:", 400, "leading zero"),
        (b"5:ab\0c\0;", 400, "comma"),
        (b"0:,", 400, "CONTENT_LENGTH"),
        (g.scgi_request(g.base_vars(), content_length=False), 400, "CONTENT_LENGTH"),
        (
            g.scgi_request([(b"CONTENT_LENGTH", b"0"), *g.base_vars()], content_length=False),
            400,
            "SCGI=1",
        ),
        (
            g.scgi_request(
                [(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"2"), *g.base_vars()],
                content_length=False,
            ),
            400,
            "not 1",
        ),
        (
            g.scgi_request(
                [(b"CONTENT_LENGTH", b"-1"), (b"SCGI", b"1"), *g.base_vars()],
                content_length=False,
            ),
            400,
            "Content-Length",
        ),
    ],
    ids=[
        "not-a-length",
        "leading-zero",
        "no-comma",
        "empty",
        "no-content-length",
        "no-scgi",
        "scgi-2",
        "bad-length",
    ],
)
def test_bad_requests_get_a_clear_answer(scgi, data: bytes, status: int, words: str) -> None:
    _, addr = scgi
    g.check_refused(g.SCGI, g.exchange(addr, data), status, words)


def test_an_oversized_length_is_refused_before_the_netstring_arrives(scgi) -> None:
    _, addr = scgi
    with socket.create_connection(addr, timeout=10) as s:
        # Only the length prefix is sent: the answer cannot wait for the 10 MB it announces.
        s.sendall(b"10000000:")
        raw = g.read_to_eof(s)
    assert raw.startswith(b"Status: 431 "), raw[:200]


# --------------------------------------------------------------------------------------------
# The bind scheme, a stalled head, a file response


@pytest.mark.parametrize("bind", ["ftp://127.0.0.1:0", "scgi://", "scgi://127.0.0.1:x"])
def test_a_bad_scheme_or_address_is_one_line(bind: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "apps.echo:app", "--bind", bind],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        cwd=os.path.dirname(__file__),
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "invalid bind address" in errors[0] and bind in errors[0], errors
    assert "Traceback" not in result.stderr


def test_the_listening_line_names_the_protocol() -> None:
    port = free_port()
    server = Server("apps.echo:app", binds=[f"scgi://127.0.0.1:{port}"]).start()
    try:
        assert server.urls == [f"scgi://127.0.0.1:{port}"]
    finally:
        server.stop()


def test_a_stalled_head_is_answered_408_in_the_protocols_form() -> None:
    port = free_port()
    server = Server(
        "apps.echo:app", "--read-timeout", "1", binds=[f"scgi://127.0.0.1:{port}"]
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(g.scgi_request(g.base_vars())[:20])
            raw = g.read_to_eof(s)
        assert raw.startswith(b"Status: 408 "), raw[:200]
    finally:
        server.stop()


def test_a_file_wrapper_response() -> None:
    port = free_port()
    fw = Server("apps.filewrapper:app", binds=[f"scgi://127.0.0.1:{port}"]).start()
    try:
        from apps.filewrapper import make_data

        for target, want in [("/file", make_data()), ("/file?offset=1000", make_data()[1000:])]:
            status, _, body = g.parse_answer(
                g.exchange(("127.0.0.1", port), g.scgi_request(g.base_vars("GET", target)))
            )
            assert status == 200
            assert body == want
    finally:
        fw.stop()
