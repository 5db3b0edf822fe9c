"""ferrowsgi as a FastCGI responder (``--bind fastcgi://HOST:PORT`` and
``fastcgi://unix:/path``).

First the protocol spoken by hand over a raw socket (keep-conn, params split anywhere,
streamed stdin, management records, refused roles and request ids, aborts, bad input,
limits), then the same WSGI checks through the real front ends, each started here on
loopback: nginx ``fastcgi_pass`` (a keep-alive upstream with ``fastcgi_keep_conn on``, a
connection per request, a unix socket) and apache2 ``mod_proxy_fcgi``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fcgi_wire as fw
import pytest
from frontends import APACHE, APACHE_MODULES, NGINX, FrontEnd
from support import Server, short_tmp_dir, wait_until


def fcgi_addr(url: str) -> tuple[str, int] | str:
    """The address of a ``Listening at:`` URL: ``fastcgi://127.0.0.1:9000`` -> (host, port),
    ``fastcgi://unix:/p`` or ``unix:/p`` -> "/p"."""
    rest = re.sub(r"^[a-z0-9+]+://", "", url)
    if rest.startswith("unix:"):
        return rest[len("unix:") :]
    host, _, port = rest.rstrip("/").rpartition(":")
    return host.strip("[]"), int(port)


@pytest.fixture(scope="module")
def fcgi() -> Iterator[tuple[Server, tuple[str, int], str, int]]:
    """One server with a unix listener and three TCP ones: the first for the raw tests
    and nginx's keep-alive upstream, the second for nginx's connection-per-request
    upstream and the third for apache2, so that each front end's connections to the
    server can be counted apart."""
    sock_dir = short_tmp_dir()
    sock = os.path.join(sock_dir, "fcgi.sock")
    server = Server(
        "apps.proxied:app",
        "--threads",
        "2",
        binds=[
            "fastcgi://127.0.0.1:0",
            f"fastcgi://unix:{sock}",
            "fastcgi://127.0.0.1:0",
            "fastcgi://127.0.0.1:0",
        ],
    ).start()
    try:
        addr = fcgi_addr(server.urls[0])
        assert isinstance(addr, tuple), server.urls
        assert fcgi_addr(server.urls[1]) == sock, server.urls
        close_addr = fcgi_addr(server.urls[2])
        apache_addr = fcgi_addr(server.urls[3])
        assert isinstance(close_addr, tuple) and isinstance(apache_addr, tuple), server.urls
        yield server, addr, sock, close_addr[1], apache_addr[1]
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def connect(addr: tuple[str, int] | str) -> socket.socket:
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(addr)
        return s
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def environ_of(ans: fw.Answer) -> dict:
    assert ans.status == 200, ans
    return json.loads(ans.body)


# --------------------------------------------------------------------------------------
# The protocol by hand


def test_keep_conn_serves_several_requests_then_a_request_without_it_closes(fcgi) -> None:
    _, addr, sock_path, *_ = fcgi
    for a in (addr, sock_path):
        with connect(a) as s:
            r = fw.Reader(s)
            for i in range(3):
                s.sendall(fw.request(1, fw.cgi_params("GET", f"/echo/{i}?q={i}")))
                ans = r.answer(1)
                assert ans.end == (0, fw.REQUEST_COMPLETE)
                assert ans.stdout_records[-1] == 0, "the stream ends with an empty STDOUT"
                env = environ_of(ans)["environ"]
                assert env["PATH_INFO"] == f"/echo/{i}"
                assert env["QUERY_STRING"] == f"q={i}"
            s.sendall(fw.request(5, fw.cgi_params("GET", "/echo/last"), keep=False))
            ans = r.answer(5)
            assert environ_of(ans)["environ"]["PATH_INFO"] == "/echo/last"
            assert r.at_eof(), "without FCGI_KEEP_CONN the responder closes"


