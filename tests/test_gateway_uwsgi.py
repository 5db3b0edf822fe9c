"""uwsgi listeners (``--bind uwsgi://HOST:PORT`` / ``uwsgi://unix:/path``): uWSGI's binary
packet spoken by hand (good requests, bad ones, limits, aborted ones), then the same WSGI
checks through nginx ``uwsgi_pass`` (TCP and unix socket) and apache2 ``mod_proxy_uwsgi``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import gateway_cgi as g
import pytest
from frontends import NGINX
from support import Server, free_port, short_tmp_dir

# --------------------------------------------------------------------------------------------
# By hand


@pytest.fixture(scope="module")
def uwsgi() -> Iterator[tuple[Server, tuple[str, int]]]:
    port = free_port()
    server = Server(
        "apps.proxied:app",
        "--limit-request-fields",
        "20",
        binds=[f"uwsgi://127.0.0.1:{port}"],
    ).start()
    try:
        yield server, ("127.0.0.1", port)
    finally:
        server.stop()


def ask(addr: tuple[str, int], data: bytes) -> tuple[int, dict[str, str], bytes]:
    return g.parse_answer(g.exchange(addr, data))


def test_a_request_is_answered_with_a_status_line_and_the_connection_closed(uwsgi) -> None:
    _, addr = uwsgi
    raw = g.exchange(addr, g.uwsgi_request(g.base_vars("GET", "/p%20q/r?s=1")))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw[:200]
    status, fields, body = g.parse_answer(raw)
    assert status == 200
    assert fields["content-type"].startswith("application/json")
    env = json.loads(body)["environ"]
    assert env["PATH_INFO"] == "/p q/r"
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "s=1"
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["REMOTE_PORT"] == "40123"
    assert env["SERVER_NAME"] == "gateway.example"
    assert env["SERVER_PORT"] == "8080"
    assert env["HTTP_HOST"] == "gateway.example:8080"
    assert env["wsgi.url_scheme"] == "http"


def test_nginx_style_empty_content_length_is_no_body(uwsgi) -> None:
    _, addr = uwsgi
    req = g.uwsgi_request(
        [*g.base_vars("GET", "/e?read=all"), (b"CONTENT_LENGTH", b""), (b"CONTENT_TYPE", b"")],
        content_length=False,
    )
    status, _, data = ask(addr, req)
    assert status == 200
    out = json.loads(data)
    assert out["body"] == ""
    assert out["environ"].get("CONTENT_LENGTH", "") == ""


def test_the_body_is_content_length_bytes(uwsgi) -> None:
    _, addr = uwsgi
    body = os.urandom(300_000)
    status, _, data = ask(
        addr, g.uwsgi_request(g.base_vars("POST", "/up?read=all", body=b""), body)
    )
    assert status == 200
    out = json.loads(data)
    assert out["body"].encode("latin-1") == body
    assert out["environ"]["CONTENT_LENGTH"] == str(len(body))


def test_a_packet_arriving_in_pieces(uwsgi) -> None:
    _, addr = uwsgi
    req = g.uwsgi_request(g.base_vars("POST", "/up?read=all", body=b""), b"y" * 5000)
    with socket.create_connection(addr, timeout=10) as s:
        for i in range(0, len(req), 333):
            s.sendall(req[i : i + 333])
            time.sleep(0.001)
        status, _, data = g.parse_answer(g.read_to_eof(s))
    assert status == 200
    assert json.loads(data)["body"] == "y" * 5000


def test_head_has_no_body(uwsgi) -> None:
    _, addr = uwsgi
    status, fields, body = ask(addr, g.uwsgi_request(g.base_vars("HEAD", "/h")))
    assert status == 200 and body == b""
    assert int(fields["content-length"]) > 0


def test_https_and_script_name_from_the_front_end(uwsgi) -> None:
    _, addr = uwsgi
    extra = [(b"HTTPS", b"on"), (b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/x y")]
    _, _, data = ask(addr, g.uwsgi_request(g.base_vars("GET", "/app/x%20y", extra)))
    env = json.loads(data)["environ"]
    assert env["wsgi.url_scheme"] == "https"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x y"


def test_one_request_per_connection(uwsgi) -> None:
    _, addr = uwsgi
    one = g.uwsgi_request(g.base_vars("GET", "/first"))
    two = g.uwsgi_request(g.base_vars("GET", "/second"))
    raw = g.exchange(addr, one + two)
    assert raw.count(b"HTTP/1.1 ") == 1
    assert json.loads(g.parse_answer(raw)[2])["environ"]["PATH_INFO"] == "/first"


def vars_block(variables: g.Vars) -> bytes:
    return b"".join(
        struct.pack("<H", len(n)) + n + struct.pack("<H", len(v)) + v for n, v in variables
    )


GOOD = vars_block(g.base_vars())


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (g.uwsgi_request(g.base_vars(), modifier1=5), 400, "modifier1"),
        (g.uwsgi_request(g.base_vars(), modifier1=30), 400, "modifier1"),
        (g.uwsgi_request(g.base_vars(), modifier2=1), 400, "modifier2"),
        # datasize one short of the variables, and one past them.
        (struct.pack("<BHB", 0, len(GOOD) - 1, 0) + GOOD, 400, "datasize"),
        (struct.pack("<BHB", 0, len(GOOD) + 1, 0) + GOOD + b"\0", 400, "datasize"),
        (struct.pack("<BHB", 0, 0, 0), 400, "method"),
        (g.uwsgi_request(g.base_vars()[1:]), 400, "method"),
        (g.uwsgi_request([*g.base_vars(), (b"", b"x")]), 400, "header name"),
        (g.uwsgi_request([*g.base_vars(), (b"HTTP_X", b"a\r\nb")]), 400, "header value"),
        (g.uwsgi_request([*g.base_vars(), (b"REMOTE_ADDR", b"10.1.1.1")]), 400, "repeated"),
        (
            g.uwsgi_request([*g.base_vars(), (b"CONTENT_LENGTH", b"12a")], content_length=False),
            400,
            "Content-Length",
        ),
        (
            g.uwsgi_request([*g.base_vars(), *[(b"HTTP_X_%d" % i, b"v") for i in range(30)]]),
            431,
            "too many",
        ),
    ],
    ids=[
        "modifier1-5",
        "modifier1-30",
        "modifier2",
        "datasize-short",
        "datasize-long",
        "no-vars",
        "no-method",
        "empty-key",
        "crlf-value",
        "repeated-var",
        "bad-length",
        "too-many-fields",
    ],
)
def test_bad_packets_get_a_clear_answer(uwsgi, data: bytes, status: int, words: str) -> None:
    _, addr = uwsgi
    raw = g.exchange(addr, data)
    assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    got, fields, body = g.parse_answer(raw)
    assert got == status
    assert fields["content-type"].startswith("text/plain")
    assert words.lower() in body.decode().lower(), body


def test_another_modifier_is_refused_at_the_first_byte(uwsgi) -> None:
    _, addr = uwsgi
    with socket.create_connection(addr, timeout=10) as s:
        # A uWSGI ping packet's first byte only: nothing more is needed to know.
        s.sendall(b"\x64")
        raw = g.read_to_eof(s)
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:200]
    assert b"modifier1" in raw


def test_aborted_requests_leave_the_server_serving(uwsgi) -> None:
    server, addr = uwsgi
    socket.create_connection(addr, timeout=10).close()
    for data in [
        g.uwsgi_request(g.base_vars())[:10],
        g.uwsgi_request(g.base_vars("POST", "/up?read=all", body=b""), b"x" * 100)[:-60],
    ]:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(data)
    status, _, data = ask(addr, g.uwsgi_request(g.base_vars("GET", "/after")))
    assert status == 200
    assert json.loads(data)["environ"]["PATH_INFO"] == "/after"
    assert server.proc is not None and server.proc.poll() is None


def test_a_streamed_response_arrives_as_it_is_made(uwsgi) -> None:
    _, addr = uwsgi
    gate_dir = short_tmp_dir()
    gate = os.path.join(gate_dir, "gate")
    try:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(g.uwsgi_request(g.base_vars("GET", f"/stream/slowgen?n=2&gate={gate}")))
            got = b""
            while b"slow0;" not in got:
                d = s.recv(65536)
                assert d, got
                got += d
            assert b"slow1;" not in got
            open(gate, "w").close()
            got += g.read_to_eof(s)
        # Close-delimited: no chunked framing around the blocks.
        assert got.endswith(b"\r\n\r\nslow0;slow1;")
    finally:
        shutil.rmtree(gate_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Through the front ends


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[Server, int, str]]:
    sock_dir = short_tmp_dir()
    os.chmod(sock_dir, 0o755)
    sock = os.path.join(sock_dir, "fw.sock")
    port = free_port()
    server = Server(
        "apps.proxied:app",
        "--threads",
        "4",
        binds=[f"uwsgi://127.0.0.1:{port}", f"uwsgi://unix:{sock}"],
    ).start()
    try:
        yield server, port, sock
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


FRONT_ENDS = ["nginx-tcp", "nginx-unix", "apache2"]


@pytest.fixture(scope="module", params=FRONT_ENDS)
def fe(request: pytest.FixtureRequest, backend) -> Iterator[g.FrontEnd]:
    _, port, sock = backend
    if request.param.startswith("nginx"):
        if NGINX is None:
            pytest.skip("nginx is not installed (scripts/setup.sh)")
        target = f"127.0.0.1:{port}" if request.param == "nginx-tcp" else f"unix:{sock}"
        front: g.FrontEnd = g.Nginx("uwsgi", target)
    else:
        if not g.apache_has("uwsgi"):
            pytest.skip("apache2 with mod_proxy_uwsgi is not installed (scripts/setup.sh)")
        front = g.Apache("uwsgi", port)
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
    if isinstance(fe, g.Apache):
        # mod_proxy_uwsgi refuses a chunked request body itself (411): it never reaches
        # the backend.
        status, _ = g.chunked_upload(fe, [b"abc"])
        assert status == 411
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
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mnt", "/x/y z")
    assert env["QUERY_STRING"] == "q=1"


def test_https_from_the_front_end(fe) -> None:
    g.check_https_var(fe)


def test_headers_cannot_pose_as_server_variables(fe) -> None:
    g.check_no_injection(fe)


def test_the_listening_line_names_the_protocol() -> None:
    sock_dir = short_tmp_dir()
    sock = os.path.join(sock_dir, "u.sock")
    server = Server("apps.echo:app", binds=[f"uwsgi://unix:{sock}"]).start()
    try:
        assert server.urls == [f"uwsgi://unix:{sock}"]
        status, _, _ = g.parse_answer(g.exchange(sock, g.uwsgi_request(g.base_vars())))
        assert status == 200
        # Over a unix socket the server's name and port the front end did not send come
        # from the Host, as for HTTP; the client's address is unknown.
        bare = [
            (n, v)
            for n, v in g.base_vars()
            if n not in (b"REMOTE_ADDR", b"REMOTE_PORT", b"SERVER_NAME", b"SERVER_PORT")
        ]
        status, _, data = g.parse_answer(g.exchange(sock, g.uwsgi_request(bare)))
        env = json.loads(data)["environ"]
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("gateway.example", "8080")
        assert env["REMOTE_ADDR"] == env["REMOTE_PORT"] == ""
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_a_body_over_the_limit_is_refused() -> None:
    port = free_port()
    server = Server(
        "apps.proxied:app", "--limit-request-body", "1000", binds=[f"uwsgi://127.0.0.1:{port}"]
    ).start()
    try:
        req = g.uwsgi_request(g.base_vars("POST", "/up?read=all", body=b""), b"z" * 5000)
        raw = g.exchange(("127.0.0.1", port), req)
        assert raw.startswith(b"HTTP/1.1 413 "), raw[:200]
    finally:
        server.stop()


def test_addresses_the_front_end_did_not_send_are_the_connections(uwsgi) -> None:
    _, addr = uwsgi
    variables = [
        (n, v)
        for n, v in g.base_vars("GET", "/bare")
        if n not in (b"REMOTE_ADDR", b"REMOTE_PORT", b"SERVER_NAME", b"SERVER_PORT")
    ]
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(g.uwsgi_request(variables))
        local_port = s.getsockname()[1]
        status, _, data = g.parse_answer(g.read_to_eof(s))
    assert status == 200
    env = json.loads(data)["environ"]
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(addr[1]))
    # The ones it sent are its own, whatever the connection says.
    variables.append((b"REMOTE_ADDR", b"203.0.113.5"))
    status, _, data = ask(addr, g.uwsgi_request(variables))
    env = json.loads(data)["environ"]
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "203.0.113.5"
    assert env["REQUEST_METHOD"] == "GET" and env["REQUEST_URI"] == "/bare"
    assert env["QUERY_STRING"] == "" and env["PATH_INFO"] == "/bare"


def test_large_download(fe) -> None:
    g.check_big_download(fe)
    no_errors(fe)


def test_a_deadline_is_answered_504_in_the_protocols_form_while_the_thread_is_busy(
    tmp_path: Path,
) -> None:
    """The watcher sends the codec's 504 at the deadline, while the request's thread is still
    in C code holding the GIL: the answer is there before the request's code has ended."""
    port = free_port()
    server = Server(
        "apps.deadlines:app",
        *("--timeout", "1", "--timeout-grace", "30"),
        binds=[f"uwsgi://127.0.0.1:{port}"],
    ).start()
    mark = tmp_path / "mark"
    try:
        req = g.uwsgi_request(g.base_vars("GET", f"/cgil?s=4&mark={mark}"))
        raw = g.exchange(("127.0.0.1", port), req)
        assert not mark.exists(), "answered only after the request's code ended"
        assert raw.startswith(b"HTTP/1.1 504 "), raw[:200]
        assert b"did not answer within 1 s" in raw
        # The thread held the GIL all along: it meets RequestTimeout a switch interval after
        # its call returns, anywhere, even in its `finally` (tests/test_deadlines.py), so the
        # mark is not waited for; the server's own account of the thread is.
        assert server.wait_stderr(
            r"(Stack of GET /cgil\S* at its deadline|GET /cgil\S*: its thread came back)", 30
        ), server.stderr_text()
    finally:
        server.stop()
