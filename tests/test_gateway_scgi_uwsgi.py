"""What SCGI and uwsgi listeners have in common, checked for each protocol: the protocol
spoken by hand (good requests, bad ones, limits, aborted ones), then the same WSGI checks
through nginx (``scgi_pass``/``uwsgi_pass``, TCP and unix socket) and apache2
(``mod_proxy_scgi``/``mod_proxy_uwsgi``).

Each test runs once per protocol; what differs between them (the request encoder, how an
answer begins, what apache2 does with a chunked body or a mounted path) is data in
``gateway_cgi.SCGI`` and ``gateway_cgi.UWSGI``. What only one protocol has is in
tests/test_gateway_scgi.py and tests/test_gateway_uwsgi.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gateway_cgi as g
import pytest
from frontends import NGINX
from support import Server, free_port, short_tmp_dir


@pytest.fixture(scope="module", params=list(g.PROTOCOLS))
def proto(request: pytest.FixtureRequest) -> g.Protocol:
    return g.PROTOCOLS[request.param]


# --------------------------------------------------------------------------------------------
# By hand


@pytest.fixture(scope="module", params=["1", "4"], ids=lambda t: f"threads{t}")
def by_hand(
    proto: g.Protocol, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, tuple[str, int]]]:
    yield from g.by_hand_server(proto, request.param)


def test_a_request_is_answered_in_the_protocols_form_and_the_connection_closed(
    proto: g.Protocol, by_hand
) -> None:
    _, addr = by_hand
    raw = g.exchange(addr, proto.request(g.base_vars("GET", "/p%20q/r?s=1")))
    assert raw.startswith(proto.status_line(200) + b"OK\r\n"), raw[:200]
    status, fields, body = g.parse_answer(raw)
    assert status == 200
    assert fields["content-type"].startswith("application/json")
    env = json.loads(body)["environ"]
    assert env["PATH_INFO"] == "/p q/r"
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "s=1"
    # The front end's view of the request, not the gateway connection's.
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["REMOTE_PORT"] == "40123"
    assert env["SERVER_NAME"] == "gateway.example"
    assert env["SERVER_PORT"] == "8080"
    assert env["HTTP_HOST"] == "gateway.example:8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTP_CONTENT_LENGTH" not in env
    for name in proto.own_vars:
        assert f"HTTP_{name}" not in env


def test_the_body_is_content_length_bytes(proto: g.Protocol, by_hand) -> None:
    _, addr = by_hand
    body = os.urandom(300_000)
    status, _, data = g.ask(
        addr, proto.request(g.base_vars("POST", "/up?read=all", body=b""), body)
    )
    assert status == 200
    out = json.loads(data)
    assert out["body"].encode("latin-1") == body
    assert out["environ"]["CONTENT_LENGTH"] == str(len(body))


def test_a_request_arriving_in_pieces(proto: g.Protocol, by_hand) -> None:
    _, addr = by_hand
    req = proto.request(g.base_vars("POST", "/up?read=all", body=b""), b"x" * 5000)
    with socket.create_connection(addr, timeout=10) as s:
        for i in range(0, len(req), proto.piece):
            s.sendall(req[i : i + proto.piece])
            time.sleep(0.001)
        status, _, data = g.parse_answer(g.read_to_eof(s))
    assert status == 200
    assert json.loads(data)["body"] == "x" * 5000


def test_head_has_no_body(proto: g.Protocol, by_hand) -> None:
    _, addr = by_hand
    status, fields, body = g.ask(addr, proto.request(g.base_vars("HEAD", "/h")))
    assert status == 200 and body == b""
    assert int(fields["content-length"]) > 0


def test_https_and_script_name_from_the_front_end(proto: g.Protocol, by_hand) -> None:
    _, addr = by_hand
    extra = [(b"HTTPS", b"on"), (b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/x y")]
    _, _, data = g.ask(addr, proto.request(g.base_vars("GET", "/app/x%20y", extra)))
    env = json.loads(data)["environ"]
    assert env["wsgi.url_scheme"] == "https"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x y"


def test_one_request_per_connection(proto: g.Protocol, by_hand) -> None:
    _, addr = by_hand
    one = proto.request(g.base_vars("GET", "/first"))
    two = proto.request(g.base_vars("GET", "/second"))
    raw = g.exchange(addr, one + two)
    assert raw.count(proto.status_prefix) == 1
    assert json.loads(g.parse_answer(raw)[2])["environ"]["PATH_INFO"] == "/first"


def test_each_request_has_its_own_server_variables(proto: g.Protocol, by_hand) -> None:
    # A front end sends the same variables with the same values on every request, and the
    # environ is made from a copy of a dict that holds the values that repeated; a value
    # that changes, or a variable that is left out, must show as this request sent it,
    # whatever came before, through the rebuilds of that dict.
    _, addr = by_hand

    def environ(extra: list[tuple[bytes, bytes | None]]) -> dict:
        # A variable in `extra` replaces the one of the same name nginx would send (None:
        # it is left out).
        names = {name for name, _ in extra}
        sent = [v for v in g.base_vars("GET", "/") if v[0] not in names]
        sent += [(n, v) for n, v in extra if v is not None]
        _, _, data = g.ask(addr, proto.request(sent))
        return json.loads(data)["environ"]

    root = [(b"DOCUMENT_ROOT", b"/srv/a"), (b"GATEWAY_INTERFACE", b"CGI/1.1")]
    long_root = b"/srv/" + b"x" * 100
    variants: list[tuple[list[tuple[bytes, bytes | None]], dict[str, str | None]]] = [
        (
            root,
            {"DOCUMENT_ROOT": "/srv/a", "GATEWAY_INTERFACE": "CGI/1.1", "HTTPS": None},
        ),
        ([(b"DOCUMENT_ROOT", b"/srv/b")], {"DOCUMENT_ROOT": "/srv/b", "GATEWAY_INTERFACE": None}),
        ([(b"DOCUMENT_ROOT", long_root)], {"DOCUMENT_ROOT": long_root.decode()}),
        ([(b"DOCUMENT_ROOT", b"")], {"DOCUMENT_ROOT": ""}),
        (
            [],
            {"DOCUMENT_ROOT": None, "GATEWAY_INTERFACE": None, "REMOTE_USER": None, "HTTPS": None},
        ),
        ([(b"REMOTE_USER", b"alice")], {"REMOTE_USER": "alice", "DOCUMENT_ROOT": None}),
        (
            [(b"HTTPS", b"on")],
            {"HTTPS": "on", "wsgi.url_scheme": "https", "REMOTE_HOST": "192.0.2.10"},
        ),
        # REMOTE_HOST is REMOTE_ADDR's unless the front end sends its own.
        (
            [(b"REMOTE_ADDR", b"198.51.100.7")],
            {"REMOTE_ADDR": "198.51.100.7", "REMOTE_HOST": "198.51.100.7"},
        ),
        (
            [(b"REMOTE_HOST", b"client.example")],
            {"REMOTE_ADDR": "192.0.2.10", "REMOTE_HOST": "client.example"},
        ),
        # The dict holds the method, protocol and Host its request came with too.
        ([(b"REQUEST_METHOD", b"POST")], {"REQUEST_METHOD": "POST"}),
        ([(b"REQUEST_METHOD", b"PROPFIND")], {"REQUEST_METHOD": "PROPFIND"}),
        ([(b"SERVER_PROTOCOL", b"HTTP/1.0")], {"SERVER_PROTOCOL": "HTTP/1.0"}),
        ([(b"SERVER_PROTOCOL", b"HTTP/2.0")], {"SERVER_PROTOCOL": "HTTP/2.0"}),
        ([(b"HTTP_HOST", b"other.example")], {"HTTP_HOST": "other.example"}),
        ([(b"HTTP_HOST", None)], {"HTTP_HOST": None}),
    ]
    head_defaults = {
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "gateway.example:8080",
    }
    # Runs of one variant (its values repeat and the dict takes them), then every variant
    # in turn (they keep changing), long enough for several rebuilds; then runs longer than
    # the rebuild interval (32 requests) of the address variants and of the plain one.
    order = [0] * 3 + [5] * 3 + [i % len(variants) for i in range(80)] + [0, 0, 4, 4, 5]
    order += [0] * 35 + [7] * 35 + [0] * 35 + [8] * 35 + [0] * 35 + [7, 8, 0, 7, 0, 8]
    # The same for the request head's variables, one at a time and in turn.
    for i in range(9, len(variants)):
        order += [i] * 35 + [0] * 35 + [i, 0, i]
    order += [9 + i % 6 for i in range(40)] + [0] * 3
    for i in order:
        extra, expected = variants[i]
        expected = {**head_defaults, **expected}
        env = environ(extra)
        for key, value in expected.items():
            if value is None:
                assert key not in env, (i, key, env.get(key))
            else:
                assert env[key] == value, (i, key, env.get(key))
        assert env["SERVER_NAME"] == "gateway.example"
        if i != 8:
            assert env["REMOTE_HOST"] == env["REMOTE_ADDR"], (i, env["REMOTE_HOST"])
        assert env["SERVER_PORT"] == "8080"
        assert env["wsgi.url_scheme"] == ("https" if i == 6 else "http")


# What a randomised sequence of requests picks from, per variable (None: not sent).
RANDOM_CHOICES: dict[str, list[str | None]] = {
    "REQUEST_METHOD": ["GET", "POST", "PROPFIND", "DELETE"],
    "SERVER_PROTOCOL": ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0"],
    "HTTP_HOST": ["gateway.example:8080", "other.example", None],
    "DOCUMENT_ROOT": ["/srv/a", "/srv/b", "/srv/" + "x" * 80, "", None],
    "REMOTE_ADDR": ["192.0.2.10", "198.51.100.7"],
    "REMOTE_HOST": [None, "client.example"],
    "HTTPS": [None, "on"],
    "SERVER_NAME": ["gateway.example", "other.example"],
    "SERVER_PORT": ["8080", "443"],
    "REMOTE_USER": [None, "alice", "bob"],
    "GATEWAY_INTERFACE": [None, "CGI/1.1"],
    "REQUEST_URI": ["/", "/a/b", "/x?y=1", "/p%20q"],
}


def _random_sequence(proto: g.Protocol, addr: tuple[str, int], seed: int) -> None:
    # The environ is a copy of a dict that holds what repeated (server variables, method,
    # protocol, Host), rebuilt now and then; over runs of requests of random lengths, each
    # run changing a few variables of the one before, every request's environ must hold
    # exactly what that request sent.
    rng = random.Random(seed)
    state = {name: values[0] for name, values in RANDOM_CHOICES.items()}
    sent_count = 0
    while sent_count < 400:
        for name in rng.sample(sorted(RANDOM_CHOICES), rng.randint(1, 3)):
            state[name] = rng.choice(RANDOM_CHOICES[name])
        for _ in range(rng.choice([1, 1, 2, 5, 20, 40])):
            sent_count += 1
            uri = state["REQUEST_URI"] or "/"
            base = g.base_vars(state["REQUEST_METHOD"] or "GET", uri)
            names = set(RANDOM_CHOICES)
            sent = [(n, v) for n, v in base if n.decode() not in names or n == b"QUERY_STRING"]
            sent += [(n.encode(), v.encode()) for n, v in state.items() if v is not None]
            _, _, data = g.ask(addr, proto.request(sent))
            env = json.loads(data)["environ"]
            where = (seed, sent_count, state)
            for name, value in state.items():
                if name == "REMOTE_HOST" and value is None:
                    assert env["REMOTE_HOST"] == state["REMOTE_ADDR"], where
                else:
                    assert env.get(name) == value, (name, env.get(name), where)
            path, _, query = uri.partition("?")
            assert env["PATH_INFO"] == path.replace("%20", " "), where
            assert env["QUERY_STRING"] == query, where
            assert env["wsgi.url_scheme"] == ("https" if state["HTTPS"] else "http"), where


@pytest.mark.parametrize("seed", [1, 2])
def test_kept_variables_against_random_sequences(proto: g.Protocol, by_hand, seed: int) -> None:
    _random_sequence(proto, by_hand[1], seed)


def test_kept_variables_with_four_threads_and_clients_at_once(proto: g.Protocol) -> None:
    # With application threads the dict is shared by requests served at the same time
    # (one holds it, the others build from the template): four clients, each its own
    # random sequence, against four threads.
    port = free_port()
    server = Server(
        "apps.proxied:app", "--threads", "4", binds=[f"{proto.name}://127.0.0.1:{port}"]
    )
    server.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            done = [pool.submit(_random_sequence, proto, ("127.0.0.1", port), s) for s in range(4)]
            for f in done:
                f.result()
    finally:
        server.stop()


# Bad variables either protocol can carry; each file adds its own framing errors.
BAD_VARIABLES = {
    "no-method": (g.base_vars()[1:], 400, "method"),
    "repeated-var": ([*g.base_vars(), (b"REMOTE_ADDR", b"10.1.1.1")], 400, "repeated"),
    "too-many-fields": (
        [*g.base_vars(), *[(b"HTTP_X_%d" % i, b"v") for i in range(30)]],
        431,
        "too many",
    ),
}


@pytest.mark.parametrize("case", list(BAD_VARIABLES))
def test_bad_variables_get_a_clear_answer(proto: g.Protocol, by_hand, case: str) -> None:
    _, addr = by_hand
    variables, status, words = BAD_VARIABLES[case]
    g.check_refused(proto, g.exchange(addr, proto.request(variables)), status, words)


def test_aborted_requests_leave_the_server_serving(proto: g.Protocol, by_hand) -> None:
    server, addr = by_hand
    # Connected and gone; half a head; a head and half its body.
    socket.create_connection(addr, timeout=10).close()
    for data in [
        proto.partial_head,
        proto.request(g.base_vars("POST", "/up?read=all", body=b""), b"x" * 100)[:-60],
    ]:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(data)
    status, _, data = g.ask(addr, proto.request(g.base_vars("GET", "/after")))
    assert status == 200
    assert json.loads(data)["environ"]["PATH_INFO"] == "/after"
    assert server.proc is not None and server.proc.poll() is None


def test_a_streamed_response_arrives_as_it_is_made(proto: g.Protocol, by_hand) -> None:
    _, addr = by_hand
    gate_dir = short_tmp_dir()
    gate = os.path.join(gate_dir, "gate")
    try:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(proto.request(g.base_vars("GET", f"/stream/slowgen?n=2&gate={gate}")))
            got = g.read_until(s, b"slow0;")
            assert b"slow1;" not in got
            open(gate, "w").close()
            got += g.read_to_eof(s)
        # Close-delimited: no chunked framing around the blocks.
        assert got.endswith(b"\r\n\r\nslow0;slow1;")
    finally:
        shutil.rmtree(gate_dir, ignore_errors=True)


def test_a_body_over_the_limit_is_refused(proto: g.Protocol) -> None:
    port = free_port()
    server = Server(
        "apps.proxied:app",
        *("--limit-request-body", "1000"),
        binds=[f"{proto.name}://127.0.0.1:{port}"],
    ).start()
    try:
        req = proto.request(g.base_vars("POST", "/up?read=all", body=b""), b"z" * 5000)
        raw = g.exchange(("127.0.0.1", port), req)
        assert raw.startswith(proto.status_line(413)), raw[:200]
        status, _, body = g.parse_answer(raw)
        assert status == 413, body
    finally:
        server.stop()


def test_a_deadline_is_answered_504_in_the_protocols_form_while_the_thread_is_busy(
    proto: g.Protocol, tmp_path: Path
) -> None:
    """The watcher sends the codec's 504 at the deadline, while the request's thread is still
    in C code holding the GIL: the answer is there before the request's code has ended."""
    port = free_port()
    server = Server(
        "apps.deadlines:app",
        *("--timeout", "1", "--timeout-grace", "30"),
        binds=[f"{proto.name}://127.0.0.1:{port}"],
    ).start()
    mark = tmp_path / "mark"
    try:
        req = proto.request(g.base_vars("GET", f"/cgil?s=4&mark={mark}"))
        raw = g.exchange(("127.0.0.1", port), req)
        assert not mark.exists(), "answered only after the request's code ended"
        assert raw.startswith(proto.status_line(504)), raw[:200]
        assert b"did not answer within 1 s" in raw
        # The thread held the GIL all along: it meets RequestTimeout a switch interval after
        # its call returns, anywhere, even in its `finally` (tests/test_deadlines.py), so the
        # mark is not waited for; the server's own account of the thread is.
        assert server.wait_stderr(
            r"(Stack of GET /cgil\S* at its deadline|GET /cgil\S*: its thread came back)", 30
        ), server.stderr_text()
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Through the front ends


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, tuple[int, str]]]:
    """A server for each protocol, with a TCP and a unix listener: ``{name: (port, path)}``."""
    sock_dir = short_tmp_dir()
    os.chmod(sock_dir, 0o755)
    servers, out = [], {}
    try:
        for name in g.PROTOCOLS:
            sock = os.path.join(sock_dir, f"{name}.sock")
            port = free_port()
            binds = [f"{name}://127.0.0.1:{port}", f"{name}://unix:{sock}"]
            servers.append(Server("apps.proxied:app", "--threads", "4", binds=binds).start())
            out[name] = (port, sock)
        yield out
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