def test_the_environ_comes_from_the_params(fcgi) -> None:
    _, addr, *_ = fcgi
    extra = [(b"HTTPS", b"on"), (b"HTTP_X_REQUEST_ID", b"abc"), (b"HTTP_ACCEPT", b"*/*")]
    with connect(addr) as s:
        s.sendall(fw.request(7, fw.cgi_params("GET", "/echo/a%20b?x=%41&y", extra=extra)))
        doc = environ_of(fw.Reader(s).answer(7))
    env = doc["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/echo/a b"
    assert env["QUERY_STRING"] == "x=%41&y"
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["REMOTE_PORT"] == "40123"
    assert env["SERVER_NAME"] == "www.example.com"
    assert env["SERVER_PORT"] == "8443"
    assert env["HTTP_HOST"] == "www.example.com"
    assert env["HTTP_X_REQUEST_ID"] == "abc"
    assert doc["wsgi"]["url_scheme"] == "https"


def test_params_and_body_split_across_records(fcgi) -> None:
    _, addr, *_ = fcgi
    long_value = b"v" * 300  # a 4-byte length
    body = os.urandom(200_000)
    items = fw.cgi_params("POST", "/echo/up", body, extra=[(b"HTTP_X_LONG", long_value)])
    wire = fw.request(3, items, body, per=7, stdin_per=1000)
    with connect(addr) as s:
        # Delivered in odd-sized pieces, so records and pairs are torn at every level.
        for i in range(0, len(wire), 4093):
            s.sendall(wire[i : i + 4093])
        doc = environ_of(fw.Reader(s).answer(3))
    assert doc["environ"]["HTTP_X_LONG"] == long_value.decode()
    assert doc["environ"]["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_LENGTH" not in doc["environ"]
    assert "HTTP_CONTENT_TYPE" not in doc["environ"]
    assert doc["body"].encode("latin-1") == body


def test_a_body_without_content_length_ends_with_the_empty_stdin(fcgi) -> None:
    _, addr, *_ = fcgi
    body = b"x" * 70_000 + b"end"
    items = fw.cgi_params("POST", "/echo/nocl", body, content_length=False)
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.begin(1) + fw.params_records(1, items))
        for i in range(0, len(body), 30_000):
            time.sleep(0.05)
            s.sendall(fw.record(fw.STDIN, 1, body[i : i + 30_000]))
        s.sendall(fw.record(fw.STDIN, 1))
        doc = environ_of(r.answer(1))
        assert doc["body"].encode() == body
        assert "CONTENT_LENGTH" not in doc["environ"] or doc["environ"]["CONTENT_LENGTH"] == ""
        assert doc["wsgi"]["input_terminated"] is True
        # The connection is still good.
        s.sendall(fw.request(1, fw.cgi_params("GET", "/echo/again")))
        assert environ_of(r.answer(1))["environ"]["PATH_INFO"] == "/echo/again"


def test_get_values_and_unknown_management_types_are_answered(fcgi) -> None:
    _, addr, *_ = fcgi
    query = fw.pairs([(b"FCGI_MAX_CONNS", b""), (b"FCGI_MAX_REQS", b""), (b"FCGI_MPXS_CONNS", b"")])
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.record(fw.GET_VALUES, 0, query) + fw.record(200, 0, b"??"))
        kind, rid, content = r.record()
        assert (kind, rid) == (fw.GET_VALUES_RESULT, 0)
        values = fw.parse_pairs(content)
        assert values[b"FCGI_MPXS_CONNS"] == b"0"
        # --worker-connections (default 10000); one request per connection.
        assert values[b"FCGI_MAX_CONNS"] == b"10000"
        assert values[b"FCGI_MAX_REQS"] == b"10000"
        assert r.record() == (fw.UNKNOWN_TYPE, 0, bytes([200]) + b"\0" * 7)
        s.sendall(fw.request(1, fw.cgi_params("GET", "/echo/after")))
        assert environ_of(r.answer(1))["environ"]["PATH_INFO"] == "/echo/after"


def test_other_roles_are_refused(fcgi) -> None:
    _, addr, *_ = fcgi
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.begin(2, role=fw.AUTHORIZER) + fw.params_records(2, fw.cgi_params()))
        s.sendall(fw.record(fw.STDIN, 2))
        assert r.record() == fw.end_request(2, fw.UNKNOWN_ROLE)
        s.sendall(fw.request(1, fw.cgi_params("GET", "/echo/ok")))
        assert environ_of(r.answer(1))["environ"]["PATH_INFO"] == "/echo/ok"
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.begin(2, role=fw.FILTER, keep=False))
        assert r.record() == fw.end_request(2, fw.UNKNOWN_ROLE)
        assert r.at_eof()


