"""ferrowsgi behind nginx, the reverse proxy it most often runs behind (Debian's package,
started by these tests on loopback).

Two upstream styles: nginx's default, one HTTP/1.0 connection per request with
``Connection: close`` (so every answer is the last on its connection and leaves with the
FIN), and ``keepalive`` with HTTP/1.1; plus a unix socket upstream.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
from collections.abc import Iterator

import pytest
from frontends import NGINX, FrontEnd
from support import Server, short_tmp_dir

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup.sh)")

CONF = """
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
    upstream keep {{
        server 127.0.0.1:{port};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location /close/ {{
            proxy_pass http://127.0.0.1:{port}/;
        }}
        location /keep/ {{
            proxy_pass http://keep/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /unix/ {{
            proxy_pass http://unix:{sock}:/;
        }}
    }}
}}
"""


class Nginx(FrontEnd):
    """nginx with the locations of CONF in front of the server on ``port`` and ``sock``."""

    name = "nginx"

    def __init__(self, port: int, sock: str) -> None:
        super().__init__()
        self._start_nginx(CONF.format(dir=self.dir, port=port, nginx_port=self.port, sock=sock))


@pytest.fixture(scope="module", params=["1", "4"], ids=["threads1", "threads4"])
def proxied(request: pytest.FixtureRequest) -> Iterator[tuple[Server, Nginx]]:
    sock_dir = short_tmp_dir()
    sock = os.path.join(sock_dir, "fw.sock")
    server = Server(
        "apps.proxied:app", "--threads", request.param, binds=["127.0.0.1:0", f"unix:{sock}"]
    ).start()
    nginx = Nginx(server.port, sock)
    try:
        nginx.wait_listening()
        yield server, nginx
    finally:
        nginx.stop()
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def fetch(
    nginx: Nginx,
    conn: http.client.HTTPConnection | None,
    method: str,
    path: str,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    c = conn or http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    c.request(method, path, body=body)
    resp = c.getresponse()
    data = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    if conn is None:
        c.close()
    return resp.status, headers, data


def upstream_errors(nginx: Nginx) -> list[str]:
    return [
        line for line in nginx.error_log().splitlines() if "[error]" in line or "[crit]" in line
    ]


@pytest.mark.parametrize("prefix", ["/close", "/keep", "/unix"])
def test_many_requests_through_nginx(proxied: tuple[Server, Nginx], prefix: str) -> None:
    server, nginx = proxied
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    ports = set()
    for i in range(150):
        status, _, data = fetch(nginx, conn, "GET", f"{prefix}/echo/{i}?q={i}")
        assert status == 200, data[:300]
        env = json.loads(data)["environ"]
        assert env["PATH_INFO"] == f"/echo/{i}"
        assert env["QUERY_STRING"] == f"q={i}"
        ports.add(env.get("REMOTE_PORT"))
        expected = "HTTP/1.1" if prefix == "/keep" else "HTTP/1.0"
        assert env["SERVER_PROTOCOL"] == expected
    conn.close()
    if prefix == "/close":
        # A new upstream connection per request, each answered and closed by ferrowsgi.
        assert len(ports) > 140, f"{len(ports)} distinct upstream ports"
    elif prefix == "/keep":
        assert len(ports) <= 4, f"{len(ports)} upstream connections for 150 requests"
    assert upstream_errors(nginx) == [], nginx.error_log()[-2000:]


@pytest.mark.parametrize("prefix", ["/close", "/keep", "/unix"])
def test_large_upload_and_download_through_nginx(
    proxied: tuple[Server, Nginx], prefix: str
) -> None:
    _, nginx = proxied
    body = os.urandom(3 * 1024 * 1024)
    status, _, data = fetch(nginx, None, "POST", f"{prefix}/upload?read=chunks&n=65536", body)
    assert status == 200, data[:300]
    got = json.loads(data)["body"].encode("latin-1")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
    status, _, data = fetch(nginx, None, "GET", f"{prefix}/stream/big?size={5 * 1024 * 1024}")
    assert status == 200
    assert len(data) == 5 * 1024 * 1024
    assert upstream_errors(nginx) == [], nginx.error_log()[-2000:]


@pytest.mark.parametrize("prefix", ["/close", "/keep"])
def test_streamed_response_through_nginx(proxied: tuple[Server, Nginx], prefix: str) -> None:
    _, nginx = proxied
    for _ in range(20):
        status, headers, data = fetch(nginx, None, "GET", f"{prefix}/stream/gen?n=500")
        assert status == 200
        assert data == b"".join(b"block%d;" % i for i in range(500))
    assert upstream_errors(nginx) == [], nginx.error_log()[-2000:]


def test_client_gone_mid_response_leaves_server_healthy(proxied: tuple[Server, Nginx]) -> None:
    server, nginx = proxied
    for _ in range(5):
        c = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
        c.request("GET", f"/close/stream/big?size={20 * 1024 * 1024}")
        resp = c.getresponse()
        resp.read(1024)
        c.close()
    status, _, _ = fetch(nginx, None, "GET", "/close/echo/after")
    assert status == 200
    assert server.proc is not None and server.proc.poll() is None
