"""ferrowsgi speaking AJP13 (``--bind ajp://…``): behind Debian's apache2 with
mod_proxy_ajp (started by these tests on loopback, skipped when apache2 is missing), and
by hand over raw sockets (bad input, limits, body packets asked for with GET_BODY_CHUNK,
CPing/CPong, connection reuse, the shared secret).

Apache sends the backend URL's path percent-encoded (re-encoded by default, as the client
sent it with ``nocanon``) and the query apart; the server decodes the path once into
PATH_INFO, like an HTTP request's. ``ProxyPass /app/ ajp://…/`` sends the path without
``/app``: AJP has no SCRIPT_NAME, so SCRIPT_NAME is empty.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ajp_wire import MAX_BODY_PIECE, AjpConn, ajp_string, body_packet, forward_request, packet
from support import Server, free_port, short_tmp_dir, wait_until

APACHE = shutil.which("apache2") or (
    "/usr/sbin/apache2" if os.path.exists("/usr/sbin/apache2") else None
)
MODULES = Path("/usr/lib/apache2/modules")
SECRET = "s3cret-ajp"


def listen_addr(server: Server, index: int = 0) -> tuple[str, int]:
    m = re.fullmatch(r"ajp://([\d.]+):(\d+)/?", server.urls[index])
    assert m, server.urls
    return m.group(1), int(m.group(2))


# --------------------------------------------------------------------------------------------
# Raw-socket tests


@pytest.fixture(scope="module", params=["1", "4"], ids=["threads1", "threads4"])
def ajp_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    sock_dir = short_tmp_dir()
    server = Server(
        "apps.proxied:app",
        "--threads",
        request.param,
        binds=["ajp://127.0.0.1:0", f"ajp://unix:{sock_dir}/ajp.sock"],
    ).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_unix_socket_listener(ajp_server: Server) -> None:
    assert ajp_server.urls[1].startswith("ajp://unix:/")
    path = ajp_server.urls[1][len("ajp://unix:") :]
    with AjpConn(path) as c:
        for i in range(2):
            c.send(forward_request("GET", f"/u/{i}", remote_addr="198.51.100.4"))
            r = c.reply()
            assert r.status == 200
            env = r.json()["environ"]
            assert env["PATH_INFO"] == f"/u/{i}"
            assert env["REMOTE_ADDR"] == "198.51.100.4"
            assert r.reuse is True


def test_request_environ_and_reuse(ajp_server: Server) -> None:
    addr = listen_addr(ajp_server)
    with AjpConn(addr) as c:
        for i in range(3):
            c.send(
                forward_request(
                    "GET",
                    "/a%20b/%C3%A9",
                    [("Host", "example.com"), ("X-Trace", f"t{i}"), ("X_Trace", "spoof")],
                    query=f"q={i}&x=%20",
                )
            )
            r = c.reply()
            assert r.status == 200, r.body[:500]
            assert r.reuse is True
            env = r.json()["environ"]
            assert env["REQUEST_METHOD"] == "GET"
            assert env["PATH_INFO"] == "/a b/\u00c3\u00a9"
            assert env["QUERY_STRING"] == f"q={i}&x=%20"
            assert env["REQUEST_URI"] == f"/a%20b/%C3%A9?q={i}&x=%20"
            assert env["SCRIPT_NAME"] == ""
            assert env["REMOTE_ADDR"] == "192.0.2.7"
            assert env["REMOTE_PORT"] == "40123"
            assert env["SERVER_NAME"] == "example.com"
            assert env["SERVER_PORT"] == "8080"
            assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
            assert env["HTTP_HOST"] == "example.com"
            assert env["HTTP_X_TRACE"] == f"t{i}"
            assert env["wsgi.url_scheme"] == "http"
            assert "HTTPS" not in env


def test_https_and_stored_method(ajp_server: Server) -> None:
    with AjpConn(listen_addr(ajp_server)) as c:
        c.send(forward_request("PATCH", "/p", [("Host", "h")], ssl=True))
        r = c.reply()
        env = r.json()["environ"]
        assert env["REQUEST_METHOD"] == "PATCH"
        assert env["wsgi.url_scheme"] == "https"
        assert env["HTTPS"] == "on"


def test_cping_between_requests(ajp_server: Server) -> None:
    with AjpConn(listen_addr(ajp_server)) as c:
        c.send(packet(b"\x0a"))
        assert c.read_packet() == b"\x09"
        c.send(forward_request("GET", "/x"))
        assert c.reply().status == 200
        c.send(packet(b"\x0a") + packet(b"\x0a"))
        assert c.read_packet() == b"\x09"
        assert c.read_packet() == b"\x09"
        c.send(forward_request("GET", "/y"))
        assert c.reply().json()["environ"]["PATH_INFO"] == "/y"
        # A CPing and the first half of a request, then the rest: one CPong, one answer.
        req = forward_request("GET", "/z")
        c.send(packet(b"\x0a") + req[:7])
        assert c.read_packet() == b"\x09"
        time.sleep(0.05)
        c.send(req[7:])
        r = c.reply()
        assert r.json()["environ"]["PATH_INFO"] == "/z"
        c.send(forward_request("GET", "/w"))
        assert c.reply().json()["environ"]["PATH_INFO"] == "/w"


def test_body_asked_for_with_get_body_chunk(ajp_server: Server) -> None:
    data = os.urandom(50_000)
    pieces = [data[i : i + 8186] for i in range(0, len(data), 8186)]
    with AjpConn(listen_addr(ajp_server)) as c:
        c.send(
            forward_request("POST", "/upload", [("Content-Length", str(len(data)))])
            + body_packet(pieces[0])
        )
        r = c.reply(pieces[1:])
        assert r.status == 200
        assert len(r.asked) == len(pieces) - 1
        got = r.json()["body"].encode("latin-1")
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert r.reuse is True
        c.send(forward_request("GET", "/after"))
        assert c.reply().json()["environ"]["PATH_INFO"] == "/after"


def test_body_of_unknown_length(ajp_server: Server) -> None:
    with AjpConn(listen_addr(ajp_server)) as c:
        c.send(forward_request("POST", "/up", [("Transfer-Encoding", "chunked")]))
        r = c.reply([b"hello ", b"chunked ", b"world"])
        assert r.status == 200
        assert r.json()["body"] == "hello chunked world"
        env = r.json()["environ"]
        assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] == ""
        assert r.reuse is True
        c.send(forward_request("GET", "/after"))
        assert c.reply().status == 200


def test_a_body_packet_sent_before_it_was_asked_for_is_refused(ajp_server: Server) -> None:
    """The web server sends a body packet only when asked, but for the first of a
    Content-Length body. One sent early is refused with a 400 and the connection closes:
    the first packet of a chunked body, and a second packet behind the one asked for while
    the application reads a body past the part the server holds before calling it. Taken
    for the answer to a question not yet asked, it would leave the web server a packet
    ahead; the application's read waited for the question that never went out, on a thread
    that used a whole core until the deadline."""
    addr = listen_addr(ajp_server)
    with AjpConn(addr) as c:
        c.send(
            forward_request("POST", "/up", [("Transfer-Encoding", "chunked")])
            + body_packet(b"early")
        )
        r = c.reply()
        assert (r.status, r.body) == (400, b"AJP body packet that was not asked for\n")
        assert r.reuse is False
        assert c.is_closed()
    piece = os.urandom(MAX_BODY_PIECE)
    with AjpConn(addr) as c:
        c.send(forward_request("POST", "/upload", [("Transfer-Encoding", "chunked")]))
        sent = 0
        while sent < 400_000:  # past the 256 KiB read before the application runs
            p = c.read_packet()
            assert p is not None and p[0] == 6, p
            c.send(body_packet(piece))
            sent += len(piece)
        p = c.read_packet()
        assert p is not None and p[0] == 6, p
        c.send(body_packet(piece) + body_packet(piece))
        r = c.reply()
        assert r.status == 400, (r.status, r.body[:300])
        assert r.reuse is False
        assert c.is_closed()
    with AjpConn(addr) as c:
        c.send(forward_request("GET", "/alive"))
        assert c.reply().status == 200


@pytest.mark.parametrize("size", [100_000, 600_000])
def test_unread_body_leaves_the_connection_usable(ajp_server: Server, size: int) -> None:
    """A body the application does not read: a small one was read whole before the
    application ran; of a large one (streamed to the application) only the packet already
    owed is read afterwards, nothing more is asked for, and the connection goes on."""
    body = os.urandom(size)
    pieces = [body[i : i + 8186] for i in range(0, size, 8186)]
    with AjpConn(listen_addr(ajp_server)) as c:
        c.send(
            forward_request("POST", "/x", [("Content-Length", str(size))], query="read=none")
            + body_packet(pieces[0])
        )
        r = c.reply(pieces[1:])
        assert r.status == 200
        assert r.json()["body"] == ""
        assert r.reuse is True
        if size > 256 * 1024:
            assert len(r.asked) < len(pieces) - 1
        c.send(forward_request("GET", "/next"))
        assert c.reply().json()["environ"]["PATH_INFO"] == "/next"


def test_large_response_in_packets(ajp_server: Server) -> None:
    size = 100_000
    with AjpConn(listen_addr(ajp_server)) as c:
        c.send(forward_request("GET", "/stream/big", query=f"size={size}"))
        r = c.reply()
        assert r.status == 200
        assert len(r.body) == size
        assert all(len(ch) <= 8184 for ch in r.chunks)
        assert r.body[:256] == bytes(range(256))


def test_streamed_blocks_are_flushed_as_they_come(ajp_server: Server) -> None:
    gate = Path(short_tmp_dir()) / "gate"
    try:
        with AjpConn(listen_addr(ajp_server)) as c:
            c.send(forward_request("GET", "/stream/slowgen", query=f"n=2&gate={gate}"))
            assert c.read_packet()[0] == 4  # SEND_HEADERS
            # The first block, then an empty chunk (Apache's "flush"), before the
            # generator goes on.
            assert c.read_packet() == b"\x03\x00\x06slow0;\x00"
            assert c.read_packet() == b"\x03\x00\x00\x00"
            gate.write_text("open")
            r = c.reply()
            assert r.body == b"slow1;"
            assert r.reuse is True
    finally:
        shutil.rmtree(gate.parent, ignore_errors=True)


def test_malformed_packets_are_refused(ajp_server: Server) -> None:
    addr = listen_addr(ajp_server)
    bad = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # not AJP
        (b"\x12\x34\x1f\xfd" + b"\0" * 10, 431),  # longer than a packet
        (packet(b"\x02\x63" + ajp_string("HTTP/1.1") + ajp_string("/")), 400),  # method 99
        (packet(b"\x02\x02" + ajp_string("HTTP/1.1") + ajp_string("/")), 400),  # cut short
        (packet(b"\x03"), 400),  # not a request
        (forward_request("GET", "/", [("X", "a\nb")]), 400),  # LF in a value
        (forward_request("GET", "/", [("X", "v")] * 101), 431),  # too many headers
    ]
    for data, status in bad:
        with AjpConn(addr) as c:
            c.send(data)
            r = c.reply()
            assert r.status == status, (data, r.status, r.body)
            assert r.reuse is False
            assert c.is_closed()
    # Still serving.
    with AjpConn(addr) as c:
        c.send(forward_request("GET", "/alive"))
        assert c.reply().status == 200


def test_client_gone_mid_body(ajp_server: Server) -> None:
    addr = listen_addr(ajp_server)
    for _ in range(3):
        c = AjpConn(addr)
        c.send(
            forward_request("POST", "/x", [("Content-Length", "30000")]) + body_packet(b"z" * 100)
        )
        c.close()
    with AjpConn(addr) as c:
        c.send(forward_request("GET", "/alive"))
        assert c.reply().status == 200


def test_shutdown_packet_is_not_obeyed(ajp_server: Server) -> None:
    addr = listen_addr(ajp_server)
    with AjpConn(addr) as c:
        c.send(packet(b"\x07"))
        r = c.reply()
        assert r.status == 400
        assert r.reuse is False
        assert c.is_closed()
    with AjpConn(addr) as c:
        c.send(forward_request("GET", "/alive"))
        assert c.reply().status == 200


@pytest.fixture(scope="module")
def secret_server() -> Iterator[Server]:
    # Also mounted under a prefix with --root-path, as an application behind
    # `ProxyPass /sec/ ajp://…/sec/` would be.
    server = Server(
        "apps.proxied:app",
        "--ajp-secret",
        SECRET,
        "--root-path",
        "/sec",
        binds=["ajp://127.0.0.1:0"],
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_secret_required(secret_server: Server) -> None:
    addr = listen_addr(secret_server)
    for secret in (None, "wrong", SECRET + "x"):
        with AjpConn(addr) as c:
            c.send(forward_request("GET", "/", secret=secret))
            r = c.reply()
            assert r.status == 403
            assert r.reuse is False
            assert c.is_closed()
    with AjpConn(addr) as c:
        c.send(forward_request("GET", "/sec/ok", secret=SECRET))
        r = c.reply()
        assert r.status == 200
        env = r.json()["environ"]
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/sec", "/ok")


# --------------------------------------------------------------------------------------------
# Behind apache2 (mod_proxy_ajp)

CONF = """
ServerRoot "{dir}"
Listen 127.0.0.1:{port}
PidFile {dir}/httpd.pid
ErrorLog {dir}/error.log
LogLevel warn
{user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_ajp_module {modules}/mod_proxy_ajp.so
ServerName localhost
KeepAlive On
MaxKeepAliveRequests 0
# Workers are shared by URL prefix, and a worker's parameters are the ones of the line
# that defines it first. No flushpackets: the server flushes each block of a streamed
# response itself.
ProxyPass /app/ ajp://127.0.0.1:{ajp}/ ttl=4
ProxyPass /nc/ ajp://127.0.0.1:{ajp}/nc/ nocanon
ProxyPass /sec/ ajp://127.0.0.1:{secret_port}/sec/ secret={secret} ttl=4
ProxyPass / ajp://127.0.0.1:{ajp}/
"""


class Apache:
    def __init__(self, ajp_port: int, secret_port: int) -> None:
        assert APACHE is not None
        self.dir = Path(short_tmp_dir())
        self.port = free_port()
        user = "User daemon\nGroup daemon" if os.geteuid() == 0 else ""
        conf = CONF.format(
            dir=self.dir,
            port=self.port,
            ajp=ajp_port,
            secret_port=secret_port,
            secret=SECRET,
            modules=MODULES,
            user=user,
        )
        (self.dir / "httpd.conf").write_text(conf)
        with open(self.dir / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(
                [APACHE, "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def wait_listening(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                err = (self.dir / "stderr.txt").read_text(errors="replace")
                raise AssertionError(f"apache2 exited with {self.proc.returncode}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(up, timeout=10), "apache2 did not start listening"

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def errors(self) -> list[str]:
        return [ln for ln in self.error_log().splitlines() if ":error]" in ln]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def apache(ajp_server: Server, secret_server: Server) -> Iterator[Apache]:
    if APACHE is None or not (MODULES / "mod_proxy_ajp.so").exists():
        pytest.skip("apache2 with mod_proxy_ajp is not installed (scripts/setup.sh)")
    a = Apache(listen_addr(ajp_server)[1], listen_addr(secret_server)[1])
    try:
        a.wait_listening()
        yield a
    finally:
        a.stop()


def fetch(
    apache: Apache,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes, http.client.HTTPConnection]:
    c = conn or http.client.HTTPConnection("127.0.0.1", apache.port, timeout=20)
    c.request(method, path, body=body, headers=headers or {})
    resp = c.getresponse()
    return resp.status, resp.read(), c


def environ_of(apache: Apache, path: str, **kw) -> dict:
    status, data, c = fetch(apache, "GET", path, **kw)
    c.close()
    assert status == 200, data[:500]
    return json.loads(data)["environ"]


def test_encoded_paths_and_queries_through_apache(apache: Apache) -> None:
    env = environ_of(apache, "/a%20b/%C3%A9/%7E/%2541?q=a%20b&r=%2F&s=%C3%A9")
    assert env["PATH_INFO"] == "/a b/\u00c3\u00a9/~/%41"
    assert env["QUERY_STRING"] == "q=a%20b&r=%2F&s=%C3%A9"
    assert env["REQUEST_URI"].startswith("/a%20b/%C3%A9/")
    # nocanon: the client's path exactly as sent.
    env = environ_of(apache, "/nc/a%20b/%7E/%2541?z=1")
    assert env["REQUEST_URI"] == "/nc/a%20b/%7E/%2541?z=1"
    assert env["PATH_INFO"] == "/nc/a b/~/%41"
    assert env["QUERY_STRING"] == "z=1"


def test_script_name_and_path_info_as_apache_splits_them(apache: Apache) -> None:
    env = environ_of(apache, "/app/x/y?k=v")
    # mod_proxy_ajp sends the backend path: the /app/ prefix is Apache's alone.
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/x/y"
    assert env["QUERY_STRING"] == "k=v"


def test_client_address_and_server_variables_through_apache(apache: Apache) -> None:
    c = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=20)
    c.connect()
    client_port = c.sock.getsockname()[1]
    status, data, _ = fetch(
        apache, "GET", "/who", headers={"X-Under": "dash", "X_Under": "underscore"}, conn=c
    )
    c.close()
    assert status == 200
    env = json.loads(data)["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["SERVER_PORT"] == str(apache.port)
    assert env["SERVER_NAME"] in ("127.0.0.1", "localhost")
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_UNDER"] == "dash"


def test_methods_through_apache(apache: Apache) -> None:
    for method in ("PUT", "DELETE", "PATCH", "PROPFIND", "OPTIONS"):
        status, data, c = fetch(apache, method, "/m")
        c.close()
        assert status == 200, (method, data[:300])
        assert json.loads(data)["environ"]["REQUEST_METHOD"] == method
    status, data, c = fetch(apache, "HEAD", "/m")
    c.close()
    assert status == 200
    assert data == b""


def test_one_mib_body_with_content_length_through_apache(apache: Apache) -> None:
    body = os.urandom(1024 * 1024)
    status, data, c = fetch(apache, "POST", "/upload?read=chunks&n=65536", body=body)
    c.close()
    assert status == 200, data[:300]
    got = json.loads(data)["body"].encode("latin-1")
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    size = 5 * 1024 * 1024
    status, data, c = fetch(apache, "GET", f"/stream/big?size={size}")
    c.close()
    assert status == 200
    assert len(data) == size
    assert data[:256] == bytes(range(256))


@pytest.mark.parametrize("sizes", [(1, 5000, 20000, 3), (300_000, 1, 400_000)])
def test_chunked_body_from_the_client_through_apache(apache: Apache, sizes: tuple) -> None:
    # The second is larger than the server buffers before calling the application: it reads
    # the body as the packets come, asking for each.
    pieces = [os.urandom(n) for n in sizes]

    def gen() -> Iterator[bytes]:
        yield from pieces

    c = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=20)
    c.request("POST", "/chunked", body=gen(), encode_chunked=True)
    resp = c.getresponse()
    data = resp.read()
    c.close()
    assert resp.status == 200, data[:300]
    doc = json.loads(data)
    assert doc["body"].encode("latin-1") == b"".join(pieces)
    assert doc["environ"]["HTTP_TRANSFER_ENCODING"] == "chunked"


def test_streamed_response_arrives_before_the_generator_ends(apache: Apache) -> None:
    gate = Path(short_tmp_dir()) / "gate"
    try:
        s = socket.create_connection(("127.0.0.1", apache.port), timeout=20)
        s.sendall(
            f"GET /stream/slowgen?n=2&gate={gate} HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        seen = b""
        while b"slow0;" not in seen:
            data = s.recv(65536)
            assert data, seen
            seen += data
        assert b"slow1;" not in seen
        gate.write_text("open")
        while data := s.recv(65536):
            seen += data
        s.close()
        assert b"slow1;" in seen
    finally:
        shutil.rmtree(gate.parent, ignore_errors=True)


def backend_connections(port: int) -> set[int]:
    """Apache-side ports of every TCP connection (any state) to the backend ``port``."""
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, remote = line.split()[1:3]
            if int(remote.split(":")[1], 16) == port:
                peers.add(int(local.split(":")[1], 16))
    return peers


def test_keep_alive_to_apache(apache: Apache, ajp_server: Server) -> None:
    port = listen_addr(ajp_server)[1]
    before = backend_connections(port)
    c = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=20)
    for i in range(60):
        status, data, _ = fetch(apache, "GET", f"/k/{i}", conn=c)
        assert status == 200
        assert json.loads(data)["environ"]["PATH_INFO"] == f"/k/{i}"
    c.close()
    new = backend_connections(port) - before
    # One Apache thread served them all over its pooled connection (a fresh connection per
    # request would leave 60 behind, TIME_WAIT included).
    assert len(new) <= 2, new
    assert apache.errors() == [], apache.error_log()[-2000:]


def test_secret_and_root_path_through_apache(apache: Apache) -> None:
    env = environ_of(apache, "/sec/z%20y?q=1")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/sec", "/z y")
    assert env["QUERY_STRING"] == "q=1"


def test_no_errors_in_apache_log(apache: Apache) -> None:
    for i in range(20):
        status, _, c = fetch(apache, "POST", f"/e/{i}", body=b"x" * (i * 1000))
        c.close()
        assert status == 200
    assert apache.errors() == [], apache.error_log()[-2000:]


def test_access_log_names_the_client_not_apache() -> None:
    server = Server(
        "apps.proxied:app",
        "--access-logfile",
        "-",
        "--access-logformat",
        "%(h)s %({REMOTE_PORT}e)s %(r)s %(s)s",
        binds=["ajp://127.0.0.1:0"],
    ).start()
    try:
        with AjpConn(listen_addr(server)) as c:
            c.send(forward_request("GET", "/logged", query="a=1", remote_addr="203.0.113.9"))
            assert c.reply().status == 200
        line = "203.0.113.9 40123 GET /logged?a=1 HTTP/1.1 200"
        assert server.wait_stdout(re.escape(line)), server.stdout_text()
    finally:
        server.stop()


def test_background_server_speaks_ajp_with_its_secret() -> None:
    import ferrowsgi

    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REMOTE_ADDR"].encode()]

    with ferrowsgi.background(hello, bind=["ajp://127.0.0.1:0"], ajp_secret=SECRET) as url:
        m = re.fullmatch(r"ajp://([\d.]+):(\d+)/?", url)
        assert m, url
        addr = (m.group(1), int(m.group(2)))
        with AjpConn(addr) as c:
            c.send(forward_request("GET", "/", secret=SECRET, remote_addr="192.0.2.55"))
            r = c.reply()
            assert (r.status, r.body) == (200, b"192.0.2.55")
        with AjpConn(addr) as c:
            c.send(forward_request("GET", "/"))
            assert c.reply().status == 403


@pytest.mark.parametrize("threads", ["1", "4"])
def test_a_deadline_is_answered_504_while_the_thread_is_in_c_code(
    tmp_path: Path, threads: str
) -> None:
    """The deadline watcher sends the AJP codec's own 504 while the request's thread is
    still in C code (libc sleep(3) holding the GIL): the answer is there before the thread
    comes back and marks it."""
    server = Server(
        "apps.deadlines:app",
        *("--threads", threads, "--timeout", "1", "--timeout-grace", "30"),
        binds=["ajp://127.0.0.1:0"],
    ).start()
    mark = tmp_path / "mark"
    try:
        with AjpConn(listen_addr(server), timeout=20) as c:
            c.send(forward_request("GET", "/cgil", query=f"s=5&mark={mark}"))
            r = c.reply()
            assert not mark.exists()
            assert r.status == 504
            assert b"did not answer within 1 s" in r.body
            assert r.reuse is False
            assert c.is_closed()
        # The thread held the GIL all along: it meets RequestTimeout a switch interval after
        # its call returns, anywhere, even in its `finally` (tests/test_deadlines.py), so the
        # mark is not waited for; the server's own account of the thread is.
        assert server.wait_stderr(
            r"(Stack of GET /cgil\S* at its deadline|GET /cgil\S*: its thread came back)", 30
        ), server.stderr_text()
    finally:
        server.stop()