def test_a_second_request_id_is_refused_while_one_is_active(fcgi) -> None:
    _, addr, *_ = fcgi
    body = b"0123456789"
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.begin(1) + fw.params_records(1, fw.cgi_params("PUT", "/echo/m", body)))
        s.sendall(fw.record(fw.STDIN, 1, body[:4]))
        # A multiplexing front end starts request 2 before request 1 is over.
        s.sendall(fw.request(2, fw.cgi_params("GET", "/echo/two")))
        s.sendall(fw.record(fw.STDIN, 1, body[4:]) + fw.record(fw.STDIN, 1))
        ans = r.answer(1)
        assert fw.end_request(2, fw.CANT_MPX_CONN) in ans.others
        assert environ_of(ans)["body"] == body.decode()
        # Nothing of request 2 was served, and the connection goes on.
        s.sendall(fw.request(2, fw.cgi_params("GET", "/echo/two-again")))
        assert environ_of(r.answer(2))["environ"]["PATH_INFO"] == "/echo/two-again"


def test_records_of_unknown_ids_and_data_are_skipped(fcgi) -> None:
    _, addr, *_ = fcgi
    with connect(addr) as s:
        r = fw.Reader(s)
        noise = fw.record(fw.STDIN, 9, b"stray") + fw.record(fw.ABORT_REQUEST, 9)
        s.sendall(noise + fw.begin(1) + fw.params_records(1, fw.cgi_params("GET", "/echo/d")))
        s.sendall(fw.record(fw.DATA, 1, b"filter data", pad=5) + fw.record(fw.STDIN, 1))
        ans = r.answer(1)
        assert ans.others == []
        assert environ_of(ans)["body"] == ""


def test_an_abort_during_the_body_ends_the_request(fcgi) -> None:
    _, addr, *_ = fcgi
    body = b"a" * 100
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.begin(1) + fw.params_records(1, fw.cgi_params("POST", "/echo/ab", body)))
        s.sendall(fw.record(fw.STDIN, 1, body[:10]))
        time.sleep(0.2)  # the application is waiting for the rest
        s.sendall(fw.record(fw.ABORT_REQUEST, 1))
        ans = r.answer(1)
        assert ans.end is not None
        assert b"Status: 200" not in ans.stdout
    # The server is fine.
    with connect(addr) as s:
        s.sendall(fw.request(1, fw.cgi_params("GET", "/echo/fine")))
        assert environ_of(fw.Reader(s).answer(1))["environ"]["PATH_INFO"] == "/echo/fine"


def test_large_responses_are_split_into_records_and_streamed(fcgi) -> None:
    _, addr, *_ = fcgi
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.request(1, fw.cgi_params("GET", f"/stream/big?size={1 << 20}")))
        ans = r.answer(1)
        assert ans.status == 200
        assert len(ans.body) == 1 << 20
        assert max(ans.stdout_records) <= 65535
    gate = os.path.join(short_tmp_dir(), "gate")
    try:
        with connect(addr) as s:
            r = fw.Reader(s)
            s.sendall(fw.request(1, fw.cgi_params("GET", f"/stream/slowgen?n=2&gate={gate}")))
            seen = b""
            while b"slow0;" not in seen:
                kind, rid, content = r.record()
                assert (kind, rid) == (fw.STDOUT, 1)
                seen += content
            # The first block arrived while the generator waits for the gate.
            Path(gate).touch()
            ans = r.answer(1)
            assert (seen + ans.stdout).endswith(b"slow0;slow1;")
    finally:
        shutil.rmtree(os.path.dirname(gate), ignore_errors=True)


