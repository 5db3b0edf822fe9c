"""Helpers for the SCGI and uwsgi tests: the two protocols spoken by hand, and Debian's nginx
and apache2 started in front of a ferrowsgi listener (loopback, foreground, a config in a
temporary directory).

``scgi_request``/``uwsgi_request`` build a request from CGI variables; ``exchange`` sends it
and reads until the server closes (both protocols end an answer by closing);
``parse_answer`` splits what came back into status, fields and body. ``SCGI`` and ``UWSGI``
state, as data, what differs between the two for the tests both go through
(tests/test_gateway_scgi_uwsgi.py).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontends import APACHE, APACHE_MODULES, FrontEnd
from support import Server, free_port

Vars = list[tuple[bytes, bytes]]


# --------------------------------------------------------------------------------------------
# The protocols by hand


def base_vars(
    method: str = "GET", uri: str = "/", extra: Vars | None = None, body: bytes | None = None
) -> Vars:
    """The variables nginx's scgi_params / uwsgi_params send, for ``method`` and ``uri``."""
    out: Vars = [
        (b"REQUEST_METHOD", method.encode()),
        (b"REQUEST_URI", uri.encode()),
        (b"QUERY_STRING", uri.partition("?")[2].encode()),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"192.0.2.10"),
        (b"REMOTE_PORT", b"40123"),
        (b"SERVER_NAME", b"gateway.example"),
        (b"SERVER_PORT", b"8080"),
        (b"HTTP_HOST", b"gateway.example:8080"),
    ]
    if body is not None:
        out.append((b"CONTENT_TYPE", b"application/octet-stream"))
    return out + list(extra or [])


def scgi_request(variables: Vars, body: bytes = b"", content_length: bool = True) -> bytes:
    """An SCGI request: the netstring of ``variables`` (CONTENT_LENGTH first and SCGI=1
    added unless ``content_length`` is false), then ``body``."""
    if content_length:
        variables = [(b"CONTENT_LENGTH", str(len(body)).encode()), (b"SCGI", b"1"), *variables]
    s = b"".join(n + b"\0" + v + b"\0" for n, v in variables)
    return str(len(s)).encode() + b":" + s + b"," + body


def uwsgi_request(
    variables: Vars,
    body: bytes = b"",
    modifier1: int = 0,
    modifier2: int = 0,
    content_length: bool = True,
) -> bytes:
    """A uwsgi packet of ``variables`` (CONTENT_LENGTH added unless ``content_length`` is
    false), then ``body``."""
    if content_length:
        variables = [*variables, (b"CONTENT_LENGTH", str(len(body)).encode())]
    block = uwsgi_vars(variables)
    return struct.pack("<BHB", modifier1, len(block), modifier2) + block + body


def uwsgi_vars(variables: Vars) -> bytes:
    """The variables of a uwsgi packet, each name and value after its 16-bit length."""
    return b"".join(
        struct.pack("<H", len(n)) + n + struct.pack("<H", len(v)) + v for n, v in variables
    )


def exchange(addr: tuple[str, int] | str, data: bytes, timeout: float = 10.0) -> bytes:
    """Sends ``data`` and returns everything the server writes until it closes."""
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(addr)
        s.sendall(data)
        return read_to_eof(s)


def read_to_eof(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return out
        if not d:
            return out
        out += d


def read_until(s: socket.socket, marker: bytes) -> bytes:
    """Everything read until ``marker`` has arrived; the server closing before it fails."""
    got = b""
    while marker not in got:
        d = s.recv(65536)
        assert d, got
        got += d
    return got


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, fields with lower-case names, body) of an SCGI (``Status:``) or uwsgi
    (``HTTP/1.1``) answer."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    if lines[0].startswith("HTTP/1.1 "):
        status = int(lines[0].split()[1])
        lines = lines[1:]
    else:
        status = 0
    for line in lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if not status:
        status = int(fields.pop("status").split()[0])
    return status, fields, body


