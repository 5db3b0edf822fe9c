"""Signals to the master, under load: HUP reload, TTIN/TTOU, USR1; recycling by
--max-requests and --max-rss. Real processes, real signals, real sockets."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from support import RawConn, build_request, wait_until
from test_workers import Load, alive, get, pids_answering, wait_workers

pytestmark = pytest.mark.timeout(120)


def two_new_workers(server, old: set[int]) -> bool:
    """Whether the master has two workers and none of ``old``, from one look at its children
    (two looks could pair an old generation's count with the next one's pids)."""
    pids = set(server.worker_pids())
    return len(pids) == 2 and not old & pids


def test_hup_under_load_replaces_every_worker_and_fails_no_request(
    start_server, tmp_path: Path
) -> None:
    log = tmp_path / "imports"
    server = start_server(
        "apps.procs:app", "-w", "2", "--threads", "2", env={"PROCS_IMPORT_LOG": str(log)}
    )
    old = set(wait_workers(server, 2))
    with Load(server, threads=3, target="/sleep?s=0.01") as load:
        load.wait_ok(50)
        os.kill(server.pid, signal.SIGHUP)
        assert wait_until(lambda: two_new_workers(server, old), 30), (old, server.worker_pids())
        new = set(server.worker_pids())
        assert wait_until(lambda: new <= set(load.pids), 30), (new, load.pids)
        load.wait_ok(50)
    assert load.failures == []
    assert not any(alive(p) for p in old)
    # The new workers imported the application again.
    assert sorted(int(p) for p in log.read_text().split()) == sorted(old | new)
    assert server.wait_stderr(r"Reload done")


def test_hup_under_keep_alive_load_fails_no_request(start_server) -> None:
    # Clients that keep their connections: the old workers answer what comes on them with
    # Connection: close and close them once idle, never under a request on its way.
    server = start_server("apps.procs:app", "-w", "2", "--keep-alive", "30")
    old = set(wait_workers(server, 2))
    with Load(server, threads=4, keep_alive=True) as load:
        load.wait_ok(200)
        os.kill(server.pid, signal.SIGHUP)
        assert wait_until(lambda: two_new_workers(server, old), 30), (old, server.worker_pids())
        new = set(server.worker_pids())
        assert wait_until(lambda: new <= set(load.pids), 30), (new, load.pids)
        load.wait_ok(200)
    assert load.failures == []


def test_hup_with_an_application_that_no_longer_imports_keeps_the_old_workers(
    start_server, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    server = start_server(
        "apps.procs:app",
        "-w",
        "2",
        env={"PROCS_FAIL_IMPORT": "1", "PROCS_FAIL_FLAG": str(flag)},
    )
    old = set(wait_workers(server, 2))
    # Both have imported the application (and serve) before it breaks.
    assert pids_answering(server, old) == old
    flag.write_text("")
    with Load(server) as load:
        load.wait_ok(20)
        os.kill(server.pid, signal.SIGHUP)
        assert server.wait_stderr(r"Reload failed, keeping the old workers: .*refused on purpose")
        load.wait_ok(50)
        # Only the old workers answered, before and after.
        assert wait_until(lambda: set(server.worker_pids()) == old, 20), server.worker_pids()
    assert load.failures == []
    assert set(load.pids) == old
    assert server.stderr_text().count("Reload failed") == 1
    # Fixed: the next HUP replaces them.
    flag.unlink()
    os.kill(server.pid, signal.SIGHUP)
    assert wait_until(lambda: not old & set(server.worker_pids()), 30)
    new = set(wait_workers(server, 2))
    assert pids_answering(server, new) == new


def test_ttin_and_ttou_under_load(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "2")
    wait_workers(server, 2)
    with Load(server, threads=3) as load:
        load.wait_ok(30)
        os.kill(server.pid, signal.SIGTTIN)
        three = set(wait_workers(server, 3))
        assert pids_answering(server, three) == three
        os.kill(server.pid, signal.SIGTTOU)
        two = set(wait_workers(server, 2))
        assert two < three
        os.kill(server.pid, signal.SIGTTOU)
        (one,) = wait_workers(server, 1)
        # Never below one worker.
        os.kill(server.pid, signal.SIGTTOU)
        assert server.wait_stderr(r"SIGTTOU: 1 worker")
        time.sleep(0.5)  # a wrong removal would show now
        assert server.worker_pids() == [one]
        load.wait_ok(30)
    assert load.failures == []


def test_usr1_reopens_logs_and_keeps_serving(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "2")
    pids = set(wait_workers(server, 2))
    os.kill(server.pid, signal.SIGUSR1)
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    assert pids_answering(server, pids) == pids
    assert set(server.worker_pids()) == pids
    assert server.proc.poll() is None


def test_worker_ignores_what_the_master_handles(start_server) -> None:
    server = start_server("apps.procs:app")
    (worker,) = wait_workers(server, 1)
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        os.kill(worker, sig)
    time.sleep(0.3)  # a worker that died of it would be gone now
    assert server.worker_pids() == [worker]
    assert int(get(server)) == worker


def test_term_to_a_worker_stops_it_gracefully_and_it_is_replaced(start_server) -> None:
    server = start_server("apps.procs:app", "--threads", "2")
    (worker,) = wait_workers(server, 1)
    busy = server.conn(timeout=20)
    busy.request("GET", "/sleep?s=1")
    time.sleep(0.2)
    os.kill(worker, signal.SIGTERM)
    resp = busy.read_response()
    assert resp.status == 200 and resp.text == str(worker)
    assert resp.closes
    busy.close()
    assert wait_until(lambda: server.worker_pids() not in ([], [worker]), 20)
    (new,) = wait_workers(server, 1)
    assert int(get(server)) == new


# --- recycling ----------------------------------------------------------------------------------


def test_max_requests_recycles_under_load(start_server) -> None:
    server = start_server(
        "apps.procs:app", "-w", "2", "--max-requests", "30", "--max-requests-jitter", "10"
    )
    wait_workers(server, 2)
    with Load(server, threads=3) as load:
        load.wait_ok(300)
    assert load.failures == []
    # 300 requests over workers that each serve 30 to 40: at least 7 different workers.
    assert len(load.pids) >= 7, load.pids
    # A retiring worker accepts nothing more; it still answers the connections it had
    # accepted (at most one per client thread).
    assert max(load.pids.values()) <= 40 + 3, load.pids
    assert server.wait_stderr(r"reached --max-requests")
    wait_workers(server, 2)


def test_max_rss_replaces_a_worker_that_grew(start_server) -> None:
    server = start_server("apps.procs:app", "--max-rss", "200")
    (worker,) = wait_workers(server, 1)
    with Load(server, threads=2) as load:
        load.wait_ok(20)
        # The request that crosses the limit is answered; then the worker is replaced.
        assert server.request("GET", "/alloc?mib=256").text == str(worker)
        assert wait_until(lambda: worker not in server.worker_pids(), 20)
        (new,) = wait_workers(server, 1)
        assert wait_until(lambda: load.pids.get(new, 0) > 0, 20)
    assert load.failures == []
    assert server.wait_stderr(r"over --max-rss \(200 MiB\)")


def test_hup_reads_the_configuration_file_again(start_server, tmp_path: Path) -> None:
    conf = tmp_path / "ferrowsgi.toml"
    conf.write_text("workers = 2\nmax_requests = 0\n")
    server = start_server("apps.procs:app", "-c", str(conf))
    old = set(wait_workers(server, 2))
    assert pids_answering(server, old) == old
    conf.write_text("workers = 3\n")
    os.kill(server.pid, signal.SIGHUP)
    assert wait_until(lambda: not old & set(server.worker_pids()), 30), server.worker_pids()
    new = set(wait_workers(server, 3))
    assert pids_answering(server, new) == new
    # A configuration that is now wrong keeps everything as it is, with one line.
    conf.write_text("workers = 0\n")
    os.kill(server.pid, signal.SIGHUP)
    assert server.wait_stderr(r"Reload failed, keeping the old workers: .*workers")
    time.sleep(0.5)  # a wrong reload would be replacing the workers now
    assert set(server.worker_pids()) == new


def test_repeated_hups_under_load_settle_on_one_generation(start_server) -> None:
    server = start_server("apps.procs:app", "-w", "2")
    old = set(wait_workers(server, 2))
    assert pids_answering(server, old) == old
    with Load(server, threads=3) as load:
        load.wait_ok(30)
        for _ in range(4):
            os.kill(server.pid, signal.SIGHUP)
            time.sleep(0.05)
        assert server.wait_stderr(r"Reload done")
        assert wait_until(lambda: two_new_workers(server, old), 30), server.worker_pids()
        load.wait_ok(50)
    assert load.failures == []
    assert server.proc.poll() is None


def _one_at_a_time(server, until, answer_within: float = 3.0) -> int:
    """Requests one at a time, each on a new connection, until ``until()`` holds after an
    answer: each must be answered (200) within ``answer_within`` seconds. With one client
    and nothing else arriving, a connection whose wake-up was lost would wait in the
    listener's queue with no later arrival to announce it. Returns how many were sent."""
    sent = 0
    deadline = time.monotonic() + 30
    while True:
        with RawConn(server.addr, timeout=answer_within) as conn:
            conn.send(build_request("GET", "/", headers=[("Connection", "close")]))
            try:
                resp = conn.read_response()
            except OSError as e:  # a socket timeout included
                raise AssertionError(
                    f"request {sent + 1} unanswered after {answer_within} s: {e}"
                ) from e
            assert resp.status == 200, resp
        sent += 1
        if until():
            return sent
        assert time.monotonic() < deadline, f"{sent} requests, the workers never settled"


