"""Master and worker processes: forking, replacing, recycling, stopping.

Every test runs the real command line, sends real signals and talks over real sockets.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from pathlib import Path

import gateway_cgi as g
import pytest
from support import (
    TESTS_DIR,
    IncompleteResponse,
    RawConn,
    Server,
    assert_one_line_error,
    build_request,
    children,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie has exited; only its parent's wait is missing.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def get(server: Server, target: str = "/") -> str:
    resp = server.request("GET", target)
    assert resp.status == 200, resp
    return resp.text


def wait_workers(server: Server, count: int, timeout: float = 20) -> list[int]:
    """Wait until the master has ``count`` children that answer, and return their pids."""
    assert wait_until(lambda: len(server.worker_pids()) == count, timeout), server.worker_pids()
    return server.worker_pids()


def pids_answering(server: Server, expected: set[int], timeout: float = 20) -> set[int]:
    """Send requests (new connections) until every pid of ``expected`` answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while not expected <= seen and time.monotonic() < deadline:
        seen.add(int(get(server)))
    return seen


class Load:
    """Client threads sending requests on new connections until stopped.

    A request counts as failed when it was sent and no complete response came back. A
    refused connection means the server is gone (it is not a request that was accepted),
    and stops that thread. Once ``stopping_at`` is set (just before a stop signal), a
    connection made after it may also end without a single byte of answer (reset with the
    listening socket, as in gunicorn): it was never accepted, and it stops that thread too;
    any connection made before it must be answered.
    """

    def __init__(
        self, server: Server, threads: int = 2, target: str = "/", keep_alive: bool = False
    ) -> None:
        self.addr = server.addr
        self.target = target
        self.keep_alive = keep_alive
        self.ok = 0
        self.failures: list[str] = []
        self.pids: dict[int, int] = {}
        self.refused = False
        self.stopping_at: float | None = None
        self.unaccepted = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def wait_ok(self, more: int, timeout: float = 20) -> None:
        target = self.ok + more
        assert wait_until(lambda: self.ok >= target or self.refused, timeout), (self.ok, target)

    def _run(self) -> None:
        if self.keep_alive:
            self._run_keep_alive()
            return
        while not self._stop.is_set():
            try:
                conn = RawConn(self.addr, timeout=30)
            except (ConnectionRefusedError, FileNotFoundError):
                self.refused = True
                return
            connected_at = time.monotonic()
            try:
                conn.send(build_request("GET", self.target, headers=[("Connection", "close")]))
                resp = conn.read_response()
                assert resp.status == 200, resp.status
                pid = int(resp.text)
                with self._lock:
                    self.ok += 1
                    self.pids[pid] = self.pids.get(pid, 0) + 1
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                late = self.stopping_at is not None and connected_at > self.stopping_at
                if late and not conn.buf and isinstance(e, (OSError, IncompleteResponse)):
                    with self._lock:
                        self.unaccepted += 1
                        self.refused = True
                    return
                with self._lock:
                    self.failures.append(f"{type(e).__name__}: {e}")
            finally:
                conn.close()

    def _run_keep_alive(self) -> None:
        """Requests on one persistent connection, a new one when the server closes it
        (after an answer that said ``Connection: close``). A request sent on an open
        connection that gets no answer is a failure."""
        conn: RawConn | None = None
        while not self._stop.is_set():
            if conn is None:
                try:
                    conn = RawConn(self.addr, timeout=30)
                except (ConnectionRefusedError, FileNotFoundError):
                    self.refused = True
                    return
            try:
                conn.send(build_request("GET", self.target))
                resp = conn.read_response()
                assert resp.status == 200, resp.status
                pid = int(resp.text)
                with self._lock:
                    self.ok += 1
                    self.pids[pid] = self.pids.get(pid, 0) + 1
                if resp.closes:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self._lock:
                    self.failures.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


# --- forking and serving ----------------------------------------------------------------------


def test_two_workers_both_serve(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "2")
    pids = set(wait_workers(server, 2))
    assert server.pid not in pids
    assert pids_answering(server, pids) == pids
    # Each worker is a child of the master.
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == server.pid


