"""Configuration: files, FERROWSGI_* variables, precedence, --print-config,
gunicorn.conf.py modules and their server hooks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import Server, wait_until

pytestmark = pytest.mark.timeout(60)

APP = textwrap.dedent(
    """
    import os

    def app(environ, start_response):
        body = ("greeting=%s" % os.environ.get("GREETING", "")).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "yes")])
        return [body]
    """
)


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any FERROWSGI_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROWSGI_")}
    env.pop("GUNICORN_CMD_ARGS", None)
    env.update(extra)
    return env


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env if env is not None else clean_env(),
    )


def one_error(result, *needles: str) -> str:
    """The run failed with status 2 and exactly one error line holding every needle."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ferrowsgi: error:")]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def settings_of(stdout: str) -> dict[str, tuple[str, str]]:
    """--print-config's lines as name -> (value, origin)."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\w+) = (.*?)\s+# (.*)$", line)
        assert m, f"not a setting line: {line!r}"
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "hello.py").write_text(APP)
    return tmp_path


# --- precedence and --print-config ----------------------------------------------------------


def test_precedence_command_line_over_env_over_file_over_default(project: Path) -> None:
    (project / "ferrowsgi.toml").write_text(
        "# settings\nthreads = 2\nkeep_alive = 7\nbacklog = 100\nread_timeout = 11\n"
    )
    env = clean_env(FERROWSGI_KEEP_ALIVE="8", FERROWSGI_BACKLOG="200")
    result = run_cli(project, "--print-config", "--backlog", "300", "hello:app", env=env)
    assert result.returncode == 0, result.stderr
    s = settings_of(result.stdout)
    assert s["threads"] == ("2", "ferrowsgi.toml:2")
    assert s["keep_alive"] == ("8", "environment variable FERROWSGI_KEEP_ALIVE")
    assert s["backlog"] == ("300", "command line")
    assert s["read_timeout"] == ("11", "ferrowsgi.toml:5")
    assert s["write_timeout"] == ("30", "default")
    assert s["app"] == ('"hello:app"', "command line")
    assert s["config"] == ('"ferrowsgi.toml"', "default")


def test_settings_reach_the_running_server(project: Path) -> None:
    (project / "ferrowsgi.toml").write_text('threads = 2\nenv = ["GREETING=from-file"]\n')
    env = clean_env(FERROWSGI_THREADS="3")
    with Server("hello:app", cwd=project, env=env) as srv:
        assert srv.wait_stderr(r"Using 3 thread\(s\)"), srv.stderr_text()
        resp = srv.request("GET", "/")
        assert resp.status == 200
        assert resp.body == b"greeting=from-file"
    # The command line's list replaces the file's.
    with Server("hello:app", "-e", "GREETING=cli", cwd=project, env=env) as srv:
        assert srv.request("GET", "/").body == b"greeting=cli"


def test_which_file_is_read(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.ferrowsgi]\nthreads = 4\nbacklog = 9\n'
    )
    s = settings_of(run_cli(project, "--print-config", "hello:app").stdout)
    assert s["threads"] == ("4", "pyproject.toml:5")
    # ferrowsgi.toml wins over pyproject.toml, and says so.
    (project / "ferrowsgi.toml").write_text("threads = 5\n")
    result = run_cli(project, "--print-config", "hello:app")
    s = settings_of(result.stdout)
    assert s["threads"] == ("5", "ferrowsgi.toml:1")
    assert s["backlog"] == ("2048", "default")
    assert "pyproject.toml" in result.stderr
    # -c names the one file read; FERROWSGI_CONFIG does when -c does not.
    (project / "other.toml").write_text("\n\nthreads = 6\n")
    s = settings_of(run_cli(project, "--print-config", "-c", "other.toml", "hello:app").stdout)
    assert s["threads"] == ("6", "other.toml:3")
    assert s["config"] == ('"other.toml"', "command line")
    env = clean_env(FERROWSGI_CONFIG="other.toml")
    s = settings_of(run_cli(project, "--print-config", "hello:app", env=env).stdout)
    assert s["threads"] == ("6", "other.toml:3")


def test_print_config_takes_the_app_from_the_file(project: Path) -> None:
    (project / "ferrowsgi.toml").write_text('app = "hello:app"\nbind = ["127.0.0.1:0"]\n')
    result = run_cli(project, "--print-config")
    assert result.returncode == 0, result.stderr
    s = settings_of(result.stdout)
    assert s["app"] == ('"hello:app"', "ferrowsgi.toml:1")
    assert s["bind"] == ('["127.0.0.1:0"]', "ferrowsgi.toml:2")
    assert s["debug"] == ("false", "default")
    # Every option of the command line is listed.
    help_text = run_cli(project, "--help").stdout
    longs = set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z-]+)", help_text, re.M))
    longs -= {"help", "version", "print-config", "check-config"}
    assert len(longs) == len(s) - 1, (sorted(longs), sorted(s))  # APP is the one more
    assert {"threads", "keep_alive", "limit_request_field_size", "name"} <= set(s)


def test_no_application_anywhere_is_one_line(project: Path) -> None:
    one_error(run_cli(project), "no application")


# --- gunicorn.conf.py -----------------------------------------------------------------------

GUNICORN_CONF = textwrap.dedent(
    """
    import multiprocessing
    import os

    bind = "127.0.0.1:0"
    workers = 2
    threads = 2
    worker_class = "gthread"
    keepalive = 4
    timeout = 30
    graceful_timeout = 10
    loglevel = "info"
    accesslog = "-"
    errorlog = "-"
    raw_env = ["GREETING=from-gunicorn-conf"]
    wsgi_app = "hello:app"
    HOOK_LOG = os.environ["HOOK_LOG"]


    def _note(line):
        with open(HOOK_LOG, "a") as f:
            f.write(line + "\\n")


    def on_starting(server):
        _note("on_starting pid=%d keepalive=%s" % (server.pid, server.cfg.keepalive))


    def when_ready(server):
        _note("when_ready")


    def pre_request(worker, req):
        worker.log.debug("%s %s", req.method, req.path)
        headers = dict(req.headers)
        _note("pre_request %s %s %s %s %s" % (
            req.method, req.path, req.query, headers.get("X-TRACE"), req.version))


    def post_request(worker, req, environ, resp):
        _note("post_request %s %s %s %s" % (
            req.path, resp.status_code, dict(resp.headers).get("X-App"),
            environ["PATH_INFO"]))


    def on_exit(server):
        _note("on_exit")
    """
)


def read_hook_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_gunicorn_conf_runs_unchanged_and_its_hooks_fire(project: Path) -> None:
    conf = project / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF)
    log = project / "hooks.log"
    srv = Server(
        "gunicorn.conf.py",
        binds=[],
        cwd=project,
        env=clean_env(HOOK_LOG=str(log)),
        command=[sys.executable, "-m", "ferrowsgi", "-c"],
    )
    srv.start(wait=False)
    try:
        srv.wait_listening(1)
        assert srv.wait_stderr(r"Using 2 thread\(s\)"), srv.stderr_text()
        resp = srv.request("GET", "/path/x?a=1", headers=[("X-Trace", "t-1")])
        assert resp.status == 200
        assert resp.body == b"greeting=from-gunicorn-conf"
        assert wait_until(lambda: any(ln.startswith("post_request") for ln in read_hook_log(log)))
        lines = read_hook_log(log)
        assert lines[0].startswith("on_starting pid=") and lines[0].endswith("keepalive=4"), lines
        assert "when_ready" in lines
        assert "pre_request GET /path/x a=1 t-1 (1, 1)" in lines, lines
        assert "post_request /path/x 200 yes /path/x" in lines, lines
        # gunicorn's accesslog = "-": the access log on stdout.
        assert srv.wait_stdout(r'"GET /path/x\?a=1 HTTP/1.1" 200 '), srv.stdout_text()
        err = srv.stderr_text()
        assert "Traceback" not in err, err
    finally:
        rc = srv.stop(signal.SIGTERM)
    assert rc == 0
    assert wait_until(lambda: "on_exit" in read_hook_log(log)), read_hook_log(log)


def test_print_config_of_a_gunicorn_conf(project: Path) -> None:
    conf = project / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF)
    result = run_cli(
        project, "-c", "gunicorn.conf.py", "--print-config", env=clean_env(HOOK_LOG="x")
    )
    assert result.returncode == 0, result.stderr
    s = settings_of(result.stdout)
    lines = GUNICORN_CONF.splitlines()
    assert s["threads"] == ("2", f"gunicorn.conf.py:{lines.index('threads = 2') + 1}")
    assert s["keep_alive"] == ("4", f"gunicorn.conf.py:{lines.index('keepalive = 4') + 1}")
    assert s["app"][0] == '"hello:app"'
    assert s["env"][0] == '["GREETING=from-gunicorn-conf"]'


def test_gunicorn_conf_named_as_a_module_on_the_import_path(project: Path) -> None:
    """gunicorn's ``-c python:pkg.module``: the module is found on the import path (the
    current directory first), read like a file, and its lines are named in --print-config."""
    pkg = project / "deploy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    result = run_cli(
        project, "-c", "python:deploy.gunicorn_conf", "--print-config", env=clean_env(HOOK_LOG="x")
    )
    assert result.returncode == 0, result.stderr
    s = settings_of(result.stdout)
    lines = GUNICORN_CONF.splitlines()
    assert s["threads"] == ("2", f"python:deploy.gunicorn_conf:{lines.index('threads = 2') + 1}")
    assert s["config"][0] == '"python:deploy.gunicorn_conf"'
    # And it serves with it, hooks included.
    log = project / "hooks.log"
    srv = Server(
        "python:deploy.gunicorn_conf",
        binds=[],
        cwd=project,
        env=clean_env(HOOK_LOG=str(log)),
        command=[sys.executable, "-m", "ferrowsgi", "-c"],
    )
    srv.start(wait=False)
    try:
        srv.wait_listening(1)
        assert srv.request("GET", "/").body == b"greeting=from-gunicorn-conf"
        assert "when_ready" in read_hook_log(log)
    finally:
        assert srv.stop(signal.SIGTERM) == 0
    # Mistakes are one line naming the module.
    one_error(run_cli(project, "-c", "python:deploy.missing", "hello:app"), "deploy.missing")
    one_error(run_cli(project, "-c", "python:nopkg.conf", "hello:app"), "nopkg.conf")
    one_error(run_cli(project, "-c", "python:not a name", "hello:app"), "not a name")


def test_process_name(project: Path) -> None:
    with Server("hello:app", "--name", "myservice-api", cwd=project, env=clean_env()) as srv:
        comm = Path(f"/proc/{srv.pid}/comm").read_text().strip()
        assert comm == "myservice-api"


def test_hooks_cost_nothing_when_absent_and_run_with_objects_when_present(project: Path) -> None:
    # A hook that raises is logged; the request is answered 500 and the
    # server goes on serving.
    conf = project / "conf.py"
    conf.write_text(
        textwrap.dedent(
            """
            def pre_request(worker, req):
                if req.path == "/boom":
                    raise RuntimeError("refused by hook")
            """
        )
    )
    with Server("hello:app", "-c", "conf.py", cwd=project, env=clean_env()) as srv:
        assert srv.request("GET", "/boom").status == 500
        assert srv.wait_stderr("refused by hook")
        assert srv.request("GET", "/fine").status == 200


# --- mistakes: one line naming the setting and its source -----------------------------------


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("\nthraeds = 2\n", ["ferrowsgi.toml:2", "thraeds", "did you mean 'threads'"]),
        ('threads = "many"\n', ["ferrowsgi.toml:1", "threads", "many"]),
        ("threads = 0\n", ["ferrowsgi.toml:1", "threads"]),
        ("debug = 3\n", ["ferrowsgi.toml:1", "debug", "true or false"]),
        ("bind = { host = 1 }\n", ["ferrowsgi.toml:1", "bind"]),
        ("keepalive = 2\nkeep-alive = 3\n", ["ferrowsgi.toml:2", "ferrowsgi.toml:1", "conflicts"]),
        ('worker_class = "gevent"\n', ["ferrowsgi.toml:1", "gevent"]),
        ("daemon = true\n", ["ferrowsgi.toml:1", "daemon", "not supported"]),
        ("threads = \n", ["ferrowsgi.toml:1", "invalid TOML"]),
        ("pre_request = 1\n", ["ferrowsgi.toml:1", "pre_request", ".py"]),
        ('config = "x.toml"\n', ["ferrowsgi.toml:1", "config", "command line"]),
    ],
)
def test_toml_mistakes(project: Path, toml: str, needles: list[str]) -> None:
    (project / "ferrowsgi.toml").write_text(toml)
    one_error(run_cli(project, "hello:app"), *needles)


@pytest.mark.parametrize(
    ("var", "value", "needles"),
    [
        ("FERROWSGI_THRAEDS", "2", ["FERROWSGI_THRAEDS", "did you mean FERROWSGI_THREADS"]),
        ("FERROWSGI_THREADS", "many", ["FERROWSGI_THREADS", "many"]),
        ("FERROWSGI_DEBUG", "perhaps", ["FERROWSGI_DEBUG", "true or false"]),
        ("FERROWSGI_WORKER_CLASS", "eventlet", ["FERROWSGI_WORKER_CLASS", "eventlet"]),
    ],
)
def test_env_mistakes(project: Path, var: str, value: str, needles: list[str]) -> None:
    one_error(run_cli(project, "hello:app", env=clean_env(**{var: value})), *needles)


@pytest.mark.parametrize(
    ("source", "needles"),
    [
        ("\nthraeds = 2\n", ["conf.py:2", "thraeds", "did you mean 'threads'"]),
        ('threads = "x"\n', ["conf.py:1", "threads"]),
        ("debug = 'yes'\n", ["conf.py:1", "debug", "true or false"]),
        ("def pre_requst(worker, req):\n    pass\n", ["conf.py:1", "pre_requst", "pre_request"]),
        ("def on_starting():\n    pass\n", ["conf.py:1", "on_starting", "1 argument"]),
        ("certfile = '/etc/cert.pem'\n", ["conf.py:1", "certfile", "not supported"]),
        ("x = 1\nraise ValueError('bad conf')\n", ["conf.py:2", "ValueError", "bad conf"]),
        ("bind = [\n", ["conf.py:1", "syntax error"]),
    ],
)
def test_py_config_mistakes(project: Path, source: str, needles: list[str]) -> None:
    (project / "conf.py").write_text(source)
    one_error(run_cli(project, "-c", "conf.py", "hello:app"), *needles)


def test_command_line_mistakes(project: Path) -> None:
    one_error(run_cli(project, "--thraeds", "2", "hello:app"), "--thraeds")
    one_error(run_cli(project, "-k", "gevent", "hello:app"), "gevent")
    one_error(run_cli(project, "-e", "NOEQUALS", "hello:app"), "NOEQUALS")
    one_error(run_cli(project, "-c", "missing.py", "hello:app"), "missing.py")
    one_error(run_cli(project, "-c", "conf.ini", "hello:app"), "conf.ini", ".toml or a .py")


def test_ignored_settings_are_warned_about(project: Path) -> None:
    (project / "conf.py").write_text(
        "worker_tmp_dir = '/dev/shm'\nsendfile = False\n\ndef pre_exec(server):\n    pass\n"
    )
    result = run_cli(project, "-c", "conf.py", "--print-config", "hello:app")
    assert result.returncode == 0, result.stderr
    assert "conf.py:1: setting 'worker_tmp_dir' is ignored" in result.stderr
    assert "conf.py:4: server hook pre_exec is never called: ferrowsgi never re-exec" in (
        result.stderr
    )
    # A setting whose value turns it off changes nothing: no warning.
    assert "sendfile" not in result.stderr


def test_check_config_imports_the_app_and_exits(project: Path) -> None:
    (project / "conf.py").write_text(
        "loglevel = 'DEBUG'\nlogconfig_dict = {}\nwsgi_app = 'hello:app'\n"
        "def on_starting(server):\n    raise SystemExit('must not run')\n"
    )
    result = run_cli(project, "-c", "conf.py", "--check-config")
    assert result.returncode == 0, result.stderr
    assert "hello:app are valid" in result.stderr
    (project / "conf.py").write_text("wsgi_app = 'nosuchmodule:app'\n")
    result = run_cli(project, "-c", "conf.py", "--check-config")
    assert result.returncode == 1, result.stderr
    assert "nosuchmodule" in result.stderr


def test_app_from_the_environment(project: Path) -> None:
    result = run_cli(project, "--print-config", env=clean_env(FERROWSGI_APP="hello:app"))
    assert settings_of(result.stdout)["app"] == (
        '"hello:app"',
        "environment variable FERROWSGI_APP",
    )
    result = run_cli(project, "--check-config", env=clean_env(FERROWSGI_APP="hello:app"))
    assert result.returncode == 0, result.stderr


def test_a_failing_on_starting_hook_stops_the_start(project: Path) -> None:
    (project / "conf.py").write_text(
        "def on_starting(server):\n    raise RuntimeError('no database')\n"
    )
    result = run_cli(project, "-c", "conf.py", "hello:app", "-b", "127.0.0.1:0")
    assert result.returncode == 1, result.stderr
    assert "no database" in result.stderr
    assert "on_starting hook failed" in result.stderr


STREAM_APP = textwrap.dedent(
    """
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        block = b"x" * 262144
        return (block for _ in range(64))
    """
)


def test_post_request_runs_once_after_a_paused_response(project: Path) -> None:
    (project / "stream.py").write_text(STREAM_APP)
    log = project / "hooks.log"
    (project / "conf.py").write_text(
        textwrap.dedent(
            f"""
            def post_request(worker, req, environ, resp):
                with open({str(log)!r}, "a") as f:
                    f.write("post %s %s %d\\n" % (req.path, resp.status, worker.nr))
            """
        )
    )
    with Server("stream:app", "-c", "conf.py", cwd=project, env=clean_env()) as srv:
        for n in (1, 2):
            resp = srv.request("GET", f"/s{n}")
            assert resp.status == 200
            assert len(resp.body) == 64 * 262144
        assert wait_until(lambda: len(read_hook_log(log)) >= 2)
        assert read_hook_log(log) == ["post /s1 200 OK 1", "post /s2 200 OK 2"]
