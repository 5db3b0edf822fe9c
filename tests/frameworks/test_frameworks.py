"""Real framework apps served by ``ferrowsgi module:app`` and called over real sockets.

Every ``site_<framework>.py`` in this folder implements the same small contract:

* ``GET /hello/<name>?greeting=G`` -> ``"G, <name>!"`` (G defaults to "Hello")
* ``GET /query`` -> the query string as JSON ``{name: [values]}``
* ``POST /form`` (urlencoded) -> the fields as JSON ``{name: [values]}``
* ``POST /upload`` (multipart: ``file`` and ``note``) -> filename, size, sha256, note
* ``GET /set-cookie`` sets ``flavor=chocolate``; ``GET /read-cookie`` echoes flavor/other
* ``GET /redirect`` -> a redirect to ``/hello/redirected``
* ``GET /stream`` -> five lines from a generator
* ``GET /boom`` raises; unknown paths are 404
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.request
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from support import Server

pytestmark = pytest.mark.timeout(60)

FRAMEWORKS = ["flask", "django", "falcon", "pyramid", "bottle"]


@pytest.fixture(scope="module", params=FRAMEWORKS)
def site(request: pytest.FixtureRequest, module_servers) -> Server:
    server = module_servers(f"frameworks.site_{request.param}:app", "--threads", "2")
    server.framework = request.param  # type: ignore[attr-defined]
    return server


def call(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def test_routing_and_query_param(site: Server) -> None:
    resp, body = call(site, "GET", "/hello/world?greeting=Hi")
    assert resp.status == 200
    assert body == b"Hi, world!"
    assert resp.getheader("Content-Type", "").startswith("text/plain")


def test_utf8_path_segment(site: Server) -> None:
    resp, body = call(site, "GET", "/hello/caf%C3%A9")
    assert resp.status == 200
    assert body.decode("utf-8") == "Hello, caf\u00e9!"


def test_query_string(site: Server) -> None:
    resp, body = call(site, "GET", "/query?a=1&b=x%20y&b=z&c=caf%C3%A9")
    assert resp.status == 200
    assert json.loads(body) == {"a": ["1"], "b": ["x y", "z"], "c": ["caf\u00e9"]}


def test_urlencoded_form_post(site: Server) -> None:
    fields = [("name", "Ada Lovelace"), ("lang", "py"), ("lang", "rust"), ("sym", "a&b=c")]
    resp, body = call(
        site,
        "POST",
        "/form",
        body=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 200, body
    assert json.loads(body) == {"name": ["Ada Lovelace"], "lang": ["py", "rust"], "sym": ["a&b=c"]}


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "ferrowsgi-boundary-7d1c9"
    out = []
    for name, value in fields.items():
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, data) in files.items():
        out.append(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def test_multipart_file_upload(site: Server) -> None:
    # binary content with CRLFs and boundary-like lines inside
    data = b"".join(hashlib.sha256(b"%d" % i).digest() + b"\r\n--\r\n" for i in range(8000))
    body, ctype = multipart({"note": "a note"}, {"file": ("data.bin", data)})
    resp, out = call(site, "POST", "/upload", body=body, headers={"Content-Type": ctype})
    assert resp.status == 200, out[:500]
    assert json.loads(out) == {
        "filename": "data.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "a note",
    }


def test_chunked_multipart_upload(site: Server) -> None:
    # Only frameworks that read to EOF when wsgi.input_terminated is set can take a body
    # without Content-Length (Django, Falcon and Bottle go by CONTENT_LENGTH).
    if site.framework not in ("flask", "pyramid"):  # type: ignore[attr-defined]
        pytest.skip(f"{site.framework} ignores wsgi.input_terminated")  # type: ignore[attr-defined]
    data = b"chunked upload\r\n" * 1000
    body, ctype = multipart({"note": "chunked"}, {"file": ("c.txt", data)})

    def pieces():
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    conn = http.client.HTTPConnection(site.host, site.port, timeout=20)
    try:
        conn.request(
            "POST", "/upload", body=pieces(), headers={"Content-Type": ctype}, encode_chunked=True
        )
        resp = conn.getresponse()
        out = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, out[:300])
    assert json.loads(out)["sha256"] == hashlib.sha256(data).hexdigest()


def test_cookies_set_and_read_back(site: Server) -> None:
    resp, _ = call(site, "GET", "/set-cookie")
    assert resp.status == 200
    jar = SimpleCookie()
    for value in resp.headers.get_all("Set-Cookie") or []:
        jar.load(value)
    assert jar["flavor"].value == "chocolate"
    cookie = f"flavor={jar['flavor'].value}; other=1"
    resp, body = call(site, "GET", "/read-cookie", headers={"Cookie": cookie})
    assert resp.status == 200
    assert json.loads(body) == {"flavor": "chocolate", "other": "1"}


def test_redirect(site: Server) -> None:
    resp, _ = call(site, "GET", "/redirect")
    assert resp.status in (301, 302, 303, 307)
    assert resp.getheader("Location", "").endswith("/hello/redirected")
    with urllib.request.urlopen(f"http://{site.host}:{site.port}/redirect", timeout=20) as r:
        assert r.read() == b"Hello, redirected!"
        assert r.url.endswith("/hello/redirected")


def test_streaming_response(site: Server) -> None:
    resp, body = call(site, "GET", "/stream")
    assert resp.status == 200
    assert body == b"".join(b"chunk%d\n" % i for i in range(5))
    if resp.getheader("Content-Length") is None:
        assert resp.getheader("Transfer-Encoding") == "chunked"


def test_not_found(site: Server) -> None:
    resp, _ = call(site, "GET", "/no/such/page")
    assert resp.status == 404


def test_app_exception_is_500_and_server_lives(site: Server) -> None:
    resp, body = call(site, "GET", "/boom")
    assert resp.status == 500
    assert b"framework-boom" not in body
    resp, body = call(site, "GET", "/hello/alive")
    assert body == b"Hello, alive!"


def test_keep_alive_across_routes(site: Server) -> None:
    conn = http.client.HTTPConnection(site.host, site.port, timeout=20)
    try:
        seen = []
        for path in ("/hello/a", "/query?x=1", "/stream", "/no/such/page", "/hello/b"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            seen.append(resp.status)
        conn.request(
            "POST",
            "/form",
            body=b"k=v",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        assert json.loads(resp.read()) == {"k": ["v"]}
    finally:
        conn.close()
    assert seen == [200, 200, 200, 404, 200]
