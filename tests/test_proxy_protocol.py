"""The PROXY protocol (HAProxy's, versions 1 and 2) on a listener (``http+proxy://``,
``fastcgi+proxy://`` or ``ajp+proxy://`` in --bind, or ``--proxy-protocol`` for every
listener): headers written by hand, good and bad, over real sockets; then a real haproxy
(Debian's package, started here on loopback) with ``send-proxy`` and ``send-proxy-v2``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fcgi_wire as fw
import pytest
from ajp_wire import AjpConn, forward_request
from support import RawConn, Server, build_request, free_port, short_tmp_dir, wait_until

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def ssl_tlv(client: int = 0x01) -> bytes:
    return tlv(0x20, bytes([client]) + b"\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A PROXY listener and a plain one, side by side."""
    with Server(
        "apps.echo:app",
        "--read-timeout",
        "1",
        binds=["http+proxy://127.0.0.1:0", "127.0.0.1:0"],
    ) as s:
        yield s


def proxy_addr(server: Server) -> tuple[str, int]:
    assert server.urls[0].startswith("http+proxy://"), server.urls
    return ("127.0.0.1", int(server.urls[0].rsplit(":", 1)[1]))


def plain_addr(server: Server) -> tuple[str, int]:
    assert server.urls[1].startswith("http://"), server.urls
    return ("127.0.0.1", int(server.urls[1].rsplit(":", 1)[1]))


