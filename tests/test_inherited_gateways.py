"""Inherited listening sockets that speak a gateway protocol, with the real ``ferrowsgi``
program: ``--bind SCHEME://fd:N`` (and gunicorn's ``fd://N``) for a socket a parent
passes, and systemd socket activation where the socket unit's ``FileDescriptorName=``
(``LISTEN_FDNAMES``) names the protocol. The tests bind and listen themselves, pass the
descriptor (``pass_fds``) and speak each protocol to it; with ``-w 2`` both workers answer
on the socket the master inherited. nginx's ``fastcgi_pass`` reaches an inherited unix
socket, whose file the server leaves in place when it stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import ajp_wire as ajp
import fcgi_wire as fw
import gateway_cgi as g
import pytest
from frontends import NGINX, FrontEnd
from support import TESTS_DIR, Server, assert_one_line_error, short_tmp_dir, wait_until

pytestmark = pytest.mark.timeout(90)

Addr = tuple[str, int] | str

# REMOTE_ADDR as each protocol's request below names the client; HTTP has only the peer.
GATEWAY_CLIENT = {
    "http": "127.0.0.1",
    "fastcgi": "192.0.2.10",
    "scgi": "192.0.2.10",
    "uwsgi": "192.0.2.10",
    "ajp": "192.0.2.7",
}


def tcp_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def connect(addr: Addr) -> socket.socket:
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(addr)
        return s
    return socket.create_connection(addr, timeout=10)


def ask(scheme: str, addr: Addr, target: str = "/whoami", before: bytes = b"") -> str:
    """One request in ``scheme``'s protocol (``before`` goes first: a PROXY header); the
    answer's body, after checking that it is a 200 in that protocol's form."""
    if scheme == "ajp":
        with ajp.AjpConn(addr) as c:
            c.send(before + ajp.forward_request("GET", target))
            r = c.reply()
            assert r.status == 200, (r.status, r.body)
            assert r.reuse is True
            return r.body.decode()
    if scheme == "fastcgi":
        with connect(addr) as s:
            s.sendall(before + fw.request(1, fw.cgi_params("GET", target), keep=False))
            answer = fw.Reader(s).answer(1)
            assert answer.status == 200, answer
            return answer.body.decode()
    if scheme == "http":
        request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        raw = g.exchange(addr, before + request)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
        return body.decode()
    build = g.scgi_request if scheme == "scgi" else g.uwsgi_request
    status, _, body = g.parse_answer(g.exchange(addr, before + build(g.base_vars("GET", target))))
    assert status == 200, (status, body)
    return body.decode()


def whoami(scheme: str, addr: Addr, before: bytes = b"") -> tuple[int, str]:
    pid, remote = ask(scheme, addr, before=before).split()
    return int(pid), remote


def answering_pids(server: Server, call: Callable[[], tuple[int, str]], want: int) -> set[int]:
    """Calls until ``want`` different worker pids answered (new connections each time)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < want and time.monotonic() < deadline:
        seen.add(call()[0])
    assert seen <= set(server.worker_pids()), (seen, server.worker_pids())
    return seen