def test_a_lone_worker_given_company_shares_sequential_connections(start_server) -> None:
    # A worker alone on the listener keeps its place in the listener's queue
    # of waiters (it has no one to make room for), and so would take every
    # connection that arrives while it is idle once a second worker has
    # joined behind it, unless it learns of the newcomer.
    server = start_server("apps.procs:app")
    (first,) = wait_workers(server, 1)
    for _ in range(10):
        assert int(get(server)) == first
    os.kill(server.pid, signal.SIGTTIN)
    pids = set(wait_workers(server, 2))
    assert first in pids
    # One connection at a time, each after a pause, so that each finds both
    # workers asleep: the kernel then wakes the first in the queue.
    seen = []
    for _ in range(40):
        time.sleep(0.02)
        seen.append(int(get(server)))
        if set(seen) == pids:
            break
    assert set(seen) == pids, seen


@pytest.mark.parametrize("proto", ["scgi", "uwsgi"])
def test_sequential_gateway_connections_reach_every_worker(proto: str) -> None:
    # A listener of one request per connection rotates its workers after 64 connections
    # rather than 4 (each rotation is two system calls): connections that come one at a
    # time to idle workers still reach both, in longer runs.
    port = free_port()
    binds = [f"{proto}://127.0.0.1:{port}"]
    with Server("apps.procs:app", "-w", "2", binds=binds).start() as server:
        pids = set(wait_workers(server, 2))
        request = g.PROTOCOLS[proto].request(g.base_vars("GET", "/"))
        seen: list[int] = []
        for _ in range(400):
            time.sleep(0.005)
            status, _, body = g.ask(("127.0.0.1", port), request)
            assert status == 200
            seen.append(int(body))
            if set(seen) == pids:
                break
        assert set(seen) == pids, (len(seen), set(seen), pids)


def test_a_burst_after_sequential_connections_is_answered_whole(start_server) -> None:
    # After connections that came one at a time, a worker takes one connection
    # per wake-up from its (level-triggered) listener; a burst that follows must
    # still be answered whole, however many wait at once.
    server = start_server("apps.procs:app")
    (worker,) = wait_workers(server, 1)
    for _ in range(5):
        time.sleep(0.01)
        assert int(get(server)) == worker
    conns = [RawConn(server.addr) for _ in range(40)]
    try:
        for c in conns:
            c.send(build_request("GET", "/", headers=[("Connection", "close")]))
        for c in conns:
            resp = c.read_response()
            assert resp.status == 200
            assert int(resp.text) == worker
    finally:
        for c in conns:
            c.close()


def test_one_worker_by_default_and_master_runs_no_app(start_server, tmp_path: Path) -> None:
    log = tmp_path / "imports"
    server = start_server("apps.procs:app", env={"PROCS_IMPORT_LOG": str(log)})
    (worker,) = wait_workers(server, 1)
    assert int(get(server)) == worker
    assert int(get(server, "/imported")) == worker
    assert log.read_text().split() == [str(worker)]


def test_preload_imports_in_the_master_once(start_server, tmp_path: Path) -> None:
    log = tmp_path / "imports"
    server = start_server(
        "apps.procs:app", "-w", "2", "--preload", env={"PROCS_IMPORT_LOG": str(log)}
    )
    pids = set(wait_workers(server, 2))
    assert pids_answering(server, pids) == pids
    assert int(get(server, "/imported")) == server.pid
    assert log.read_text().split() == [str(server.pid)]


def test_workers_auto_counts_usable_cpus(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "auto")
    expected = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            expected = min(expected, -(-int(quota) // int(period)))
    except (FileNotFoundError, ValueError):
        pass
    assert server.wait_stderr(rf"Using {expected} worker\(s\)")
    wait_workers(server, expected)


# --- replacing ----------------------------------------------------------------------------------


def test_killed_worker_is_replaced_and_the_others_keep_serving(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "2")
    first = set(wait_workers(server, 2))
    assert pids_answering(server, first) == first
    with Load(server) as load:
        load.wait_ok(50)
        victim, survivor = sorted(first)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        now: list[int] = []

        def replaced() -> bool:
            # One look at the children: two could see a zombie victim, then none in its place.
            now[:] = server.worker_pids()
            return len(now) == 2 and victim not in now

        assert wait_until(replaced, 10), now
        replaced_in = time.monotonic() - killed_at
        (new,) = set(now) - first
        served_by_survivor = load.pids.get(survivor, 0)
        load.wait_ok(200)
        assert load.pids.get(survivor, 0) > served_by_survivor
        assert wait_until(lambda: load.pids.get(new, 0) > 0, 20), load.pids
    # The worker is replaced at once (a generous bound: it is the feature).
    assert replaced_in < 1.0, replaced_in
    # Only what the killed worker had in flight may fail (one request per client thread).
    assert len(load.failures) <= 2, load.failures
    assert server.wait_stderr(rf"Worker {victim} was killed by SIGKILL")


def test_kill_9_of_the_master_leaves_no_worker(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "2")
    pids = wait_workers(server, 2)
    os.kill(server.pid, signal.SIGKILL)
    assert wait_until(lambda: not any(alive(p) for p in pids), 20), [p for p in pids if alive(p)]


def test_import_error_is_one_line_without_a_fork_storm(tmp_path: Path) -> None:
    import subprocess
    import sys

    log = tmp_path / "imports"
    env = dict(os.environ, PROCS_FAIL_IMPORT="1", PROCS_IMPORT_LOG=str(log))
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "apps.procs:app", "-b", "127.0.0.1:0", "-w", "3"],
        cwd=TESTS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result.stderr, "import refused on purpose")
    # At most the first round of workers tried; none was started again.
    assert len(log.read_text().split()) <= 3


