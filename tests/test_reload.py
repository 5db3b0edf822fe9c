"""--reload and --reload-extra-file with real processes, files and sockets.

The application lives in a temporary directory; the tests edit it and watch the answers change,
break it with a syntax error (the old workers keep serving, the error is printed once), then
fix it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import Server

APP = """\
from pathlib import Path

EXTRA = Path(__file__).with_name("extra.txt")
SETTING = EXTRA.read_text().strip() if EXTRA.exists() else "-"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{version} " + SETTING.encode()]
"""


def write_app(path: Path, version: str) -> None:
    path.write_text(APP.replace("{version}", version))


def start(tmp_path: Path, *options: str) -> Server:
    # Without bytecode files, an edit within the same second that keeps the size cannot be
    # mistaken for the old code by Python's cache.
    return Server(
        "reloadme:app",
        "--reload",
        *options,
        cwd=tmp_path,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    ).start()


def body(server: Server) -> bytes:
    resp = server.request("GET", "/")
    assert resp.status == 200, (resp.status, server.stderr_text()[-2000:])
    return resp.body


def wait_body(server: Server, expected: bytes, timeout: float = 30.0) -> int:
    """Requests until the answer is ``expected``; every request on the way must succeed.
    Returns how many were made."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        got = body(server)
        n += 1
        if got == expected:
            return n
        assert time.monotonic() < deadline, (got, expected, server.stderr_text()[-3000:])
        time.sleep(0.02)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_edited_module_is_picked_up(tmp_path: Path, workers: str) -> None:
    module = tmp_path / "reloadme.py"
    write_app(module, "one")
    with start(tmp_path, "-w", workers) as server:
        assert body(server) == b"one -"
        write_app(module, "two")
        wait_body(server, b"two -")
        assert server.wait_stderr("Reloading: a watched file changed")
        # Saved as many editors do: a new file renamed over the old one.
        tmp = tmp_path / "reloadme.py.tmp"
        write_app(tmp, "three")
        tmp.rename(module)
        wait_body(server, b"three -")


LAZY_APP = """\
def app(environ, start_response):
    import lazymod  # first imported while serving a request, not at start-up

    start_response("200 OK", [("Content-Type", "text/plain")])
    return [lazymod.VALUE.encode()]
"""


def test_a_module_imported_while_serving_is_watched_too(tmp_path: Path) -> None:
    (tmp_path / "reloadme.py").write_text(LAZY_APP)
    lazy = tmp_path / "lazymod.py"
    lazy.write_text('VALUE = "first"\n')
    with start(tmp_path, "--log-level", "debug") as server:
        assert body(server) == b"first"
        # The worker finds the new module among those imported since it started.
        assert server.wait_stderr(
            r"--reload watches \d+ more files \(modules imported while serving\)", 15
        ), server.stderr_text()[-3000:]
        lazy.write_text('VALUE = "second"\n')
        wait_body(server, b"second")
        assert server.wait_stderr("Reloading: a watched file changed")


def test_a_syntax_error_keeps_the_old_code_serving(tmp_path: Path) -> None:
    module = tmp_path / "reloadme.py"
    write_app(module, "good")
    with start(tmp_path) as server:
        assert body(server) == b"good -"
        module.write_text("def app(environ, start_response)\n    return []\n")
        # The new worker fails to import; the master says so and keeps the old one.
        assert server.wait_stderr(r"Reload failed, keeping the old workers: .*SyntaxError", 30)
        for _ in range(20):
            assert body(server) == b"good -"
        errors = [line for line in server.stderr_text().splitlines() if "SyntaxError" in line]
        assert len(errors) == 1, errors
        write_app(module, "fixed")
        wait_body(server, b"fixed -")
        errors = [line for line in server.stderr_text().splitlines() if "SyntaxError" in line]
        assert len(errors) == 1, errors


def test_an_extra_file_is_watched(tmp_path: Path) -> None:
    module = tmp_path / "reloadme.py"
    extra = tmp_path / "extra.txt"
    write_app(module, "v")
    extra.write_text("alpha\n")
    with start(tmp_path, "--reload-extra-file", str(extra)) as server:
        assert body(server) == b"v alpha"
        extra.write_text("beta\n")
        wait_body(server, b"v beta")
        # Replaced by a rename, then edited again: still watched.
        tmp = tmp_path / "extra.tmp"
        tmp.write_text("gamma\n")
        tmp.rename(extra)
        wait_body(server, b"v gamma")
        extra.write_text("delta\n")
        wait_body(server, b"v delta")


def test_a_missing_extra_file_is_a_one_line_error(tmp_path: Path) -> None:
    write_app(tmp_path / "reloadme.py", "v")
    server = Server(
        "reloadme:app", "--reload", "--reload-extra-file", str(tmp_path / "nope.cfg"), cwd=tmp_path
    )
    server.start(wait=False)
    assert server.wait_exit() != 0
    lines = [x for x in server.stderr_text().splitlines() if "error" in x.lower()]
    assert len(lines) == 1 and "nope.cfg" in lines[0], server.stderr_text()
    assert "Traceback" not in server.stderr_text()


def test_reload_with_preload_is_a_one_line_error(tmp_path: Path) -> None:
    write_app(tmp_path / "reloadme.py", "v")
    server = Server("reloadme:app", "--reload", "--preload", cwd=tmp_path)
    server.start(wait=False)
    assert server.wait_exit() == 2
    lines = [x for x in server.stderr_text().splitlines() if "error" in x.lower()]
    assert len(lines) == 1 and "--preload" in lines[0], server.stderr_text()


def test_without_reload_an_edit_changes_nothing(tmp_path: Path) -> None:
    module = tmp_path / "reloadme.py"
    write_app(module, "first")
    with Server("reloadme:app", cwd=tmp_path).start() as server:
        assert body(server) == b"first -"
        write_app(module, "second")
        for _ in range(20):
            assert body(server) == b"first -"
        assert "Reloading" not in server.stderr_text()


def test_a_broken_file_saved_by_rename_is_still_watched(tmp_path: Path) -> None:
    module = tmp_path / "reloadme.py"
    write_app(module, "before")
    with start(tmp_path) as server:
        assert body(server) == b"before -"
        # The broken version is a new file (a new inode) that no worker could import, so no
        # worker watches it as an imported module: the failed import's own files are watched.
        tmp = tmp_path / "reloadme.tmp"
        tmp.write_text("def app(:\n")
        tmp.rename(module)
        assert server.wait_stderr(r"Reload failed, keeping the old workers: .*SyntaxError", 30)
        assert body(server) == b"before -"
        write_app(module, "after")
        wait_body(server, b"after -")
