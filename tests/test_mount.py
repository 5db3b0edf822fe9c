"""Mounting applications under URL prefixes: ``ferrowsgi.Mount`` in Python, ``--mount`` and
``--root-path`` on the command line (which build the same Mount).

The rules: the longest prefix that the path starts with on a segment boundary wins; the
chosen application gets SCRIPT_NAME + prefix and PATH_INFO the rest ('' or starting with '/');
without a root application the rest is a plain-text 404; matching is done on the decoded
PATH_INFO, so ``%2F`` is a boundary. ``--root-path`` adds its prefix to SCRIPT_NAME and takes
it off PATH_INFO only where the front end passed it on.

Servers are the real ``ferrowsgi`` program over real sockets; the Python class is also tested
in-process with wsgiref's environs and served by wsgiref's own server.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import wsgiref.simple_server
import wsgiref.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import ferrowsgi
import pytest
from ferrowsgi import Mount
from support import TESTS_DIR, Server, free_port, short_tmp_dir, wait_until

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------------------------
# In-process: Mount as a plain WSGI application


def named(name: str):
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [name.encode()]

    return app


def call(app: Any, path: str, script_name: str = "") -> tuple[str, dict[str, Any], bytes]:
    """Calls ``app`` (under wsgiref's validator) with wsgiref's testing environ for
    ``path``; returns the status, the environ and the body."""
    environ: dict[str, Any] = {"PATH_INFO": path, "SCRIPT_NAME": script_name, "QUERY_STRING": ""}
    wsgiref.util.setup_testing_defaults(environ)
    got: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got.append(status)
        return lambda data: None

    result = validator(app)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return got[0], environ, body


API_SITE = {
    "/api": named("api"),
    "/api/v2/beta": named("beta"),
    "/api/v2": named("v2"),
    "/admin": named("admin"),
}


@pytest.mark.parametrize(
    ("path", "body", "script_name", "path_info"),
    [
        ("/api", b"api", "/api", ""),
        ("/api/", b"api", "/api", "/"),
        ("/api/x/y", b"api", "/api", "/x/y"),
        ("/apix", b"site", "", "/apix"),
        ("/api/v2", b"v2", "/api/v2", ""),
        ("/api/v2/", b"v2", "/api/v2", "/"),
        ("/api/v2x", b"api", "/api", "/v2x"),
        ("/api/v2/users", b"v2", "/api/v2", "/users"),
        ("/api/v2/beta/x", b"beta", "/api/v2/beta", "/x"),
        ("/api/v2/betax", b"v2", "/api/v2", "/betax"),
        ("/admin/", b"admin", "/admin", "/"),
        ("/", b"site", "", "/"),
        ("", b"site", "", ""),
        ("/other", b"site", "", "/other"),
        ("/API", b"site", "", "/API"),
    ],
)
def test_longest_prefix_on_segment_boundaries(
    path: str, body: bytes, script_name: str, path_info: str
) -> None:
    app = Mount({**API_SITE, "": named("site")})
    status, environ, got = call(app, path)
    assert (status, got) == ("200 OK", body)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (script_name, path_info)


def test_order_of_the_mapping_does_not_matter() -> None:
    pairs = list(API_SITE.items())
    for order in (pairs, pairs[::-1]):
        app = Mount(order)
        assert call(app, "/api/v2/x")[2] == b"v2"
        assert call(app, "/api/x")[2] == b"api"


def test_script_name_is_extended_not_replaced() -> None:
    _, environ, body = call(Mount({"/api": named("api")}), "/api/x", script_name="/outer")
    assert body == b"api"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/outer/api", "/x")


def test_nested_mounts_compose_script_name() -> None:
    inner = Mount({"/b": named("b"), "": named("inner-root")})
    outer = Mount({"/a": inner, "": named("site")})
    _, environ, body = call(outer, "/a/b/c")
    assert body == b"b"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/a/b", "/c")
    _, environ, body = call(outer, "/a/bc")
    assert body == b"inner-root"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/a", "/bc")
    _, environ, body = call(outer, "/a")
    assert body == b"inner-root"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/a", "")


def test_no_root_application_is_a_plain_404() -> None:
    app = Mount({"/api": named("api")})
    status, _, body = call(app, "/apix")
    assert status == "404 Not Found"
    assert body == b"Not Found\n"
    assert call(app, "/")[0] == "404 Not Found"
    assert call(app, "/api/x")[0] == "200 OK"


def test_matching_is_on_the_decoded_path() -> None:
    # PATH_INFO arrives decoded: "/api%2Fx" from the client is "/api/x" here, and a
    # non-ASCII prefix matches the UTF-8 bytes that PATH_INFO carries as latin-1.
    app = Mount({"/café": named("cafe"), "": named("site")})
    utf8 = "/café/menu".encode().decode("latin-1")
    _, environ, body = call(app, utf8)
    assert body == b"cafe"
    assert environ["SCRIPT_NAME"] == "/café".encode().decode("latin-1")
    assert environ["PATH_INFO"] == "/menu"
    assert call(app, "/café/menu")[2] == b"site", "an undecoded str is not what servers send"


@pytest.mark.parametrize(
    ("path", "script_name", "path_info"),
    [
        ("/pre/x", "/pre", "/x"),  # a front end that passed the prefix on
        ("/x", "/pre", "/x"),  # one that stripped it
        ("/pre", "/pre", ""),
        ("/pre/", "/pre", "/"),
        ("/prefix", "/pre", "/prefix"),  # not on a boundary: kept
        ("/", "/pre", "/"),
    ],
)
def test_root_path_strips_only_a_prefix_that_is_there(
    path: str, script_name: str, path_info: str
) -> None:
    _, environ, body = call(Mount({"": named("site")}, root_path="/pre"), path)
    assert body == b"site"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (script_name, path_info)


def test_root_path_then_mounts() -> None:
    app = Mount({"/api": named("api"), "": named("site")}, root_path="/pre")
    for path in ("/pre/api/x", "/api/x"):
        _, environ, body = call(app, path)
        assert body == b"api"
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/pre/api", "/x")


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("api", "must start with '/'"),
        ("/", "is the root"),
        ("/api/", "must not end with '/'"),
        ("/a//b", "empty, '.' or '..' segment"),
        ("/a/./b", "empty, '.' or '..' segment"),
        ("/a/..", "empty, '.' or '..' segment"),
        ("/a?b", "must not contain '?'"),
        ("/a#b", "must not contain '#'"),
        ("/a%2Fb", "must not contain '%'"),
        ("/a b", "must not contain ' '"),
        ("/a\nb", "must not contain '\\n'"),
    ],
)
def test_bad_prefixes_are_refused_at_construction(prefix: str, message: str) -> None:
    with pytest.raises(ValueError, match="mount prefix") as e:
        Mount({prefix: named("x")})
    assert message in str(e.value)
    with pytest.raises(ValueError, match="root path"):
        Mount({"": named("x")}, root_path=prefix)


def test_other_construction_errors() -> None:
    with pytest.raises(ValueError, match="given twice"):
        Mount([("/a", named("a")), ("/a", named("b"))])
    with pytest.raises(ValueError, match="at least one"):
        Mount({})
    with pytest.raises(TypeError, match="not callable"):
        Mount({"/a": "not an app"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must be a string"):
        Mount({1: named("a")})  # type: ignore[dict-item]
    assert Mount({"/a": named("a"), "": named("s")}).prefixes == ["/a", ""]
    assert Mount(API_SITE).prefixes == ["/api/v2/beta", "/api/v2", "/admin", "/api"]


def test_mount_under_wsgiref_server() -> None:
    """A server that knows nothing of ferrowsgi: wsgiref's, over a real socket."""
    app = Mount({"/api": named("api")})
    httpd = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        assert http_get(("127.0.0.1", port), "/api/x") == (200, b"api")
        assert http_get(("127.0.0.1", port), "/apix")[0] == 404
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def http_get(addr: tuple[str, int], target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_background_takes_mount_and_root_path() -> None:
    with ferrowsgi.background(named("site"), mount={"/api": named("api")}, root_path="/pre") as url:
        host, port = url[len("http://") :].rsplit(":", 1)
        assert http_get((host, int(port)), "/pre/api/x") == (200, b"api")
        assert http_get((host, int(port)), "/api/x") == (200, b"api")
        assert http_get((host, int(port)), "/pre/other") == (200, b"site")
    with ferrowsgi.background(None, mount={"/api": named("api")}) as url:
        host, port = url[len("http://") :].rsplit(":", 1)
        assert http_get((host, int(port)), "/other")[0] == 404


# --------------------------------------------------------------------------------------------
# The real server: --mount against ferrowsgi.Mount served as one application

CLI_MOUNTS = (
    "--mount",
    "/api=apps.mounts:api",
    "--mount",
    "/api/v2=apps.mounts:api_v2",
    "--mount",
    "/admin=apps.mounts:admin",
    "--mount",
    "/nest=apps.mounts:nested",
)


@pytest.fixture(scope="module", params=["cli", "python"])
def mounted(request: pytest.FixtureRequest, module_servers) -> Server:
    if request.param == "cli":
        # The root application named last, after the mounts: APP may be anywhere.
        return module_servers("apps.mounts:site", *CLI_MOUNTS, "--mount", "/café=apps.mounts:inner")
    return module_servers("apps.mounts:app")


def where(server: Server, target: str) -> tuple[str, str, str]:
    data = server.get_json(target)
    return data["name"], data["script_name"], data["path_info"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api", ("api", "/api", "")),
        ("/api/", ("api", "/api", "/")),
        ("/api/x?q=1", ("api", "/api", "/x")),
        ("/apix", ("site", "", "/apix")),
        ("/api/v2", ("api_v2", "/api/v2", "")),
        ("/api/v2/users/7", ("api_v2", "/api/v2", "/users/7")),
        ("/api/v2x", ("api", "/api", "/v2x")),
        ("/admin", ("admin", "/admin", "")),
        ("/", ("site", "", "/")),
        ("/nope/", ("site", "", "/nope/")),
        # Nested Mount: its own prefixes under /nest.
        ("/nest/in/deep", ("inner", "/nest/in", "/deep")),
        ("/nest/inx", ("inner_root", "/nest", "/inx")),
        ("/nest", ("inner_root", "/nest", "")),
        # Matching on the decoded path: %2F is a slash, %69 an 'i'.
        ("/api%2Fx", ("api", "/api", "/x")),
        ("/ap%69/x%20y", ("api", "/api", "/x y")),
        ("/api%20x", ("site", "", "/api x")),
    ],
)
def test_dispatch_over_the_server(mounted: Server, target: str, expected: tuple) -> None:
    assert where(mounted, target) == expected


def test_request_uri_is_left_as_sent(mounted: Server) -> None:
    data = mounted.get_json("/api%2Fx?y=1")
    assert data["request_uri"] == "/api%2Fx?y=1"


def test_non_ascii_prefix_on_the_command_line(start_server) -> None:
    server = start_server("apps.mounts:site", "--mount", "/café=apps.mounts:inner")
    name, script_name, path_info = where(server, "/caf%C3%A9/menu")
    # PATH_INFO and SCRIPT_NAME carry the UTF-8 bytes as latin-1 characters (PEP 3333).
    assert (name, script_name, path_info) == ("inner", "/café".encode().decode("latin-1"), "/menu")


def test_without_root_application_unmatched_paths_are_404(start_server) -> None:
    server = start_server(
        "", "--mount", "/api=apps.mounts:api", "--mount", "/admin=apps.mounts:admin"
    )
    resp = server.request("GET", "/apix")
    assert resp.status == 404
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.body == b"Not Found\n"
    assert server.request("GET", "/").status == 404
    assert where(server, "/admin/x") == ("admin", "/admin", "/x")


def test_preload_imports_every_mounted_application(start_server) -> None:
    server = start_server(
        "apps.mounts:site", "--mount", "/api=apps.mounts:api", "--preload", "--workers", "2"
    )
    assert where(server, "/api/x") == ("api", "/api", "/x")
    assert where(server, "/x") == ("site", "", "/x")


# --------------------------------------------------------------------------------------------
# Command-line mistakes: one line, a non-zero status, no traceback


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args, "--bind", "127.0.0.1:0"],
        check=False,
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ferrowsgi: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mount", "/api"], "is not PREFIX=APP"),
        (["--mount", "/api="], "names no application"),
        (["--mount", "api=apps.mounts:api"], "must start with '/'"),
        (["--mount", "/api/=apps.mounts:api"], "must not end with '/'"),
        (["--mount", "/=apps.mounts:api"], "is the root"),
        (["--mount", "/a//b=apps.mounts:api"], "segment"),
        (["--mount", "/a%2Fb=apps.mounts:api"], "must not contain '%'"),
        (["--root-path", "pre", "apps.mounts:site"], "must start with '/'"),
        (["--root-path", "/pre/", "apps.mounts:site"], "must not end with '/'"),
        (
            ["--mount", "/a=apps.mounts:api", "--mount", "/a=apps.mounts:admin"],
            "given twice",
        ),
        (["--mount", "=apps.mounts:api", "apps.mounts:site"], "root application"),
        (["--root-path", "/pre"], "no application"),
    ],
)
def test_bad_mount_values_are_one_line_errors(args: list[str], needle: str) -> None:
    line = one_error_line(run_cli(*args), 2)
    assert needle in line, line


