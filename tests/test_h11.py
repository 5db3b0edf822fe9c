"""h11 as a strict client: it raises on any protocol violation in ferrowsgi's responses."""

from __future__ import annotations

import json

import h11
import pytest
from support import Server, connect

pytestmark = pytest.mark.timeout(30)


class H11Client:
    def __init__(self, server: Server) -> None:
        self.sock = connect(server.addr)
        self.conn = h11.Connection(our_role=h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def _next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            return event

    def exchange(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body_parts: list[bytes] | None = None,
    ) -> tuple[h11.Response, bytes, list[h11.Event]]:
        """One request/response cycle; returns the final response, body and interim events."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        all_headers = [("Host", "localhost"), *(headers or [])]
        self._send(h11.Request(method=method, target=target, headers=all_headers))
        for part in body_parts or []:
            self._send(h11.Data(data=part))
        self._send(h11.EndOfMessage())
        interim: list[h11.Event] = []
        while True:
            event = self._next_event()
            if isinstance(event, h11.InformationalResponse):
                interim.append(event)
                continue
            assert isinstance(event, h11.Response), event
            response = event
            break
        body = b""
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return response, body, interim
            else:
                raise TypeError(f"unexpected event {event!r}")


def header(resp: h11.Response, name: str) -> str | None:
    values = [v.decode("latin-1") for k, v in resp.headers if k == name.lower().encode()]
    return ", ".join(values) if values else None


@pytest.fixture
def client(stream_server: Server):
    c = H11Client(stream_server)
    yield c
    c.close()


def test_content_length_response(client: H11Client) -> None:
    resp, body, _ = client.exchange("GET", "/list")
    assert resp.status_code == 200
    assert header(resp, "content-length") == "10"
    assert body == b"hello list"


def test_chunked_response(client: H11Client) -> None:
    resp, body, _ = client.exchange("GET", "/gen?n=4")
    assert header(resp, "transfer-encoding") == "chunked"
    assert body == b"block0;block1;block2;block3;"


def test_empty_blocks_response(client: H11Client) -> None:
    _, body, _ = client.exchange("GET", "/empty_blocks")
    assert body == b"abcd"


def test_head_response(client: H11Client) -> None:
    resp, body, _ = client.exchange("HEAD", "/head_cl")
    assert header(resp, "content-length") == "50"
    assert body == b""


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_responses(client: H11Client, code: int) -> None:
    resp, body, _ = client.exchange("GET", f"/status?code={code}")
    assert resp.status_code == code
    assert body == b""


def test_keep_alive_sequence(client: H11Client) -> None:
    routes = [
        ("GET", "/list", b"hello list"),
        ("GET", "/gen?n=2", b"block0;block1;"),
        ("HEAD", "/list", b""),
        ("GET", "/status?code=204", b""),
        ("GET", "/cl_gen", b"block0;block1;block2;"),
        ("GET", "/two", b"part1;part2"),
        ("GET", "/empty", b""),
        ("GET", "/tuple", b"hello tuple"),
    ]
    for method, target, expected in routes:
        resp, body, _ = client.exchange(method, target)
        assert resp.status_code in (200, 204)
        assert body == expected, target
        assert client.conn.our_state is h11.DONE
        assert client.conn.their_state is h11.DONE, "server response not reusable"


def test_chunked_upload_then_length_upload(echo_server: Server) -> None:
    c = H11Client(echo_server)
    try:
        resp, body, interim = c.exchange(
            "POST",
            "/?read=all",
            headers=[("Transfer-Encoding", "chunked")],
            body_parts=[b"abc", b"defg", b"h" * 5000],
        )
        assert resp.status_code == 200
        assert json.loads(body)["body"] == "abcdefg" + "h" * 5000
        resp, body, _ = c.exchange("POST", "/?read=all", [("Content-Length", "3")], [b"xyz"])
        assert json.loads(body)["body"] == "xyz"
        assert interim == []
    finally:
        c.close()