def ask(addr: tuple[str, int] | str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """``exchange`` then ``parse_answer``."""
    return parse_answer(exchange(addr, data))


# --------------------------------------------------------------------------------------------
# The two protocols as data


@dataclass(frozen=True)
class Protocol:
    """One protocol as the shared SCGI/uwsgi tests see it."""

    # The bind scheme, and the front ends' name for it: nginx ``{name}_pass`` and
    # ``{name}_params``, apache2 ``mod_proxy_{name}``.
    name: str
    # ``encode(variables, body, content_length=...)``: ``scgi_request`` or ``uwsgi_request``.
    encode: Callable[..., bytes]
    # How an answer begins, before its status code.
    status_prefix: bytes
    # Variables the protocol itself adds to every request; none may reach the application
    # as a header.
    own_vars: tuple[str, ...]
    # The start of a request that stops before its head is complete.
    partial_head: bytes
    # The size of the pieces a request is written in when it arrives in pieces.
    piece: int
    # apache2's own answer to a chunked request body, which it refuses over this protocol
    # before the backend sees it (None: it passes the body on).
    apache_chunked_status: int | None
    # (SCRIPT_NAME, PATH_INFO) for ``/mnt/x/y%20z`` behind apache2's ``ProxyPass /mnt/``.
    apache_mount_split: tuple[str, str]

    def request(self, variables: Vars, body: bytes = b"", content_length: bool = True) -> bytes:
        """A request of ``variables`` and ``body`` in this protocol."""
        return self.encode(variables, body, content_length=content_length)

    def status_line(self, status: int) -> bytes:
        """How an answer with ``status`` begins."""
        return self.status_prefix + b"%d " % status


SCGI = Protocol(
    name="scgi",
    encode=scgi_request,
    status_prefix=b"Status: ",
    own_vars=("SCGI",),
    partial_head=b"100:CONTENT_LENGTH\0",
    piece=777,
    apache_chunked_status=411,
    # mod_proxy_scgi sends the whole decoded path as SCRIPT_NAME and no PATH_INFO (its
    # documented default): the application sees the whole path.
    apache_mount_split=("", "/mnt/x/y z"),
)

UWSGI = Protocol(
    name="uwsgi",
    encode=uwsgi_request,
    status_prefix=b"HTTP/1.1 ",
    own_vars=(),
    partial_head=uwsgi_request(base_vars())[:10],
    piece=333,
    apache_chunked_status=411,
    apache_mount_split=("/mnt", "/x/y z"),
)

PROTOCOLS = {p.name: p for p in (SCGI, UWSGI)}


def by_hand_server(proto: Protocol, threads: str = "1") -> Iterator[tuple[Server, tuple[str, int]]]:
    """A server with one ``proto`` listener on loopback for requests written by hand, at most
    20 header fields a request (for the limit checks), with ``threads`` application threads;
    stopped when the generator ends."""
    port = free_port()
    server = Server(
        "apps.proxied:app",
        "--limit-request-fields",
        "20",
        "--threads",
        threads,
        binds=[f"{proto.name}://127.0.0.1:{port}"],
    ).start()
    try:
        yield server, ("127.0.0.1", port)
    finally:
        server.stop()


def check_refused(proto: Protocol, raw: bytes, status: int, words: str) -> None:
    """``raw`` is the protocol's answer with ``status`` and a plain-text reason naming
    ``words``."""
    assert raw.startswith(proto.status_line(status)), raw[:200]
    got, fields, body = parse_answer(raw)
    assert got == status
    assert fields["content-type"].startswith("text/plain")
    assert words.lower() in body.decode().lower(), body


# --------------------------------------------------------------------------------------------
# Front ends


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
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port};
        # Everything at the root: the stock parameters of the Debian package.
        location / {{
            include /etc/nginx/{proto}_params;
            {proto}_buffering off;
            {proto}_pass {backend};
        }}
        # A TLS front end says so with HTTPS=on.
        location /tls/ {{
            include /etc/nginx/{proto}_params;
            {proto}_param HTTPS on;
            {proto}_pass {backend};
        }}
        # An application mounted at /mnt: the front end splits SCRIPT_NAME and PATH_INFO.
        location ~ ^/mnt(?<rest>/.*)?$ {{
{mount_params}
            {proto}_param SCRIPT_NAME /mnt;
            {proto}_param PATH_INFO $rest;
            {proto}_pass {backend};
        }}
    }}
}}
"""

# The stock parameters less PATH_INFO (uwsgi_params sets it to the whole path), written out
# so that the mounted location sets each variable once.
MOUNT_PARAMS = {
    "scgi": """
            scgi_param REQUEST_METHOD $request_method;
            scgi_param REQUEST_URI $request_uri;
            scgi_param QUERY_STRING $query_string;
            scgi_param CONTENT_TYPE $content_type;
            scgi_param SCGI 1;
            scgi_param SERVER_PROTOCOL $server_protocol;
            scgi_param REMOTE_ADDR $remote_addr;
            scgi_param REMOTE_PORT $remote_port;
            scgi_param SERVER_PORT $server_port;
            scgi_param SERVER_NAME $server_name;
            scgi_param HTTP_HOST $host;""",
    "uwsgi": """
            uwsgi_param REQUEST_METHOD $request_method;
            uwsgi_param REQUEST_URI $request_uri;
            uwsgi_param QUERY_STRING $query_string;
            uwsgi_param CONTENT_TYPE $content_type;
            uwsgi_param CONTENT_LENGTH $content_length;
            uwsgi_param SERVER_PROTOCOL $server_protocol;
            uwsgi_param REMOTE_ADDR $remote_addr;
            uwsgi_param REMOTE_PORT $remote_port;
            uwsgi_param SERVER_PORT $server_port;
            uwsgi_param SERVER_NAME $server_name;
            uwsgi_param HTTP_HOST $host;""",
}


class Nginx(FrontEnd):
    """nginx with ``scgi_pass`` or ``uwsgi_pass`` to ``backend`` (``127.0.0.1:PORT`` or
    ``unix:/path``); ``protocol`` is the one it speaks to the backend."""

    name = "nginx"

    def __init__(self, proto: str, backend: str) -> None:
        super().__init__()
        self.protocol = PROTOCOLS[proto]
        conf = NGINX_CONF.format(
            dir=self.dir,
            port=self.port,
            proto=proto,
            backend=backend,
            mount_params=MOUNT_PARAMS[proto],
        )
        self._start_nginx(conf)


APACHE_CONF = """
ServerRoot {dir}
DefaultRuntimeDir {dir}
PidFile {dir}/httpd.pid
ErrorLog {dir}/error.log
LogLevel warn
Listen 127.0.0.1:{port}
ServerName localhost
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule env_module {mods}/mod_env.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_{proto}_module {mods}/mod_proxy_{proto}.so
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
# What mod_ssl would set behind TLS.
<Location /tls/>
    SetEnv HTTPS on
