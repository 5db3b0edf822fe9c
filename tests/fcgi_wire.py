"""FastCGI spoken by hand (FastCGI Specification 1.0), for tests that talk to a responder
directly: records, name-value pairs, a request's records, and reading an answer back."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

RESPONDER = 1
AUTHORIZER = 2
FILTER = 3

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3


def record(kind: int, rid: int, content: bytes = b"", pad: int = 0, version: int = 1) -> bytes:
    """One record: the 8-byte header, the content, ``pad`` bytes of padding."""
    return struct.pack(">BBHHBB", version, kind, rid, len(content), pad, 0) + content + b"\0" * pad


def pairs(items: list[tuple[bytes, bytes]] | dict[bytes, bytes]) -> bytes:
    """Name-value pairs; lengths of 128 or more take the 4-byte form."""
    out = bytearray()
    for name, value in items.items() if isinstance(items, dict) else items:
        for n in (len(name), len(value)):
            out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x8000_0000)
        out += name + value
    return bytes(out)


def begin(rid: int, role: int = RESPONDER, keep: bool = True) -> bytes:
    return record(BEGIN_REQUEST, rid, struct.pack(">HB5x", role, 1 if keep else 0))


def params_records(rid: int, items: list[tuple[bytes, bytes]], per: int = 65535) -> bytes:
    """The params as records of at most ``per`` content bytes (so a pair can be split
    across records), then the empty record that ends them."""
    data = pairs(items)
    out = b"".join(record(PARAMS, rid, data[i : i + per]) for i in range(0, len(data), per))
    return out + record(PARAMS, rid)


def cgi_params(
    method: str = "GET",
    uri: str = "/",
    body: bytes | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_length: bool = True,
) -> list[tuple[bytes, bytes]]:
    """The variables nginx's fastcgi_params sends, for ``method`` and ``uri``."""
    path, _, query = uri.partition("?")
    items = [
        (b"QUERY_STRING", query.encode()),
        (b"REQUEST_METHOD", method.encode()),
        (b"CONTENT_TYPE", b"application/octet-stream" if body else b""),
        (b"CONTENT_LENGTH", str(len(body)).encode() if body and content_length else b""),
        (b"SCRIPT_NAME", b""),
        (b"REQUEST_URI", uri.encode()),
        (b"DOCUMENT_URI", path.encode()),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
        (b"REMOTE_ADDR", b"192.0.2.10"),
        (b"REMOTE_PORT", b"40123"),
        (b"SERVER_ADDR", b"192.0.2.1"),
        (b"SERVER_PORT", b"8443"),
        (b"SERVER_NAME", b"www.example.com"),
        (b"HTTP_HOST", b"www.example.com"),
    ]
    return items + (extra or [])


def request(
    rid: int,
    items: list[tuple[bytes, bytes]],
    body: bytes = b"",
    keep: bool = True,
    per: int = 65535,
    stdin_per: int = 65535,
) -> bytes:
    """A whole request: BEGIN_REQUEST, the params, the body as STDIN records, the empty
    STDIN."""
    out = begin(rid, keep=keep) + params_records(rid, items, per)
    for i in range(0, len(body), stdin_per):
        out += record(STDIN, rid, body[i : i + stdin_per])
    return out + record(STDIN, rid)


@dataclass
class Answer:
    """A responder's answer to one request, as read from the records."""

    rid: int
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_records: list[int] = field(default_factory=list)
    end: tuple[int, int] | None = None  # (appStatus, protocolStatus)
    others: list[tuple[int, int, bytes]] = field(default_factory=list)

    @property
    def head(self) -> bytes:
        return self.stdout.partition(b"\r\n\r\n")[0]

    @property
    def body(self) -> bytes:
        return self.stdout.partition(b"\r\n\r\n")[2]

    @property
    def status(self) -> int:
        for line in self.head.split(b"\r\n"):
            if line.lower().startswith(b"status:"):
                return int(line.split(b":", 1)[1].split()[0])
        raise AssertionError(f"no Status line in {self.head!r}")

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            n, _, v = line.partition(b":")
            if n.decode("latin-1").lower() == name.lower():
                return v.strip().decode("latin-1")
        return None


class Reader:
    """Reads records from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                return False
            self.buf += data
        return True

    def record(self) -> tuple[int, int, bytes] | None:
        """The next record as (type, request id, content); None at end of stream."""
        if not self._fill(8):
            assert not self.buf, f"stream ended inside a record header: {bytes(self.buf)!r}"
            return None
        version, kind, rid, length, pad, _ = struct.unpack(">BBHHBB", self.buf[:8])
        assert version == 1, f"record version {version}"
        assert self._fill(8 + length + pad), "stream ended inside a record"
        content = bytes(self.buf[8 : 8 + length])
        del self.buf[: 8 + length + pad]
        return kind, rid, content

    def answer(self, rid: int) -> Answer:
        """Records up to and including ``rid``'s END_REQUEST."""
        ans = Answer(rid)
        while True:
            rec = self.record()
            assert rec is not None, f"stream ended before END_REQUEST ({ans})"
            kind, r, content = rec
            if r == rid and kind == STDOUT:
                assert ans.end is None
                ans.stdout += content
                ans.stdout_records.append(len(content))
            elif r == rid and kind == STDERR:
                ans.stderr += content
            elif r == rid and kind == END_REQUEST:
                app_status, proto_status = struct.unpack(">IB3x", content)
                ans.end = (app_status, proto_status)
                return ans
            else:
                ans.others.append(rec)

    def at_eof(self) -> bool:
        """Whether the peer closed the stream (with nothing more before the close)."""
        return self.record() is None


def end_request(rid: int, protocol_status: int, app_status: int = 0) -> tuple[int, int, bytes]:
    """END_REQUEST as :meth:`Reader.record` returns it."""
    return (END_REQUEST, rid, struct.pack(">IB3x", app_status, protocol_status))


def parse_pairs(data: bytes) -> dict[bytes, bytes]:
    out = {}
    i = 0
    while i < len(data):
        lens = []
        for _ in range(2):
            if data[i] < 128:
                lens.append(data[i])
                i += 1
            else:
                lens.append(struct.unpack(">I", data[i : i + 4])[0] & 0x7FFF_FFFF)
                i += 4
        name = data[i : i + lens[0]]
        value = data[i + lens[0] : i + lens[0] + lens[1]]
        i += lens[0] + lens[1]
        out[name] = value
    return out
