"""Shared helpers for the ferrowsgi integration tests.

* :class:`Server` runs ``python -m ferrowsgi APP`` in a subprocess, finds its address in the
  ``Listening at:`` log lines and keeps collecting stdout/stderr for later assertions.
* :class:`RawConn` is a tiny HTTP/1.x client over a raw socket (TCP or unix). It sends bytes
  exactly as given and parses responses with Content-Length, chunked or close-delimited
  framing, keeping any bytes that follow for pipelining checks.
* :func:`http_raw` sends bytes and returns everything the server wrote until it closed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

TESTS_DIR = Path(__file__).resolve().parent
START_TIMEOUT = 20.0
IO_TIMEOUT = 5.0
LISTEN_RE = re.compile(r"Listening at: (\S+)")

Address = Union[tuple[str, int], str]


def new_tag() -> str:
    """A unique marker to find one request's traces in the server's logs."""
    return uuid.uuid4().hex[:12]


def short_tmp_dir() -> str:
    """A fresh directory with a short path (unix socket paths are limited to ~107 bytes)."""
    return tempfile.mkdtemp(prefix="fw", dir="/tmp")


def parse_url(url: str) -> Address:
    """``http://127.0.0.1:80`` -> ("127.0.0.1", 80); ``http://[::1]:80`` -> ("::1", 80);
    ``unix:/p`` -> "/p"; ``http+proxy://127.0.0.1:80`` -> ("127.0.0.1", 80)."""
    # A listener whose connections start with a PROXY header logs its
    # scheme (``http+proxy://``); the address is what a client connects to.
    url = url.removeprefix("http+proxy://unix:").removeprefix("http+proxy://")
    if url.startswith("/"):
        return url
    if url.startswith("unix:"):
        return url[len("unix:") :]
    m = re.fullmatch(r"(?:http://)?(\[[^\]]+\]|[^:/]+):(\d+)/?", url)
    if not m:
        raise ValueError(f"unexpected listen URL {url!r}")
    host = m.group(1).strip("[]")
    return (host, int(m.group(2)))