</Location>
# An application mounted at /mnt, and one at the root.
ProxyPass /mnt/ {proto}://127.0.0.1:{backend_port}/
ProxyPass / {proto}://127.0.0.1:{backend_port}/
"""


class Apache(FrontEnd):
    """apache2 with ``mod_proxy_scgi`` or ``mod_proxy_uwsgi`` to 127.0.0.1:``backend_port``;
    ``protocol`` is the one it speaks to the backend."""

    name = "apache2"

    def __init__(self, proto: str, backend_port: int) -> None:
        super().__init__()
        self.protocol = PROTOCOLS[proto]
        conf = APACHE_CONF.format(
            dir=self.dir,
            port=self.port,
            proto=proto,
            mods=APACHE_MODULES,
            backend_port=backend_port,
        )
        (self.dir / "httpd.conf").write_text(conf)
        self._start([APACHE, "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"])

    def errors(self) -> list[str]:
        # Running as root, apache2 names the user it drops to; that alert is no error here.
        return [line for line in super().errors() if "AH02155" not in line]


def apache_has(proto: str) -> bool:
    return APACHE is not None and (APACHE_MODULES / f"mod_proxy_{proto}.so").exists()


# --------------------------------------------------------------------------------------------
# The WSGI checks every front end goes through (apps.proxied: echo and stream)


def fetch(
    fe: FrontEnd,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    c = conn or http.client.HTTPConnection(
        "127.0.0.1", fe.port, timeout=15, source_address=(source, 0)
    )
    c.request(method, target, body=body, headers=headers or {})
    resp = c.getresponse()
    data = resp.read()
    if conn is None:
        c.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def environ_of(fe: FrontEnd, target: str, **kw: Any) -> dict[str, str]:
    status, _, data = fetch(fe, "GET", target, **kw)
    assert status == 200, data[:500]
    return json.loads(data)["environ"]


def check_encoded_path_and_query(fe: FrontEnd) -> None:
    env = environ_of(fe, "/a%20b/%C3%A9;p?x=%20y&z=%2F%26")
    # PATH_INFO: the decoded bytes as latin-1 (PEP 3333); the query exactly as sent.
    assert env["SCRIPT_NAME"] + env["PATH_INFO"] == "/a b/\xc3\xa9;p", env
    assert env["QUERY_STRING"] == "x=%20y&z=%2F%26"
    assert env["REQUEST_URI"] == "/a%20b/%C3%A9;p?x=%20y&z=%2F%26"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["wsgi.url_scheme"] == "http"


def check_big_body(fe: FrontEnd) -> None:
    body = os.urandom(1024 * 1024)
    status, _, data = fetch(
        fe,
        "POST",
        "/upload?read=chunks&n=65536",
        body,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 200, data[:500]
    out = json.loads(data)
    got = out["body"].encode("latin-1")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
    env = out["environ"]
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert env["CONTENT_TYPE"] == "application/octet-stream"
    # Only from the request's own variables, never also as HTTP_* (PEP 3333).
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env, sorted(env)


def check_big_download(fe: FrontEnd) -> None:
    size = 5 * 1024 * 1024
    status, _, data = fetch(fe, "GET", f"/stream/big?size={size}")
    assert status == 200
    assert len(data) == size


def chunked_upload(fe: FrontEnd, pieces: list[bytes]) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=15)
    c.putrequest("POST", "/upload?read=all")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for p in pieces:
        c.send(b"%x\r\n%s\r\n" % (len(p), p))
    c.send(b"0\r\n\r\n")
    resp = c.getresponse()
    data = resp.read()
    c.close()
    return resp.status, data


def check_chunked_body_buffered(fe: FrontEnd) -> None:
    """The front end reads a chunked body whole and sends it with its length."""
    pieces = [os.urandom(1000 + i) for i in range(40)]
    status, data = chunked_upload(fe, pieces)
    assert status == 200, data[:500]
    out = json.loads(data)
    assert out["body"].encode("latin-1") == b"".join(pieces)
    assert out["environ"]["CONTENT_LENGTH"] == str(sum(map(len, pieces)))


def check_streamed_response(fe: FrontEnd, gate_dir: str) -> None:
    """The first block reaches the client while the generator still waits for the gate."""
    gate = os.path.join(gate_dir, "gate-" + os.urandom(4).hex())
    c = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=15)
    c.request("GET", f"/stream/slowgen?n=3&gate={gate}")
    resp = c.getresponse()
    assert resp.status == 200
    first = resp.read(len(b"slow0;"))
    assert first == b"slow0;"
    assert not os.path.exists(gate)
    Path(gate).touch()
    assert resp.read() == b"slow1;slow2;"
    c.close()


def check_remote_addr(fe: FrontEnd) -> None:
    """REMOTE_ADDR/PORT are the client's (127.0.0.2), not the front end's connection's."""
    c = http.client.HTTPConnection(
        "127.0.0.1", fe.port, timeout=15, source_address=("127.0.0.2", 0)
    )
    env = environ_of(fe, "/who", conn=c)
    assert c.sock is not None
    port = c.sock.getsockname()[1]
    c.close()
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert env["REMOTE_PORT"] == str(port)


def check_keep_alive(fe: FrontEnd) -> None:
    """One client connection to the front end carries many requests, each a new gateway
    connection behind it."""
    c = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=15)
    ports = set()
    for i in range(40):
        env = environ_of(fe, f"/ka/{i}?i={i}", conn=c)
        assert env["PATH_INFO"].endswith(f"/ka/{i}") and env["QUERY_STRING"] == f"i={i}"
        ports.add(env["REMOTE_PORT"])
    c.close()
    assert len(ports) == 1, ports


def check_https_var(fe: FrontEnd) -> None:
    env = environ_of(fe, "/tls/x")
    assert env["wsgi.url_scheme"] == "https"
    assert env.get("HTTPS") == "on"


def check_no_injection(fe: FrontEnd) -> None:
    """Header fields named like server variables stay HTTP_* fields."""
    env = environ_of(
        fe,
        "/inj",
        headers={
            "Remote-Addr": "6.6.6.6",
            "Https": "on",
            "Script-Name": "/evil",
            "Path-Info": "/evil",
            "Content-Length-X": "1",
        },
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert "evil" not in env["SCRIPT_NAME"] and "evil" not in env["PATH_INFO"]
    assert env.get("HTTP_REMOTE_ADDR") == "6.6.6.6"
