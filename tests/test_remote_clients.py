"""A client that is not on this host: ``--stream-bodies`` and slow remote uploaders.

By default (``--stream-bodies local``) a large body from a client on another host is stored
completely before the application is called, so a slow uploader holds no thread. Loopback
cannot show that: every client of the other tests is on this host. Here, as root, the test
makes a network namespace joined to this one by a veth pair with addresses in a private /30
on those two interfaces alone (traffic never leaves the machine), binds the server to the
host's end and runs the client inside the namespace, so the server sees a peer that is not
one of its own addresses. Without root or the ``ip`` command the tests are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support import Server, build_request, wait_until

pytestmark = pytest.mark.timeout(90)

IP = shutil.which("ip") or next(
    (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None
)
BODY_SIZE = 4 * 1024 * 1024  # far past the 256 KiB the server buffers in memory
FIRST_PART = 1024 * 1024  # sent at once; the rest only when the test says so


@dataclass
class Netns:
    name: str
    host_ip: str  # this namespace's end of the veth pair
    client_ip: str  # the other namespace's end


def _ip(*args: str, ns: str | None = None) -> None:
    assert IP is not None
    argv = [IP, *(["netns", "exec", ns, IP] if ns else []), *args]
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


def _free_subnet() -> tuple[str, str]:
    """Two addresses of a /30 in 10.200.0.0/13 that no interface of this host uses yet."""
    assert IP is not None
    used = subprocess.run([IP, "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        a, b, c = random.randrange(200, 208), random.randrange(256), random.randrange(64) * 4
        prefix = f"10.{a}.{b}."
        if f" {prefix}" not in used:
            return f"{prefix}{c + 1}", f"{prefix}{c + 2}"
    raise AssertionError("no free private /30 found")


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    if IP is None:
        pytest.skip("the ip command (iproute2) is missing")
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    tag = f"{os.getpid() % 100000}{random.randrange(100)}"
    ns, host_if, ns_if = f"fwtest{tag}", f"fwh{tag}", f"fwn{tag}"
    host_ip, client_ip = _free_subnet()
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("addr", "add", f"{client_ip}/30", "dev", ns_if, ns=ns)
        _ip("link", "set", ns_if, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
    except subprocess.CalledProcessError as e:
        subprocess.run([IP, "link", "del", host_if], capture_output=True)
        subprocess.run([IP, "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make a network namespace here: {e.stderr.decode().strip()}")
    try:
        yield Netns(ns, host_ip, client_ip)
    finally:
        # Deleting one end of a veth pair deletes both.
        subprocess.run([IP, "link", "del", host_if], capture_output=True)
        subprocess.run([IP, "netns", "del", ns], capture_output=True)


# Runs inside the namespace: sends the head and the first part of the body, waits until the
# server's kernel has acknowledged every byte (nothing left in the send queue), says so, then
# sends the rest when a line arrives on stdin and prints the response.
CLIENT = r"""
import fcntl, hashlib, json, socket, sys, termios, time
host, port, size, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
body = (hashlib.sha256(b"remote").digest() * (size // 32 + 1))[:size]
head = (f"POST /remote-upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
        "Connection: close\r\n\r\n").encode()
s = socket.create_connection((host, port), timeout=60)
s.sendall(head + body[:first])
deadline = time.monotonic() + 30
while fcntl.ioctl(s, termios.TIOCOUTQ, b"\0\0\0\0") != b"\0\0\0\0":
    assert time.monotonic() < deadline, "the server did not take the first part"
    time.sleep(0.01)
print("sent", s.getsockname()[1], flush=True)
sys.stdin.readline()
s.sendall(body[first:])
data = b""
while chunk := s.recv(65536):
    data += chunk
print(json.dumps(data.decode("latin-1")), flush=True)
"""


def expected_body() -> bytes:
    return (hashlib.sha256(b"remote").digest() * (BODY_SIZE // 32 + 1))[:BODY_SIZE]


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the client in the namespace said nothing"
    return proc.stdout.readline()


def proc_net_tcp_rx_queue(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """Bytes received on the server's socket for this connection that the server has not
    read yet (``rx_queue`` in /proc/net/tcp), or None when there is no such socket."""

    def hexaddr(ip: str, port: int) -> str:
        return f"{struct.unpack('<I', socket.inet_aton(ip))[0]:08X}:{port:04X}"

    want_local, want_remote = hexaddr(*local), hexaddr(*remote)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[4].split(":")[1], 16)
    return None


def upload_in_two_parts(
    server: Server, netns: Netns, client: subprocess.Popen[str], mode: str
) -> bytes:
    """Drives the client in the namespace; returns the raw response it received."""
    line = read_line(client, 30)
    assert line.startswith("sent "), (line, client.stderr.read() if client.poll() else "")
    client_port = int(line.split()[1])
    # The server has read every byte that came so far (nothing waits in its socket).
    peer = (netns.client_ip, client_port)
    assert wait_until(
        lambda: proc_net_tcp_rx_queue((netns.host_ip, server.port), peer) == 0, timeout=20
    ), "the server did not read the first part"
    if mode == "all":
        # Streamed: the application was called with the body still arriving, and it
        # holds the only thread until the client sends the rest.
        assert server.wait_stderr("called /remote-upload", timeout=20)
    else:
        # Stored: a megabyte is in and the application has not been called; the only
        # thread is free for another client meanwhile.
        assert "called /remote-upload" not in server.stderr_text()
        with server.conn() as c:
            c.send(build_request("GET", "/?read=none", headers=[("Connection", "close")]))
            assert c.read_response().json()["reads"] == 0
        assert "called /remote-upload" not in server.stderr_text()
        assert proc_net_tcp_rx_queue((netns.host_ip, server.port), peer) == 0
    assert client.stdin is not None
    client.stdin.write("go\n")
    client.stdin.flush()
    raw = json.loads(read_line(client, 60)).encode("latin-1")
    assert client.wait(30) == 0
    return raw


@pytest.mark.parametrize("mode", ["local", "none", "all"])
def test_slow_remote_uploader(start_server, netns: Netns, mode: str) -> None:
    # --threads 1: the application runs on the event loop's thread, so a body read as it
    # arrives holds every other client up, and only a stored body leaves them served.
    options = ["--threads", "1"] if mode == "local" else ["--threads", "1", "--stream-bodies", mode]
    server = start_server("apps.bodies:app", *options, binds=[f"{netns.host_ip}:0"])
    assert server.host == netns.host_ip
    assert IP is not None
    argv = [IP, "netns", "exec", netns.name, sys.executable, "-c", CLIENT]
    argv += [netns.host_ip, str(server.port), str(BODY_SIZE), str(FIRST_PART)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with subprocess.Popen(argv, text=True, **pipes) as client:  # type: ignore[call-overload]
        try:
            raw = upload_in_two_parts(server, netns, client, mode)
        finally:
            if client.poll() is None:
                client.kill()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    doc = json.loads(body)
    want = expected_body()
    assert doc["length"] == len(want)
    assert doc["sha256"] == hashlib.sha256(want).hexdigest()
    assert server.stderr_text().count("called /remote-upload") == 1