def connect(addr: Address, timeout: float = IO_TIMEOUT) -> socket.socket:
    """Open a client socket to a TCP (host, port) pair or a unix socket path."""
    if isinstance(addr, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection(addr, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ipv6_available() -> bool:
    """Whether this host can bind the IPv6 loopback address."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (only for tests that cannot use port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Server subprocess


class _Collector:
    """Reads a pipe line by line on a daemon thread and keeps every line."""

    def __init__(self, pipe: Any, name: str) -> None:
        self._pipe = pipe
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.eof = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for raw in iter(self._pipe.readline, b""):
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float) -> list[re.Match[str]]:
        """Wait until ``pattern`` occurs; returns all matches so far ([] on timeout/EOF)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = list(rx.finditer("".join(self._lines)))
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def close(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
        self._pipe.close()


class ServerStartError(AssertionError):
    pass


def children(pid: int) -> list[int]:
    """The child processes of ``pid``, from each process's /proc/PID/stat.

    Not /proc/PID/task/TID/children, which the kernel documents as unreliable while children
    come and go: a read during a fork or a reap can leave out a child that exists throughout.
    """
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may hold spaces or ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Server:
    """``python -m ferrowsgi APP --bind ... [options]`` in a subprocess.

    ``binds`` defaults to one TCP listener on a free port. After :meth:`start`, ``urls`` holds
    the URL of each ``Listening at:`` line (in order) and ``addr`` the first address.
    """

    def __init__(
        self,
        app: str,
        *options: str,
        binds: list[str] | None = None,
        cwd: Path | str = TESTS_DIR,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        ignore_sigint: bool = False,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.app = app
        self.ignore_sigint = ignore_sigint
        self.pass_fds = pass_fds
        self.options = list(options)
        self.binds = ["127.0.0.1:0"] if binds is None else list(binds)
        self.cwd = str(cwd)
        self.env = env or {}
        self.command = command or [sys.executable, "-m", "ferrowsgi"]
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: _Collector | None = None
        self._err: _Collector | None = None
        self.urls: list[str] = []
        self.returncode: int | None = None

    @property
    def threads(self) -> int:
        """The application threads this server runs with (``--threads``, 1 by default)."""
        opts = self.options
        for i, opt in enumerate(opts):
            if opt == "--threads" and i + 1 < len(opts):
                return int(opts[i + 1])
            if opt.startswith("--threads="):
                return int(opt.split("=", 1)[1])
        return 1

    # -- lifecycle -----------------------------------------------------------------------
    def argv(self) -> list[str]:
        argv = [*self.command, self.app]
        for b in self.binds:
            argv += ["--bind", b]
        return argv + self.options

    def start(self, wait: bool = True) -> Server:
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # As a background job of a non-interactive shell starts it.
            preexec_fn=_ignore_sigint if self.ignore_sigint else None,
            pass_fds=self.pass_fds,
        )
        self._out = _Collector(self.proc.stdout, "server-stdout")
        self._err = _Collector(self.proc.stderr, "server-stderr")
        if wait:
            self.wait_listening(len(self.binds))
        return self

    def wait_listening(self, count: int = 1, timeout: float = START_TIMEOUT) -> list[str]:
        assert self._err is not None
        deadline = time.monotonic() + timeout
        while True:
            found = self._err.wait_for(LISTEN_RE, max(0.0, deadline - time.monotonic()))
            if len(found) >= count:
                self.urls = [m.group(1) for m in found]
                return self.urls
            if self._err.eof or time.monotonic() >= deadline:
                rc = self.stop()
                raise ServerStartError(
                    f"server did not report {count} listener(s) (rc={rc})\n"
                    f"argv: {self.argv()}\nstderr:\n{self.stderr_text()}"
                )
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 5.0) -> int | None:
        """Signal the server, wait for it (kill after ``timeout``), return its exit code."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.returncode = self.proc.returncode
        for c in (self._out, self._err):
            if c is not None:
                c.close()
        self.proc = None
        return self.returncode

    def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        self.stop()
        return rc

    def __enter__(self) -> Server:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts -----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """The master's children (its workers), from /proc."""
        return children(self.pid)

    @property
    def worker_pid(self) -> int:
        """The pid of the one worker (``-w 1``, the default), once it is up."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            pids = self.worker_pids()
            if len(pids) == 1:
                return pids[0]
            assert time.monotonic() < deadline, f"expected one worker, found {pids}"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def addr(self) -> Address:
        return parse_url(self.url)

    @property
    def is_unix(self) -> bool:
        return isinstance(self.addr, str)

    @property
    def host(self) -> str:
        addr = self.addr
        assert isinstance(addr, tuple), "not a TCP listener"
        return addr[0]

    @property
    def port(self) -> int:
        addr = self.addr
        assert isinstance(addr, tuple), "not a TCP listener"
        return addr[1]

    def stderr_text(self) -> str:
        return self._err.text() if self._err else ""

    def stdout_text(self) -> str:
        return self._out.text() if self._out else ""

    def wait_stderr(self, pattern: str, timeout: float = IO_TIMEOUT) -> bool:
        assert self._err is not None
        return bool(self._err.wait_for(pattern, timeout))

    def stderr_matches(
        self, pattern: str | re.Pattern[str], timeout: float = IO_TIMEOUT
    ) -> list[re.Match[str]]:
        """Waits until ``pattern`` occurs in stderr; every match so far ([] on timeout)."""
        assert self._err is not None
        return self._err.wait_for(pattern, timeout)

    def wait_stdout(self, pattern: str, timeout: float = IO_TIMEOUT) -> bool:
        assert self._out is not None
        return bool(self._out.wait_for(pattern, timeout))

    # -- clients ---------------------------------------------------------------------------
    def conn(self, timeout: float = IO_TIMEOUT) -> RawConn:
        return RawConn(self.addr, timeout=timeout)

    def request(self, method: str = "GET", target: str = "/", **kw: Any) -> Response:
        """One request on a fresh connection (sent with ``Connection: close``)."""
        headers = list(kw.pop("headers", []))
        if not any(k.lower() == "connection" for k, _ in headers):
            headers.append(("Connection", "close"))
        with self.conn() as c:
            c.send(build_request(method, target, headers=headers, **kw))
            return c.read_response(method=method)

    def get_json(self, target: str, **kw: Any) -> Any:
        resp = self.request("GET", target, **kw)
        assert resp.status == 200, (resp.status, resp.body[:2000], self.stderr_text()[-3000:])
        return resp.json()


# --------------------------------------------------------------------------------------------
# Raw HTTP client


def build_request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = "localhost",
) -> bytes:
    """Serialise a request. Adds Host (HTTP/1.1) and Content-Length (when a body is given and
    no framing header is) unless the caller passes them."""
    names = {k.lower() for k, _ in headers}
    lines = [f"{method} {target} {version}"]
    if host is not None and version == "HTTP/1.1" and "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    if body and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*pieces: bytes, trailers: bytes = b"") -> bytes:
    """Encode pieces as a chunked body (with the terminating chunk)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


class IncompleteResponse(AssertionError):
    def __init__(self, msg: str, partial: Response | None = None, data: bytes = b"") -> None:
        super().__init__(msg)
        self.partial = partial
        self.data = data


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    framing: str = "none"  # "length", "chunked", "close" or "none"
    complete: bool = True
    raw_head: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str, default: str | None = None) -> str | None:
        values = self.header_all(name)
        return ", ".join(values) if values else default

    def has_header(self, name: str) -> bool:
        return bool(self.header_all(name))

    def connection_tokens(self) -> set[str]:
        return {t.strip().lower() for t in (self.header("connection") or "").split(",") if t}

    @property
    def closes(self) -> bool:
        return "close" in self.connection_tokens()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class RawConn:
    """A raw client connection with a receive buffer."""

    def __init__(self, addr_or_sock: Address | socket.socket, timeout: float = IO_TIMEOUT) -> None:
        if isinstance(addr_or_sock, socket.socket):
            self.sock = addr_or_sock
            self.sock.settimeout(timeout)
        else:
            self.sock = connect(addr_or_sock, timeout)
        self.buf = b""
        self.eof = False
        self.reset = False

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def local_port(self) -> int | None:
        name = self.sock.getsockname()
        return name[1] if isinstance(name, tuple) else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", target: str = "/", **kw: Any) -> None:
        self.send(build_request(method, target, **kw))

    def _fill(self) -> bool:
        """Receive more bytes into the buffer; False on EOF or reset."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
            self.reset = True
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, delim: bytes) -> bytes | None:
        """Bytes up to and including ``delim``; None at EOF (the rest stays buffered)."""
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                return self._take(i + len(delim))
            if not self._fill():
                return None

    def read_exact(self, n: int) -> bytes:
        """Up to ``n`` bytes: fewer only when the peer closed first."""
        while len(self.buf) < n and self._fill():
            pass
        return self._take(n)

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        return self._take(len(self.buf))

    def recv_within(self, seconds: float) -> bytes:
        """Whatever arrives within ``seconds`` (also returns early on EOF); stays buffered."""
        old = self.sock.gettimeout()
        deadline = time.monotonic() + seconds
        try:
            while not self.eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.sock.settimeout(remaining)
                try:
                    self._fill()
                except TimeoutError:
                    break
        finally:
            self.sock.settimeout(old)
        return self.buf

    def at_eof(self, timeout: float = IO_TIMEOUT) -> bool:
        """True when the server closed the connection with nothing more buffered."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            self._fill()
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(old)
        return self.eof and not self.buf

    def read_response(
        self, method: str = "GET", allow_truncated: bool = False, skip_1xx: bool = True
    ) -> Response:
        """Parse one response. Interim 1xx responses are skipped unless ``skip_1xx`` is False.

        When the connection ends before the framing says the body is complete, this raises
        :class:`IncompleteResponse` unless ``allow_truncated``, in which case the partial
        response comes back with ``complete=False``.
        """
        while True:
            resp = self._read_one(method, allow_truncated)
            if skip_1xx and 100 <= resp.status < 200 and resp.status != 101:
                continue
            return resp

    def _read_one(self, method: str, allow_truncated: bool) -> Response:
        head = self.read_until(b"\r\n\r\n")
        if head is None:
            raise IncompleteResponse(
                f"connection closed before a full response head: {self.buf[:500]!r}",
                data=self.buf,
            )
        lines = head[:-4].split(b"\r\n")
        m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?", lines[0])
        if not m:
            raise AssertionError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or name != name.strip() or not name:
                raise AssertionError(f"bad header line {line!r} in {head!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        resp = Response(
            version=m.group(1).decode(),
            status=int(m.group(2)),
            reason=(m.group(3) or b"").decode("latin-1"),
            headers=headers,
            raw_head=head,
        )
        if method == "HEAD" or resp.status < 200 or resp.status in (204, 304):
            return resp
        te = [t.strip().lower() for t in (resp.header("transfer-encoding") or "").split(",") if t]
        cl = resp.header_all("content-length")
        if te:
            if te[-1] != "chunked":
                raise AssertionError(f"response with unusable Transfer-Encoding: {te}")
            resp.framing = "chunked"
            self._read_chunked(resp, allow_truncated)
        elif cl:
            if len(set(cl)) != 1:
                raise AssertionError(f"conflicting Content-Length headers {cl}")
            n = int(cl[0])
            resp.framing = "length"
            resp.body = self.read_exact(n)
            if len(resp.body) < n:
                self._truncated(resp, allow_truncated, f"body {len(resp.body)} < {n}")
        else:
            resp.framing = "close"
            resp.body = self.read_to_eof()
        return resp

    def _read_chunked(self, resp: Response, allow_truncated: bool) -> None:
        body = []
        while True:
            line = self.read_until(b"\r\n")
            if line is None:
                resp.body = b"".join(body)
                return self._truncated(resp, allow_truncated, "EOF in chunk size line")
            size_txt = line[:-2].split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]+", size_txt):
                raise AssertionError(f"bad chunk size line {line!r}")
            size = int(size_txt, 16)
            if size == 0:
                break
            data = self.read_exact(size + 2)
            body.append(data[:size])
            if len(data) < size + 2:
                resp.body = b"".join(body)
                return self._truncated(resp, allow_truncated, "EOF inside a chunk")
            if data[size:] != b"\r\n":
                raise AssertionError(f"chunk not followed by CRLF: {data[size:]!r}")
        resp.body = b"".join(body)
        while True:
            line = self.read_until(b"\r\n")
            if line is None:
                return self._truncated(resp, allow_truncated, "EOF in trailers")
            if line == b"\r\n":
                return None
            name, _, value = line[:-2].partition(b":")
            resp.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))

    @staticmethod
    def _truncated(resp: Response, allow: bool, why: str) -> None:
        resp.complete = False
        if not allow:
            raise IncompleteResponse(f"truncated response ({why}): {resp.raw_head!r}", resp)


