"""Options of README's table that no other test gives on the command line: the default and
port-less binds, ``--backlog``, and ``--limit-request-body``'s default and 0."""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess

import pytest
from support import RawConn, Server, build_request

pytestmark = pytest.mark.timeout(60)

GIB = 1 << 30


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def test_bind_without_a_port_listens_on_8000(start_server) -> None:
    # Any 127/8 address is this host's loopback on Linux; a random one leaves port 8000 of
    # 127.0.0.1 to whoever uses it.
    host = f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    if not port_free(host, 8000):
        pytest.skip(f"{host}:8000 is in use")
    server = start_server("apps.echo:app", binds=[host])
    assert server.url == f"http://{host}:8000"
    assert server.request("GET", "/").status == 200


def test_default_bind_is_127_0_0_1_port_8000(start_server) -> None:
    if not port_free("127.0.0.1", 8000):
        pytest.skip("127.0.0.1:8000 is in use")
    server = start_server("apps.echo:app", binds=[])
    assert server.url == "http://127.0.0.1:8000"
    assert server.request("GET", "/").status == 200


@pytest.mark.skipif(shutil.which("ss") is None, reason="no ss command (iproute2)")
@pytest.mark.parametrize("backlog", [None, "37"])
def test_backlog(start_server, backlog: str | None) -> None:
    # For a listening socket, ss reports the listen(2) backlog as its Send-Q.
    options = [] if backlog is None else ["--backlog", backlog]
    server = start_server("apps.echo:app", *options)
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"LISTEN\s+\d+\s+(\d+)\s", out)
    assert m, out
    assert m.group(1) == (backlog or "2048")


def head_only(server: Server, length: int) -> int:
    """Status of a POST announcing ``length`` body bytes and sending 10 of them."""
    with RawConn(server.addr) as c:
        c.send(build_request("POST", "/seq", headers=[("Content-Length", str(length))]))
        c.send(b"x" * 10)
        return c.read_response().status


def test_limit_request_body_default_is_1_gib(start_server) -> None:
    # Judged on Content-Length before any body byte is read (a 413 comes at once).
    server = start_server("apps.hold:app")
    assert head_only(server, GIB + 1) == 413
    assert head_only(server, GIB) == 200


def test_limit_request_body_zero_is_no_limit(start_server) -> None:
    server = start_server("apps.hold:app", "--limit-request-body", "0")
    assert head_only(server, 1 << 50) == 200
