"""The command line: app specs, binds, options, startup log, access log, errors, signals."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import (
    TESTS_DIR,
    RawConn,
    Server,
    free_port,
    ipv6_available,
    parse_url,
    short_tmp_dir,
)

pytestmark = pytest.mark.timeout(60)

TS = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\]"


def run_cli(*args: str, cwd: Path | str = TESTS_DIR, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ferrowsgi: error:")]


def assert_cli_error(result, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = error_lines(result.stderr)
    assert len(lines) == 1, f"expected one 'ferrowsgi: error:' line in:\n{result.stderr}"
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- informational ----------------------------------------------------------------------------


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.search(r"ferrowsgi \d+\.\d+\.\d+", result.stdout), result.stdout
    import ferrowsgi

    version = getattr(ferrowsgi, "__version__", None)
    if version:
        assert version in result.stdout


def test_help_lists_options() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--bind", "--threads", "--chdir", "--access-log", "--no-server-header"):
        assert option in result.stdout, option


def console_script() -> str | None:
    sibling = Path(sys.executable).with_name("ferrowsgi")
    return str(sibling) if sibling.exists() else shutil.which("ferrowsgi")


def test_console_script() -> None:
    script = console_script()
    if script is None:
        pytest.skip("console script not installed")
    result = subprocess.run(
        [script, "--version"], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "ferrowsgi" in result.stdout


def test_console_script_imports_from_working_directory(start_server) -> None:
    # Users run `ferrowsgi myproject.wsgi:application` from their project directory.
    script = console_script()
    if script is None:
        pytest.skip("console script not installed")
    server = start_server("apps.specs:other", command=[script])
    assert server.request("GET", "/").body == b"other"


# --- usage and app errors ---------------------------------------------------------------------


def test_missing_app_is_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert result.stderr.strip()


def test_unknown_option_is_usage_error() -> None:
    result = run_cli("apps.echo:app", "--no-such-option")
    assert result.returncode == 2


def test_module_not_found() -> None:
    result = run_cli("nonexistent_mod_xyz:app", "--bind", "127.0.0.1:0")
    assert_cli_error(result, 1, "nonexistent_mod_xyz")
    assert "Traceback" not in result.stderr


def test_import_error_inside_user_module_is_shown() -> None:
    result = run_cli("apps.broken_import:app", "--bind", "127.0.0.1:0")
    assert result.returncode == 1
    assert "No module named 'nonexistent_dep'" in result.stderr
    assert error_lines(result.stderr)


def test_exception_while_importing_user_module() -> None:
    result = run_cli("apps.raises_on_import:app", "--bind", "127.0.0.1:0")
    assert result.returncode == 1
    assert "raised-while-importing-user-module" in result.stderr


def test_attribute_missing() -> None:
    result = run_cli("apps.specs:nope", "--bind", "127.0.0.1:0")
    assert_cli_error(result, 1, "nope")
    assert "Traceback" not in result.stderr


def test_module_without_app_or_application() -> None:
    result = run_cli("apps.noapp", "--bind", "127.0.0.1:0")
    assert_cli_error(result, 1)


def test_not_callable() -> None:
    result = run_cli("apps.specs:not_callable", "--bind", "127.0.0.1:0")
    assert_cli_error(result, 1, "not_callable")


def test_factory_with_non_literal_args_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    spec = f"apps.specs:create_app(open({str(marker)!r}, 'w'))"
    result = run_cli(spec, "--bind", "127.0.0.1:0")
    assert result.returncode in (1, 2)
    assert error_lines(result.stderr)
    assert not marker.exists(), "a non-literal factory argument was evaluated"


@pytest.mark.parametrize(
    "bind",
    ["nonsense", "127.0.0.1:notaport", "127.0.0.1:99999", "[::1", "127.0.0.1:", "unix:"],
)
def test_bad_bind_syntax(bind: str) -> None:
    result = run_cli("apps.echo:app", "--bind", bind)
    assert_cli_error(result, 2)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["a b", "../bbr", "x" * 16])
def test_bad_loopback_congestion_name(name: str) -> None:
    result = run_cli("apps.echo:app", "--loopback-congestion", name)
    line = assert_cli_error(result, 2, "congestion")
    assert "Traceback" not in result.stderr
    assert "loopback-congestion" in line


@pytest.mark.parametrize("value", ["remote", "", "LOCAL"])
def test_bad_stream_bodies_choice(value: str) -> None:
    result = run_cli("apps.echo:app", "--stream-bodies", value)
    assert_cli_error(result, 2, "stream-bodies")
    assert "Traceback" not in result.stderr


def test_loopback_congestion_system_serves(start_server) -> None:
    server = start_server("apps.echo:app", "--loopback-congestion", "system")
    resp = server.request("POST", "/", body=b"abc")
    assert resp.status == 200 and b"abc" in resp.body


def test_address_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_cli("apps.echo:app", "--bind", f"127.0.0.1:{port}")
    line = assert_cli_error(result, 1)
    assert str(port) in line or "in use" in line.lower()


def test_unix_socket_path_in_missing_directory() -> None:
    result = run_cli("apps.echo:app", "--bind", "unix:/nonexistent-dir-xyz/s.sock")
    assert result.returncode != 0
    assert error_lines(result.stderr)


# --- app specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "body"),
    [
        ("apps.specs", b"application"),
        ("apps.app_only", b"app only"),
        ("apps.specs:app", b"app"),
        ("apps.specs:other", b"other"),
        ("apps.specs:create_app()", b"factory*1 debug=False"),
        ("apps.specs:create_app(debug=True)", b"factory*1 debug=True"),
        ("apps.specs:create_app(greeting='hi', n=2)", b"hi*2 debug=False"),
        ('apps.specs:create_app("pos", 3)', b"pos*3 debug=False"),
    ],
)
def test_app_spec(start_server, spec: str, body: bytes) -> None:
    server = start_server(spec)
    assert server.request("GET", "/").body == body


def test_chdir(start_server, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "chdir_app.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    body = os.getcwd().encode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [body]\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = start_server("chdir_app:app", "--chdir", str(site), cwd=elsewhere)
    assert server.request("GET", "/").body == str(site).encode()


# --- the heap at startup ----------------------------------------------------------------------


def test_heap_is_collected_then_frozen_before_serving(start_server) -> None:
    server = start_server("apps.heap:app", "--log-level", "debug")
    state = server.get_json("/")
    # What survived the import is frozen, but its cyclic garbage was collected first: had
    # it been frozen too, the application's own gc.collect() could not free it now (the
    # module kept automatic collection off while it made the cycle).
    assert state["import_cycle_alive"] is False, state
    assert state["frozen"] > 1000, state
    # The collector still runs for what requests make.
    assert state["gc_enabled"] is True
    assert state["request_cycle_alive"] is False
    assert re.search(r"\[DEBUG\] \d+ objects left out of garbage collection", server.stderr_text())


def test_no_gc_freeze_leaves_the_heap_alone(start_server) -> None:
    state = start_server("apps.heap:app", "--no-gc-freeze").get_json("/")
    assert state["frozen"] == 0, state
    # Nothing collected it before the first request; the app's own collection did.
    assert state["import_cycle_alive"] is False
    assert state["request_cycle_alive"] is False


# --- startup log ------------------------------------------------------------------------------


def test_banner(start_server) -> None:
    server = start_server("apps.echo:app")
    assert server.wait_stderr(r"Using \d+ thread")
    text = server.stderr_text()
    pid = server.pid
    assert re.search(
        rf"^{TS} \[{pid}\] \[INFO\] Starting ferrowsgi \d+\.\d+\.\d+\S* \(CPython 3\.\d+\.\d+",
        text,
        re.MULTILINE,
    ), text
    assert re.search(
        rf"^{TS} \[{pid}\] \[INFO\] Listening at: http://127\.0\.0\.1:{server.port}$",
        text,
        re.MULTILINE,
    ), text
    assert re.search(rf"^{TS} \[{pid}\] \[INFO\] Using 1 thread\(s\)$", text, re.MULTILINE), text
    assert server.port != 0


def test_threads_in_banner(start_server) -> None:
    server = start_server("apps.echo:app", "--threads", "3")
    assert server.wait_stderr(r"Using 3 thread\(s\)")


def test_multiple_binds(start_server) -> None:
    d = short_tmp_dir()
    path = os.path.join(d, "multi.sock")
    try:
        server = start_server("apps.echo:app", binds=["127.0.0.1:0", f"unix:{path}"])
        assert len(server.urls) == 2
        assert server.urls[0].startswith("http://127.0.0.1:")
        assert server.urls[1] == f"unix:{path}"
        for url in server.urls:
            with RawConn(parse_url(url)) as c:
                c.request("GET", "/multi", headers=[("Connection", "close")])
                assert c.read_response().json()["environ"]["PATH_INFO"] == "/multi"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_bind(start_server) -> None:
    server = start_server("apps.echo:app", binds=["[::1]:0"])
    assert re.fullmatch(r"http://\[::1\]:\d+", server.url)
    env = server.request("GET", "/v6").json()["environ"]
    assert env["REMOTE_ADDR"] == "::1"
    assert env["SERVER_NAME"] == "::1"


def test_log_level_warning_hides_info(start_server) -> None:
    port = free_port()
    server = start_server(
        "apps.echo:app", "--log-level", "warning", binds=[f"127.0.0.1:{port}"], start=False
    )
    server.start(wait=False)
    deadline = time.monotonic() + 15
    while True:
        try:
            with RawConn(("127.0.0.1", port)) as c:
                c.request("GET", "/", headers=[("Connection", "close")])
                assert c.read_response().status == 200
            break
        except OSError:
            assert time.monotonic() < deadline, server.stderr_text()
            time.sleep(0.1)
    assert "[INFO]" not in server.stderr_text()


# --- access log -------------------------------------------------------------------------------


def test_access_log_line(start_server) -> None:
    server = start_server("apps.echo:app", "--access-log")
    resp = server.request(
        "GET",
        "/path/x?q=1&r=%20",
        headers=[("User-Agent", "test-agent/1.0"), ("Referer", "http://ref.example/")],
    )
    size = len(resp.body)
    assert server.wait_stdout(r"GET /path/x")
    lines = [ln for ln in server.stdout_text().splitlines() if "/path/x" in ln]
    assert len(lines) == 1
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /path/x\?q=1&r=%20 HTTP/1\.1" 200 ' + str(size) + r' "http://ref\.example/" '
        r'"test-agent/1\.0"',
        lines[0],
    ), lines[0]


def test_access_log_dashes_and_status(start_server) -> None:
    server = start_server("apps.stream:app", "--access-log")
    server.request("GET", "/missing-route", headers=[])
    assert server.wait_stdout("/missing-route")
    line = next(ln for ln in server.stdout_text().splitlines() if "/missing-route" in ln)
    assert '"GET /missing-route HTTP/1.1" 404 13 "-" "-"' in line, line


def test_no_access_log_by_default(start_server) -> None:
    server = start_server("apps.echo:app")
    server.request("GET", "/quiet")
    # Once the server has exited, everything it would have written is in.
    assert server.stop() == 0
    assert "/quiet" not in server.stdout_text()


# --- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_exits_cleanly(sig: int) -> None:
    server = Server("apps.echo:app").start()
    try:
        assert server.request("GET", "/").status == 200
        rc = server.stop(sig)
    finally:
        server.stop()
    assert rc == 0, server.stderr_text()
    assert "Traceback" not in server.stderr_text()
    assert "KeyboardInterrupt" not in server.stderr_text()


def test_sigint_stops_a_server_started_with_sigint_ignored() -> None:
    # A background job of a shell script inherits SIGINT ignored; `kill -INT` must still stop
    # the server (and so must the test suite, when it runs as such a job).
    server = Server("apps.echo:app", ignore_sigint=True).start()
    try:
        assert server.request("GET", "/").status == 200
        rc = server.stop(signal.SIGINT, timeout=10)
    finally:
        server.stop()
    assert rc == 0, server.stderr_text()[-2000:]
    assert "Traceback" not in server.stderr_text()


def test_sigint_right_after_startup() -> None:
    # A signal that arrives as soon as the server said it is listening must still stop it.
    for _ in range(5):
        server = Server("apps.echo:app").start()
        try:
            rc = server.stop(signal.SIGINT, timeout=5)
        finally:
            server.stop()
        assert rc == 0, server.stderr_text()[-2000:]
        assert "Traceback" not in server.stderr_text()


def test_sigint_with_open_keepalive_connection() -> None:
    # The idle connection may stay for 60 s: had the server waited for it, stop() would
    # have killed it after 10 s (no status 0).
    server = Server("apps.echo:app", "--keep-alive", "60").start()
    try:
        with RawConn(server.addr) as c:
            c.request("GET", "/")
            c.read_response()
            rc = server.stop(signal.SIGINT, timeout=10)
            assert c.at_eof(), "the idle connection was not closed"
    finally:
        server.stop()
    assert rc == 0


def test_unix_socket_removed_on_exit() -> None:
    d = short_tmp_dir()
    path = os.path.join(d, "gone.sock")
    try:
        server = Server("apps.echo:app", binds=[f"unix:{path}"]).start()
        assert os.path.exists(path)
        assert server.request("GET", "/").status == 200
        assert server.stop() == 0
        assert not os.path.exists(path)
    finally:
        shutil.rmtree(d, ignore_errors=True)