def http_raw(target: Address | socket.socket, data: bytes, timeout: float = IO_TIMEOUT) -> bytes:
    """Send ``data`` and return every byte received until the server closes (or ``timeout``
    passes with nothing more arriving)."""
    conn = RawConn(target, timeout=timeout)
    try:
        conn.send(data)
        try:
            return conn.read_to_eof()
        except TimeoutError:
            return conn.buf
    finally:
        if not isinstance(target, socket.socket):
            conn.close()


def read_response(
    sock: socket.socket, data: bytes = b"", method: str = "GET"
) -> tuple[Response, bytes]:
    """Parse one response from ``sock`` (after the already received ``data``); returns the
    response and the bytes received beyond it."""
    conn = RawConn(sock)
    conn.buf = data
    resp = conn.read_response(method=method)
    return resp, conn.buf


def parse_responses(data: bytes, methods: list[str] | None = None) -> list[Response]:
    """Split a byte string holding several complete responses (pipelining) into responses."""
    r, w = socket.socketpair()
    try:
        w.close()
        conn = RawConn(r)
        conn.buf = data
        out = []
        for i in range(len(methods) if methods else 10**6):
            if not conn.buf:
                break
            method = methods[i] if methods else "GET"
            out.append(conn.read_response(method=method))
        return out
    finally:
        r.close()


