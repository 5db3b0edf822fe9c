"""Request deadlines (``--timeout``, ``--timeout-grace``) over real sockets.

A request past its deadline gets a 504 at once from the Rust side, whatever its Python thread
is doing; the thread gets ``ferrowsgi.RequestTimeout`` (its ``finally`` runs and writes a marker
file, see ``apps/deadlines.py``); the stack it had is logged; the worker keeps serving. A thread
still gone ``--timeout-grace`` later retires the worker: it stops accepting, finishes its other
requests and exits with status 70.

The one timing assertion here is the deadline itself, with a generous margin (1 s) for a loaded
machine; the measured latency is printed.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
from support import RawConn, Server, build_request, wait_until

APP = "apps.deadlines:app"
EXIT_UNHEALTHY = 70
MARGIN = 1.0


def wait_file(path: Path, timeout: float) -> str:
    """The content of ``path`` once it exists (an AssertionError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def send(server: Server, target: str, timeout: float = 30.0) -> RawConn:
    c = RawConn(server.addr, timeout=timeout)
    c.send(build_request("GET", target))
    return c


def overdue(server: Server, route: str, secs: float, mark: Path, timeout: float) -> float:
    """Sends ``route`` (busy for ``secs``) and checks its 504; returns its latency."""
    t0 = time.monotonic()
    with send(server, f"{route}?s={secs}&mark={quote(str(mark))}") as c:
        resp = c.read_response()
        latency = time.monotonic() - t0
        print(f"{route}: 504 after {latency * 1000:.0f} ms (deadline {timeout * 1000:.0f} ms)")
        assert resp.status == 504, (resp.status, resp.body)
        assert resp.closes, resp.headers
        assert b"did not answer" in resp.body
        assert c.at_eof(), "the connection closes after the 504"
    assert timeout - 0.05 <= latency <= timeout + MARGIN, latency
    return latency


def hello(server: Server) -> int:
    resp = server.request("GET", "/hello")
    assert resp.status == 200, (resp.status, resp.body, server.stderr_text()[-4000:])
    return int(resp.body)


@pytest.mark.parametrize("threads", ["1", "4"])
def test_overdue_request_gets_504_and_its_thread_the_exception(
    start_server, tmp_path: Path, threads: str
) -> None:
    server = start_server(APP, "--threads", threads, "--timeout", "1", "--timeout-grace", "60")
    pid = hello(server)
    assert pid == server.worker_pid
    mark = tmp_path / "mark"
    # A keep-alive request on another connection, sent while the first overruns.
    other = RawConn(server.addr, timeout=30)
    t0 = time.monotonic()
    with send(server, f"/loop?s=30&mark={quote(str(mark))}") as c:
        time.sleep(0.2)  # the overdue request is in the application by now
        other.send(build_request("GET", "/hello", headers=[("Connection", "keep-alive")]))
        resp = c.read_response()
        latency = time.monotonic() - t0
        print(f"--threads {threads}: 504 after {latency * 1000:.0f} ms")
        assert resp.status == 504
        assert resp.closes
        assert c.at_eof()
    assert 1.0 <= latency <= 1.0 + MARGIN, latency
    # The thread saw the exception (not swallowed by its `except Exception`).
    assert wait_file(mark, 10) == "RequestTimeout"
    # The concurrent request was served by the same worker.
    got = other.read_response()
    assert got.status == 200 and int(got.body) == pid
    other.close()
    # The log names the request and shows where its thread was.
    found = server.stderr_matches(r"Stack of GET /loop\S* at its deadline[^\n]*\n((?:  .*\n)+)")
    assert found, server.stderr_text()
    stack = found[0].group(1)
    assert "in _busy" in stack and "time.sleep(0.02)" in stack, stack
    assert "Request deadline passed: GET /loop" in server.stderr_text()
    # Same worker, still serving.
    assert hello(server) == pid
    assert server.proc is not None and server.proc.poll() is None


@pytest.mark.parametrize(
    ("threads", "route"),
    [
        ("4", "/sleep"),
        ("4", "/csleep"),
        ("4", "/cgil"),
        ("4", "/lock"),
        ("1", "/csleep"),
        ("1", "/cgil"),
    ],
)
def test_the_504_does_not_wait_for_the_thread(
    start_server, tmp_path: Path, threads: str, route: str
) -> None:
    """In one long sleep, in C code with or without the GIL, waiting for a lock."""
    server = start_server(APP, "--threads", threads, "--timeout", "1", "--timeout-grace", "60")
    pid = hello(server)
    mark = tmp_path / "mark"
    overdue(server, route, 3, mark, 1.0)
    # The thread comes back when its call returns. An exception is delivered only when the
    # thread runs Python code: then it sees RequestTimeout.
    if route != "/cgil":
        assert wait_file(mark, 15) == "RequestTimeout"
    else:
        # A thread that held the GIL all along goes on with Python code as its call returns,
        # and lets the GIL go only a switch interval later: it may have ended its request by
        # then (nothing is raised), or meet the exception anywhere, even in its `finally`.
        assert server.wait_stderr(
            r"(Stack of GET /cgil\S* at its deadline|GET /cgil\S*: its thread came back)", 15
        ), server.stderr_text()
    assert hello(server) == pid


@pytest.mark.parametrize("threads", ["1", "4"])
def test_pipelined_answers_keep_their_order(start_server, tmp_path: Path, threads: str) -> None:
    """The answer to an earlier pipelined request still waits in the buffer when the late one
    runs: the 504 must not overtake it, so the request's own thread answers it, after."""
    server = start_server(APP, "--threads", threads, "--timeout", "1", "--timeout-grace", "60")
    mark = tmp_path / "mark"
    with RawConn(server.addr, timeout=30) as c:
        c.send(
            build_request("GET", "/hello")
            + build_request("GET", f"/loop?s=30&mark={quote(str(mark))}")
        )
        first = c.read_response()
        assert first.status == 200 and int(first.body) == server.worker_pid
        second = c.read_response()
        assert second.status == 504 and second.closes
        assert c.at_eof()
    assert wait_file(mark, 10) == "RequestTimeout"
    assert "504 Gateway Timeout left to its thread" in server.stderr_text()


def test_a_streamed_response_past_its_deadline_is_cut_off(start_server, tmp_path: Path) -> None:
    server = start_server(APP, "--threads", "4", "--timeout", "1", "--timeout-grace", "60")
    mark = tmp_path / "mark"
    with send(server, f"/stream?s=30&mark={quote(str(mark))}") as c:
        resp = c.read_response(allow_truncated=True)
        # The head was out before the deadline: no 504, the body ends without its last chunk.
        assert resp.status == 200
        assert not resp.complete
        assert resp.body.startswith(b"started")
    assert wait_file(mark, 10) == "RequestTimeout"
    assert "response already started" in server.stderr_text()


def test_the_servers_own_waits_end_at_the_deadline(start_server, tmp_path: Path) -> None:
    """A request waiting for a body that never comes (the server's own wait, GIL released)
    fails at its deadline instead of holding its thread for --read-timeout, which past
    --timeout-grace would retire the worker."""
    server = start_server(
        APP, "--threads", "4", "--timeout", "1", "--timeout-grace", "1", "--read-timeout", "60"
    )
    pid = hello(server)
    mark = tmp_path / "mark"
    with RawConn(server.addr, timeout=30) as c:
        c.send(
            build_request(
                "POST",
                f"/read?mark={quote(str(mark))}",
                headers=[("Content-Length", "100"), ("Expect", "100-continue")],
            )
        )
        interim = c.read_response(skip_1xx=False)
        assert interim.status == 100
        resp = c.read_response()
        assert resp.status == 504
    # The thread came back at the deadline: its read raised RequestTimeout itself, and nothing
    # more is raised in the thread afterwards (a second one could land in this finally block).
    assert wait_file(mark, 10) == "RequestTimeout"
    assert server.wait_stderr(r"POST /read", 5)
    assert "Worker unhealthy" not in server.stderr_text()
    assert hello(server) == pid


def test_timeout_zero_means_no_deadline(start_server, tmp_path: Path) -> None:
    server = start_server(APP, "--threads", "4", "--timeout", "0")
    mark = tmp_path / "mark"
    resp = server.request("GET", f"/loop?s=1.5&mark={quote(str(mark))}")
    assert resp.status == 200 and resp.body == b"/loop done"
    assert wait_file(mark, 5) == "none"
    assert "Request deadline" not in server.stderr_text()


@pytest.mark.parametrize("route", ["/csleep", "/cgil"])
def test_a_thread_lost_past_the_grace_retires_the_worker(
    start_server, tmp_path: Path, route: str
) -> None:
    """With or without the GIL: 504, then past the grace the worker stops accepting, finishes
    the request it still has and exits with status 70, while the master's replacement takes
    the new connections. /csleep never comes back before the exit (it dies with the
    process); /cgil holds the GIL for 6 s, so the other request can only finish after it."""
    server = start_server(APP, "--threads", "4", "--timeout", "4", "--timeout-grace", "1")
    old = server.worker_pid
    mark = tmp_path / "mark"
    go = tmp_path / "go"
    secs = 60 if route == "/csleep" else 6
    lost = send(server, f"{route}?s={secs}&mark={quote(str(mark))}")
    resp = lost.read_response()
    assert resp.status == 504
    lost.close()
    # Another request, in progress when the worker is retired.
    other = send(server, f"/wait?s=30&go={quote(str(go))}")
    assert server.wait_stderr(r"Worker unhealthy: the thread of GET " + route, 10), (
        server.stderr_text()
    )
    # No longer accepting: new connections go to the replacement the master started.
    assert wait_until(lambda: hello(server) != old, 15), "the retired worker still accepts"
    go.write_text("go")
    done = other.read_response()
    assert done.status == 200 and done.body == b"/wait done", (done.status, done.body)
    other.close()
    assert server.wait_stderr(
        rf"Worker {old} \(replaced: Unhealthy\) exited with status {EXIT_UNHEALTHY}", 20
    )
    assert "Worker exiting (status 70)" in server.stderr_text()
    assert server.proc is not None and server.proc.poll() is None
    if route == "/csleep":
        assert not mark.exists(), "the lost thread died with the worker"


def test_inline_a_lost_thread_exits_at_once(start_server, tmp_path: Path) -> None:
    """With --threads 1 the lost thread is the event loop: nothing else can be finished."""
    server = start_server(APP, "--timeout", "1", "--timeout-grace", "1")
    old = server.worker_pid
    mark = tmp_path / "mark"
    overdue(server, "/csleep", 60, mark, 1.0)
    assert server.wait_stderr(
        rf"Worker {old} \(replaced: Unhealthy\) exited with status {EXIT_UNHEALTHY}", 15
    )
    assert wait_until(lambda: hello(server) != old, 15)
    text = server.stderr_text()
    assert "the event loop is that thread" in text, text
    assert not mark.exists()


def test_a_lost_thread_holding_the_gil_retires_the_worker_with_logs_in_python(
    start_server, tmp_path: Path
) -> None:
    """With --log-to-python every log line needs the GIL, which a thread stuck in C code holds
    for good: the watcher still answers, retires the worker and exits (the last lines go to
    stderr as they are when Python cannot take them)."""
    server = start_server(
        APP,
        "--timeout",
        "1",
        "--timeout-grace",
        "1",
        "--log-to-python",
        env={"DEADLINES_PY_LOGGING": "1"},
    )
    old = server.worker_pid
    mark = tmp_path / "mark"
    overdue(server, "/cgil", 60, mark, 1.0)
    assert server.wait_stderr(
        rf"Worker {old} \(replaced: Unhealthy\) exited with status {EXIT_UNHEALTHY}", 20
    )
    assert "Worker exiting (status 70)" in server.stderr_text()
    assert wait_until(lambda: hello(server) != old, 15)


def test_the_request_timeout_exception_is_exported() -> None:
    import ferrowsgi

    assert issubclass(ferrowsgi.RequestTimeout, BaseException)
    # `except Exception` in an application does not swallow it.
    assert not issubclass(ferrowsgi.RequestTimeout, Exception)
