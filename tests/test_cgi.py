"""``ferrowsgi cgi APP``: one request from a CGI environment (RFC 3875).

First the program alone, as a web server runs it: a hand-made environment and stdin, and
its stdout checked byte for byte. Then behind Debian's Apache (mod_cgi), started by these
tests with a configuration of their own.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pwd
import select
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import TESTS_DIR, free_port, short_tmp_dir, wait_until

FERROWSGI = str(Path(sys.executable).parent / "ferrowsgi")
APP = "apps.cgiapp:app"
CGI_TIMEOUT = 30


@dataclass
class Result:
    stdout: bytes
    stderr: str
    returncode: int

    def head_and_body(self) -> tuple[list[bytes], bytes]:
        head, sep, body = self.stdout.partition(b"\r\n\r\n")
        assert sep, f"no blank line after the head: {self.stdout!r}"
        return head.split(b"\r\n"), body

    def json(self) -> dict:
        lines, body = self.head_and_body()
        assert lines[0] == b"Status: 200 OK", self.stdout[:300]
        return json.loads(body)


def cgi_env(
    path_info: bytes | str = b"/hello",
    method: str = "GET",
    query: bytes | str = b"",
    body: bytes | None = None,
    **extra: bytes | str,
) -> dict[bytes, bytes]:
    """The variables a web server sets for a request to the script /cgi-bin/app.cgi."""

    def b(v: bytes | str) -> bytes:
        return v if isinstance(v, bytes) else v.encode("latin-1")

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "test",
        "SERVER_NAME": "example.test",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "/cgi-bin/app.cgi",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "REMOTE_ADDR": "192.0.2.7",
        "HTTP_HOST": "example.test:8080",
    }
    if body is not None:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/octet-stream"
    env.update(extra)
    return {b(k): b(v) for k, v in env.items() if v is not None}


def run_cgi(
    env: dict[bytes, bytes] | None = None,
    stdin: bytes = b"",
    args: list[str] | None = None,
) -> Result:
    """Runs ``ferrowsgi cgi`` to its end with ``stdin`` as the body (then end of file)."""
    proc = subprocess.run(
        [FERROWSGI, "cgi", *(args if args is not None else [APP])],
        cwd=TESTS_DIR,
        env=cgi_env() if env is None else env,
        input=stdin,
        capture_output=True,
        timeout=CGI_TIMEOUT,
    )
    return Result(proc.stdout, proc.stderr.decode("utf-8", "replace"), proc.returncode)


# -- the program alone -------------------------------------------------------------------


def test_hello_is_a_cgi_response_byte_for_byte():
    r = run_cgi()
    assert r.stdout == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"
    )
    assert r.returncode == 0
    assert r.stderr == ""


def test_environ_keeps_every_variable_as_native_strings():
    # Raw bytes as Apache sets them for /cgi-bin/app.cgi/caf%C3%A9/%FF%20x/env: PATH_INFO
    # decoded (UTF-8 é and a lone 0xFF byte), QUERY_STRING and REQUEST_URI not.
    path = b"/caf\xc3\xa9/\xff x/env"
    env = cgi_env(
        path,
        query=b"q=%C3%A9&r=\xe9",
        REQUEST_URI=b"/cgi-bin/app.cgi/caf%C3%A9/%FF%20x/env?q=%C3%A9&r=\xe9",
        HTTP_X_CUSTOM=b"v\xe9",
        HTTP_COOKIE="a=1; b=2",
        REMOTE_PORT="40000",
        DOCUMENT_ROOT="/srv/www",
    )
    info = run_cgi(env).json()
    assert info["PATH_INFO"].encode("latin-1") == path
    assert info["SCRIPT_NAME"] == "/cgi-bin/app.cgi"
    assert info["QUERY_STRING"].encode("latin-1") == b"q=%C3%A9&r=\xe9"
    assert info["REQUEST_URI"].encode("latin-1").endswith(b"?q=%C3%A9&r=\xe9")
    assert info["HTTP_X_CUSTOM"].encode("latin-1") == b"v\xe9"
    for key in ("REQUEST_METHOD", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL"):
        assert info[key] == cgi_env()[key.encode()].decode()
    assert info["REMOTE_ADDR"] == "192.0.2.7"
    assert info["REMOTE_PORT"] == "40000"
    assert info["HTTP_COOKIE"] == "a=1; b=2"
    assert info["DOCUMENT_ROOT"] == "/srv/www"
    assert info["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert info["wsgi.version"] == [1, 0]
    assert info["wsgi.url_scheme"] == "http"
    assert info["wsgi.multithread"] is False
    assert info["wsgi.multiprocess"] is True
    assert info["wsgi.run_once"] is True
    assert info["wsgi.input_terminated"] is True
    assert info["errors_is_stderr"] is True
    assert info["types"]["wsgi.file_wrapper"] == "type"
    assert "CONTENT_LENGTH" not in info
    assert info["body_len"] == 0


def test_missing_path_info_and_query_are_empty_strings():
    env = cgi_env("/env")
    del env[b"QUERY_STRING"]
    env[b"SCRIPT_NAME"] = b"/cgi-bin/app.cgi/env"  # a script mounted at .../env, no PATH_INFO
    del env[b"PATH_INFO"]
    info = run_cgi(env, args=["apps.cgiapp:app"]).stdout
    # PATH_INFO '' routes to the app's 404, which names the path it saw.
    assert info.endswith(b"\r\n\r\nnot found: ")


@pytest.mark.parametrize(
    ("https", "scheme"),
    [("on", "https"), ("ON", "https"), ("1", "https"), ("off", "http"), (None, "http")],
)
def test_url_scheme_follows_https(https, scheme):
    env = cgi_env("/env")
    if https is not None:
        env[b"HTTPS"] = https.encode()
    assert run_cgi(env).json()["wsgi.url_scheme"] == scheme


@pytest.mark.parametrize("mode", ["cl", "lines", "all"])
def test_post_body_of_one_mib(mode):
    body = os.urandom(1 << 20) + b"\nlast line without newline"
    r = run_cgi(cgi_env("/env", "POST", f"read={mode}", body), stdin=body)
    info = r.json()
    assert info["CONTENT_LENGTH"] == str(len(body))
    assert info["body_len"] == len(body)
    assert info["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert info["after_body"] == ""


@pytest.mark.parametrize("mode", ["cl", "lines", "all"])
def test_never_reads_past_content_length(mode, tmp_path):
    """RFC 3875: the script reads no more than CONTENT_LENGTH, and a web server may keep
    stdin open after it: the program must answer without waiting for end of file."""
    body = b"line one\nline two\n"
    with (tmp_path / "out").open("w+b") as out:
        proc = subprocess.Popen(
            [FERROWSGI, "cgi", APP],
            cwd=TESTS_DIR,
            env=cgi_env("/env", "POST", f"read={mode}", body),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        try:
            proc.stdin.write(body + b"MORE DATA THAT IS NOT THE BODY")
            proc.stdin.flush()
            assert proc.wait(timeout=CGI_TIMEOUT) == 0  # stdin is still open
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdin.close()
            proc.wait()
        out.seek(0)
        info = Result(out.read(), "", 0).json()
    assert info["body_len"] == len(body)
    assert info["after_body"] == ""


def test_body_cut_short_is_an_error_not_a_short_body():
    env = cgi_env("/env", "POST", "read=cl", b"x" * 100)
    r = run_cgi(env, stdin=b"x" * 10)
    assert r.stdout.startswith(b"Status: 500 Internal Server Error\r\n")
    assert "ended after 10 of its 100 bytes" in r.stderr
    assert r.returncode == 1


def test_chunked_body_without_length_is_read_to_end_of_file():
    # Apache passes a chunked request body decoded, with no CONTENT_LENGTH.
    body = b"a\nbb\n" * 1000
    env = cgi_env("/env", "POST", "read=all", HTTP_TRANSFER_ENCODING="chunked")
    info = run_cgi(env, stdin=body).json()
    assert info["body_len"] == len(body)
    assert "CONTENT_LENGTH" not in info


def test_no_length_and_not_chunked_means_no_body():
    # Without either, nothing is read (a web server may leave stdin open).
    env = cgi_env("/env", "POST", "read=all")
    info = run_cgi(env, stdin=b"not the body").json()
    assert info["body_len"] == 0


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", " 5", "99999999999999999999"])
def test_invalid_content_length_is_a_400(value):
    r = run_cgi(cgi_env("/env", "POST", CONTENT_LENGTH=value))
    lines, body = r.head_and_body()
    assert lines[0] == b"Status: 400 Bad Request"
    assert body == f"invalid CONTENT_LENGTH {value!r}\n".encode()
    assert f"invalid CONTENT_LENGTH {value!r}" in r.stderr


def test_streamed_response_has_no_length():
    r = run_cgi(cgi_env("/stream", query="n=3"))
    assert r.stdout == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nblock0;block1;block2;"


def test_each_block_reaches_stdout_before_the_next_is_asked_for(tmp_path):
    marker = tmp_path / "go"
    proc = subprocess.Popen(
        [FERROWSGI, "cgi", APP],
        cwd=TESTS_DIR,
        env=cgi_env("/stream", query=f"n=2&wait={marker}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        got = b""
        deadline = time.monotonic() + CGI_TIMEOUT
        # The generator waits for the marker after its first block: that block must be
        # out already, or this loop never ends.
        while b"block0;" not in got and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"stdout closed early: {got!r}"
                got += chunk
        assert got.endswith(b"\r\n\r\nblock0;"), got
        marker.touch()
        rest, _ = proc.communicate(timeout=CGI_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert got + rest == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nblock0;block1;saw-marker=True"
    )


def test_write_callable_goes_first():
    r = run_cgi(cgi_env("/write"))
    assert r.stdout == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nwritten;returned;"


def test_exc_info_before_the_head_replaces_it():
    r = run_cgi(cgi_env("/excinfo"))
    assert r.stdout == (
        b"Status: 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 5\r\n\r\nsorry"
    )
    assert r.returncode == 0


def test_exc_info_after_the_head_is_raised_again():
    r = run_cgi(cgi_env("/excinfo-late"))
    assert r.stdout == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nstarted;reraised:too-late"
    )


@pytest.mark.parametrize("mode", ["ok", "raise"])
def test_close_is_always_called(mode, tmp_path):
    mark = tmp_path / "closed"
    r = run_cgi(cgi_env("/close", query=f"mark={mark}&mode={mode}"))
    assert mark.read_text() == "closed"
    head = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    if mode == "ok":
        assert r.stdout == head + b"first;second;"
        assert r.returncode == 0
    else:
        # After the head, an error cuts the response off (and is logged).
        assert r.stdout == head + b"first;"
        assert "RuntimeError: boom-in-iteration" in r.stderr
        assert "response cut off" in r.stderr
        assert r.returncode == 1


def test_web_server_gone_stops_the_response_and_close_is_called(tmp_path):
    mark, go = tmp_path / "closed", tmp_path / "go"
    proc = subprocess.Popen(
        [FERROWSGI, "cgi", APP],
        cwd=TESTS_DIR,
        env=cgi_env("/close", query=f"mark={mark}&mode=wait&go={go}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        got = b""
        while not got.endswith(b"first;"):
            chunk = proc.stdout.read1(65536)
            assert chunk, got
            got += chunk
        # The reader goes away; the next block then has nowhere to go.
        proc.stdout.close()
        go.touch()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=CGI_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert mark.read_text() == "closed"
    assert "GET /cgi-bin/app.cgi/close" in stderr
    assert "client went away during the response" in stderr
    assert "Traceback" not in stderr


def test_error_before_the_head_is_a_500_with_the_traceback_on_stderr():
    r = run_cgi(cgi_env("/boom"))
    assert r.stdout == (
        b"Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 22\r\n\r\nInternal Server Error\n"
    )
    assert "Error handling request GET /cgi-bin/app.cgi/boom" in r.stderr
    assert "Traceback (most recent call last):" in r.stderr
    assert "RuntimeError: boom-before-head" in r.stderr
    assert r.returncode == 1


def test_header_injection_is_refused_with_the_servers_rule():
    r = run_cgi(cgi_env("/badheader"))
    assert r.stdout.startswith(b"Status: 500 Internal Server Error\r\n")
    assert b"Injected" not in r.stdout
    # The message of the server's own start_response.
    assert 'ValueError: invalid value for header "X-Bad"' in r.stderr


def test_connection_field_is_left_to_the_web_server():
    r = run_cgi(cgi_env("/connection"))
    assert r.stdout == b"Status: 200 OK\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    ("path", "head"),
    [
        ("/hello", b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n"),
        ("/stream", b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
    ],
)
def test_head_request_has_no_body(path, head):
    r = run_cgi(cgi_env(path, "HEAD"))
    assert r.stdout == head
    assert r.stderr == ""


def test_no_content_status_has_no_body():
    r = run_cgi(cgi_env("/nocontent"))
    assert r.stdout == b"Status: 204 No Content\r\n\r\n"


def test_content_length_too_long_is_logged():
    r = run_cgi(cgi_env("/cl-short"))
    assert r.stdout == b"Status: 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    assert "application sent 7 bytes less than its Content-Length" in r.stderr


def test_content_length_too_short_cuts_the_body():
    r = run_cgi(cgi_env("/cl-long"))
    assert r.stdout == b"Status: 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    assert "application sent more than its Content-Length; cut" in r.stderr


def test_print_goes_to_stderr_not_into_the_response():
    r = run_cgi(cgi_env("/print"))
    assert r.stdout == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nclean"
    )
    assert "printed-by-app" in r.stderr


def test_file_wrapper_sends_the_file_from_its_position(tmp_path):
    data = os.urandom(100_000)
    f = tmp_path / "data.bin"
    f.write_bytes(data)
    r = run_cgi(cgi_env("/file", query=f"path={f}"))
    lines, body = r.head_and_body()
    assert lines == [
        b"Status: 200 OK",
        b"Content-Type: application/octet-stream",
        f"Content-Length: {len(data) - 2}".encode(),
    ]
    assert body == data[2:]


def test_no_application_is_a_one_line_error():
    env = cgi_env()
    del env[b"GATEWAY_INTERFACE"]
    r = run_cgi(env, args=[])
    message = "no application: ferrowsgi cgi APP (see ferrowsgi cgi --help)"
    assert r.stderr == f"ferrowsgi: error: {message}\n"
    assert r.stdout == b""
    assert r.returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no application"),
        (["apps.no_such_module:app"], "cannot import module 'apps.no_such_module'"),
        (["apps.cgiapp:nothing"], "module 'apps.cgiapp' has no attribute 'nothing'"),
        (["apps.raises_on_import:app"], "error while importing 'apps.raises_on_import'"),
        (["--bogus", APP], "unknown option '--bogus'"),
    ],
)
def test_bad_application_under_a_web_server_answers_500(args, message):
    r = run_cgi(cgi_env(), args=args)
    assert r.stdout == (
        b"Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 22\r\n\r\nInternal Server Error\n"
    )
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("ferrowsgi: error: ")
    assert message in r.stderr
    assert r.returncode in (1, 2)


def test_not_a_cgi_request():
    r = run_cgi({b"PATH": os.environ["PATH"].encode()})
    assert r.stderr == "ferrowsgi: error: not a CGI request: REQUEST_METHOD is not set\n"
    assert r.stdout == b""
    assert r.returncode == 2


def test_help():
    r = run_cgi(args=["--help"])
    assert r.returncode == 0
    assert r.stdout.startswith(b"Usage: ferrowsgi cgi ")


def test_factory_and_chdir(tmp_path):
    # The same APP syntax as the server: a factory call, here imported through --chdir.
    (tmp_path / "cgifactory.py").write_text(
        "def make(word):\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [])\n"
        "        return [word.encode()]\n"
        "    return app\n"
    )
    r = run_cgi(cgi_env(), args=["--chdir", str(tmp_path), "cgifactory:make('made')"])
    assert r.stdout == b"Status: 200 OK\r\nContent-Length: 4\r\n\r\nmade"


def test_script_with_ferrowsgi_on_its_first_line(tmp_path):
    """``#!/path/ferrowsgi cgi APP`` as a script's first line: the kernel passes
    ``cgi APP`` as one argument, then the script's path and an indexed query's words."""
    script = tmp_path / "app.cgi"
    script.write_text(f"#!{FERROWSGI} cgi --chdir {TESTS_DIR} {APP}\n")
    script.chmod(0o755)
    proc = subprocess.run(
        [str(script), "word1", "word2"],
        env=cgi_env("/hello", query="word1+word2"),
        capture_output=True,
        timeout=CGI_TIMEOUT,
    )
    assert proc.stdout == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"
    )


# -- behind Apache (mod_cgi) -------------------------------------------------------------

APACHE = shutil.which("apache2") or (
    "/usr/sbin/apache2" if os.path.exists("/usr/sbin/apache2") else None
)
MODULES = "/usr/lib/apache2/modules"

APACHE_CONF = """\
ServerRoot "{dir}"
DefaultRuntimeDir "{dir}"
PidFile "{dir}/apache2.pid"
ErrorLog "{dir}/error.log"
LogLevel warn
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
{user}
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule alias_module {modules}/mod_alias.so
{mpm}
ScriptAlias /app "{dir}/cgi-bin/app.cgi"
ScriptAlias /flask "{dir}/cgi-bin/flask.cgi"
<Directory "{dir}/cgi-bin">
    Require all granted
    CGIPassAuth On