def wait_until(predicate: Any, timeout: float = IO_TIMEOUT, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_stable(value: Any, timeout: float = 15.0, still: float = 0.3) -> bool:
    """Waits until ``value()`` stays the same for ``still`` seconds (a producer that stopped)."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still:
            return True
    return False


def _proc_net_tcp_addr(addr: tuple[str, int]) -> str:
    """``addr`` as /proc/net/tcp{,6} spells it (the address in host byte order words)."""
    host, port = addr[0], addr[1]
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host)
        words = struct.unpack("<4I", raw)
        return "".join(f"{w:08X}" for w in words) + f":{port:04X}"
    return f"{struct.unpack('<I', socket.inet_aton(host))[0]:08X}:{port:04X}"


def server_read_everything(conn: RawConn) -> bool:
    """Whether the server process has read every byte sent on ``conn`` so far: nothing is
    left in the client's send queue and (TCP) nothing waits in the server socket's receive
    queue. For a unix socket the client's send queue counts the bytes the server has not
    read yet."""
    if struct.unpack("i", fcntl.ioctl(conn.sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0]:
        return False
    if conn.sock.family == socket.AF_UNIX:
        return True
    local = _proc_net_tcp_addr(conn.sock.getpeername())
    remote = _proc_net_tcp_addr(conn.sock.getsockname())
    table = "/proc/net/tcp6" if conn.sock.family == socket.AF_INET6 else "/proc/net/tcp"
    with open(table) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16) == 0
    return False


def assert_one_line_error(stderr: str, needle: str) -> None:
    """The CLI's failure as users see it: exactly one ``ferrowsgi: error:`` line, naming
    ``needle``, and no traceback."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("ferrowsgi: error:")]
    assert len(errors) == 1, stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in stderr
