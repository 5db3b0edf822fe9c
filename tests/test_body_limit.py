"""A request body over ``--limit-request-body``: 413 Content Too Large, whatever the
application does with the error it gets.

A Content-Length over the limit, and a chunked body stored before the call (``--stream-bodies
none``), are refused before the application is called. A chunked body read as it arrives
(``--stream-bodies all``), or any body behind ``Expect: 100-continue``, reaches the
application first: its read raises ``ferrowsgi.RequestBodyTooLarge`` (an ``OSError``) once
the body passes the limit, and the server answers 413 with ``Connection: close`` in place of
any response not started yet, whether the application lets the error through, catches it
and answers anyway, or raises another error. docs/ROBUSTNESS.md ("Request parsing policy")
states this. The application is this module's ``app``; it reports what it saw on
``wsgi.errors``.
"""

from __future__ import annotations

import threading

import pytest
from support import RawConn, Server, connect

pytestmark = pytest.mark.timeout(60)

LIMIT = 1 << 20
OVER = 4 << 20
PIECE = 65536


def app(environ, start_response):
    """``?how=`` propagate (the default), catch (answers 200 anyway), catch_gen (answers
    with a generator), catch_write (answers with write()), other (raises ValueError from
    the handler), started (the response has started before the read)."""
    import ferrowsgi

    how = environ["QUERY_STRING"].partition("how=")[2] or "propagate"
    log = environ["wsgi.errors"]
    log.write("called\n")
    stream = environ["wsgi.input"]
    if how == "started":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"started\n")
    size = 0
    try:
        for _ in range(1 << 20):
            data = stream.read(PIECE)
            if not data:
                break
            size += len(data)
    except OSError as e:
        kind = type(e).__name__
        mine = isinstance(e, ferrowsgi.RequestBodyTooLarge)
        log.write(f"saw {kind} mine={mine} after {size} bytes: {e}\n")
        if how in ("propagate", "started"):
            raise
        try:
            stream.read(1)
        except ferrowsgi.RequestBodyTooLarge:
            log.write("the next read raised it again\n")
        if how == "other":
            raise ValueError("the application's own error") from None
    if how == "started":
        return [b"ended\n"]
    headers = [("Content-Type", "text/plain")]
    write = start_response("200 OK", headers)
    if how == "catch_write":
        try:
            write(b"the application's answer")
        except ferrowsgi.RequestBodyTooLarge:
            log.write("write() raised it too\n")
        return []
    if how == "catch_gen":
        return (piece for piece in [b"the ", b"application's ", b"answer"])
    return [b"the application's answer"]


