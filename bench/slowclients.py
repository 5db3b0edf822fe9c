"""Hold many slow keep-alive connections that trickle requests a few bytes at a time.

    python slowclients.py HOST PORT CONNECTIONS SECONDS [PATH]

run.py starts this beside wrk for the `mixed` workload: each connection sends its
request head in pieces of PIECE bytes every INTERVAL seconds (about 1 s per request),
reads the answer, and starts the next request on the same connection (a new one if
the server closed it). It stops by itself after SECONDS (or on SIGTERM) and prints

    SLOW connections N responses N reconnects N errors N

Only loopback addresses are accepted.
"""

from __future__ import annotations

import errno
import selectors
import signal
import socket
import sys
import time

PIECE = 4
INTERVAL = 0.1


class Slow:
    def __init__(self, addr: tuple[str, int], request: bytes, start: float) -> None:
        self.addr, self.request = addr, request
        self.sock: socket.socket | None = None
        self.sent = 0
        self.inbuf = b""
        self.due = start
        self.waiting = False  # request fully sent, reading the answer

    def connect(self, sel: selectors.BaseSelector) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, "connect failed")
        sel.register(self.sock, selectors.EVENT_READ, self)
        self.sent, self.inbuf, self.waiting = 0, b"", False

    def close(self, sel: selectors.BaseSelector) -> None:
        if self.sock is not None:
            sel.unregister(self.sock)
            self.sock.close()
            self.sock = None


def complete(buf: bytes) -> int:
    """Length of the first complete response in buf (Content-Length framing), or 0."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    total = end + 4 + length
    return total if len(buf) >= total else 0


def main() -> int:
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    path = sys.argv[5] if len(sys.argv) == 6 else "/"
    if not host.startswith("127."):
        sys.exit("slowclients.py sends traffic to loopback addresses only")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    stop_at = time.monotonic() + seconds
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sel = selectors.DefaultSelector()
    now = time.monotonic()
    clients = [Slow((host, port), request, now + INTERVAL * i / n) for i in range(n)]
    stats = {"responses": 0, "reconnects": 0, "errors": 0}
    try:
        for c in clients:
            c.connect(sel)
        while (now := time.monotonic()) < stop_at:
            for c in clients:
                if c.sock is None or c.waiting or now < c.due:
                    continue
                try:
                    c.sent += c.sock.send(c.request[c.sent : c.sent + PIECE])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    stats["errors"] += 1
                    c.close(sel)
                    c.connect(sel)
                    stats["reconnects"] += 1
                    continue
                c.waiting = c.sent >= len(c.request)
                c.due = now + INTERVAL
            for key, _ in sel.select(timeout=0.01):
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # closed by the server: start over on a new connection
                    c.close(sel)
                    c.connect(sel)
                    stats["reconnects"] += 1
                    continue
                c.inbuf += data
                while (size := complete(c.inbuf)) > 0:
                    stats["responses"] += 1
                    c.inbuf = c.inbuf[size:]
                    c.sent, c.waiting, c.due = 0, False, now + INTERVAL
    finally:
        print(
            f"SLOW connections {n} responses {stats['responses']} "
            f"reconnects {stats['reconnects']} errors {stats['errors']}",
            flush=True,
        )
        for c in clients:
            if c.sock is not None:
                c.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