def test_management_records_without_a_request_are_bounded(fcgi) -> None:
    _, addr, *_ = fcgi
    # 400 KiB of management records and no request: the server answers as it reads,
    # and gives up once it has read far more than any head may take.
    flood = fw.record(200, 0) * (400 * 1024 // 8)
    with connect(addr) as s:
        r = fw.Reader(s)
        sender = threading.Thread(target=lambda: _send_quietly(s, flood))
        sender.start()
        answers = 0
        while (rec := r.record()) is not None:
            assert rec == (fw.UNKNOWN_TYPE, 0, bytes([200]) + b"\0" * 7)
            answers += 1
        sender.join()
    assert 0 < answers < len(flood) // 8


def _send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass  # the server closed the connection first


def test_head_and_bodiless_statuses(fcgi) -> None:
    _, addr, *_ = fcgi
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(fw.request(1, fw.cgi_params("HEAD", "/stream/head_cl")))
        ans = r.answer(1)
        assert ans.status == 200
        assert ans.body == b""
        assert ans.header("Content-Length") == "50"
        s.sendall(fw.request(1, fw.cgi_params("GET", "/stream/status?code=204")))
        ans = r.answer(1)
        assert ans.status == 204
        assert ans.body == b""


@pytest.mark.parametrize(
    "name,wire,status",
    [
        ("no method", fw.request(1, [(b"REQUEST_URI", b"/")]), 400),
        ("bad length", fw.request(1, fw.cgi_params(extra=[(b"CONTENT_LENGTH", b"x")])), 400),
        ("nul", fw.request(1, fw.cgi_params(extra=[(b"HTTP_X", b"a\0b")])), 400),
        ("too big", fw.request(1, fw.cgi_params(extra=[(b"HTTP_X", b"v" * 70_000)])), 431),
        (
            "too many",
            fw.request(1, fw.cgi_params(extra=[(b"V%d" % i, b"") for i in range(200)])),
            431,
        ),
        (
            "short body",
            fw.begin(1)
            + fw.params_records(1, fw.cgi_params("POST", "/echo", b"12345"))
            + fw.record(fw.STDIN, 1, b"12")
            + fw.record(fw.STDIN, 1),
            400,
        ),
        (
            "stdin before params end",
            fw.begin(1) + fw.record(fw.STDIN, 1, b"x"),
            400,
        ),
    ],
)
def test_bad_requests_are_answered_and_the_connection_closed(fcgi, name, wire, status) -> None:
    _, addr, *_ = fcgi
    with connect(addr) as s:
        r = fw.Reader(s)
        s.sendall(wire)
        ans = r.answer(1)
        assert ans.status == status, (name, ans)
        assert ans.end == (0, fw.REQUEST_COMPLETE)
        assert r.at_eof(), name


@pytest.mark.parametrize(
    "wire",
    [
        fw.record(fw.BEGIN_REQUEST, 1, b"\0\1\1\0\0\0\0\0", version=2),
        fw.record(fw.BEGIN_REQUEST, 1, b"\0\1\1"),
        fw.record(fw.GET_VALUES, 0, b"\0" * 2000),
    ],
    ids=["version", "short-begin", "long-get-values"],
)
def test_broken_record_streams_close_the_connection(fcgi, wire) -> None:
    _, addr, *_ = fcgi
    with connect(addr) as s:
        s.sendall(wire)
        assert fw.Reader(s).at_eof()


# --------------------------------------------------------------------------------------
# Behind nginx

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 16m;
    upstream fcgi_keep {{
        server 127.0.0.1:{port};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{nginx_port};
        fastcgi_buffering off;
        location /keep/ {{
{params}
            fastcgi_split_path_info ^(/keep)(/.*)$;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_pass fcgi_keep;
            fastcgi_keep_conn on;
        }}
        location /close/ {{
{params}
            fastcgi_split_path_info ^(/close)(/.*)$;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_pass 127.0.0.1:{close_port};
        }}
        location /unix/ {{
{params}
            fastcgi_split_path_info ^(/unix)(/.*)$;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_pass unix:{sock};
            fastcgi_keep_conn on;
        }}
    }}
}}
"""

# Debian's /etc/nginx/fastcgi_params, as deployments include it (in each location: a
# location that sets any fastcgi_param inherits none from the server level).
NGINX_PARAMS = """
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param DOCUMENT_ROOT $document_root;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_SCHEME $scheme;
            fastcgi_param HTTPS $https if_not_empty;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param REDIRECT_STATUS 200;
"""


class Nginx(FrontEnd):
    """nginx with the locations of NGINX_CONF in front of the server's FastCGI listeners."""

    name = "nginx"

    def __init__(self, port: int, sock: str, close_port: int) -> None:
        super().__init__()
        self._start_nginx(
            NGINX_CONF.format(
                dir=self.dir,
                port=port,
                close_port=close_port,
                nginx_port=self.port,
                sock=sock,
                params=NGINX_PARAMS,
            )
        )


# --------------------------------------------------------------------------------------
# Behind apache2

APACHE_CONF = """
ServerRoot "{dir}"
PidFile "{dir}/httpd.pid"
ErrorLog "{dir}/error.log"
LogLevel warn
Listen 127.0.0.1:{apache_port}
ServerName 127.0.0.1
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_fcgi_module {mods}/mod_proxy_fcgi.so
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 17
<Location "/fcgi/">
    ProxyPass "fcgi://127.0.0.1:{port}/" enablereuse=on flushpackets=on
    ProxyFCGISetEnvIf "true" SCRIPT_NAME "/fcgi"
    ProxyFCGISetEnvIf "reqenv('REQUEST_URI') =~ m#^/fcgi(/[^?]*)#" PATH_INFO "$1"
</Location>
"""