</Directory>
"""

# The two ways Debian's apache2 runs CGI programs: mod_cgi forks them from a prefork child;
# under a threaded MPM, mod_cgid's daemon (which listens on ScriptSock) forks them.
MPMS = {
    "prefork+cgi": """\
LoadModule mpm_prefork_module {modules}/mod_mpm_prefork.so
LoadModule cgi_module {modules}/mod_cgi.so
StartServers 1
MinSpareServers 1
MaxSpareServers 2
MaxRequestWorkers 4
""",
    "event+cgid": """\
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule cgid_module {modules}/mod_cgid.so
ScriptSock "{dir}/cgid.sock"
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
""",
}

CGI_SCRIPT = """\
#!/bin/sh
cd {tests_dir} || exit 1
{exports}exec {command} cgi {app}
"""
EXPORT = "PYTHONPATH={path}; export PYTHONPATH\n"


def _cgi_command(user: str | None) -> tuple[str, str] | None:
    """How the web server's user runs ``ferrowsgi cgi``: the command, and the PYTHONPATH it
    needs ('' for none). This venv's console script when that user can run it; otherwise
    (this venv's Python may live in a directory only its owner reads) a system Python of
    the same version with this checkout's package and this venv's libraries on its path."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    package_root = str(Path(__import__("ferrowsgi").__file__).parent.parent)
    pythonpath = ":".join([package_root, *site.getsitepackages()])
    candidates = [(FERROWSGI, "")]
    for other in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.path.exists(other):
            candidates.append((f"{other} -m ferrowsgi", pythonpath))
    for command, path in candidates:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if path:
            env["PYTHONPATH"] = path
        try:
            probe = subprocess.run(
                [*command.split(), "cgi", "--help"],
                env=env,
                cwd="/",
                capture_output=True,
                timeout=CGI_TIMEOUT,
                user=user,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return command, path
    return None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        assert self.status == 200, (self.status, self.body[:300])
        return json.loads(self.body)


class Apache:
    """Debian's apache2 in the foreground, with mod_cgi and two CGI scripts."""

    def __init__(self, mpm: str) -> None:
        assert APACHE is not None
        self.dir = Path(short_tmp_dir())
        # The scripts run as the web server's user, which must reach them.
        self.dir.chmod(0o755)
        user = None
        user_conf = ""
        if os.geteuid() == 0:
            # Apache refuses to serve as root: its children take a user of their own.
            user = next(
                (u for u in ("www-data", "nobody") if _user_exists(u)),
                None,
            )
            if user is None:
                pytest.skip("no unprivileged user for apache2's children")
            user_conf = f"User {user}\nGroup #{pwd.getpwnam(user).pw_gid}"
        found = _cgi_command(user)
        if found is None:
            pytest.skip(f"the user {user} cannot run ferrowsgi from this checkout")
        command, path = found
        exports = EXPORT.format(path=path) if path else ""
        cgi_bin = self.dir / "cgi-bin"
        cgi_bin.mkdir(mode=0o755)
        for name, app in (("app.cgi", APP), ("flask.cgi", "apps.cgi_flask:app")):
            script = cgi_bin / name
            script.write_text(
                CGI_SCRIPT.format(tests_dir=TESTS_DIR, exports=exports, command=command, app=app)
            )
            script.chmod(0o755)
        self.port = free_port()
        mpm_conf = MPMS[mpm].format(dir=self.dir, modules=MODULES)
        conf = APACHE_CONF.format(
            dir=self.dir, port=self.port, user=user_conf, modules=MODULES, mpm=mpm_conf
        )
        (self.dir / "apache2.conf").write_text(conf)
        self.stderr = open(self.dir / "stderr.txt", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [APACHE, "-d", str(self.dir), "-f", str(self.dir / "apache2.conf"), "-DFOREGROUND"],
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=self.stderr,
            # prefork stops by signalling its whole process group: a group of its own.
            start_new_session=True,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"apache2 exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(up, timeout=20), self.log()

    def log(self) -> str:
        texts = []
        for name in ("stderr.txt", "error.log"):
            p = self.dir / name
            if p.exists():
                texts.append(p.read_text(errors="replace"))
        return "\n".join(texts)

    def connect(self) -> http.client.HTTPConnection:
        # From 127.0.0.2, so REMOTE_ADDR shows the client's own address.
        return http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=CGI_TIMEOUT, source_address=("127.0.0.2", 0)
        )

    def request(
        self,
        method: str,
        target: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        **kw: object,
    ) -> Reply:
        conn = self.connect()
        try:
            conn.request(method, target, body=body, headers=headers or {}, **kw)
            r = conn.getresponse()
            return Reply(r.status, dict(r.getheaders()), r.read())
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module", params=list(MPMS))
def apache(request):
    if APACHE is None:
        pytest.skip("apache2 is not installed (scripts/setup.sh)")
    server = Apache(request.param)
    yield server
    server.stop()


def test_apache_environ_of_percent_encoded_path_and_query(apache):
    info = apache.request("GET", "/app/caf%C3%A9/%FF%20x/env?q=%C3%A9+1&r=%2F").json()
    assert info["SCRIPT_NAME"] == "/app"
    assert info["PATH_INFO"].encode("latin-1") == b"/caf\xc3\xa9/\xff x/env"
    assert info["QUERY_STRING"] == "q=%C3%A9+1&r=%2F"
    assert info["REQUEST_URI"] == "/app/caf%C3%A9/%FF%20x/env?q=%C3%A9+1&r=%2F"
    assert info["REMOTE_ADDR"] == "127.0.0.2"
    assert info["SERVER_PORT"] == str(apache.port)
    assert info["wsgi.url_scheme"] == "http"
    assert info["REQUEST_METHOD"] == "GET"


def test_apache_post_of_one_mib_with_content_length(apache):
    body = os.urandom(1 << 20)
    info = apache.request(
        "POST", "/app/env?read=all", body=body, headers={"Content-Type": "application/x-bin"}
    ).json()
    assert info["CONTENT_LENGTH"] == str(len(body))
    assert info["CONTENT_TYPE"] == "application/x-bin"
    assert info["body_len"] == len(body)
    assert info["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_apache_chunked_request_body(apache):
    body = b"0123456789abcdef\n" * 4096
    pieces = [body[i : i + 10_000] for i in range(0, len(body), 10_000)]
    info = apache.request("POST", "/app/env?read=all", body=iter(pieces), encode_chunked=True)
    info = info.json()
    assert "CONTENT_LENGTH" not in info
    assert info["body_len"] == len(body)
    assert info["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_apache_streamed_response_arrives_before_the_generator_ends(apache):
    marker = apache.dir / "go-stream"
    conn = apache.connect()
    try:
        conn.request("GET", f"/app/stream?n=3&wait={marker}")
        r = conn.getresponse()
        assert r.status == 200
        # The generator waits for the marker after its first block: the block must
        # have come through Apache already, or this read never returns.
        first = r.read1(65536)
        assert first == b"block0;"
        marker.touch()
        assert first + r.read() == b"block0;block1;block2;saw-marker=True"
    finally:
        conn.close()


def test_apache_head_and_errors(apache):
    r = apache.request("HEAD", "/app/hello")
    # RFC 3875: no body for HEAD. Apache then drops the Content-Length (it counts the
    # body it passes on, zero, and sends no zero length for HEAD).
    assert (r.status, r.headers["Content-Type"], r.body) == (200, "text/plain", b"")
    r = apache.request("GET", "/app/boom")
    assert r.status == 500
    assert r.body == b"Internal Server Error\n"
    assert wait_until(lambda: "RuntimeError: boom-before-head" in apache.log())
    r = apache.request("GET", "/app/excinfo")
    assert (r.status, r.headers["Retry-After"], r.body) == (503, "5", b"sorry")


def test_apache_passes_authorization_with_cgipassauth(apache):
    info = apache.request("GET", "/app/env", headers={"Authorization": "Bearer abc"}).json()
    assert info["HTTP_AUTHORIZATION"] == "Bearer abc"


def test_apache_flask_url_for_sees_the_script_name(apache):
    info = apache.request("GET", "/flask/links/caf%C3%A9?x=%20y").json()
    assert info["script_root"] == "/flask"
    assert info["path"] == "/links/café"
    assert info["self"] == "/flask/links/caf%C3%A9"
    assert info["external"] == f"http://127.0.0.1:{apache.port}/flask/links/caf%C3%A9"
    assert info["args"] == {"x": " y"}