# Each protocol through nginx over TCP and over a unix socket, and through apache2.
FRONT_ENDS = [f"{p}-{f}" for p in g.PROTOCOLS for f in ("nginx-tcp", "nginx-unix", "apache2")]


@pytest.fixture(scope="module", params=FRONT_ENDS)
def fe(request: pytest.FixtureRequest, backends) -> Iterator[g.Nginx | g.Apache]:
    name, _, where = request.param.partition("-")
    port, sock = backends[name]
    front: g.Nginx | g.Apache
    if where.startswith("nginx"):
        if NGINX is None:
            pytest.skip("nginx is not installed (scripts/setup.sh)")
        front = g.Nginx(name, f"127.0.0.1:{port}" if where == "nginx-tcp" else f"unix:{sock}")
    else:
        if not g.apache_has(name):
            pytest.skip(f"apache2 with mod_proxy_{name} is not installed (scripts/setup.sh)")
        front = g.Apache(name, port)
    try:
        yield front
    finally:
        front.stop()


def no_errors(fe: g.FrontEnd) -> None:
    assert fe.errors() == [], fe.error_log()[-2000:]


def test_encoded_path_and_query(fe) -> None:
    g.check_encoded_path_and_query(fe)
    no_errors(fe)


def test_one_mib_body_with_content_length(fe) -> None:
    g.check_big_body(fe)
    no_errors(fe)