class Apache(FrontEnd):
    """apache2 with mod_proxy_fcgi in front of the server's FastCGI listener on ``port``."""

    name = "apache2"

    def __init__(self, port: int) -> None:
        super().__init__()
        conf = APACHE_CONF.format(
            dir=self.dir, port=port, apache_port=self.port, mods=APACHE_MODULES
        )
        (self.dir / "httpd.conf").write_text(conf)
        assert APACHE is not None
        self._start(
            [APACHE, "-d", str(self.dir), "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"]
        )


FRONTS = [
    pytest.param("nginx", "/keep", marks=pytest.mark.skipif(NGINX is None, reason="no nginx")),
    pytest.param("nginx", "/close", marks=pytest.mark.skipif(NGINX is None, reason="no nginx")),
    pytest.param("nginx", "/unix", marks=pytest.mark.skipif(NGINX is None, reason="no nginx")),
    pytest.param(
        "apache2",
        "/fcgi",
        marks=pytest.mark.skipif(
            APACHE is None or not (APACHE_MODULES / "mod_proxy_fcgi.so").exists(),
            reason="no apache2 with mod_proxy_fcgi",
        ),
    ),
]


@pytest.fixture(scope="module")
def fronts(fcgi) -> Iterator[dict]:
    """The front ends, started on first use, stopped with the module."""
    _, addr, sock, close_port, apache_port = fcgi
    started: dict = {}

    def get(name: str):
        if name not in started:
            front = Nginx(addr[1], sock, close_port) if name == "nginx" else Apache(apache_port)
            started[name] = front
            front.wait_listening()
        return started[name]

    try:
        yield get
    finally:
        for front in started.values():
            front.stop()


def fetch(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
    headers: dict | None = None,
    chunked: bool = False,
) -> tuple[int, dict, bytes]:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    if chunked:
        c.request(
            method,
            path,
            body=iter([body[:1000], body[1000:]]),
            encode_chunked=True,
            headers=headers or {},
        )
    else:
        c.request(method, path, body=body, headers=headers or {})
    resp = c.getresponse()
    data = resp.read()
    out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    if conn is None:
        c.close()
    return out