def tcp_addr(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


# --------------------------------------------------------------------------------------------
# --bind SCHEME://fd:N


@pytest.mark.parametrize("scheme", ["http", "fastcgi", "scgi", "uwsgi", "ajp"])
def test_bind_names_the_protocol_of_an_inherited_socket(scheme: str) -> None:
    sock = tcp_listener()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    try:
        with Server(
            "apps.procs:app", "-w", "2", binds=[f"{scheme}://fd:{fd}"], pass_fds=(fd,)
        ) as server:
            assert server.urls == [f"{scheme}://127.0.0.1:{port}"]
            addr = ("127.0.0.1", port)
            pid, remote = whoami(scheme, addr)
            assert remote == GATEWAY_CLIENT[scheme]
            # The master inherited the socket; both workers take connections from it.
            pids = answering_pids(server, lambda: whoami(scheme, addr), 2)
            assert len(pids) == 2 and pid in pids
    finally:
        sock.close()


def test_a_reload_keeps_the_inherited_socket_and_its_protocol() -> None:
    """HUP: the new workers take connections from the socket the master inherited, still
    speaking its protocol, and the reload does not warn that the listeners changed."""
    sock = tcp_listener()
    addr = ("127.0.0.1", sock.getsockname()[1])
    fd = sock.fileno()
    try:
        with Server(
            "apps.procs:app", "-w", "2", binds=[f"uwsgi://fd:{fd}"], pass_fds=(fd,)
        ) as server:
            old = set(answering_pids(server, lambda: whoami("uwsgi", addr), 2))
            os.kill(server.pid, signal.SIGHUP)
            assert server.wait_stderr("Reload done")
            assert wait_until(lambda: not old & set(server.worker_pids()), timeout=20)
            new = answering_pids(server, lambda: whoami("uwsgi", addr), 2)
            assert len(new) == 2 and not new & old
            assert "listeners stay as they were bound" not in server.stderr_text()
    finally:
        sock.close()


def test_gunicorns_fd_spelling_is_http_and_the_proxy_suffix_applies() -> None:
    plain, proxied = tcp_listener(), tcp_listener()
    fds = (plain.fileno(), proxied.fileno())
    try:
        with Server(
            "apps.procs:app",
            binds=[f"fd://{fds[0]}", f"fastcgi+proxy://fd:{fds[1]}"],
            pass_fds=fds,
        ) as server:
            a, b = (("127.0.0.1", s.getsockname()[1]) for s in (plain, proxied))
            assert server.urls == [f"http://{a[0]}:{a[1]}", f"fastcgi+proxy://{b[0]}:{b[1]}"]
            assert whoami("http", a)[1] == "127.0.0.1"
            header = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n"
            # The PROXY header names the client; FastCGI's own REMOTE_ADDR still wins.
            assert whoami("fastcgi", b, before=header)[1] == "192.0.2.10"
            with connect(b) as s:
                s.sendall(fw.request(1, fw.cgi_params("GET", "/whoami"), keep=False))
                assert fw.Reader(s).at_eof(), "no PROXY header: closed unanswered"
    finally:
        plain.close()
        proxied.close()


def test_an_inherited_descriptor_that_also_came_by_fd_speaks_the_binds_protocol() -> None:
    sock = tcp_listener()
    fd = sock.fileno()
    try:
        with Server(
            "apps.procs:app",
            "--fd",
            str(fd),
            binds=[f"scgi://fd:{fd}"],
            pass_fds=(fd,),
        ) as server:
            # One listener, not two: the descriptor is adopted once.
            assert server.urls == [f"scgi://127.0.0.1:{sock.getsockname()[1]}"]
            assert whoami("scgi", ("127.0.0.1", sock.getsockname()[1]))[1] == "192.0.2.10"
    finally:
        sock.close()


def test_the_python_api_takes_an_inherited_socket_with_its_protocol() -> None:
    """``ferrowsgi.background(app, bind=["scgi://fd:N"])``: the server adopts descriptor N
    (and closes it when it stops: it is given a copy here)."""
    import ferrowsgi

    def app(environ, start_response):
        body = environ["REMOTE_ADDR"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    sock = tcp_listener()
    try:
        with ferrowsgi.background(app, bind=[f"scgi://fd:{os.dup(sock.fileno())}"]) as url:
            assert url == f"scgi://127.0.0.1:{sock.getsockname()[1]}"
            assert ask("scgi", ("127.0.0.1", sock.getsockname()[1]), "/") == "192.0.2.10"
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------
# nginx fastcgi_pass to an inherited unix socket

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:{sock};
        }}
    }}
}}
"""


class Nginx(FrontEnd):
    name = "nginx"

    def __init__(self, sock: str) -> None:
        super().__init__()
        self._start_nginx(NGINX_CONF.format(dir=self.dir, port=self.port, sock=sock))


@pytest.mark.skipif(
    NGINX is None or not os.path.exists("/etc/nginx/fastcgi_params"),
    reason="nginx (with Debian's fastcgi_params) not installed",
)
def test_nginx_fastcgi_pass_to_an_inherited_unix_socket() -> None:
    sock_dir = short_tmp_dir()
    path = f"{sock_dir}/app.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(64)
    fd = sock.fileno()
    front = None
    try:
        with Server(
            "apps.procs:app", "-w", "2", binds=[f"fastcgi://fd:{fd}"], pass_fds=(fd,)
        ) as server:
            assert server.urls == [f"fastcgi://unix:{path}"]
            front = Nginx(path)

            def through_nginx() -> tuple[int, str]:
                status, _, body = g.fetch(front, "GET", "/whoami")
                assert status == 200, (status, body)
                pid, remote = body.decode().split()
                return int(pid), remote

            assert through_nginx()[1] == "127.0.0.1"
            assert len(answering_pids(server, through_nginx, 2)) == 2
            assert front.errors() == []
        # The socket file belongs to whoever bound it, not to the server.
        assert os.path.exists(path)
    finally:
        if front is not None:
            front.stop()
        sock.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# systemd socket activation


def activation_wrapper(count: int, names: str | None) -> str:
    """Python that puts the descriptors given as its first ``count`` arguments at 3, 4, …
    (as systemd passes them), sets LISTEN_FDS, LISTEN_PID (its own pid, which the server
    keeps after exec) and LISTEN_FDNAMES, and execs the server with the other arguments."""
    names_env = f"os.environ['LISTEN_FDNAMES'] = {names!r}; " if names is not None else ""
    return (
        "import os, sys; "
        f"fds = [int(a) for a in sys.argv[1:{count + 1}]]; "
        # Out of the way first, so that no descriptor is overwritten before it is moved.
        "[os.dup2(fd, 100 + i) for i, fd in enumerate(fds)]; "
        "[os.close(fd) for fd in fds]; "
        "[os.dup2(100 + i, 3 + i) for i in range(len(fds))]; "
        "[os.close(100 + i) for i in range(len(fds))]; "
        f"os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='{count}'); "
        f"{names_env}"
        "os.execv(sys.executable, "
        f"[sys.executable, '-m', 'ferrowsgi', *sys.argv[{count + 1}:]])"
    )


def activated(socks: list[socket.socket], names: str | None, *options: str) -> Server:
    """A server started as systemd starts a socket-activated service."""
    fds = tuple(s.fileno() for s in socks)
    wrapper = activation_wrapper(len(fds), names)
    server = Server(
        "apps.procs:app",
        *options,
        binds=[],
        pass_fds=fds,
        command=[sys.executable, "-c", wrapper, *map(str, fds)],
    )
    server.start(wait=False)
    server.wait_listening(len(socks))
    return server


def test_systemd_socket_names_choose_each_sockets_protocol() -> None:
    socks = [tcp_listener() for _ in range(5)]
    ports = [s.getsockname()[1] for s in socks]
    try:
        with activated(socks, "fastcgi:scgi+proxy:uwsgi:ajp:web.socket", "-w", "2") as server:
            assert server.urls == [
                f"fastcgi://127.0.0.1:{ports[0]}",
                f"scgi+proxy://127.0.0.1:{ports[1]}",
                f"uwsgi://127.0.0.1:{ports[2]}",
                f"ajp://127.0.0.1:{ports[3]}",
                # A name that is not a protocol's (systemd's default is the unit's name).
                f"http://127.0.0.1:{ports[4]}",
            ]
            addrs = [("127.0.0.1", p) for p in ports]
            header = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n"
            for scheme, addr, before in [
                ("fastcgi", addrs[0], b""),
                ("scgi", addrs[1], header),
                ("uwsgi", addrs[2], b""),
                ("ajp", addrs[3], b""),
                ("http", addrs[4], b""),
            ]:
                assert whoami(scheme, addr, before)[1] == GATEWAY_CLIENT[scheme], scheme
            raw = g.exchange(addrs[1], g.scgi_request(g.base_vars("GET", "/whoami")))
            assert raw == b"", "scgi+proxy without a PROXY header is closed unanswered"
            pids = answering_pids(server, lambda: whoami("uwsgi", addrs[2]), 2)
            assert len(pids) == 2
            # The variables are gone from the environment the application sees.
            assert ask("ajp", addrs[3], "/env") == "[]"
    finally:
        for s in socks:
            s.close()


def test_a_bind_overrides_the_systemd_name_and_says_so() -> None:
    sock = tcp_listener()
    port = sock.getsockname()[1]
    try:
        with activated([sock], "fastcgi", "--bind", "uwsgi://fd:3") as server:
            assert server.urls == [f"uwsgi://127.0.0.1:{port}"]
            assert whoami("uwsgi", ("127.0.0.1", port))[1] == "192.0.2.10"
            assert server.wait_stderr(
                r'systemd socket 3 is named "fastcgi"; --bind uwsgi://fd:3 says how it is spoken'
            )
    finally:
        sock.close()


def test_a_reload_under_systemd_keeps_the_sockets_quietly() -> None:
    """HUP reads the settings again, after the LISTEN_* variables were taken: the sockets
    systemd passed still stand for the default address, so nothing is said to change."""
    sock = tcp_listener()
    addr = ("127.0.0.1", sock.getsockname()[1])
    try:
        with activated([sock], "scgi", "-w", "2") as server:
            old = set(answering_pids(server, lambda: whoami("scgi", addr), 2))
            os.kill(server.pid, signal.SIGHUP)
            assert server.wait_stderr("Reload done")
            assert wait_until(lambda: not old & set(server.worker_pids()), timeout=20)
            assert whoami("scgi", addr)[0] not in old
            assert "listeners stay as they were bound" not in server.stderr_text()
    finally:
        sock.close()


def test_systemd_without_names_is_http_as_before() -> None:
    sock = tcp_listener()
    try:
        with activated([sock], None) as server:
            assert server.urls == [f"http://127.0.0.1:{sock.getsockname()[1]}"]
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------
# Mistakes are one line


def run_activated(names: str, count: int = 1, *args: str) -> subprocess.CompletedProcess[str]:
    socks = [tcp_listener() for _ in range(count)]
    fds = [s.fileno() for s in socks]
    try:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                activation_wrapper(count, names),
                *map(str, fds),
                "apps.procs:app",
                *args,
            ],
            cwd=TESTS_DIR,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            pass_fds=fds,
            check=False,
        )
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize(
    ("names", "count", "needle"),
    [
        (
            "fastcig",
            1,
            'systemd socket 3 is named "fastcig" (LISTEN_FDNAMES), which is not a protocol'
            ' (did you mean "fastcgi"?)',
        ),
        ("scgi+proxi", 1, '(did you mean "scgi+proxy"?)'),
        ("fastcgi", 2, "LISTEN_FDNAMES names 1 sockets but LISTEN_FDS passes 2"),
    ],
)
def test_a_wrong_systemd_name_is_one_line(names: str, count: int, needle: str) -> None:
    result = run_activated(names, count)
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result.stderr, needle)


@pytest.mark.parametrize(
    ("binds", "needle"),
    [
        (["fastcgi://fd:987"], "descriptor 987: not an open descriptor"),
        (["fd://x"], 'invalid bind address "fd://x": the descriptor must be a number'),
        (["scgi://fd:"], 'the descriptor must be a number, as in fd:3 (in "scgi://fd:")'),
        (
            ["scgi://fd:3", "uwsgi://fd:3"],
            "descriptor 3 is given twice in --bind (scgi://fd:3 and uwsgi://fd:3)",
        ),
    ],
)
def test_a_wrong_fd_bind_is_one_line(binds: list[str], needle: str) -> None:
    args = [a for b in binds for a in ("--bind", b)]
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "apps.procs:app", *args],
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode in (1, 2), result.stderr
    assert_one_line_error(result.stderr, needle)


def test_a_pipe_named_as_a_listener_is_refused() -> None:
    r, w = os.pipe()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ferrowsgi", "apps.procs:app", "--bind", f"ajp://fd:{r}"],
            cwd=TESTS_DIR,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            pass_fds=(r,),
            check=False,
        )
    finally:
        os.close(r)
        os.close(w)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("ferrowsgi: error:") == 1, result.stderr
    assert f"descriptor {r}: not a socket" in result.stderr