def ask(addr: Any, header: bytes, headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    with RawConn(addr) as c:
        c.send(header + build_request("GET", "/x", headers=headers or []))
        resp = c.read_response()
    assert resp.status == 200, resp.body[:500]
    doc = resp.json()
    env = doc["environ"]
    env["wsgi.url_scheme"] = doc["wsgi"]["url_scheme"]
    return env


def refused(addr: Any, data: bytes) -> bytes:
    """Sends ``data`` and returns whatever comes back before the server closes."""
    with RawConn(addr) as c:
        c.send(data)
        return c.read_to_eof()


def test_v1_tcp4_names_the_client(server: Server) -> None:
    env = ask(proxy_addr(server), b"PROXY TCP4 192.0.2.10 198.51.100.20 56324 443\r\n")
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["REMOTE_PORT"] == "56324"
    assert env["SERVER_NAME"] == "198.51.100.20"
    assert env["SERVER_PORT"] == "443"
    assert env["wsgi.url_scheme"] == "http"


def test_v1_tcp6_and_unknown(server: Server) -> None:
    env = ask(proxy_addr(server), b"PROXY TCP6 2001:db8::10 2001:db8::20 4000 8080\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::10", "4000")
    env = ask(proxy_addr(server), b"PROXY UNKNOWN\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1", "UNKNOWN keeps the connection's own peer"


def test_v2_inet_with_tls(server: Server) -> None:
    body = inet("192.0.2.11", "198.51.100.21", 50000, 443) + ssl_tlv()
    body += tlv(0x02, b"www.example.com") + tlv(0x04, b"")
    env = ask(proxy_addr(server), v2(1, 0x11, body))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.11", "50000")
    assert env["wsgi.url_scheme"] == "https"
    # Without the client bit the connection is not TLS.
    body = inet("192.0.2.11", "198.51.100.21", 50000, 443) + ssl_tlv(client=0)
    assert ask(proxy_addr(server), v2(1, 0x11, body))["wsgi.url_scheme"] == "http"


def test_v2_inet6_local_and_unspec(server: Server) -> None:
    env = ask(proxy_addr(server), v2(1, 0x21, inet6("2001:db8::11", "::1", 1234, 80)))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::11", "1234")
    # LOCAL: the balancer's own health check; the real peer stays.
    env = ask(proxy_addr(server), v2(0, 0x00, b""))
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    env = ask(proxy_addr(server), v2(1, 0x00, b""))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_header_in_pieces_and_keep_alive(server: Server) -> None:
    header = b"PROXY TCP4 192.0.2.12 198.51.100.22 1111 2222\r\n"
    with RawConn(proxy_addr(server)) as c:
        for i in range(0, len(header), 7):
            c.send(header[i : i + 7])
        c.send(build_request("GET", "/1"))
        first = c.read_response().json()["environ"]
        # The header comes once per connection; later requests keep its client.
        c.send(build_request("GET", "/2") + build_request("GET", "/3"))
        second = c.read_response().json()["environ"]
        third = c.read_response().json()["environ"]
    for env in (first, second, third):
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.12", "1111")
    assert third["PATH_INFO"] == "/3"


def test_plain_listener_stays_http(server: Server) -> None:
    env = ask(plain_addr(server), b"")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    # A PROXY line on a plain listener is no request: 400.
    with RawConn(plain_addr(server)) as c:
        c.send(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" + build_request("GET", "/"))
        assert c.read_response().status == 400


def test_proxied_client_is_not_a_trusted_proxy(server: Server) -> None:
    # The peer is the client the header names (192.0.2.13), which is not in the
    # default --forwarded-allow-ips: its forwarding headers are removed.
    env = ask(
        proxy_addr(server),
        b"PROXY TCP4 192.0.2.13 198.51.100.23 1 2\r\n",
        headers=[("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-Proto", "https")],
    )
    assert env["REMOTE_ADDR"] == "192.0.2.13"
    assert "HTTP_X_FORWARDED_FOR" not in env and "HTTP_X_FORWARDED_PROTO" not in env
    assert env["wsgi.url_scheme"] == "http"


BAD_HEADERS = {
    "no-header": build_request("GET", "/"),
    "v1-lowercase": b"proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n",
    "v1-bad-port": b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n",
    "v1-leading-zero-port": b"PROXY TCP4 192.0.2.1 192.0.2.2 080 2\r\n",
    "v1-family-mismatch": b"PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n",
    "v1-bare-lf": b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",
    "v1-too-long": b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n",
    "v2-version-1": V2_SIG + b"\x11\x11\x00\x0c" + inet("192.0.2.1", "192.0.2.2", 1, 2),
    "v2-udp": v2(1, 0x12, inet("192.0.2.1", "192.0.2.2", 1, 2)),
    "v2-short-block": v2(1, 0x11, b"\x00" * 11),
    "v2-tlv-overrun": v2(1, 0x11, inet("192.0.2.1", "192.0.2.2", 1, 2) + b"\x04\x00\x09ab"),
    "v2-bad-authority": v2(
        1, 0x11, inet("192.0.2.1", "192.0.2.2", 1, 2) + tlv(0x02, b"not a host")
    ),
    # Only the 16 fixed bytes: the declared 60000 bytes are refused unread.
    "v2-too-long": V2_SIG + b"\x21\x11" + struct.pack("!H", 60000),
}


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_bad_header_closes_without_an_answer(server: Server, data: bytes) -> None:
    got = refused(proxy_addr(server), data + build_request("GET", "/"))
    assert got == b"", got[:200]
    assert server.wait_stderr(r"127\.0\.0\.1 closed: .*PROXY")


def test_header_timeout(server: Server) -> None:
    before = server.stderr_text().count("no complete PROXY header in time")
    with RawConn(proxy_addr(server), timeout=15) as c:
        c.send(b"PROXY TCP4 192.0.2.1 ")
        assert c.read_to_eof() == b""
    assert wait_until(
        lambda: server.stderr_text().count("no complete PROXY header in time") > before,
        timeout=5,
    )


def test_proxy_protocol_option_covers_every_listener() -> None:
    d = short_tmp_dir()
    sock = os.path.join(d, "pp.sock")
    try:
        with Server(
            "apps.echo:app", "--proxy-protocol", binds=["127.0.0.1:0", f"unix:{sock}"]
        ) as s:
            assert all(u.startswith("http+proxy://") for u in s.urls), s.urls
            header = b"PROXY TCP4 192.0.2.14 198.51.100.24 3333 80\r\n"
            tcp = ("127.0.0.1", int(s.urls[0].rsplit(":", 1)[1]))
            assert ask(tcp, header)["REMOTE_ADDR"] == "192.0.2.14"
            unix_env = ask(sock, header)
            assert unix_env["REMOTE_ADDR"] == "192.0.2.14"
            assert unix_env["SERVER_PORT"] == "80"
            assert refused(sock, build_request("GET", "/")) == b""
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_bad_scheme_is_one_line() -> None:
    result = subprocess.run(
        [*Server("x").command, "--bind", "http+tls://127.0.0.1:0", "apps.echo:app"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "http+tls://127.0.0.1:0" in lines[0], result.stderr


def test_fastcgi_listener_reads_the_header_before_its_records() -> None:
    """``fastcgi+proxy://``: the PROXY header comes first, then FastCGI records; the
    front end's own parameters win over the header's addresses, which fill in the rest."""
    with Server("apps.echo:app", binds=["fastcgi+proxy://127.0.0.1:0"]) as s:
        assert s.urls[0].startswith("fastcgi+proxy://127.0.0.1:"), s.urls
        addr = ("127.0.0.1", int(s.urls[0].rsplit(":", 1)[1]))
        nginx = fw.cgi_params("GET", "/x")
        bare = [
            (n, v)
            for n, v in nginx
            if n not in (b"REMOTE_ADDR", b"REMOTE_PORT", b"SERVER_NAME", b"SERVER_PORT")
        ]
        bare.append((b"HTTP_X_FORWARDED_FOR", b"203.0.113.50"))
        body = inet("192.0.2.21", "198.51.100.31", 4000, 9443) + ssl_tlv()
        with socket.create_connection(addr, timeout=10) as c:
            reader = fw.Reader(c)
            c.sendall(v2(1, 0x11, body) + fw.request(1, bare))
            doc = json.loads(reader.answer(1).body)
            env = doc["environ"]
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.21", "4000")
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("198.51.100.31", "9443")
            assert doc["wsgi"]["url_scheme"] == "https"
            # The client the header names is no trusted proxy.
            assert "HTTP_X_FORWARDED_FOR" not in env
            # The next request on the connection has no header of its own.
            c.sendall(fw.request(2, nginx))
            env = json.loads(reader.answer(2).body)["environ"]
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.10", "40123")
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("www.example.com", "8443")
        with socket.create_connection(addr, timeout=10) as c:
            c.sendall(fw.request(1, nginx))
            assert fw.Reader(c).at_eof(), "FastCGI without the PROXY header is closed unanswered"
        assert s.wait_stderr(r"127\.0\.0\.1 closed: .*PROXY")


def test_ajp_listener_reads_the_header_before_its_packets() -> None:
    """``ajp+proxy://``: the PROXY header comes first, then AJP13 packets; the forward
    request's own addresses win, the header's port fills in the missing remote port."""
    with Server("apps.echo:app", binds=["ajp+proxy://127.0.0.1:0"]) as s:
        assert s.urls[0].startswith("ajp+proxy://127.0.0.1:"), s.urls
        addr = ("127.0.0.1", int(s.urls[0].rsplit(":", 1)[1]))
        with AjpConn(addr) as c:
            c.send(
                b"PROXY TCP4 192.0.2.22 198.51.100.32 4100 8009\r\n"
                + forward_request("GET", "/x", [("Host", "h")], remote_port=None)
            )
            r = c.reply()
            assert r.status == 200, r.body[:500]
            env = r.json()["environ"]
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.7", "4100")
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
        with AjpConn(addr) as c:
            c.send(forward_request("GET", "/x", [("Host", "h")]))
            assert c.is_closed(), "AJP13 without the PROXY header is closed unanswered"


# --------------------------------------------------------------------------------------------
# A real haproxy in front.

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
)

HAPROXY_CONF = """
global
    maxconn 200
defaults
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend v1
    mode tcp
    bind 127.0.0.1:{v1_port}
    default_backend v1
backend v1
    mode tcp
    server s1 127.0.0.1:{port} send-proxy
frontend v2
    mode http
    option forwardfor
    bind 127.0.0.1:{v2_port}
    default_backend v2
backend v2
    mode http
    server s2 127.0.0.1:{port} send-proxy-v2
"""


class Haproxy:
    def __init__(self, port: int) -> None:
        self.dir = Path(short_tmp_dir())
        self.v1_port = free_port()
        self.v2_port = free_port()
        conf = HAPROXY_CONF.format(port=port, v1_port=self.v1_port, v2_port=self.v2_port)
        (self.dir / "haproxy.cfg").write_text(conf)
        assert HAPROXY is not None
        with open(self.dir / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.dir / "haproxy.cfg")],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )

    def wait_listening(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                out = (self.dir / "stderr.txt").read_text(errors="replace")
                raise AssertionError(f"haproxy exited with {self.proc.returncode}: {out}")
            try:
                for p in (self.v1_port, self.v2_port):
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(up, timeout=10), "haproxy did not start listening"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def haproxy() -> Iterator[tuple[Server, Haproxy]]:
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (scripts/setup.sh)")
    with Server("apps.echo:app", binds=["http+proxy://127.0.0.1:0"]) as s:
        h = Haproxy(int(s.urls[0].rsplit(":", 1)[1]))
        try:
            h.wait_listening()
            yield s, h
        finally:
            h.stop()


def client_from(source: str, port: int) -> socket.socket:
    """A connection to haproxy from loopback address ``source`` (not haproxy's own)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


@pytest.mark.parametrize("version", ["send-proxy", "send-proxy-v2"])
def test_haproxy_client_address_reaches_the_app(
    haproxy: tuple[Server, Haproxy], version: str
) -> None:
    server, h = haproxy
    port = h.v1_port if version == "send-proxy" else h.v2_port
    sock = client_from("127.0.0.3", port)
    client_port = sock.getsockname()[1]
    with RawConn(sock) as c:
        envs = []
        for i in range(3):
            c.send(build_request("GET", f"/k{i}", headers=[("X-Forwarded-For", "203.0.113.66")]))
            resp = c.read_response()
            assert resp.status == 200, resp.body[:300]
            envs.append(resp.json()["environ"])
    for env in envs:
        # haproxy connects to the server from 127.0.0.1; the header names its client.
        assert env["REMOTE_ADDR"] == "127.0.0.3", env
        assert env["REMOTE_PORT"] == str(client_port)
        assert env["SERVER_NAME"] == "127.0.0.1"
        assert env["SERVER_PORT"] == str(port)
        # The client (127.0.0.3) is no trusted proxy: the X-Forwarded-For it sent, and
        # the one haproxy's `option forwardfor` added, are removed.
        assert "HTTP_X_FORWARDED_FOR" not in env
    assert envs[2]["PATH_INFO"] == "/k2"