def backend_connections(port: int) -> int:
    """Established TCP connections to the backend's port (from /proc/net/tcp)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":
            n += 1
    return n


@pytest.mark.parametrize("front,prefix", FRONTS)
def test_environ_through_the_front_end(fcgi, fronts, front, prefix) -> None:
    fe = fronts(front)
    c = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=20)
    status, _, data = fetch(fe.port, "GET", f"{prefix}/echo/a%20b/%C3%A9?x=%41&y=1", conn=c)
    assert status == 200, data[:500]
    doc = json.loads(data)
    env = doc["environ"]
    assert env["SCRIPT_NAME"] == prefix
    assert env["PATH_INFO"] == "/echo/a b/\xc3\xa9"
    assert env["QUERY_STRING"] == "x=%41&y=1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(c.sock.getsockname()[1])
    assert env["REQUEST_METHOD"] == "GET"
    assert env["HTTP_HOST"].startswith("127.0.0.1")
    assert doc["wsgi"]["url_scheme"] == "http"
    # A header sent twice (nginx 1.22 passes each line as its own variable).
    c.putrequest("GET", f"{prefix}/echo/dup", skip_accept_encoding=True)
    c.putheader("X-Dup", "a")
    c.putheader("X-Dup", "b")
    c.endheaders()
    resp = c.getresponse()
    data = resp.read()
    assert resp.status == 200, data[:500]
    assert json.loads(data)["environ"]["HTTP_X_DUP"] in ("a,b", "a, b")
    c.close()
    assert fe.errors() == []


@pytest.mark.parametrize("front,prefix", FRONTS)
def test_bodies_through_the_front_end(fcgi, fronts, front, prefix) -> None:
    fe = fronts(front)
    body = os.urandom(1 << 20)
    status, _, data = fetch(fe.port, "POST", f"{prefix}/echo/up?read=chunks&n=65536", body)
    assert status == 200, data[:500]
    doc = json.loads(data)
    got = doc["body"].encode("latin-1")
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    assert doc["environ"]["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_LENGTH" not in doc["environ"]
    assert "HTTP_CONTENT_TYPE" not in doc["environ"]
    # A chunked body from the client.
    small = os.urandom(5000)
    status, _, data = fetch(fe.port, "POST", f"{prefix}/echo/chunked", small, chunked=True)
    assert status == 200, data[:500]
    assert json.loads(data)["body"].encode("latin-1") == small
    assert fe.errors() == []


@pytest.mark.parametrize("front,prefix", FRONTS)
def test_streamed_response_arrives_before_the_generator_ends(fcgi, fronts, front, prefix):
    fe = fronts(front)
    gate = os.path.join(short_tmp_dir(), "gate")
    try:
        c = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=20)
        c.request("GET", f"{prefix}/stream/slowgen?n=2&gate={gate}")
        resp = c.getresponse()
        assert resp.status == 200
        first = resp.read1(64) if hasattr(resp, "read1") else resp.read(6)
        while b"slow0;" not in first:
            first += resp.read1(64)
        Path(gate).touch()
        rest = resp.read()
        assert (first + rest) == b"slow0;slow1;"
        c.close()
    finally:
        shutil.rmtree(os.path.dirname(gate), ignore_errors=True)
    assert fe.errors() == []


@pytest.mark.parametrize("front,prefix", FRONTS)
def test_keep_alive_through_the_front_end(fcgi, fronts, front, prefix) -> None:
    _, addr, _, close_port, apache_port = fcgi
    fe = fronts(front)
    c = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=20)
    for i in range(100):
        status, _, data = fetch(fe.port, "GET", f"{prefix}/echo/{i}", conn=c)
        assert status == 200, data[:500]
        assert json.loads(data)["environ"]["PATH_INFO"] == f"/echo/{i}"
    # Counted while the client is still connected: a client that leaves while the
    # front end is finishing a request makes it drop that upstream connection.
    if prefix == "/close":
        # nginx without fastcgi_keep_conn: the responder closed every connection.
        assert wait_until(lambda: backend_connections(close_port) == 0, timeout=5)
    elif prefix != "/unix":
        # Kept open by the front end for the next request (each front end has a
        # listener of its own, so the count is its own).
        port = apache_port if front == "apache2" else addr[1]
        assert wait_until(lambda: backend_connections(port) >= 1, timeout=5)
    c.close()
    assert fe.errors() == []


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "unknown-length"])
def test_the_body_limit_holds_for_fastcgi_bodies(with_length: bool) -> None:
    body = b"x" * 5000
    with Server(
        "apps.proxied:app", "--limit-request-body", "1000", binds=["fastcgi://127.0.0.1:0"]
    ) as server:
        addr = fcgi_addr(server.urls[0])
        items = fw.cgi_params("POST", "/echo/limit", body, content_length=with_length)
        with connect(addr) as s:
            r = fw.Reader(s)
            s.sendall(fw.request(1, items, body, stdin_per=700))
            ans = r.answer(1)
            assert ans.status == 413, ans
            assert r.at_eof()
        # Within the limit, the same request is served.
        small = body[:900]
        items = fw.cgi_params("POST", "/echo/limit", small, content_length=with_length)
        with connect(addr) as s:
            s.sendall(fw.request(1, items, small, stdin_per=700))
            assert environ_of(fw.Reader(s).answer(1))["body"] == small.decode()


# --------------------------------------------------------------------------------------
# The request deadline


@pytest.mark.parametrize("threads", ["1", "4"])
def test_a_deadline_is_answered_504_at_once_while_the_thread_is_in_c_code(
    tmp_path: Path, threads: str
) -> None:
    """The watcher sends the codec's own 504 records at the deadline, whatever the request's
    thread is doing (here: libc sleep(3) holding the GIL)."""
    server = Server(
        "apps.deadlines:app",
        *("--threads", threads, "--timeout", "1", "--timeout-grace", "30"),
        binds=["fastcgi://127.0.0.1:0"],
    ).start()
    addr = fcgi_addr(server.urls[0])
    mark = tmp_path / "mark"
    try:
        with connect(addr) as s:
            started = time.monotonic()
            s.sendall(fw.request(9, fw.cgi_params("GET", f"/cgil?s=6&mark={mark}")))
            ans = fw.Reader(s).answer(9)
            took = time.monotonic() - started
        assert ans.status == 504, ans
        assert b"did not answer within 1 s" in ans.body
        assert ans.end == (0, 0)
        # At the deadline, not when the thread came back from its 6 s in C code.
        assert took < 4.5, took
        # The thread held the GIL all along: it goes on with Python code as its call returns
        # and meets RequestTimeout a switch interval later, anywhere, even in its `finally`
        # (so the mark is not waited for; tests/test_deadlines.py has the same rule).
        assert server.wait_stderr(
            r"(Stack of GET /cgil\S* at its deadline|GET /cgil\S*: its thread came back)", 30
        ), server.stderr_text()
    finally:
        server.stop()
