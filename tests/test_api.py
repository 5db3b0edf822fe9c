"""The Python API: ``ferrowsgi.background()`` in-process and ``ferrowsgi.serve()`` in a
subprocess stopped with SIGINT."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from wsgiref.validate import validator

import pytest
from support import TESTS_DIR, RawConn, connect, free_port, parse_url, short_tmp_dir, wait_until

pytestmark = pytest.mark.timeout(60)


def _hello(environ, start_response):
    body = json.dumps(
        {
            "path": environ["PATH_INFO"],
            "multithread": environ["wsgi.multithread"],
            "thread": threading.current_thread().name,
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


hello = validator(_hello)


def _failing(environ, start_response):
    raise RuntimeError("api-failure-marker")


def get(url: str, path: str = "/"):
    try:
        with urllib.request.urlopen(url + path, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def test_background_serves_and_stops() -> None:
    import ferrowsgi

    with ferrowsgi.background(hello) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        status, headers, body = get(url, "/bg")
        assert status == 200
        assert json.loads(body)["path"] == "/bg"
        assert "ferrowsgi" in headers.get("Server", "").lower()
        addr = parse_url(url)
    with pytest.raises(OSError):
        connect(addr, timeout=2).close()


def test_background_runs_app_in_process() -> None:
    import ferrowsgi

    seen: list[str] = []

    def app(environ, start_response):
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"in-process"]

    with ferrowsgi.background(validator(app)) as url:
        assert get(url, "/here")[2] == b"in-process"
    assert seen == ["/here"]


def test_background_options() -> None:
    import ferrowsgi

    with ferrowsgi.background(hello, threads=2, server_header=False) as url:
        status, headers, body = get(url)
        assert status == 200
        assert json.loads(body)["multithread"] is True
        assert "Server" not in headers
        assert "Date" in headers


def test_background_debug_error_page() -> None:
    import ferrowsgi

    with ferrowsgi.background(_failing, debug=True) as url:
        status, _, body = get(url)
    assert status == 500
    assert b"api-failure-marker" in body


def test_background_error_page_without_debug() -> None:
    import ferrowsgi

    with ferrowsgi.background(_failing) as url:
        status, _, body = get(url)
        status2, _, _ = get(url)
    assert status == status2 == 500
    assert b"api-failure-marker" not in body


def test_background_access_log(capfd: pytest.CaptureFixture[str]) -> None:
    import ferrowsgi

    out = []

    def logged() -> bool:
        out.append(capfd.readouterr().out)
        return bool(re.search(r'"GET /logged-path HTTP/1\.1" 200 \d+', "".join(out)))

    with ferrowsgi.background(hello, access_log=True) as url:
        get(url, "/logged-path")
        assert wait_until(logged), "".join(out)


def test_background_unix_socket() -> None:
    import ferrowsgi

    d = short_tmp_dir()
    path = os.path.join(d, "api.sock")
    try:
        with ferrowsgi.background(hello, bind=[f"unix:{path}"]) as url:
            assert url == f"unix:{path}"
            with RawConn(path) as c:
                c.request("GET", "/over-unix", headers=[("Connection", "close")])
                assert c.read_response().json()["path"] == "/over-unix"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_two_background_servers_at_once() -> None:
    import ferrowsgi

    with ferrowsgi.background(hello) as a, ferrowsgi.background(hello) as b:
        assert a != b
        assert get(a, "/a")[0] == get(b, "/b")[0] == 200


def test_background_restarts() -> None:
    import ferrowsgi

    for i in range(3):
        with ferrowsgi.background(hello) as url:
            assert json.loads(get(url, f"/round{i}")[2])["path"] == f"/round{i}"


def test_background_exit_with_open_connection_does_not_hang() -> None:
    import ferrowsgi

    with ferrowsgi.background(hello) as url:
        conn = RawConn(parse_url(url))
        conn.request("GET", "/")
        assert conn.read_response().status == 200
        start = time.monotonic()
        # leave the keep-alive connection open while the server stops
    try:
        assert time.monotonic() - start < 10
        assert conn.at_eof(timeout=5), "idle keep-alive connection survived the server"
    finally:
        conn.close()


def test_background_propagates_exceptions_and_stops() -> None:
    import ferrowsgi

    class Marker(Exception):
        pass

    with pytest.raises(Marker), ferrowsgi.background(hello) as url:
        addr = parse_url(url)
        raise Marker
    assert wait_until(lambda: not _can_connect(addr), timeout=5)


def _can_connect(addr) -> bool:
    try:
        connect(addr, timeout=1).close()
        return True
    except OSError:
        return False


# --- serve() ----------------------------------------------------------------------------------

SERVE_SCRIPT = textwrap.dedent(
    """
    import sys
    import ferrowsgi
    from apps.echo import app

    ferrowsgi.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=2)
    print("serve-returned", flush=True)
    """
)


def run_serve_script(script: str, *args: str, target: str = "/"):
    """Run ``script`` (which calls ``ferrowsgi.serve()`` on the port given as its first
    argument) in a subprocess, GET ``target``, check that the server still answers, stop it
    with SIGINT; return the response's JSON and the process's status, stdout
    and stderr."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(port), *args],
        cwd=TESTS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert wait_until(lambda: _can_connect(("127.0.0.1", port)), timeout=15), (
            proc.poll(),
            proc.stderr.read().decode() if proc.poll() is not None else "",
        )
        with RawConn(("127.0.0.1", port)) as c:
            c.request("GET", target, headers=[("Connection", "close")])
            state = c.read_response().json()
        # serve() keeps serving after a request (it did not return): a second one is answered.
        with RawConn(("127.0.0.1", port)) as c:
            c.request("GET", "/again", headers=[("Connection", "close")])
            assert c.read_response().status == 200
        assert proc.poll() is None, "serve() returned without a signal"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return state, proc.returncode, out, err


