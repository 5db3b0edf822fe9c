"""AJP13 spoken by hand, as a web server's mod_proxy_ajp speaks it: forward requests with
coded headers and attributes, body packets, and a reader of the server's packets that
answers GET_BODY_CHUNK from the body it is given. Shared by the AJP, body-memory, PROXY
protocol and inherited-socket tests."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterable, Iterator

CODED_REQUEST = {
    "accept": 0xA001,
    "accept-charset": 0xA002,
    "accept-encoding": 0xA003,
    "accept-language": 0xA004,
    "authorization": 0xA005,
    "connection": 0xA006,
    "content-type": 0xA007,
    "content-length": 0xA008,
    "cookie": 0xA009,
    "cookie2": 0xA00A,
    "host": 0xA00B,
    "pragma": 0xA00C,
    "referer": 0xA00D,
    "user-agent": 0xA00E,
}
CODED_RESPONSE = [
    "Content-Type",
    "Content-Language",
    "Content-Length",
    "Date",
    "Last-Modified",
    "Location",
    "Set-Cookie",
    "Set-Cookie2",
    "Servlet-Engine",
    "Status",
    "WWW-Authenticate",
]
METHODS = {"OPTIONS": 1, "GET": 2, "HEAD": 3, "POST": 4, "PUT": 5, "DELETE": 6}


def ajp_string(s: bytes | str | None) -> bytes:
    if s is None:
        return b"\xff\xff"
    b = s.encode("latin-1") if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b + b"\0"


# The most a body packet carries in the default 8 KiB packet: 8192 less the packet's
# header (4 bytes) and the data's length (2 bytes).
MAX_BODY_PIECE = 8186


def packet(payload: bytes) -> bytes:
    return b"\x12\x34" + struct.pack(">H", len(payload)) + payload


def body_packet(data: bytes) -> bytes:
    return packet(struct.pack(">H", len(data)) + data)


def forward_request(
    method: str = "GET",
    uri: str = "/",
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    query: str | None = None,
    secret: str | None = None,
    remote_addr: str = "192.0.2.7",
    remote_port: int | None = 40123,
    ssl: bool = False,
    raw_attrs: bytes = b"",
) -> bytes:
    code = METHODS.get(method, 0xFF)
    p = bytes([2, code]) + ajp_string("HTTP/1.1") + ajp_string(uri)
    p += ajp_string(remote_addr) + ajp_string(None) + ajp_string("example.com")
    p += struct.pack(">HBH", 8080, 1 if ssl else 0, len(headers))
    for name, value in headers:
        coded = CODED_REQUEST.get(name.lower())
        p += struct.pack(">H", coded) if coded else ajp_string(name)
        p += ajp_string(value)
    if query is not None:
        p += b"\x05" + ajp_string(query)
    if remote_port is not None:
        p += b"\x0a" + ajp_string("AJP_REMOTE_PORT") + ajp_string(str(remote_port))
    if secret is not None:
        p += b"\x0c" + ajp_string(secret)
    if code == 0xFF:
        p += b"\x0d" + ajp_string(method)
    return packet(p + raw_attrs + b"\xff")


class Reply:
    """What the server sent for one request."""

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.asked: list[int] = []
        self.reuse: bool | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def json(self) -> dict:
        return json.loads(self.body)


class AjpConn:
    """One connection to the server, as a web server would use it."""

    def __init__(self, addr: tuple[str, int] | str, timeout: float = 10.0) -> None:
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(addr)
        else:
            self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> AjpConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                return False
            self.buf += data
        return True

    def read_packet(self) -> bytes | None:
        """The next packet's payload; None when the server closed the connection."""
        if not self._fill(4):
            assert self.buf == b"", f"connection closed inside a packet header: {self.buf!r}"
            return None
        assert self.buf[:2] == b"AB", f"bad magic from the server: {self.buf[:16]!r}"
        (n,) = struct.unpack(">H", self.buf[2:4])
        assert n <= 8192 - 4, n
        assert self._fill(4 + n), "connection closed inside a packet"
        payload, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
        return payload

    def is_closed(self) -> bool:
        """Whether the server closed the connection (nothing more comes)."""
        try:
            return self.read_packet() is None
        except ConnectionResetError:
            return True

    def reply(self, body: Iterable[bytes] | None = None) -> Reply:
        """Reads one response, answering GET_BODY_CHUNK from ``body`` (then with empty
        packets). ``body`` may be a generator, so that a large upload is made as it is
        asked for."""
        r = Reply()
        pending = iter(body or ())
        while True:
            p = self.read_packet()
            assert p is not None, "connection closed before END_RESPONSE"
            kind = p[0]
            if kind == 4:
                r.status, p = struct.unpack(">H", p[1:3])[0], p[3:]
                reason, p = _take_string(p)
                r.reason = reason.decode("latin-1")
                (count,), p = struct.unpack(">H", p[:2]), p[2:]
                for _ in range(count):
                    if p[0] == 0xA0:
                        name, p = CODED_RESPONSE[p[1] - 1], p[2:]
                    else:
                        raw, p = _take_string(p)
                        name = raw.decode("latin-1")
                    value, p = _take_string(p)
                    r.headers.append((name, value.decode("latin-1")))
                assert p == b"", p
            elif kind == 3:
                (n,) = struct.unpack(">H", p[1:3])
                assert len(p) == 3 + n + 1 and p[-1] == 0, "bad SEND_BODY_CHUNK"
                assert n <= 8184
                r.chunks.append(p[3 : 3 + n])
            elif kind == 6:
                (n,) = struct.unpack(">H", p[1:3])
                assert 0 < n <= 8186
                r.asked.append(n)
                piece = next(pending, b"")
                assert len(piece) <= n, f"a body packet of {len(piece)} bytes, {n} asked for"
                self.send(body_packet(piece))
            elif kind == 5:
                assert len(p) == 2
                r.reuse = bool(p[1])
                return r
            else:
                raise AssertionError(f"unexpected packet type {kind}")


def _take_string(p: bytes) -> tuple[bytes, bytes]:
    (n,) = struct.unpack(">H", p[:2])
    assert p[2 + n] == 0
    return p[2 : 2 + n], p[3 + n :]


def body_pieces(data: bytes, size: int = MAX_BODY_PIECE) -> Iterator[bytes]:
    """``data`` in body packets' pieces (at most ``size`` bytes each)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