def test_requests_one_at_a_time_through_hups_and_ttin_ttou_are_all_answered(
    start_server,
) -> None:
    # Each of a worker's ways to stop accepting (replaced by a HUP, removed by a TTOU)
    # must leave no queued connection unannounced to the workers that go on accepting,
    # even when the kernel's one exclusive wake-up for it went to the leaving worker.
    server = start_server("apps.procs:app", "-w", "2")
    wait_workers(server, 2)
    sent = 0
    for round_ in range(30):
        done = server.stderr_text().count("Reload done")
        os.kill(server.pid, signal.SIGHUP)
        sent += _one_at_a_time(
            server,
            lambda done=done: (
                server.stderr_text().count("Reload done") > done and len(server.worker_pids()) == 2
            ),
        )
        if round_ % 3 == 0:
            os.kill(server.pid, signal.SIGTTIN)
            sent += _one_at_a_time(server, lambda: len(server.worker_pids()) == 3)
            os.kill(server.pid, signal.SIGTTOU)
            sent += _one_at_a_time(server, lambda: len(server.worker_pids()) == 2)
    assert server.proc.poll() is None
    assert sent >= 50


def test_requests_one_at_a_time_through_max_requests_recycling_are_all_answered(
    start_server,
) -> None:
    # --max-requests 3: a worker stops accepting after its third request and is replaced,
    # over and over, while one client sends a request at a time.
    server = start_server("apps.procs:app", "-w", "2", "--max-requests", "3")
    wait_workers(server, 2)
    pids: set[int] = set()
    for _ in range(60):
        with RawConn(server.addr, timeout=3.0) as conn:
            conn.send(build_request("GET", "/", headers=[("Connection", "close")]))
            resp = conn.read_response()
            assert resp.status == 200, resp
            pids.add(int(resp.text))
    # 60 requests at 3 per worker: many generations served.
    assert len(pids) >= 10, pids
    assert server.proc.poll() is None
