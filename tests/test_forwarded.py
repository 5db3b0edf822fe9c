"""Forwarding headers (``Forwarded``, ``X-Forwarded-For``/``-Proto``/``-Host``/``-Port``/
``-Prefix``) over real sockets: believed from a peer in ``--forwarded-allow-ips`` (by default
127.0.0.1, ::1 and unix sockets), removed from the environ of anyone else's request.

The tests' client is 127.0.0.1; ``--forwarded-allow-ips 192.0.2.1`` makes it untrusted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TESTS_DIR, RawConn, Server, short_tmp_dir

FORWARDING = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "www.example.com"),
    ("X-Forwarded-Port", "8443"),
    ("X-Forwarded-Prefix", "/shop"),
    ("Forwarded", 'for="[2001:db8::9]:4711";proto=https;host=api.example.com'),
]
FORWARDING_KEYS = {
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_FORWARDED",
}


@pytest.fixture(scope="module")
def trusting() -> Iterator[Server]:
    """The default trust: the test client (127.0.0.1) is a trusted proxy."""
    with Server("apps.echo:app") as s:
        yield s


@pytest.fixture(scope="module")
def untrusting() -> Iterator[Server]:
    """Only 192.0.2.1 is trusted: the test client is not."""
    with Server("apps.echo:app", "--forwarded-allow-ips", "192.0.2.1") as s:
        yield s


@pytest.fixture(scope="module")
def chain() -> Iterator[Server]:
    """The client and 10.0.0.0/8 are trusted proxies."""
    with Server("apps.echo:app", "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8") as s:
        yield s


def environ(server: Server, headers: list[tuple[str, str]], target: str = "/p") -> dict[str, Any]:
    doc = server.get_json(target, headers=headers)
    env = doc["environ"]
    env["wsgi.url_scheme"] = doc["wsgi"]["url_scheme"]
    return env


def test_untrusted_peer_headers_are_removed(untrusting: Server) -> None:
    env = environ(untrusting, [*FORWARDING, ("X-Other", "kept")])
    assert not FORWARDING_KEYS & env.keys(), sorted(env)
    assert env["HTTP_X_OTHER"] == "kept"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] != ""
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "localhost"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(untrusting.port)
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/p"


def test_untrusted_removal_covers_any_spelling(untrusting: Server) -> None:
    headers = [
        ("x-forwarded-for", "203.0.113.7"),
        ("X-FORWARDED-PROTO", "https"),
        ("FORWARDED", "for=192.0.2.60"),
        ("X-Forwarded-For", "198.51.100.1"),
    ]
    env = environ(untrusting, headers)
    assert not FORWARDING_KEYS & env.keys(), sorted(env)
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_trusted_x_forwarded_headers(trusting: Server) -> None:
    headers = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "www.example.com"),
        ("X-Forwarded-Prefix", "/shop"),
    ]
    env = environ(trusting, headers, "/cart?x=1")
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["REMOTE_HOST"] == "203.0.113.7"
    assert env["REMOTE_PORT"] == "", "the proxy's port is not the client's"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "www.example.com"
    assert env["SERVER_NAME"] == "www.example.com"
    assert env["SERVER_PORT"] == "443"
    assert env["SCRIPT_NAME"] == "/shop"
    assert env["PATH_INFO"] == "/cart"
    assert env["QUERY_STRING"] == "x=1"
    # A trusted proxy's headers stay visible to the application.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_X_FORWARDED_PREFIX"] == "/shop"


def test_trusted_port_rewrites_host(trusting: Server) -> None:
    env = environ(trusting, [("X-Forwarded-Port", "8443"), ("X-Forwarded-Proto", "https")])
    assert env["HTTP_HOST"] == "localhost:8443"
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == "8443"
    assert env["wsgi.url_scheme"] == "https"


def test_forwarded_wins_over_x_forwarded(trusting: Server) -> None:
    env = environ(trusting, FORWARDING)
    assert env["REMOTE_ADDR"] == "2001:db8::9"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "api.example.com"
    assert env["SERVER_NAME"] == "api.example.com"
    assert env["SERVER_PORT"] == "443", "X-Forwarded-Port is not read beside Forwarded"
    assert env["SCRIPT_NAME"] == "/shop", "X-Forwarded-Prefix has no Forwarded counterpart"


def test_forwarded_obfuscated_client_keeps_the_peer(trusting: Server) -> None:
    env = environ(trusting, [("Forwarded", "for=_hidden;proto=https")])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "https"


def test_rightmost_untrusted_address_is_the_client(chain: Server) -> None:
    # The leftmost entry is whatever the client wrote: never believed over
    # the address the first trusted proxy saw.
    env = environ(chain, [("X-Forwarded-For", "198.51.100.1, 203.0.113.9, 10.1.1.1")])
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    # The same list split over two fields.
    env = environ(
        chain,
        [("X-Forwarded-For", "198.51.100.1, 203.0.113.9"), ("X-Forwarded-For", "10.1.1.1")],
    )
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.1, 203.0.113.9,10.1.1.1"
    # Every hop trusted: the leftmost.
    env = environ(chain, [("X-Forwarded-For", "10.0.0.1, 10.0.0.2")])
    assert env["REMOTE_ADDR"] == "10.0.0.1"
    # Forwarded elements the same way, each with its own proto and host.
    fwd = "for=198.51.100.1;proto=http, for=203.0.113.9;proto=https;host=shop.example, for=10.0.0.3"
    env = environ(chain, [("Forwarded", fwd)])
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example"


def test_appended_proto_lines_up_with_the_client_hop(chain: Server) -> None:
    env = environ(
        chain,
        [
            ("X-Forwarded-For", "203.0.113.9, 10.0.0.5"),
            ("X-Forwarded-Proto", "https, http"),
        ],
    )
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "https"


def test_chain_not_trusted_beyond_the_allowed_set(chain: Server) -> None:
    # 192.0.2.50 is not in the set, so what lies left of it is not believed.
    env = environ(chain, [("X-Forwarded-For", "203.0.113.9, 192.0.2.50, 10.0.0.5")])
    assert env["REMOTE_ADDR"] == "192.0.2.50"


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-For", "not-an-address")],
        [("X-Forwarded-For", "unknown")],
        [("X-Forwarded-Proto", "ftp")],
        [("X-Forwarded-Host", "bad host/x")],
        [("X-Forwarded-Port", "99999")],
        [("X-Forwarded-Port", "0")],
        [("X-Forwarded-Prefix", "noslash")],
        [("X-Forwarded-Prefix", "/trailing/")],
        [("X-Forwarded-Prefix", "/a/../b")],
        [("X-Forwarded-Prefix", "/a%2fb")],
        [("Forwarded", "for=[2001:db8::1]")],
        [("Forwarded", 'for="192.0.2.1;proto=https')],
        [("Forwarded", "garbage")],
    ],
)
def test_malformed_values_are_ignored(trusting: Server, headers: list[tuple[str, str]]) -> None:
    env = environ(trusting, headers)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "localhost"
    assert env["SERVER_PORT"] == str(trusting.port)
    assert env["SCRIPT_NAME"] == ""


def test_keep_alive_requests_do_not_inherit_forwarding(trusting: Server) -> None:
    from support import build_request

    with RawConn(trusting.addr) as c:
        c.send(build_request("GET", "/", headers=FORWARDING[:3]))
        first = c.read_response().json()["environ"]
        c.send(build_request("GET", "/"))
        second = c.read_response().json()["environ"]
        c.send(build_request("GET", "/"))
        third = c.read_response().json()["environ"]
    assert first["REMOTE_ADDR"] == "203.0.113.7"
    for env in (second, third):
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["HTTP_HOST"] == "localhost"


def test_unix_socket_peer_is_trusted() -> None:
    d = short_tmp_dir()
    try:
        sock = os.path.join(d, "fw.sock")
        with Server(
            "apps.echo:app", "--forwarded-allow-ips", "192.0.2.1", binds=[f"unix:{sock}"]
        ) as s:
            env = environ(s, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"


def test_star_trusts_every_peer() -> None:
    with Server("apps.echo:app", "--forwarded-allow-ips", "*") as s:
        env = environ(s, [("X-Forwarded-For", "203.0.113.7")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_setting_from_environment_and_gunicorn_config(tmp_path: Path) -> None:
    with Server("apps.echo:app", env={"FERROWSGI_FORWARDED_ALLOW_IPS": "192.0.2.1"}) as s:
        env = environ(s, [("X-Forwarded-For", "203.0.113.7")])
    assert env["REMOTE_ADDR"] == "127.0.0.1" and "HTTP_X_FORWARDED_FOR" not in env
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("forwarded_allow_ips = '192.0.2.0/24'\n")
    with Server("apps.echo:app", "-c", str(conf)) as s:
        env = environ(s, [("X-Forwarded-For", "203.0.113.7")])
        assert "is ignored" not in s.stderr_text()
    assert env["REMOTE_ADDR"] == "127.0.0.1" and "HTTP_X_FORWARDED_FOR" not in env


@pytest.mark.parametrize("value", ["10.0.0.0/40", "localhost", "1.2.3.4/"])
def test_bad_allow_list_is_one_line(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "--forwarded-allow-ips", value, "apps.echo:app"],
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and value in lines[0], result.stderr


def test_forwarded_prefix_comes_before_a_mount_prefix() -> None:
    # The proxy removed /shop; the server's own mount then takes /api.
    with Server("apps.echo:app", "--mount", "/api=apps.echo:app") as s:
        env = environ(s, [("X-Forwarded-Prefix", "/shop")], "/api/cart")
    assert env["SCRIPT_NAME"] == "/shop/api"
    assert env["PATH_INFO"] == "/cart"