def send_upload(
    server: Server, target: str, chunked: bool, expect: bool, to_eof: bool = False
) -> bytes:
    """Sends OVER bytes (chunked or with a Content-Length); returns the server's answer:
    its first final response, or all it sent until it closed with ``to_eof``. The server
    may answer before the body is sent: sending stops then."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {OVER}"
    head = f"POST {target} HTTP/1.1\r\nHost: t\r\n{framing}\r\n"
    if expect:
        head += "Expect: 100-continue\r\n"
    sock = connect(server.addr, timeout=20)
    with RawConn(sock) as c:
        c.send(head.encode() + b"\r\n")

        def send_body() -> None:
            piece = b"%x\r\n%s\r\n" % (PIECE, b"z" * PIECE) if chunked else b"z" * PIECE
            try:
                for _ in range(OVER // PIECE):
                    sock.sendall(piece)
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed first

        sender = threading.Thread(target=send_body)
        sender.start()
        if to_eof:
            try:
                data = c.read_to_eof()
            except ConnectionResetError:
                data = c.buf
        else:
            resp = c.read_response()
            data = resp.raw_head + resp.body
        sender.join(20)
    return data


def final_response(data: bytes) -> tuple[int, bytes, bytes]:
    """(status, head, body) of the last response in ``data`` (after any 100 Continue)."""
    while data.startswith(b"HTTP/1.1 100 "):
        data = data.partition(b"\r\n\r\n")[2]
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.fixture(scope="module", params=["1", "4"], ids=["threads1", "threads4"])
def threads(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module", params=["all", "none"], ids=["streamed", "spooled"])
def server(request: pytest.FixtureRequest, module_servers, threads: str) -> Server:
    srv = module_servers(
        "test_body_limit:app",
        "--threads",
        threads,
        "--stream-bodies",
        request.param,
        "--limit-request-body",
        str(LIMIT),
    )
    srv.streams = request.param == "all"  # type: ignore[attr-defined]
    return srv


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect"])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_body_over_the_limit_is_413(server: Server, chunked: bool, expect: bool) -> None:
    tag = f"/limit-{int(chunked)}{int(expect)}-{server.streams}"  # type: ignore[attr-defined]
    status, head, body = final_response(send_upload(server, tag, chunked, expect))
    assert status == 413, (head, body, server.stderr_text()[-2000:])
    assert b"Connection: close" in head
    # Does the application see the body at all? Only a chunked one that is not stored
    # first, or one behind 100-continue (then the application decides to read it).
    reaches_app = chunked and (server.streams or expect)  # type: ignore[attr-defined]
    if reaches_app:
        saw = server.stderr_matches(rf"\[POST {tag}\] saw (\w+) mine=(\w+)")
        assert [m.groups() for m in saw] == [("RequestBodyTooLarge", "True")]
    else:
        # A request behind it is logged after anything this one made the app log.
        assert server.request("GET", f"{tag}/after").status == 200
        assert server.stderr_matches(rf"\[GET {tag}/after\] called")
        assert f"[POST {tag}]" not in server.stderr_text()
    assert server.stderr_matches(r"rejected: 413 Content Too Large")
    assert f"Error handling request POST {tag}" not in server.stderr_text()


@pytest.mark.parametrize("how", ["catch", "catch_gen", "catch_write", "other"])
def test_an_application_that_catches_the_error_still_gets_413_sent(
    server: Server, how: str
) -> None:
    # A stored chunked body over the limit never reaches the application, unless the
    # client waits for 100 Continue: then the application reads it in either mode.
    expect = not server.streams  # type: ignore[attr-defined]
    tag = f"/caught-{how}"
    status, head, body = final_response(send_upload(server, f"{tag}?how={how}", True, expect))
    assert status == 413, (head, body)
    assert b"Connection: close" in head
    assert b"application's" not in body
    assert server.stderr_matches(rf"\[POST {tag}\?how={how}\] the next read raised it again")
    errors = server.stderr_text()
    if how == "catch_write":
        assert server.stderr_matches(rf"\[POST {tag}\?how={how}\] write\(\) raised it too")
    if how == "other":
        # Another exception raised on the way out is the application's own: logged.
        assert server.stderr_matches(rf"Error handling request POST {tag}\?how=other")
        assert "ValueError: the application's own error" in server.stderr_text()
    else:
        assert f"Error handling request POST {tag}" not in errors


def test_a_started_response_is_cut_off(server: Server) -> None:
    expect = not server.streams  # type: ignore[attr-defined]
    data = send_upload(server, "/started?how=started", True, expect, to_eof=True)
    status, head, body = final_response(data)
    # The head went out before the read: it stays, and the body ends without its last
    # chunk, so the client can tell the response is incomplete.
    assert status == 200
    assert b"Transfer-Encoding: chunked" in head
    assert b"started" in body and not body.endswith(b"0\r\n\r\n")
    assert server.stderr_matches(r"request body over the limit after the response started")


def test_the_exception_is_an_oserror_in_the_package() -> None:
    import ferrowsgi

    assert issubclass(ferrowsgi.RequestBodyTooLarge, OSError)
    assert "RequestBodyTooLarge" in ferrowsgi.__all__
    assert ferrowsgi.RequestBodyTooLarge.__module__ == "ferrowsgi._ferrowsgi"
