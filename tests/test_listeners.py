"""Listeners and the system: --fd, systemd socket activation, sd_notify, --reuse-port,
-u/-g, --umask, --unix-socket-mode, and one-line errors for wrong settings."""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support import TESTS_DIR, assert_one_line_error, short_tmp_dir, wait_until
from test_workers import alive, get, wait_workers

pytestmark = pytest.mark.timeout(60)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args],
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_fd_serves_an_inherited_socket(start_server) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    try:
        server = start_server(
            "apps.procs:app", "--fd", str(sock.fileno()), binds=[], pass_fds=(sock.fileno(),)
        )
        server.wait_listening(1)
        assert server.url == f"http://127.0.0.1:{port}"
        (worker,) = wait_workers(server, 1)
        assert int(get(server)) == worker
    finally:
        sock.close()


def test_systemd_socket_activation(start_server) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    # systemd passes the sockets from descriptor 3 on, with LISTEN_PID naming the process
    # it starts: a wrapper puts the socket there and execs the server with its own pid.
    wrapper = (
        "import os, sys; "
        f"os.dup2({fd}, 3); os.close({fd}); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.executable, [sys.executable, '-m', 'ferrowsgi', *sys.argv[1:]])"
    )
    try:
        server = start_server(
            "apps.procs:app",
            binds=[],
            pass_fds=(fd,),
            command=[sys.executable, "-c", wrapper],
        )
        server.wait_listening(1)
        assert server.url == f"http://127.0.0.1:{port}"
        (worker,) = wait_workers(server, 1)
        assert int(get(server)) == worker
        # The variables are gone from the environment the application sees.
        assert get(server, "/env") == "[]"
    finally:
        sock.close()


def test_listen_fds_for_another_process_is_ignored(start_server) -> None:
    server = start_server("apps.procs:app", env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    (worker,) = wait_workers(server, 1)
    assert int(get(server)) == worker


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify(start_server, abstract: bool) -> None:
    d = short_tmp_dir()
    mgr = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"ferrowsgi-test-{os.getpid()}-{id(mgr)}"
        mgr.bind("\0" + name)
        notify = "@" + name
    else:
        notify = os.path.join(d, "notify")
        mgr.bind(notify)
    mgr.settimeout(20)

    def next_message() -> dict[str, str]:
        data = mgr.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)

    try:
        server = start_server("apps.procs:app", "-w", "2", env={"NOTIFY_SOCKET": notify})
        ready = next_message()
        assert ready["READY"] == "1", ready
        assert ready["MAINPID"] == str(server.pid)
        assert "2 worker" in ready["STATUS"]
        # Only once both workers are up.
        assert len(server.worker_pids()) == 2
        assert get(server, "/env") == "[]"
        os.kill(server.pid, signal.SIGHUP)
        reloading = next_message()
        assert reloading["RELOADING"] == "1", reloading
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert next_message()["READY"] == "1"
        server.proc.send_signal(signal.SIGTERM)
        assert next_message()["STOPPING"] == "1"
        assert server.proc.wait(20) == 0
    finally:
        mgr.close()


def test_pid_file_names_the_master(start_server, tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "ferrowsgi.pid"
    pid_file.parent.mkdir()
    server = start_server("apps.procs:app", "--pid", str(pid_file))
    assert wait_until(pid_file.exists)
    assert int(pid_file.read_text()) == server.pid
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert not pid_file.exists()


def test_reuse_port_lets_two_servers_share_a_port(start_server) -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    port = other.getsockname()[1]
    try:
        refused = run_cli("apps.procs:app", "-b", f"127.0.0.1:{port}")
        assert refused.returncode != 0
        assert "cannot listen on" in refused.stderr
        server = start_server("apps.procs:app", "--reuse-port", binds=[f"127.0.0.1:{port}"])
        assert server.port == port
    finally:
        other.close()
    (worker,) = wait_workers(server, 1)
    assert int(get(server)) == worker


def test_unix_socket_mode_and_umask(start_server) -> None:
    d = short_tmp_dir()
    a, b = os.path.join(d, "a.sock"), os.path.join(d, "b.sock")
    start_server("apps.procs:app", "--unix-socket-mode", "0660", binds=[f"unix:{a}"])
    start_server("apps.procs:app", "--umask", "0o077", binds=[f"unix:{b}"])
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(b).st_mode) == 0o700


def nobody_and_nogroup() -> tuple[int, int]:
    try:
        uid = pwd.getpwnam("nobody").pw_uid
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no user nobody or group nogroup")
    return uid, gid


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_and_group_are_dropped_in_the_workers(start_server) -> None:
    uid, gid = nobody_and_nogroup()
    d = short_tmp_dir()
    os.chmod(d, 0o755)
    path = os.path.join(d, "u.sock")
    server = start_server(
        "apps.procs:app",
        "-u",
        "nobody",
        "-g",
        "nogroup",
        "-w",
        "2",
        # Imported by the master (root): the workers' user may not be able to read the
        # interpreter's own files where the test suite runs.
        "--preload",
        binds=["127.0.0.1:0", f"unix:{path}"],
        cwd=TESTS_DIR,
    )
    pids = wait_workers(server, 2)
    assert get(server, "/ids") == f"{uid} {gid}"

    def ids(pid: int) -> tuple[int, int]:
        st = os.stat(f"/proc/{pid}")
        return (st.st_uid, st.st_gid)

    # A worker switches right after the fork, which the master's children list can show first.
    assert wait_until(lambda: all(ids(pid) == (uid, gid) for pid in pids), 10), [
        ids(pid) for pid in pids
    ]
    # The master keeps its identity (it binds, and removes the unix socket at exit).
    assert os.stat(f"/proc/{server.pid}").st_uid == 0
    # The unix socket belongs to the workers' user.
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (uid, gid)
    # The parent-death signal survives the switch: killing the master ends the workers.
    os.kill(server.pid, signal.SIGKILL)
    assert wait_until(lambda: not any(alive(p) for p in pids), 20)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-w", "0"], "worker count"),
        (["-w", "many"], "worker count"),
        (["-u", "no-such-user-here"], "no such user"),
        (["-g", "no-such-group-here"], "no such group"),
        (["--umask", "9"], "octal"),
        (["--unix-socket-mode", "rw"], "octal"),
        (["--fd=-1"], "--fd"),
        (["--fd", "987"], "descriptor 987: not an open descriptor"),
        (["--graceful-timeout", "soon"], "graceful-timeout"),
        (["--max-requests=-5"], "max-requests"),
    ],
)
def test_wrong_settings_are_one_line_errors(args: list[str], needle: str) -> None:
    result = run_cli("apps.procs:app", "-b", "127.0.0.1:0", *args)
    assert result.returncode in (1, 2), result.stderr
    assert_one_line_error(result.stderr, needle)


def test_fd_that_is_not_a_listening_socket() -> None:
    r, w = os.pipe()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ferrowsgi", "apps.procs:app", "--fd", str(r)],
            cwd=TESTS_DIR,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            pass_fds=(r,),
            check=False,
        )
    finally:
        os.close(r)
        os.close(w)
    assert result.returncode == 1
    assert f"descriptor {r}: not a socket" in result.stderr
    assert result.stderr.count("ferrowsgi: error:") == 1