def test_chunked_body_from_the_client(fe) -> None:
    refused = fe.protocol.apache_chunked_status
    if isinstance(fe, g.Apache) and refused is not None:
        # apache2 refuses the chunked body itself: it never reaches the backend.
        status, _ = g.chunked_upload(fe, [b"abc"])
        assert status == refused
        return
    g.check_chunked_body_buffered(fe)
    no_errors(fe)


def test_streamed_response(fe) -> None:
    gate_dir = short_tmp_dir()
    try:
        g.check_streamed_response(fe, gate_dir)
    finally:
        shutil.rmtree(gate_dir, ignore_errors=True)
    no_errors(fe)


def test_remote_addr_is_the_client(fe) -> None:
    g.check_remote_addr(fe)


def test_keep_alive_to_the_front_end(fe) -> None:
    g.check_keep_alive(fe)
    no_errors(fe)


def test_script_name_and_path_info_as_the_front_end_splits_them(fe) -> None:
    env = g.environ_of(fe, "/mnt/x/y%20z?q=1")
    # nginx sets both from its location; apache2 as its module for the protocol does.
    want = fe.protocol.apache_mount_split if isinstance(fe, g.Apache) else ("/mnt", "/x/y z")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == want
    assert env["QUERY_STRING"] == "q=1"


def test_https_from_the_front_end(fe) -> None:
    g.check_https_var(fe)


def test_headers_cannot_pose_as_server_variables(fe) -> None:
    g.check_no_injection(fe)


def test_large_download(fe) -> None:
    g.check_big_download(fe)
    no_errors(fe)