def test_import_error_names_the_mount() -> None:
    line = one_error_line(run_cli("apps.mounts:site", "--mount", "/api=no_such_mod_q:app"), 1)
    assert "mounted at /api" in line and "no_such_mod_q" in line, line
    line = one_error_line(
        run_cli("apps.mounts:site", "--mount", "/api=apps.mounts:missing", "--preload"), 1
    )
    assert "mounted at /api" in line and "missing" in line, line


def test_check_config_imports_the_mounted_applications() -> None:
    result = run_cli("--check-config", "--mount", "/api=apps.mounts:api")
    assert result.returncode == 0, result.stderr
    assert "/api=apps.mounts:api are valid" in result.stderr
    line = one_error_line(run_cli("--check-config", "--mount", "/api=apps.mounts:nothing"), 1)
    assert "mounted at /api" in line, line


def test_mounts_from_the_environment_and_print_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "--print-config"],
        check=False,
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **os.environ,
            "FERROWSGI_MOUNT": "/a=apps.mounts:api,/b=apps.mounts:admin",
            "FERROWSGI_ROOT_PATH": "/pre",
        },
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith('mount = ["/a=apps.mounts:api", "/b=apps.mounts:admin"]')
        and "FERROWSGI_MOUNT" in line
        for line in lines
    ), result.stdout
    assert any(line.startswith('root_path = "/pre"') for line in lines), result.stdout


