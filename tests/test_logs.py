"""Logs: access-log formats (combined, every gunicorn atom, JSON), the error log as text or
JSON, log files and their reopening on SIGUSR1, and the hand-over to Python's logging."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import LISTEN_RE, TESTS_DIR, Server, build_request

WAIT = 10.0

CLF_TIME = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"
COMBINED_RE = re.compile(
    r"(?P<h>\S+) (?P<l>\S+) (?P<u>\S+) \[(?P<t>" + CLF_TIME + r')\] "(?P<r>[^"]*)" '
    r'(?P<s>\d{3}) (?P<b>\d+|-) "(?P<f>[^"]*)" "(?P<a>[^"]*)"'
)
ACCESS_KEYS = {
    "time",
    "remote_addr",
    "method",
    "uri",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "referer",
    "user_agent",
    "duration_us",
    "pid",
}


def wait_lines(path: Path, count: int, pattern: str = "") -> list[str]:
    """Waits until ``path`` holds ``count`` lines containing ``pattern``; returns them."""
    deadline = time.monotonic() + WAIT
    while True:
        lines = []
        if path.exists():
            lines = [ln for ln in path.read_text().splitlines() if pattern in ln]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) >= count, (path, count, pattern, lines)
            return lines
        time.sleep(0.02)


def start_logged(start_server, app: str, log_file: Path, *options: str, **kw) -> Server:
    """Starts a server whose error log goes to ``log_file`` (not stderr): its address comes
    from the ``Listening at`` line found there."""
    server = start_server(app, *options, start=False, **kw)
    server.start(wait=False)
    line = wait_lines(log_file, 1, "Listening at: ")[0]
    match = LISTEN_RE.search(line)
    assert match, line
    server.urls = [match.group(1).rstrip('"}')]
    return server


# --- access log: combined ----------------------------------------------------------------------


def test_access_logfile_gets_combined_lines(start_server, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    server = start_server("apps.logs:app", "--access-logfile", str(access))
    server.request(
        "GET",
        "/a/b?x=1",
        headers=[
            ("User-Agent", "agent/1.0"),
            ("Referer", "http://ref.example/"),
            ("Authorization", "Basic YWxpY2U6c2VjcmV0"),  # alice:secret
        ],
    )
    server.request("GET", "/empty", headers=[])
    lines = wait_lines(access, 2)
    assert "/a/b" not in server.stdout_text()  # a file, not stdout
    first, second = (COMBINED_RE.fullmatch(ln) for ln in lines)
    assert first and second, lines
    assert first.group("h", "l", "u", "r", "s", "b", "f", "a") == (
        "127.0.0.1",
        "-",
        "alice",
        "GET /a/b?x=1 HTTP/1.1",
        "200",
        "5",
        "http://ref.example/",
        "agent/1.0",
    )
    # No body: '-' as Apache's %b; no auth, referer or agent: '-'.
    assert second.group("u", "r", "s", "b", "f", "a") == (
        "-",
        "GET /empty HTTP/1.1",
        "204",
        "-",
        "-",
        "-",
    )


def test_access_log_flag_still_means_stdout(start_server) -> None:
    server = start_server("apps.logs:app", "--access-log", "--access-logformat", "common")
    server.request("GET", "/common-line")
    assert server.wait_stdout("/common-line")
    line = next(ln for ln in server.stdout_text().splitlines() if "/common-line" in ln)
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[" + CLF_TIME + r'\] "GET /common-line HTTP/1\.1" 200 5', line
    ), line


# --- access log: every gunicorn atom -----------------------------------------------------------

ATOMS = [
    "h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L",
    "p", "{x-trace}i", "{X-Resp-Id}o", "{x-trace}o", "{content-length}o", "{x-missing}i",
    "{LOG_TEST_VAR}e", "{REMOTE_PORT}e", "{request_method}e", "{http_x_trace}e",
    "{unset_log_var}e",
]  # fmt: skip


def test_every_gunicorn_atom(start_server, tmp_path: Path) -> None:
    access = tmp_path / "atoms.log"
    fmt = "%% " + "|".join(f"%({a})s" for a in ATOMS)
    server = start_server(
        "apps.logs:app",
        "--access-logfile",
        str(access),
        "--access-logformat",
        fmt,
        env={"LOG_TEST_VAR": "from-env"},
    )
    with server.conn() as c:
        client_port = c.local_port
        c.send(
            build_request(
                "GET",
                "/p%20q/r?a=1&b=%20",
                headers=[
                    ("X-Trace", "trace-7"),
                    ("User-Agent", "atoms/2"),
                    ("Referer", "http://r/"),
                    ("Authorization", "Basic Ym9iOnB3"),  # bob:pw
                    ("Connection", "close"),
                ],
            )
        )
        resp = c.read_response()
    assert resp.status == 200
    (line,) = wait_lines(access, 1)
    assert line.startswith("% "), line
    values = dict(zip(ATOMS, line[2:].split("|")))
    assert len(values) == len(ATOMS) and len(line[2:].split("|")) == len(ATOMS), line
    assert values["h"] == "127.0.0.1"
    assert values["l"] == "-"
    assert values["u"] == "bob"
    assert re.fullmatch(r"\[" + CLF_TIME + r"\]", values["t"]), values["t"]
    assert values["r"] == "GET /p%20q/r?a=1&b=%20 HTTP/1.1"
    assert values["m"] == "GET"
    assert values["U"] == "/p q/r"  # PATH_INFO, decoded
    assert values["q"] == "a=1&b=%20"
    assert values["H"] == "HTTP/1.1"
    assert values["s"] == "200"
    assert values["B"] == values["b"] == "5"
    assert values["f"] == "http://r/"
    assert values["a"] == "atoms/2"
    micros = int(values["D"])
    assert micros >= 0
    assert int(values["M"]) == micros // 1000
    assert int(values["T"]) == micros // 1_000_000
    assert values["L"] == f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
    # The worker's pid, as gunicorn's %(p)s.
    assert values["p"] == f"<{server.worker_pid}>"
    assert values["{x-trace}i"] == "trace-7"
    assert values["{X-Resp-Id}o"] == "r-42"
    assert values["{x-trace}o"] == "trace-7"
    assert values["{content-length}o"] == "5"  # written by the server
    assert values["{x-missing}i"] == "-"
    assert values["{LOG_TEST_VAR}e"] == "from-env"
    assert values["{REMOTE_PORT}e"] == str(client_port)
    assert values["{request_method}e"] == "GET"
    assert values["{http_x_trace}e"] == "trace-7"
    assert values["{unset_log_var}e"] == "-"


def test_durations_measure_the_request(start_server, tmp_path: Path) -> None:
    access = tmp_path / "slow.log"
    server = start_server(
        "apps.slow:app",
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(U)s %(D)s %(L)s",
    )
    server.request("GET", "/sleep?s=0.2")
    (line,) = wait_lines(access, 1)
    _, micros, decimal = line.split()
    # The application slept 200 ms inside the measured span.
    assert int(micros) >= 200_000, line
    assert float(decimal) >= 0.2, line


def test_client_bytes_cannot_forge_lines(start_server, tmp_path: Path) -> None:
    access = tmp_path / "forge.log"
    server = start_server(
        "apps.logs:app",
        "--access-logfile",
        str(access),
        "--access-logformat",
        '"%(a)s" %({x-trace}i)s',
    )
    # Quotes and obs-text (RFC 9110 §5.5) are valid in a field value; both are escaped.
    resp = server.request("GET", "/", headers=[("User-Agent", 'a" "b'), ("X-Trace", "é")])
    assert resp.status == 200
    (line,) = wait_lines(access, 1)
    assert line == '"a\\" \\"b" \\xe9', line


@pytest.mark.parametrize(
    "fmt",
    ["%(zz)s", "%(h)s %", "%(h", "%({x}q)s", "%(h)x"],
)
def test_bad_access_format_is_one_line(fmt: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "apps.logs:app", "--access-log",
         "--access-logformat", fmt],
        cwd=TESTS_DIR, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "access log format" in lines[0], proc.stderr


def test_unwritable_log_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "x.log"
    for option in ("--error-logfile", "--access-logfile"):
        proc = subprocess.run(
            [sys.executable, "-m", "ferrowsgi", "apps.logs:app", "-b", "127.0.0.1:0",
             option, str(missing)],
            cwd=TESTS_DIR, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode != 0, proc
        last = proc.stderr.strip().splitlines()[-1]
        assert f"cannot open log file {missing}" in last, proc.stderr
        assert "Traceback" not in proc.stderr


# --- access log: JSON --------------------------------------------------------------------------


def test_json_access_log(start_server, tmp_path: Path) -> None:
    access = tmp_path / "access.json"
    server = start_server(
        "apps.logs:app", "--access-logfile", str(access), "--access-logformat", "json"
    )
    server.request("GET", "/j%C3%A9?k=v", headers=[("User-Agent", 'q"uote\\')])
    server.request("POST", "/empty", body=b"abc", headers=[])
    lines = wait_lines(access, 2)
    records = [json.loads(ln) for ln in lines]
    for rec in records:
        assert set(rec) == ACCESS_KEYS, rec
        assert rec["pid"] == server.worker_pid
        assert isinstance(rec["duration_us"], int) and rec["duration_us"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])
    first, second = records
    assert first["method"] == "GET"
    assert first["uri"] == "/j%C3%A9?k=v"
    assert first["path"] == "/jé"
    assert first["query"] == "k=v"
    assert first["status"] == 200 and first["bytes"] == 5
    assert first["user_agent"] == 'q"uote\\'
    assert first["referer"] is None
    assert first["remote_addr"] == "127.0.0.1"
    assert first["protocol"] == "HTTP/1.1"
    assert (second["method"], second["status"], second["bytes"]) == ("POST", 204, 0)


# --- error log ---------------------------------------------------------------------------------


def test_error_log_json_file(start_server, tmp_path: Path) -> None:
    errors = tmp_path / "error.json"
    server = start_logged(
        start_server,
        "apps.logs:app",
        errors,
        "--error-logfile",
        str(errors),
        "--log-format",
        "json",
        "--log-level",
        "debug",
    )
    assert "Listening at" not in server.stderr_text()
    assert server.request("GET", "/fail").status == 500
    wait_lines(errors, 1, "log-test failure marker")
    records = [json.loads(ln) for ln in errors.read_text().splitlines()]
    for rec in records:
        assert set(rec) == {"time", "pid", "level", "message"}, rec
        # The master's lines and the worker's.
        assert rec["pid"] in {server.pid, server.worker_pid}, rec
        assert rec["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    failure = [r for r in records if "log-test failure marker" in r["message"]]
    assert failure and failure[0]["level"] == "ERROR", records
    assert failure[0]["pid"] == server.worker_pid
    assert any(r["message"].startswith("Starting ferrowsgi") for r in records)


def test_error_log_text_levels(start_server, tmp_path: Path) -> None:
    errors = tmp_path / "error.log"
    server = start_logged(start_server, "apps.logs:app", errors, "--error-logfile", str(errors))
    server.request("GET", "/fail")
    (line,) = wait_lines(errors, 1, "log-test failure marker")
    assert re.fullmatch(
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000\] \[\d+\] \[ERROR\] .*log-test failure marker",
        line,
    ), line


# --- reopening on SIGUSR1 ----------------------------------------------------------------------


def test_usr1_reopens_renamed_files(start_server, tmp_path: Path) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    server = start_logged(
        start_server,
        "apps.logs:app",
        errors,
        "--access-logfile",
        str(access),
        "--error-logfile",
        str(errors),
        "--log-level",
        "debug",
    )
    server.request("GET", "/before")
    wait_lines(access, 1, "/before")
    access.rename(tmp_path / "access.log.1")
    errors.rename(tmp_path / "error.log.1")
    # Renamed, not yet reopened: lines still go to the moved files.
    server.request("GET", "/moved")
    wait_lines(tmp_path / "access.log.1", 1, "/moved")
    os.kill(server.pid, signal.SIGUSR1)
    deadline = time.monotonic() + WAIT
    while not access.exists():  # reopening creates the file again
        assert time.monotonic() < deadline, "SIGUSR1 did not reopen the access log"
        time.sleep(0.02)
    server.request("GET", "/after")
    server.request("GET", "/fail")
    assert wait_lines(access, 2)[0].split('"')[1] == "GET /after HTTP/1.1"
    wait_lines(errors, 1, "log-test failure marker")
    old = (tmp_path / "access.log.1").read_text()
    assert "/before" in old and "/moved" in old and "/after" not in old
    assert "log-test failure marker" not in (tmp_path / "error.log.1").read_text()
    assert server.proc is not None and server.proc.poll() is None


def test_reopen_under_load_keeps_every_line_whole(start_server, tmp_path: Path) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    server = start_logged(
        start_server,
        "apps.logs:app",
        errors,
        "--threads",
        "4",
        "--access-logfile",
        str(access),
        "--error-logfile",
        str(errors),
    )
    sent = [0] * 4
    stop = threading.Event()

    def client(i: int) -> None:
        while not stop.is_set():
            assert server.request("GET", f"/load/{i}/{sent[i]}").status == 200
            sent[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(1, 4):
            wait_lines(access, 20, "/load/")  # traffic is flowing into the current file
            access.rename(tmp_path / f"access.log.{n}")
            os.kill(server.pid, signal.SIGUSR1)
            deadline = time.monotonic() + WAIT
            while not access.exists():
                assert time.monotonic() < deadline
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    total = sum(sent)
    files = [access] + [tmp_path / f"access.log.{n}" for n in range(1, 4)]
    deadline = time.monotonic() + WAIT
    while True:
        lines = [ln for f in files for ln in f.read_text().splitlines()]
        if len(lines) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == total, (len(lines), total)
    paths = set()
    for ln in lines:
        m = COMBINED_RE.fullmatch(ln)
        assert m, ln
        paths.add(m.group("r").split()[1])
    assert len(paths) == total  # every request exactly once


# --- --log-to-python ---------------------------------------------------------------------------


def test_log_to_python(start_server, tmp_path: Path) -> None:
    capture = tmp_path / "records.jsonl"
    server = start_logged(
        start_server,
        "apps.logged:app",
        capture,
        # The master's own lines (the address) reach Python's logging when the master
        # loaded the application, which sets the logging up.
        "--preload",
        "--log-to-python",
        "--access-log",
        "--access-logformat",
        '%(h)s "%(r)s" %(s)s',
        "--threads",
        "2",
        env={"LOG_CAPTURE": str(capture)},
    )
    server.request("GET", "/py?x=1", headers=[("User-Agent", "py-agent")])
    server.request("GET", "/fail")
    access = [json.loads(ln) for ln in wait_lines(capture, 2, '"ferrowsgi.access"')]
    errors = [json.loads(ln) for ln in wait_lines(capture, 1, "log-test failure marker")]
    first = access[0]
    assert first["logger"] == "ferrowsgi.access"
    assert first["level"] == "INFO" and first["levelno"] == 20
    assert first["message"] == '127.0.0.1 "GET /py?x=1 HTTP/1.1" 200'
    assert (first["method"], first["path"], first["query"], first["status"]) == (
        "GET",
        "/py",
        "x=1",
        200,
    )
    assert first["user_agent"] == "py-agent" and first["referer"] is None
    assert first["bytes"] == 5 and first["pid"] == server.worker_pid
    assert isinstance(first["duration_us"], int)
    assert errors[0]["logger"] == "ferrowsgi.error"
    assert errors[0]["level"] == "ERROR" and errors[0]["levelno"] == 40
    records = [json.loads(ln) for ln in capture.read_text().splitlines()]
    listening = [r for r in records if r["message"].startswith("Listening at")]
    assert listening and listening[0]["level"] == "INFO"
    # Nothing of either log reached the server's own destinations.
    assert "/py" not in server.stdout_text()
    assert "failure marker" not in server.stderr_text()
    assert "Listening at" not in server.stderr_text()


def test_log_to_python_with_an_access_file(start_server, tmp_path: Path) -> None:
    """An explicit access-log file wins: only the error log goes to Python."""
    capture, access = tmp_path / "records.jsonl", tmp_path / "access.log"
    server = start_logged(
        start_server,
        "apps.logged:app",
        capture,
        # The master's own lines (the address) reach Python's logging when the master
        # loaded the application, which sets the logging up.
        "--preload",
        "--log-to-python",
        "--access-logfile",
        str(access),
        env={"LOG_CAPTURE": str(capture)},
    )
    server.request("GET", "/to-file")
    server.request("GET", "/fail")
    wait_lines(capture, 1, "log-test failure marker")
    (line,) = wait_lines(access, 1, "/to-file")
    assert COMBINED_RE.fullmatch(line), line
    assert '"ferrowsgi.access"' not in capture.read_text()


def test_failed_reopen_is_logged_through_python_and_keeps_the_old_file(
    start_server, tmp_path: Path
) -> None:
    """The reopen runs with the GIL released, so its error line takes the GIL back to reach
    Python's logging; the access log keeps its old file."""
    capture = tmp_path / "records.jsonl"
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    server = start_logged(
        start_server,
        "apps.logged:app",
        capture,
        # The master's own lines (the address) reach Python's logging when the master
        # loaded the application, which sets the logging up.
        "--preload",
        "--log-to-python",
        "--access-logfile",
        str(log_dir / "access.log"),
        env={"LOG_CAPTURE": str(capture)},
    )
    server.request("GET", "/first")
    wait_lines(log_dir / "access.log", 1, "/first")
    log_dir.rename(tmp_path / "moved")  # the path cannot be opened any more
    os.kill(server.pid, signal.SIGUSR1)
    (line,) = wait_lines(capture, 1, "cannot reopen log file")
    record = json.loads(line)
    assert record["logger"] == "ferrowsgi.error" and record["level"] == "ERROR", record
    assert str(log_dir / "access.log") in record["message"]
    assert server.request("GET", "/second").status == 200
    wait_lines(tmp_path / "moved" / "access.log", 1, "/second")
    assert server.proc is not None and server.proc.poll() is None
