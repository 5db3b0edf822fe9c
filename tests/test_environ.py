"""The environ ferrowsgi builds (PEP 3333 §"environ Variables"), checked through the echo app."""

from __future__ import annotations

import pytest
from support import RawConn, Response, Server

pytestmark = pytest.mark.timeout(30)


def echo(server: Server, target: str = "/", **kw: object) -> dict:
    resp = server.request(kw.pop("method", "GET"), target, **kw)  # type: ignore[arg-type]
    assert resp.status == 200, (resp.status, resp.body[:500], server.stderr_text()[-3000:])
    return resp.json()


def env_of(server: Server, target: str = "/", **kw: object) -> dict[str, str]:
    return echo(server, target, **kw)["environ"]


# --- request line -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_request_method(echo_server: Server, method: str) -> None:
    assert env_of(echo_server, method=method)["REQUEST_METHOD"] == method


def test_extension_method_is_passed_through(raw_echo_server: Server) -> None:
    assert env_of(raw_echo_server, method="PURGE")["REQUEST_METHOD"] == "PURGE"


def test_script_name_is_empty_at_root(echo_server: Server) -> None:
    env = env_of(echo_server, "/some/path")
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/some/path"


@pytest.mark.parametrize(
    ("target", "path_info"),
    [
        ("/", "/"),
        ("/plain/path", "/plain/path"),
        ("/caf%C3%A9", "/caf\xc3\xa9"),
        ("/a%20b", "/a b"),
        ("/a%2Fb", "/a/b"),
        ("/%7euser", "/~user"),
        ("/percent%25literal", "/percent%literal"),
        ("/plus+stays", "/plus+stays"),
    ],
)
def test_path_info_is_percent_decoded_latin1(echo_server: Server, target: str, path_info: str):
    env = env_of(echo_server, target)
    assert env["PATH_INFO"] == path_info
    assert env["RAW_URI"] == target
    assert env["REQUEST_URI"] == target


@pytest.mark.parametrize(
    ("target", "query"),
    [
        ("/q", ""),
        ("/q?", ""),
        ("/q?a=1&b=2", "a=1&b=2"),
        ("/q?x=%20y&z=caf%C3%A9", "x=%20y&z=caf%C3%A9"),
        ("/q?a=b?c=d", "a=b?c=d"),
        ("/q%3Fnot-a-query", ""),
    ],
)
def test_query_string_is_raw(echo_server: Server, target: str, query: str) -> None:
    env = env_of(echo_server, target)
    assert env["QUERY_STRING"] == query
    assert env["PATH_INFO"] == target.split("?", 1)[0].replace("%3F", "?")


def test_raw_uri_keeps_encoding_and_query(echo_server: Server) -> None:
    env = env_of(echo_server, "/caf%C3%A9/x?q=%2F")
    assert env["RAW_URI"] == "/caf%C3%A9/x?q=%2F"
    assert env["REQUEST_URI"] == "/caf%C3%A9/x?q=%2F"
    assert env["PATH_INFO"] == "/caf\xc3\xa9/x"
    assert env["QUERY_STRING"] == "q=%2F"


def test_absolute_form_target_authority_wins(echo_server: Server) -> None:
    # RFC 9112 §3.2.2: the authority of an absolute-form target replaces the Host header.
    env = env_of(echo_server, "http://example.com/abs?x=1", headers=[("Host", "other.invalid")])
    assert env["PATH_INFO"] == "/abs"
    assert env["QUERY_STRING"] == "x=1"
    assert env["HTTP_HOST"] == "example.com"


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_server_protocol(echo_server: Server, version: str) -> None:
    assert env_of(echo_server, version=version)["SERVER_PROTOCOL"] == version


def test_http10_without_host_is_served(echo_server: Server) -> None:
    env = env_of(echo_server, "/", version="HTTP/1.0", host=None)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env


# --- content type/length ----------------------------------------------------------------------


def test_content_headers_only_when_sent(echo_server: Server) -> None:
    env = env_of(echo_server, "/")
    assert "CONTENT_TYPE" not in env
    assert "CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_content_type_and_length_are_cgi_style(echo_server: Server) -> None:
    doc = echo(
        echo_server,
        "/",
        method="POST",
        headers=[("Content-Type", "text/x-test; charset=utf-8")],
        body=b"12345",
    )
    env = doc["environ"]
    assert env["CONTENT_TYPE"] == "text/x-test; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert doc["body"] == "12345"


# --- HTTP_* -----------------------------------------------------------------------------------


def test_http_headers_are_mapped(echo_server: Server) -> None:
    env = env_of(
        echo_server,
        headers=[
            ("X-Custom-Header", "v1"),
            ("x-lower-case", "v2"),
            ("Accept", "text/html"),
            ("X-Padded", "   spaced value  "),
            ("User-Agent", "pytest/1.0"),
        ],
    )
    assert env["HTTP_X_CUSTOM_HEADER"] == "v1"
    assert env["HTTP_X_LOWER_CASE"] == "v2"
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["HTTP_X_PADDED"] == "spaced value"
    assert env["HTTP_USER_AGENT"] == "pytest/1.0"
    assert env["HTTP_HOST"] == "localhost"