def test_mounts_from_a_toml_file(tmp_path: Path, start_server) -> None:
    conf = tmp_path / "ferrowsgi.toml"
    conf.write_text(
        'app = "apps.mounts:site"\nmount = ["/api=apps.mounts:api"]\nroot_path = "/pre"\n'
    )
    server = start_server("", "-c", str(conf))
    assert where(server, "/pre/api/x") == ("api", "/pre/api", "/x")


# --------------------------------------------------------------------------------------------
# --root-path: without a front end, and behind nginx that strips the prefix or passes it on


def test_root_path_direct(start_server) -> None:
    server = start_server("apps.mounts:site", "--root-path", "/pre")
    assert where(server, "/pre/x") == ("site", "/pre", "/x")
    assert where(server, "/x") == ("site", "/pre", "/x")
    assert where(server, "/pre") == ("site", "/pre", "")
    assert where(server, "/prefix") == ("site", "/pre", "/prefix")


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

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
        listen 127.0.0.1:{nginx_port};
        # Strips the prefix: a URI in proxy_pass replaces the matched location.
        location /strip/ {{
            proxy_pass http://127.0.0.1:{port}/;
            proxy_set_header Host $host:$server_port;
        }}
        # Passes the full path on: no URI in proxy_pass.
        location /pass/ {{
            proxy_pass http://127.0.0.1:{pass_port};
            proxy_set_header Host $host:$server_port;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_in_front(start_server) -> Iterator[tuple[int, Server, Server]]:
    """nginx on a free port: ``/strip/`` to a server run with ``--root-path /strip``,
    ``/pass/`` to one run with ``--root-path /pass``, both serving frameworks."""
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/setup.sh)")
    mounts = (
        "--mount",
        "/flask=frameworks.mount_flask:app",
        "--mount",
        "/django=frameworks.mount_django:app",
    )
    strip = start_server("apps.mounts:site", "--root-path", "/strip", *mounts)
    passing = start_server("apps.mounts:site", "--root-path", "/pass", *mounts)
    d = Path(short_tmp_dir())
    port = free_port()
    (d / "nginx.conf").write_text(
        NGINX_CONF.format(dir=d, nginx_port=port, port=strip.port, pass_port=passing.port)
    )
    with open(d / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            [NGINX, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )

    def up() -> bool:
        assert proc.poll() is None, (d / "stderr.txt").read_text(errors="replace")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        assert wait_until(up, timeout=10), "nginx did not start listening"
        yield port, strip, passing
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def fetch_json(port: int, target: str) -> dict[str, Any]:
    status, body = http_get(("127.0.0.1", port), target)
    assert status == 200, (status, body[:500])
    return json.loads(body)


@pytest.mark.parametrize("front", ["strip", "pass"])
def test_root_path_behind_nginx(nginx_in_front, front: str) -> None:
    port, *_ = nginx_in_front
    data = fetch_json(port, f"/{front}/x/y")
    assert (data["name"], data["script_name"], data["path_info"]) == ("site", f"/{front}", "/x/y")
    # What reached the server: the path without the prefix, or with it.
    assert data["request_uri"] == ("/x/y" if front == "strip" else "/pass/x/y")
    for framework in ("flask", "django"):
        data = fetch_json(port, f"/{front}/{framework}/hello/ada")
        assert data["url"] == f"/{front}/{framework}/hello/ada", data
        assert data["external"] == f"http://127.0.0.1:{port}/{front}/{framework}/hello/ada", data
        assert data["script_root"] == f"/{front}/{framework}", data


# --------------------------------------------------------------------------------------------
# Frameworks build prefixed URLs: Flask's url_for, Django's reverse()


@pytest.fixture(scope="module", params=["cli", "python", "python-nested", "root-path"])
def frameworks_mounted(request: pytest.FixtureRequest, module_servers) -> tuple[Server, str]:
    """A server with Flask at <base>/flask and Django at <base>/django, and that base."""
    if request.param == "cli":
        server = module_servers(
            "",
            "--mount",
            "/flask=frameworks.mount_flask:app",
            "--mount",
            "/django=frameworks.mount_django:app",
        )
        return server, ""
    if request.param == "python":
        return module_servers("frameworks.mounted:app"), ""
    if request.param == "python-nested":
        return module_servers("frameworks.mounted:nested"), "/outer"
    server = module_servers(
        "",
        "--root-path",
        "/pre",
        "--mount",
        "/flask=frameworks.mount_flask:app",
        "--mount",
        "/django=frameworks.mount_django:app",
    )
    return server, "/pre"


@pytest.mark.parametrize("framework", ["flask", "django"])
def test_frameworks_build_prefixed_urls(frameworks_mounted, framework: str) -> None:
    server, base = frameworks_mounted
    data = server.get_json(f"{base}/{framework}/hello/ada")
    assert data["framework"] == framework
    assert data["url"] == f"{base}/{framework}/hello/ada"
    assert data["external"] == f"http://localhost{base}/{framework}/hello/ada"
    assert data["script_root"] == f"{base}/{framework}"
    # Django's request.path is the full path; Flask's is the path inside the application.
    full = f"{base}/{framework}/hello/ada"
    assert data["path"] == (full if framework == "django" else "/hello/ada")
    if base == "/pre":
        # --root-path behind a front end that stripped the prefix: the URLs still carry it.
        data = server.get_json(f"/{framework}/hello/bob")
        assert data["url"] == f"/pre/{framework}/hello/bob"
