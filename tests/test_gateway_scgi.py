"""SCGI listeners (``--bind scgi://HOST:PORT`` / ``scgi://unix:/path``): the protocol spoken
by hand (good requests, bad ones, limits, aborted ones), then the same WSGI checks through
nginx ``scgi_pass`` (TCP and unix socket) and apache2 ``mod_proxy_scgi``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
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
def scgi() -> Iterator[tuple[Server, tuple[str, int]]]:
    port = free_port()
    server = Server(
        "apps.proxied:app",
        "--limit-request-fields",
        "20",
        binds=[f"scgi://127.0.0.1:{port}"],
    ).start()
    try:
        yield server, ("127.0.0.1", port)
    finally:
        server.stop()


def ask(addr: tuple[str, int], data: bytes) -> tuple[int, dict[str, str], bytes]:
    return g.parse_answer(g.exchange(addr, data))


def test_a_request_is_answered_cgi_style_and_the_connection_closed(scgi) -> None:
    _, addr = scgi
    raw = g.exchange(addr, g.scgi_request(g.base_vars("GET", "/p%20q/r?s=1")))
    assert raw.startswith(b"Status: 200 OK\r\n"), raw[:200]
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
    assert "HTTP_SCGI" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_the_body_is_content_length_bytes(scgi) -> None:
    _, addr = scgi
    body = os.urandom(300_000)
    status, _, data = ask(addr, g.scgi_request(g.base_vars("POST", "/up?read=all", body=b""), body))
    assert status == 200
    out = json.loads(data)
    assert out["body"].encode("latin-1") == body
    assert out["environ"]["CONTENT_LENGTH"] == str(len(body))


def test_a_body_arriving_in_pieces(scgi) -> None:
    _, addr = scgi
    req = g.scgi_request(g.base_vars("POST", "/up?read=all", body=b""), b"x" * 5000)
    with socket.create_connection(addr, timeout=10) as s:
        for i in range(0, len(req), 777):
            s.sendall(req[i : i + 777])
            time.sleep(0.001)
        status, _, data = g.parse_answer(g.read_to_eof(s))
    assert status == 200
    assert json.loads(data)["body"] == "x" * 5000


def test_head_has_no_body(scgi) -> None:
    _, addr = scgi
    status, fields, body = ask(addr, g.scgi_request(g.base_vars("HEAD", "/h")))
    assert status == 200 and body == b""
    assert int(fields["content-length"]) > 0


def test_https_and_script_name_from_the_front_end(scgi) -> None:
    _, addr = scgi
    extra = [(b"HTTPS", b"on"), (b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/x y")]
    _, _, data = ask(addr, g.scgi_request(g.base_vars("GET", "/app/x%20y", extra)))
    env = json.loads(data)["environ"]
    assert env["wsgi.url_scheme"] == "https"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x y"


def test_one_request_per_connection(scgi) -> None:
    _, addr = scgi
    one = g.scgi_request(g.base_vars("GET", "/first"))
    two = g.scgi_request(g.base_vars("GET", "/second"))
    raw = g.exchange(addr, one + two)
    assert raw.count(b"Status: ") == 1
    assert json.loads(g.parse_answer(raw)[2])["environ"]["PATH_INFO"] == "/first"


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"x:", 400, "netstring length"),
        (b"01:", 400, "leading zero"),
        (b"5:ab\0c\0;", 400, "comma"),
        (b"0:,", 400, "CONTENT_LENGTH"),
        (g.scgi_request(g.base_vars(), content_length=False), 400, "CONTENT_LENGTH"),
        (
            g.scgi_request([(b"CONTENT_LENGTH", b"0"), *g.base_vars()], content_length=False),
            400,
            "SCGI=1",
        ),
        (
            g.scgi_request(
                [(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"2"), *g.base_vars()],
                content_length=False,
            ),
            400,
            "not 1",
        ),
        (
            g.scgi_request(
                [(b"CONTENT_LENGTH", b"-1"), (b"SCGI", b"1"), *g.base_vars()],
                content_length=False,
            ),
            400,
            "Content-Length",
        ),
        (g.scgi_request(g.base_vars()[1:]), 400, "method"),
        (g.scgi_request([*g.base_vars(), (b"REMOTE_ADDR", b"10.1.1.1")]), 400, "repeated"),
        (
            g.scgi_request([*g.base_vars(), *[(b"HTTP_X_%d" % i, b"v") for i in range(30)]]),
            431,
            "too many",
        ),
    ],
    ids=[
        "not-a-length",
        "leading-zero",
        "no-comma",
        "empty",
        "no-content-length",
        "no-scgi",
        "scgi-2",
        "bad-length",
        "no-method",
        "repeated-var",
        "too-many-fields",
    ],
)
def test_bad_requests_get_a_clear_answer(scgi, data: bytes, status: int, words: str) -> None:
    server, addr = scgi
    raw = g.exchange(addr, data)
    got, fields, body = g.parse_answer(raw)
    assert raw.startswith(b"Status: %d " % status), raw[:200]
    assert got == status
    assert fields["content-type"].startswith("text/plain")
    assert words.lower() in body.decode().lower(), body


def test_an_oversized_length_is_refused_before_the_netstring_arrives(scgi) -> None:
    _, addr = scgi
    with socket.create_connection(addr, timeout=10) as s:
        # Only the length prefix is sent: the answer cannot wait for the 10 MB it announces.
        s.sendall(b"10000000:")
        raw = g.read_to_eof(s)
    assert raw.startswith(b"Status: 431 "), raw[:200]


def test_aborted_requests_leave_the_server_serving(scgi) -> None:
    server, addr = scgi
    # Connected and gone; half a head; a head and half its body.
    socket.create_connection(addr, timeout=10).close()
    for data in [
        b"100:CONTENT_LENGTH\0",
        g.scgi_request(g.base_vars("POST", "/up?read=all", body=b""), b"x" * 100)[:-60],
    ]:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(data)
    status, _, data = ask(addr, g.scgi_request(g.base_vars("GET", "/after")))
    assert status == 200
    assert json.loads(data)["environ"]["PATH_INFO"] == "/after"
    assert server.proc is not None and server.proc.poll() is None


def test_a_streamed_response_arrives_as_it_is_made(scgi) -> None:
    _, addr = scgi
    gate_dir = short_tmp_dir()
    gate = os.path.join(gate_dir, "gate")
    try:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(g.scgi_request(g.base_vars("GET", f"/stream/slowgen?n=2&gate={gate}")))
            got = b""
            while b"slow0;" not in got:
                d = s.recv(65536)
                assert d, got
                got += d
            assert b"slow1;" not in got
            open(gate, "w").close()
            got += g.read_to_eof(s)
        assert got.endswith(b"slow0;slow1;")
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
        binds=[f"scgi://127.0.0.1:{port}", f"scgi://unix:{sock}"],
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
        front: g.FrontEnd = g.Nginx("scgi", target)
    else:
        if not g.apache_has("scgi"):
            pytest.skip("apache2 with mod_proxy_scgi is not installed (scripts/setup.sh)")
        front = g.Apache("scgi", port)
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
        # mod_proxy_scgi refuses a chunked request body itself (411): it never reaches
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
    if isinstance(fe, g.Apache):
        # mod_proxy_scgi sends the whole decoded path as SCRIPT_NAME and no PATH_INFO
        # (its documented default): the application sees the whole path.
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/mnt/x/y z")
    else:
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mnt", "/x/y z")
    assert env["QUERY_STRING"] == "q=1"


def test_https_from_the_front_end(fe) -> None:
    g.check_https_var(fe)


def test_headers_cannot_pose_as_server_variables(fe) -> None:
    g.check_no_injection(fe)


# --------------------------------------------------------------------------------------------
# The bind scheme and the body limit


@pytest.mark.parametrize("bind", ["ftp://127.0.0.1:0", "scgi://", "scgi://127.0.0.1:x"])
def test_a_bad_scheme_or_address_is_one_line(bind: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "apps.echo:app", "--bind", bind],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        cwd=os.path.dirname(__file__),
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "invalid bind address" in errors[0] and bind in errors[0], errors
    assert "Traceback" not in result.stderr


def test_the_listening_line_names_the_protocol() -> None:
    port = free_port()
    server = Server("apps.echo:app", binds=[f"scgi://127.0.0.1:{port}"]).start()
    try:
        assert server.urls == [f"scgi://127.0.0.1:{port}"]
    finally:
        server.stop()


def test_a_body_over_the_limit_is_refused() -> None:
    port = free_port()
    server = Server(
        "apps.proxied:app", "--limit-request-body", "1000", binds=[f"scgi://127.0.0.1:{port}"]
    ).start()
    try:
        req = g.scgi_request(g.base_vars("POST", "/up?read=all", body=b""), b"z" * 5000)
        status, _, body = g.parse_answer(g.exchange(("127.0.0.1", port), req))
        assert status == 413, body
    finally:
        server.stop()


def test_a_stalled_head_is_answered_408_in_the_protocols_form() -> None:
    port = free_port()
    server = Server(
        "apps.echo:app", "--read-timeout", "1", binds=[f"scgi://127.0.0.1:{port}"]
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(g.scgi_request(g.base_vars())[:20])
            raw = g.read_to_eof(s)
        assert raw.startswith(b"Status: 408 "), raw[:200]
    finally:
        server.stop()


def test_a_file_wrapper_response() -> None:
    port = free_port()
    fw = Server("apps.filewrapper:app", binds=[f"scgi://127.0.0.1:{port}"]).start()
    try:
        from apps.filewrapper import make_data

        for target, want in [("/file", make_data()), ("/file?offset=1000", make_data()[1000:])]:
            status, _, body = g.parse_answer(
                g.exchange(("127.0.0.1", port), g.scgi_request(g.base_vars("GET", target)))
            )
            assert status == 200
            assert body == want
    finally:
        fw.stop()


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
        binds=[f"scgi://127.0.0.1:{port}"],
    ).start()
    mark = tmp_path / "mark"
    try:
        req = g.scgi_request(g.base_vars("GET", f"/cgil?s=4&mark={mark}"))
        raw = g.exchange(("127.0.0.1", port), req)
        assert not mark.exists(), "answered only after the request's code ended"
        assert raw.startswith(b"Status: 504 "), raw[:200]
        assert b"did not answer within 1 s" in raw
        # The thread held the GIL all along: it meets RequestTimeout a switch interval after
        # its call returns, anywhere, even in its `finally` (tests/test_deadlines.py), so the
        # mark is not waited for; the server's own account of the thread is.
        assert server.wait_stderr(
            r"(Stack of GET /cgil\S* at its deadline|GET /cgil\S*: its thread came back)", 30
        ), server.stderr_text()
    finally:
        server.stop()