def test_repeated_headers_joined_with_comma(echo_server: Server) -> None:
    env = env_of(echo_server, headers=[("X-Dup", "a"), ("X-Other", "o"), ("X-Dup", "b")])
    assert env["HTTP_X_DUP"].replace(", ", ",") == "a,b"
    assert env["HTTP_X_OTHER"] == "o"


def test_repeated_cookie_joined_with_semicolon(echo_server: Server) -> None:
    env = env_of(echo_server, headers=[("Cookie", "a=1"), ("Cookie", "b=2")])
    assert env["HTTP_COOKIE"] == "a=1; b=2"


def test_underscore_headers_are_dropped(echo_server: Server) -> None:
    env = env_of(
        echo_server,
        headers=[("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4"), ("A_B", "c")],
    )
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert "HTTP_A_B" not in env


def test_underscore_header_alone_cannot_pose(echo_server: Server) -> None:
    env = env_of(echo_server, headers=[("X_Real_Ip", "6.6.6.6")])
    assert "HTTP_X_REAL_IP" not in env


def test_non_ascii_header_value_is_latin1(echo_server: Server) -> None:
    with RawConn(echo_server.addr) as c:
        c.send(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Bin: caf\xc3\xa9\r\nConnection: close\r\n\r\n"
        )
        resp = c.read_response()
    assert resp.status == 200
    assert resp.json()["environ"]["HTTP_X_BIN"] == "caf\xc3\xa9"


def test_each_request_on_a_connection_sees_its_own_host(echo_server: Server) -> None:
    # A keep-alive connection's environ template keeps the Host of one request; every
    # request still gets its own Host field's value, or none when it sent none.
    sent = [
        ("/", "a.example"),
        ("/", "a.example"),
        ("/", "a.example"),
        ("/", "b.example:8080"),
        ("/", None),  # HTTP/1.0 without a Host line
        ("/", "A.EXAMPLE"),
        ("http://c.example/", "a.example"),  # the target's authority wins
        ("/", "a.example"),
    ]
    with RawConn(echo_server.addr) as c:
        for target, host in sent:
            if host is None:
                c.request("GET", target, version="HTTP/1.0", headers=[("Connection", "keep-alive")])
            else:
                c.request("GET", target, headers=[("Host", host)])
            resp = c.read_response()
            assert resp.status == 200, (resp.status, resp.body[:300])
            env = resp.json()["environ"]
            if host is None:
                assert "HTTP_HOST" not in env, env
            elif target.startswith("http://"):
                assert env["HTTP_HOST"] == "c.example"
            else:
                assert env["HTTP_HOST"] == host
            assert not resp.closes


def test_all_cgi_values_are_str(echo_server: Server) -> None:
    doc = echo(echo_server, "/x?y=1", headers=[("X-A", "b")])
    assert doc["non_str_keys"] == []


# --- wsgi.* -----------------------------------------------------------------------------------


def test_wsgi_keys(echo_server: Server) -> None:
    wsgi = echo(echo_server)["wsgi"]
    assert wsgi["version"] == [1, 0]
    assert wsgi["version_is_tuple"] is True
    assert wsgi["url_scheme"] == "http"
    # PEP 3333: true when the application may be called from several threads at once.
    assert wsgi["multithread"] is (echo_server.threads > 1)
    assert wsgi["multiprocess"] is False
    assert wsgi["run_once"] is False
    assert wsgi["input_terminated"] is True
    assert wsgi["file_wrapper"] is True
    assert wsgi["errors_api"] is True
    assert wsgi["input_api"] is True


def test_multithread_true_with_threads(start_server) -> None:
    server = start_server("apps.echo:app", "--threads", "4")
    assert echo(server)["wsgi"]["multithread"] is True


def test_wsgi_errors_goes_to_stderr(echo_server: Server) -> None:
    from support import new_tag

    tag = new_tag()
    echo(echo_server, f"/?log={tag}")
    assert echo_server.wait_stderr(tag)
    assert echo_server.wait_stderr(f"{tag}-lines-1")
    assert echo_server.wait_stderr(f"{tag}-lines-2")


# --- addresses (TCP only) ---------------------------------------------------------------------


def test_server_and_remote_address(echo_tcp: Server) -> None:
    with RawConn(echo_tcp.addr) as c:
        c.request("GET", "/", headers=[("Connection", "close")])
        resp: Response = c.read_response()
        local_port = c.local_port
    env = resp.json()["environ"]
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(echo_tcp.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)
    assert env["REMOTE_HOST"] == "127.0.0.1"


def test_unix_socket_still_has_server_name_and_port(echo_server: Server) -> None:
    env = env_of(echo_server)
    assert isinstance(env["SERVER_NAME"], str) and env["SERVER_NAME"]
    assert isinstance(env["SERVER_PORT"], str)
