"""The congestion control of connections from this host (``--loopback-congestion``).

The server runs in this process (``ferrowsgi.background()``), so the test can open the
server's own end of a connection from ``/proc/self/fd`` and ask the kernel which
congestion control it has.
"""

from __future__ import annotations

import os
import socket

import pytest
from support import RawConn, ipv6_available, parse_url

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(socket, "TCP_CONGESTION"), reason="Linux only"),
]


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _system_default() -> str:
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        return f.read().strip()


def _server_end_congestion(client: socket.socket) -> str:
    """The congestion control of the server's end of ``client``'s connection."""
    want_local, want_peer = client.getpeername(), client.getsockname()
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if fd == client.fileno() or not os.path.exists(f"/proc/self/fd/{fd}"):
                continue
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with s:
            try:
                if s.type != socket.SOCK_STREAM or s.family != client.family:
                    continue
                if s.getsockname() != want_local or s.getpeername() != want_peer:
                    continue
            except OSError:
                continue
            raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
            return raw.split(b"\0", 1)[0].decode()
    raise AssertionError("the server's end of the connection was not found")


def _congestion_of_served_connection(client_host: str = "127.0.0.1", **options) -> str:
    import ferrowsgi

    with ferrowsgi.background(_app, **options) as url:
        _, port = parse_url(url)
        with RawConn((client_host, port)) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            resp = conn.read_response()
            assert resp.status == 200 and resp.body == b"ok"
            return _server_end_congestion(conn.sock)


def test_loopback_listener_gives_reno_by_default() -> None:
    assert _congestion_of_served_connection() == "reno"


def test_wildcard_listener_gives_reno_to_loopback_peers() -> None:
    assert _congestion_of_served_connection(bind=["0.0.0.0:0"]) == "reno"


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_loopback_listener_gives_reno() -> None:
    assert _congestion_of_served_connection("::1", bind=["[::1]:0"]) == "reno"


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_wildcard_listener_gives_reno_to_loopback_peers() -> None:
    assert _congestion_of_served_connection("::1", bind=["[::]:0"]) == "reno"


def _own_ipv4_address() -> str | None:
    """An IPv4 address of this host that is not a loopback one, if it has any."""
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for prev, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line and "|--" in prev:
            addr = prev.split("|--", 1)[1].strip()
            if not addr.startswith("127."):
                return addr
    return None


@pytest.mark.skipif(_own_ipv4_address() is None, reason="no non-loopback IPv4 address")
def test_connection_to_own_address_is_from_this_host() -> None:
    # A client on this host that connects to the host's own address goes
    # over the loopback device too, with that address on both ends.
    addr = _own_ipv4_address()
    assert _congestion_of_served_connection(addr, bind=[f"{addr}:0"]) == "reno"
    assert _congestion_of_served_connection(addr, bind=["0.0.0.0:0"]) == "reno"


def test_system_keeps_the_system_default() -> None:
    assert _congestion_of_served_connection(loopback_congestion="system") == _system_default()


@pytest.mark.parametrize("bind", ["127.0.0.1:0", "0.0.0.0:0"])
def test_unknown_algorithm_still_serves_with_the_system_default(bind: str) -> None:
    cc = _congestion_of_served_connection(bind=[bind], loopback_congestion="nosuchcc")
    assert cc == _system_default()


@pytest.mark.parametrize("bad", ["", "a b", "x" * 16, "../bbr"])
def test_invalid_names_are_refused(bad: str) -> None:
    import ferrowsgi

    with pytest.raises(ValueError, match="congestion"):
        ferrowsgi.Server(_app, ["127.0.0.1:0"], loopback_congestion=bad)