def test_a_worker_that_fails_later_is_retried_with_back_off(start_server, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    server = start_server(
        "apps.procs:app",
        env={"PROCS_FAIL_IMPORT": "1", "PROCS_FAIL_FLAG": str(flag)},
    )
    (worker,) = wait_workers(server, 1)
    assert int(get(server)) == worker
    flag.write_text("")
    os.kill(worker, signal.SIGKILL)
    # Each failed start logs one line with its delay; the delays grow.
    assert wait_until(lambda: server.stderr_text().count("failed to boot") >= 3, 30)
    text = server.stderr_text()
    delays = [
        float(line.rsplit(" in ", 1)[1].split()[0])
        for line in text.splitlines()
        if "failed to boot" in line
    ]
    assert all(b > a for a, b in zip(delays, delays[1:])), delays
    failed = [ln for ln in text.splitlines() if "failed to boot" in ln]
    assert all("import refused on purpose" in ln for ln in failed), failed
    flag.unlink()
    (back,) = wait_workers(server, 1)
    assert wait_until(lambda: get(server) == str(back), 20)


# --- stopping -----------------------------------------------------------------------------------


def test_term_under_load_fails_no_request(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "2", "--threads", "4")
    wait_workers(server, 2)
    with Load(server, threads=3, target="/sleep?s=0.05") as load:
        load.wait_ok(40)
        load.stopping_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert wait_until(lambda: load.refused, 10)
    assert load.failures == []
    assert load.ok >= 40


def test_term_closes_idle_keep_alive_connections_at_once(start_server) -> None:
    server = start_server("apps.procs:app", "--keep-alive", "60", "--threads", "2")
    wait_workers(server, 1)
    idle = server.conn(timeout=20)
    idle.request("GET", "/")
    assert idle.read_response().status == 200
    busy = server.conn(timeout=20)
    busy.request("GET", "/sleep?s=1.5")
    time.sleep(0.3)  # the sleeping request is in the application now
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    # The idle connection ends now, not after --keep-alive (60 s).
    assert idle.sock.recv(1) == b""
    closed_in = time.monotonic() - start
    resp = busy.read_response()
    assert resp.status == 200
    assert resp.closes, resp.headers
    assert busy.sock.recv(1) == b""
    assert server.proc.wait(20) == 0
    assert closed_in < 1.0, closed_in
    idle.close()
    busy.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_int_and_quit_stop_fast(start_server, sig: int) -> None:
    server = start_server("apps.procs:app", "-w", "2")
    pids = wait_workers(server, 2)
    server.proc.send_signal(sig)
    assert server.proc.wait(20) == 0
    assert not any(alive(p) for p in pids)
    assert "Traceback" not in server.stderr_text()
    assert "KeyboardInterrupt" not in server.stderr_text()


def test_graceful_timeout_kills_a_worker_that_does_not_finish(start_server) -> None:
    server = start_server("apps.procs:app", "--graceful-timeout", "1")
    (worker,) = wait_workers(server, 1)
    busy = server.conn(timeout=30)
    busy.request("GET", "/sleep?s=20")
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    assert not alive(worker)
    assert server.wait_stderr(rf"Worker {worker} did not stop within --graceful-timeout")
    busy.close()


# --- system -------------------------------------------------------------------------------------


def test_pid_file_is_written_and_removed(start_server, tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    server = start_server("apps.procs:app", "-p", str(pid_file))
    wait_workers(server, 1)
    assert pid_file.read_text().strip() == str(server.pid)
    assert server.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()


def test_master_pid_is_parent_of_the_worker(start_server) -> None:
    server = start_server("apps.procs:app")
    assert int(get(server, "/ppid")) == server.pid
    assert children(server.pid) == [int(get(server))]


# --- hooks --------------------------------------------------------------------------------------


def test_server_hooks_run_in_the_right_processes(start_server, tmp_path: Path) -> None:
    log = tmp_path / "hooks"
    server = start_server("apps.hooked:app", "-w", "2", "--preload", env={"HOOKS_LOG": str(log)})
    workers = set(wait_workers(server, 2))
    # when_ready runs in the master before it forks (as in gunicorn); wait for both workers.
    assert wait_until(lambda: log.exists() and log.read_text().count("post_worker_init") == 2)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    lines = [ln.split() for ln in log.read_text().splitlines()]
    by_name: dict[str, list[list[str]]] = {}
    for name, *rest in lines:
        by_name.setdefault(name, []).append(rest)
    master = str(server.pid)
    assert by_name["when_ready"] == [[master]]
    assert by_name["on_exit"] == [[master]]
    for hook in ("post_fork", "post_worker_init", "worker_exit"):
        entries = by_name[hook]
        # Run in each worker, which the worker argument describes.
        assert {int(e[0]) for e in entries} == workers, (hook, entries)
        assert all(e[0] == e[2] for e in entries), entries
        assert sorted(e[1] for e in entries) == ["1", "2"], entries
    assert lines[-1][0] == "on_exit"


def test_master_hooks_for_workers_coming_and_going(start_server, tmp_path: Path) -> None:
    log = tmp_path / "hooks"
    server = start_server("apps.hooked:app", "-w", "2", "--preload", env={"HOOKS_LOG": str(log)})

    def entries(name: str) -> list[list[str]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [ln.split()[1:] for ln in lines if ln.split()[0] == name]

    assert wait_until(lambda: len(entries("post_worker_init")) == 2)
    master = str(server.pid)
    os.kill(server.pid, signal.SIGTTIN)
    assert wait_until(lambda: entries("nworkers_changed:2:3") == [[master]])
    wait_workers(server, 3)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    # child_exit runs in the master and describes the worker that left.
    assert wait_until(lambda: any(e[2] == str(victim) for e in entries("child_exit")))
    assert all(e[0] == master for e in entries("child_exit"))
    os.kill(server.pid, signal.SIGHUP)
    assert wait_until(lambda: entries("on_reload") == [[master]])
    assert server.wait_stderr("Reload done")
    # The reload reads the settings again: -w 2 (TTIN's change was for the old ones).
    workers = set(wait_workers(server, 2))
    assert wait_until(lambda: workers <= {int(e[0]) for e in entries("post_worker_init")})
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(20) == 0
    # Each worker of the last generation ran worker_int in its own process.
    assert {int(e[0]) for e in entries("worker_int")} == workers


# The hooks gunicorn calls around forks and aborts, as a gunicorn.conf.py defines them. Each
# appends ``name pid ...`` to the file in HOOKS_LOG; child_exit also raises, which the master
# must log and survive.
FORK_HOOKS_CONF = """
import os

_LOG = os.environ["HOOKS_LOG"]


def _record(*words):
    with open(_LOG, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\\n")


def pre_fork(server, worker):
    worker.tag = f"set-before-fork-{worker.age}"
    _record("pre_fork", os.getpid(), worker.age, worker.pid)


def post_fork(server, worker):
    _record("post_fork", os.getpid(), worker.age, getattr(worker, "tag", "-"))


def worker_abort(worker):
    _record("worker_abort", os.getpid(), worker.pid, worker.alive)


def child_exit(server, worker):
    _record("child_exit", os.getpid(), worker.pid, getattr(worker, "tag", "-"))
    raise RuntimeError("child_exit failed on purpose")
"""


def hook_entries(log: Path, name: str) -> list[list[str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [ln.split()[1:] for ln in lines if ln.split()[0] == name]


def test_pre_fork_runs_in_the_master_and_a_raising_hook_is_survived(
    start_server, tmp_path: Path
) -> None:
    log = tmp_path / "hooks"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(FORK_HOOKS_CONF)
    server = start_server("apps.procs:app", "-w", "2", "-c", str(conf), env={"HOOKS_LOG": str(log)})
    master = str(server.pid)
    assert wait_until(lambda: len(hook_entries(log, "post_fork")) == 2)
    # pre_fork: in the master, before the fork (the worker has no pid yet), once per worker.
    assert sorted(hook_entries(log, "pre_fork")) == [[master, "1", "None"], [master, "2", "None"]]
    # What pre_fork set on the worker object is there in the forked worker's post_fork.
    workers = set(wait_workers(server, 2))
    post = hook_entries(log, "post_fork")
    assert {int(e[0]) for e in post} == workers
    assert sorted(e[1:] for e in post) == [["1", "set-before-fork-1"], ["2", "set-before-fork-2"]]
    # A worker dies: child_exit runs in the master and raises; the master logs it (one record,
    # with the traceback) and goes on: it forks the replacement (pre_fork again).
    victim = sorted(workers)[0]
    victim_age = next(e[1] for e in post if e[0] == str(victim))
    os.kill(victim, signal.SIGKILL)
    # The master's own object for that worker: what pre_fork set on it is there too.
    gone = [master, str(victim), f"set-before-fork-{victim_age}"]
    assert wait_until(lambda: gone in hook_entries(log, "child_exit")), hook_entries(
        log, "child_exit"
    )
    assert server.wait_stderr(r"Error in the child_exit hook\nTraceback"), server.stderr_text()
    assert "RuntimeError: child_exit failed on purpose" in server.stderr_text()
    assert wait_until(lambda: [master, "3", "None"] in hook_entries(log, "pre_fork"))
    assert len(wait_workers(server, 2)) == 2
    assert server.proc is not None and server.proc.poll() is None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0


@pytest.mark.parametrize("threads", ["1", "4"])
def test_worker_abort_runs_in_a_worker_retired_for_a_lost_thread(
    start_server, tmp_path: Path, threads: str
) -> None:
    """gunicorn calls worker_abort in a worker its arbiter aborts past --timeout; here a
    worker is retired (not killed) when a request thread is still gone --timeout-grace after
    its deadline, and worker_abort runs in it then, before it leaves."""
    log = tmp_path / "hooks"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(FORK_HOOKS_CONF)
    server = start_server(
        "apps.deadlines:app",
        "-c",
        str(conf),
        "--threads",
        threads,
        "--timeout",
        "1",
        "--timeout-grace",
        "1",
        env={"HOOKS_LOG": str(log)},
    )
    old = server.worker_pid
    with RawConn(server.addr, timeout=30) as c:
        c.send(build_request("GET", "/csleep?s=60"))
        assert c.read_response().status == 504
    assert server.wait_stderr(rf"Worker {old} \(replaced: Unhealthy\) exited with status 70", 20)
    # In the retired worker, marked as no longer alive, and before the master saw it leave.
    assert hook_entries(log, "worker_abort") == [[str(old), str(old), "False"]]
    names = [ln.split()[0] for ln in log.read_text().splitlines()]
    assert names.index("worker_abort") < names.index("child_exit")
    assert wait_until(lambda: server.worker_pids() not in ([], [old]), 15)


class WakeThief:
    """An exclusive waiter on a listening socket that takes the kernel's wake-ups and
    never accepts: what a worker killed (-9) between its wake-up and its accept leaves
    behind. Woken, it leaves the listener's queue of waiters, waits until someone else
    took the connection, and joins the queue again (at its end)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WakeThief:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            ep = select.epoll()
            try:
                ep.register(self.sock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
                woken = False
                while not woken and not self._stop.is_set():
                    woken = bool(ep.poll(0.2))
            finally:
                ep.close()
            if woken:
                self.taken += 1
            while not self._stop.is_set() and select.select([self.sock], [], [], 0)[0]:
                time.sleep(0.005)


def test_a_wake_up_taken_by_a_waiter_that_never_accepts_is_not_lost(start_server) -> None:
    # The workers and a thief wait on one listening socket (inherited with --fd). Each
    # worker moves itself behind the other waiters every few accepts, so the thief comes
    # first now and then, and the kernel gives it the one wake-up of a new connection.
    # With one request at a time nothing else arrives to wake a worker: the workers' own
    # periodic look at the listener must find the connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    fd = sock.fileno()
    try:
        server = start_server(
            "apps.procs:app", "-w", "2", "--fd", str(fd), binds=[], pass_fds=(fd,)
        )
        server.wait_listening(1)
        wait_workers(server, 2)
        with WakeThief(sock) as thief:
            deadline = time.monotonic() + 40
            sent = 0
            while (thief.taken < 3 or sent < 20) and time.monotonic() < deadline:
                with RawConn(server.addr, timeout=3.0) as conn:
                    conn.send(build_request("GET", "/", headers=[("Connection", "close")]))
                    resp = conn.read_response()
                    assert resp.status == 200, resp
                sent += 1
        assert thief.taken >= 3, (thief.taken, sent)
    finally:
        sock.close()