def test_serve_blocks_until_sigint_then_returns() -> None:
    env, rc, out, err = run_serve_script(SERVE_SCRIPT, target="/served")
    assert env["environ"]["PATH_INFO"] == "/served"
    assert env["wsgi"]["multithread"] is True
    assert rc == 0, err.decode()
    assert b"serve-returned" in out
    assert b"Traceback" not in err
    assert b"KeyboardInterrupt" not in err


HEAP_SCRIPT = textwrap.dedent(
    """
    import sys
    import ferrowsgi
    from apps.heap import app

    options = {} if sys.argv[2] == "default" else {"gc_freeze": False}
    ferrowsgi.serve(app, host="127.0.0.1", port=int(sys.argv[1]), **options)
    """
)


@pytest.mark.parametrize("mode", ["default", "no-freeze"])
def test_serve_freezes_the_heap_unless_told_not_to(mode: str) -> None:
    state, rc, _, err = run_serve_script(HEAP_SCRIPT, mode)
    assert rc == 0, err.decode()
    assert state["import_cycle_alive"] is False, state
    if mode == "default":
        assert state["frozen"] > 1000, state
    else:
        assert state["frozen"] == 0, state


# --- settings through the command line's table ------------------------------------------------


def test_background_takes_a_config_file_under_its_keyword_arguments(tmp_path) -> None:
    import ferrowsgi

    conf = tmp_path / "ferrowsgi.toml"
    conf.write_text("threads = 2\nno_server_header = true\n")
    with ferrowsgi.background(hello, config=conf) as url:
        _, headers, body = get(url, "/")
        # The file's threads: more than one application thread.
        assert json.loads(body)["multithread"] is True, body
        assert "Server" not in headers, headers
    # A keyword argument wins over the file.
    with ferrowsgi.background(hello, config=str(conf), threads=1, server_header=True) as url:
        _, headers, body = get(url, "/")
        assert json.loads(body)["multithread"] is False, body
        assert headers.get("Server", "").startswith("ferrowsgi"), headers


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ({"acces_logfile": "x.log"}, ["keyword argument acces_logfile", "access_logfile"]),
        ({"log_level": "loud"}, ["keyword argument log_level", "loud"]),
        ({"access_log": True, "access_logformat": "%(h)s %(nope)s"}, ["nope"]),
        ({"keep_alive": -1}, ["keep_alive", "non-negative"]),
        ({"timeout": 1e300}, ["timeout", "non-negative"]),
        ({"read_timeout": float("nan")}, ["read_timeout", "non-negative"]),
        ({"server_header": "yes"}, ["server_header", "True or False"]),
        ({"threads": 0}, ["keyword argument threads", "0"]),
        ({"config": "missing.toml"}, ["missing.toml"]),
        ({"config": "settings.ini"}, ["settings.ini", ".toml or a .py"]),
    ],
)
def test_wrong_settings_are_one_line_value_errors(options: dict, needles: list[str]) -> None:
    import ferrowsgi

    with pytest.raises(ValueError) as info:
        ferrowsgi.Server(_hello, ["127.0.0.1:0"], **options)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


LOGS_SCRIPT = textwrap.dedent(
    """
    import sys
    import ferrowsgi
    from apps.echo import app

    ferrowsgi.serve(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        config=sys.argv[2],
        access_logfile=sys.argv[3],
        access_logformat="json",
    )
    print("serve-returned", flush=True)
    """
)


def test_serve_takes_the_log_settings_and_a_gunicorn_conf(tmp_path) -> None:
    access = tmp_path / "access.log"
    error = tmp_path / "error.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        textwrap.dedent(
            f"""
            threads = 3
            loglevel = "debug"
            errorlog = {str(error)!r}
            log_format = "json"
            workers = 4

            def pre_request(worker, req):
                worker.log.warning("pre_request saw %s", req.path)
            """
        )
    )
    state, rc, out, err = run_serve_script(
        LOGS_SCRIPT, str(conf), str(access), target="/logged?q=1"
    )
    assert rc == 0, err.decode()
    assert state["environ"]["PATH_INFO"] == "/logged"
    assert b"serve-returned" in out
    # The access log: JSON lines in the file given as a keyword argument.
    records = [json.loads(line) for line in access.read_text().splitlines()]
    assert [r["uri"] for r in records] == ["/logged?q=1", "/again"]
    assert all(r["status"] == 200 for r in records), records
    # The error log: in the file the configuration names, as JSON lines.
    text = error.read_text()
    messages = [json.loads(line)["message"] for line in text.splitlines()]
    assert "Using 3 thread(s)" in messages, messages
    # workers (a setting of the command line's processes) is ignored, with a warning.
    assert any("setting 'workers' is for the command line's processes" in m for m in messages)
    # The configuration's pre_request hook ran (its logger has no handler: Python's last
    # resort writes the warning to stderr).
    assert "pre_request saw /logged" in err.decode(), err.decode()
    assert b"Traceback" not in err, err.decode()
