"""Parsing-policy statements of docs/ROBUSTNESS.md that the smuggling table does not pin
down: the default field-count limit at its edge, and a zero-padded 17-digit chunk size."""

from __future__ import annotations

import pytest
from support import RawConn, Server, build_request


@pytest.fixture(scope="module")
def counter(module_servers) -> Server:
    return module_servers("apps.counter:app")


def calls(server: Server) -> int:
    return int(server.request("GET", "/__count").body)


def status_of(server: Server, raw: bytes) -> int:
    with RawConn(server.addr) as c:
        c.send(raw)
        return c.read_response().status


@pytest.mark.parametrize(("fields", "status"), [(100, 200), (101, 431)])
def test_default_field_count_limit(counter: Server, fields: int, status: int) -> None:
    # --limit-request-fields defaults to 100 header lines, Host included.
    headers = [(f"X-{i}", "v") for i in range(fields - 2)] + [("Connection", "close")]
    before = calls(counter)
    assert status_of(counter, build_request("GET", "/", headers=headers)) == status
    assert calls(counter) == before + (status == 200)


@pytest.mark.parametrize(
    ("size", "status"), [(b"0000000000000005", 200), (b"00000000000000005", 400)]
)
def test_chunk_size_of_17_digits_is_refused_even_zero_padded(
    counter: Server, size: bytes, status: int
) -> None:
    # 16 hex digits hold any 64-bit size; a longer size line is refused whatever it holds.
    raw = build_request(
        "POST",
        "/",
        headers=[("Transfer-Encoding", "chunked"), ("Connection", "close")],
        body=size + b"\r\nhello\r\n0\r\n\r\n",
    )
    before = calls(counter)
    assert status_of(counter, raw) == status
    assert calls(counter) == before + (status == 200)
