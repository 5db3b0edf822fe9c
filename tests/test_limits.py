"""Connection limits and running out of file descriptors."""

from __future__ import annotations

import socket
import sys

from support import RawConn, Server


def _held_connection(server: Server) -> RawConn:
    c = RawConn(server.addr)
    c.request("GET", "/")
    assert c.read_response().status == 200
    return c


def test_worker_connections_limit_queues_the_rest() -> None:
    with Server("apps.echo:app", "--worker-connections", "2") as server:
        first = _held_connection(server)
        second = _held_connection(server)
        third = socket.create_connection(server.addr, timeout=5)
        third.sendall(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n")
        # The server reached the limit and left the third in the backlog, unanswered.
        assert server.wait_stderr(r"\[WARNING\] 2 connections open \(--worker-connections\)")
        third.settimeout(0.2)
        try:
            early = third.recv(1024)
        except socket.timeout:
            early = b""
        assert early == b"", "a connection past the limit was served"
        first.close()
        third.settimeout(5)
        assert third.recv(1024).startswith(b"HTTP/1.1 200 ")
        third.close()
        second.close()


def test_out_of_file_descriptors_recovers() -> None:
    command = ["prlimit", "--nofile=48:48", sys.executable, "-m", "ferrowsgi"]
    with Server("apps.echo:app", command=command) as server:
        clients = []
        for _ in range(70):
            s = socket.create_connection(server.addr, timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            clients.append(s)
        # Past the descriptor limit the rest wait in the backlog.
        assert server.wait_stderr("accept failed: .*Too many open files", timeout=5)
        served = [s for s in clients[:20] if s.recv(1024).startswith(b"HTTP/1.1 200 ")]
        assert len(served) == 20
        for s in served:
            s.close()
        # No new connection arrives to wake the listener: the server must
        # retry on its own and answer the ones that waited.
        last = clients[-1]
        last.settimeout(10)
        assert last.recv(1024).startswith(b"HTTP/1.1 200 ")
        for s in clients[20:]:
            s.close()
        assert server.request("GET", "/after").status == 200
        assert server.proc is not None and server.proc.poll() is None
