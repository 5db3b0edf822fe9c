#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (re-runnable; it only
(re)writes its own seed-*.bin files). Run from anywhere: python3 fuzz/make_corpus.py
"""

import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"

H = b"Host: example.com\r\n"

HEADS = {
    "get": b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    "get-query-headers": b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: example.com:8080\r\n"
    b"User-Agent: curl/8.0\r\nAccept: */*\r\nCookie: a=b; c=d\r\nX-Empty:\r\n\r\n",
    "post-cl": b"POST /submit HTTP/1.1\r\n"
    + H
    + b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 7\r\n\r\na=1&b=2",
    "post-chunked": b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "post-chunked-ext-trailer": b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b'5;name=val;q="a\\"b"\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n',
    "expect-continue": b"PUT /f HTTP/1.1\r\n"
    + H
    + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "pipelined-get-get": b"GET /1 HTTP/1.1\r\n"
    + H
    + b"\r\nGET /2 HTTP/1.1\r\n"
    + H
    + b"Connection: close\r\n\r\n",
    "pipelined-post-get": b"POST /1 HTTP/1.1\r\n"
    + H
    + b"Content-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\n"
    + H
    + b"\r\n",
    "pipelined-chunked-get": b"POST /1 HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    b"GET /2 HTTP/1.1\r\n" + H + b"\r\n",
    "http10": b"GET /old HTTP/1.0\r\n\r\n",
    "http10-keepalive": b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n",
    "http10-te": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "absolute-form": b"GET http://Other.example:81/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "absolute-https-empty-host": b"GET HTTPS://h HTTP/1.1\r\nHost:\r\n\r\n",
    "absolute-userinfo": b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    "connect": b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    "leading-crlf-lf-only": b"\r\n\nGET /a?b HTTP/1.1\nHost: a\nX: y\n\n",
    "smuggle-cl-te": b"POST / HTTP/1.1\r\n"
    + H
    + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
    "smuggle-te-cl": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX",
    "smuggle-te-gzip-chunked": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "smuggle-te-chunked-gzip": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    "smuggle-te-two-lines": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
    "smuggle-te-space-colon": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "smuggle-te-tab-value": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding:\tchunked\t\r\n\r\n0\r\n\r\n",
    "smuggle-te-xchunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n",
    "smuggle-te-quoted": b"POST / HTTP/1.1\r\n" + H + b'Transfer-Encoding: "chunked"\r\n\r\n',
    "smuggle-te-obs-fold": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n",
    "smuggle-cl-double": b"POST / HTTP/1.1\r\n"
    + H
    + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "smuggle-cl-list": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello",
    "smuggle-cl-plus": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
    "smuggle-cl-huge": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 18446744073709551616\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n",
    "bare-cr-value": b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n",
    "bare-cr-line": b"GET / HTTP/1.1\rHost: a\r\n\r\n",
    "nul-value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n",
    "nul-name": b"GET / HTTP/1.1\r\nX\x00: a\r\n" + H + b"\r\n",
    "double-host": b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
    "missing-host": b"GET / HTTP/1.1\r\n\r\n",
    "version-2": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "lowercase-version": b"GET / http/1.1\r\n" + H + b"\r\n",
    "obs-text-value": b"GET / HTTP/1.1\r\n" + H + b"X: caf\xc3\xa9 \x80\xff\r\n\r\n",
    "fragment-target": b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n",
    "expect-other": b"GET / HTTP/1.1\r\n" + H + b"Expect: 100-continue, foo\r\n\r\n",
    "many-headers": b"GET / HTTP/1.1\r\n"
    + H
    + b"".join(b"X-%d: v\r\n" % i for i in range(70))
    + b"\r\n",
}

# Chunked bodies (after the head), for the body target.
CHUNKED = {
    "simple": b"5\r\nhello\r\n0\r\n\r\n",
    "two-chunks-next": b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
    "upper-hex": b"A\r\n0123456789\r\n0\r\n\r\n",
    "extensions": b'5;a;b=c;d="q\\"x" ; e = f\r\nhello\r\n0;last\r\n\r\n',
    "trailers": b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nY: two words\r\n\r\n",
    "empty": b"0\r\n\r\n",
    "leading-zeros": b"0005\r\nhello\r\n0000\r\n\r\n",
    "huge-size": b"ffffffffffffffff\r\nabc",
    "overflow-size": b"10000000000000000\r\nabc\r\n0\r\n\r\n",
    "bare-lf": b"5\nhello\n0\n\n",
    "size-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "hex-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "missing-data-crlf": b"5\r\nhelloX\r\n0\r\n\r\n",
    "short-data": b"5\r\nhel",
    "trailer-obs-fold": b"0\r\nX: a\r\n b\r\n\r\n",
    "trailer-bare-cr": b"0\r\nX: a\rb\r\n\r\n",
    "smuggled-request": b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    "ext-nul": b"5;a=\x00\r\nhello\r\n0\r\n\r\n",
}

LENGTH = {
    "ten-next": (10, b"0123456789NEXT"),
    "zero": (0, b"GET / HTTP/1.1\r\n"),
    "short": (100, b"partial"),
}


def body_cfg(chunked, tiny=False, huge=False, length=0, max_out=255, pieces=(255, 255, 255, 255)):
    flags = (1 if chunked else 0) | (2 if tiny else 0) | (4 if huge else 0)
    return bytes([flags]) + struct.pack("<H", length) + bytes([max_out]) + bytes(pieces)


def cgi_vars(method="GET", uri="/", extra=()):
    """CGI variables as nginx's scgi_params and uwsgi_params send them."""
    return [
        (b"REQUEST_METHOD", method.encode()),
        (b"REQUEST_URI", uri.encode()),
        (b"QUERY_STRING", uri.partition("?")[2].encode()),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"40000"),
        (b"SERVER_NAME", b"localhost"),
        (b"SERVER_PORT", b"8080"),
        (b"HTTP_HOST", b"localhost:8080"),
        *extra,
    ]


def scgi(vars_, body=b""):
    s = b"".join(n + b"\0" + v + b"\0" for n, v in vars_)
    return str(len(s)).encode() + b":" + s + b"," + body


def uwsgi(vars_, body=b"", modifier1=0, modifier2=0):
    block = b"".join(
        struct.pack("<H", len(n)) + n + struct.pack("<H", len(v)) + v for n, v in vars_
    )
    return bytes([modifier1]) + struct.pack("<H", len(block)) + bytes([modifier2]) + block + body


def scgi_seeds():
    post = [(b"CONTENT_LENGTH", b"5"), (b"SCGI", b"1")] + cgi_vars(
        "POST", "/up?a=%20b", [(b"CONTENT_TYPE", b"text/plain")]
    )
    get = [(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1")] + cgi_vars("GET", "/a%2Fb/c")
    return {
        "post": scgi(post, b"hello"),
        "get": scgi(get),
        "spec-example": b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST"
        b"\x00REQUEST_URI\x00/deepthought\x00,What is the answer to life?",
        "rebuilt-target": scgi(
            [
                (b"CONTENT_LENGTH", b"0"),
                (b"SCGI", b"1"),
                (b"REQUEST_METHOD", b"GET"),
                (b"SCRIPT_NAME", b"/app"),
                (b"PATH_INFO", b"/a b"),
                (b"QUERY_STRING", b"x=1"),
            ]
        ),
        "scgi-missing": scgi([(b"CONTENT_LENGTH", b"0")] + cgi_vars()),
        "cl-not-first": scgi([(b"SCGI", b"1"), (b"CONTENT_LENGTH", b"0")] + cgi_vars()),
        "leading-zero": b"0" + scgi(get),
        "no-comma": scgi(get)[:-1] + b";",
        "huge-length": b"99999999999999999999:",
    }


def uwsgi_seeds():
    nginx = cgi_vars("POST", "/p?q=1", [(b"CONTENT_LENGTH", b"3"), (b"PATH_INFO", b"/p")])
    return {
        "post": uwsgi(nginx, b"abc"),
        "get-empty-length": uwsgi(cgi_vars("GET", "/", [(b"CONTENT_LENGTH", b"")])),
        "modifier1": uwsgi(cgi_vars(), modifier1=5),
        "modifier2": uwsgi(cgi_vars(), modifier2=1),
        "short-datasize": bytes([0, 10, 0, 0]) + uwsgi(cgi_vars())[4:],
        "scgi-shaped": uwsgi([(b"CONTENT_LENGTH", b"1"), (b"SCGI", b"1")] + cgi_vars(), b"x"),
        "huge-datasize": bytes([0, 255, 255, 0]),
    }


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}.bin").write_bytes(data)


def ajp_string(s):
    if s is None:
        return b"\xff\xff"
    return struct.pack(">H", len(s)) + s + b"\x00"


def ajp_packet(payload):
    return b"\x12\x34" + struct.pack(">H", len(payload)) + payload


def ajp_request(method, uri, headers=(), attrs=b"", ssl=False):
    """A FORWARD_REQUEST packet; header names are bytes or a 0xA0xx code."""
    p = bytes([2, method]) + ajp_string(b"HTTP/1.1") + ajp_string(uri)
    p += ajp_string(b"127.0.0.1") + ajp_string(None) + ajp_string(b"localhost")
    p += struct.pack(">HBH", 8080, 1 if ssl else 0, len(headers))
    for name, value in headers:
        p += struct.pack(">H", name) if isinstance(name, int) else ajp_string(name)
        p += ajp_string(value)
    return ajp_packet(p + attrs + b"\xff")


def ajp_body(data):
    return ajp_packet(struct.pack(">H", len(data)) + data)


def ajp_attr(code, value):
    return bytes([code]) + ajp_string(value)


AJP_ATTRS = (
    ajp_attr(5, b"a=1&b=%20")
    + b"\x0a"
    + ajp_string(b"AJP_REMOTE_PORT")
    + ajp_string(b"54321")
    + ajp_attr(3, b"alice")
)

AJP = {
    # config byte (packet size, secret, tiny limits), piece size, wire
    "get": (0, 255, ajp_request(2, b"/", [(0xA00B, b"localhost")])),
    "get-attrs": (0, 3, ajp_request(2, b"/a%20b", [(0xA00B, b"h"), (b"X-Id", b"1")], AJP_ATTRS)),
    "cping-get-get": (
        0,
        1,
        ajp_packet(b"\x0a") + ajp_request(2, b"/1") + ajp_request(3, b"/2", [(0xA00E, b"ua")]),
    ),
    "post-length": (
        0,
        7,
        ajp_request(4, b"/p", [(0xA008, b"11"), (0xA007, b"text/plain")])
        + ajp_body(b"hello")
        + ajp_body(b" world")
        + ajp_request(2, b"/next"),
    ),
    "post-chunked": (
        1,
        2,
        ajp_request(4, b"/c", [(b"Transfer-Encoding", b"chunked")])
        + ajp_body(b"abc")
        + ajp_body(b"")
        + ajp_packet(b""),
    ),
    "stored-method-secret": (
        2,
        255,
        ajp_request(0xFF, b"/s", [], ajp_attr(13, b"PATCH") + ajp_attr(12, b"k")),
    ),
    "ssl-tiny": (
        4,
        5,
        ajp_request(
            2,
            b"/t",
            [(0xA001, b"*/*"), (0xA009, b"a=b")],
            ajp_attr(8, b"AES") + b"\x0b\x01\x00",
            True,
        ),
    ),
    "shutdown": (0, 255, ajp_packet(b"\x07")),
}

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
INET = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack("!HH", 56324, 443)
INET6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack("!HH", 1, 80)


def v2(command, family, body):
    return SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


PROXY = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n",
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n",
    "v1-unknown": b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    "v1-bad-port": b"PROXY TCP4 192.0.2.1 198.51.100.2 080 443\r\n",
    "v1-partial": b"PROXY TCP4 192.0.2.1 19",
    "v2-inet": v2(1, 0x11, INET),
    "v2-inet6": v2(1, 0x21, INET6),
    "v2-local": v2(0, 0x00, b""),
    "v2-unix": v2(1, 0x31, bytes(216)),
    "v2-tls-authority": v2(
        1,
        0x11,
        INET
        + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"cn"))
        + tlv(0x02, b"example.com")
        + tlv(0x03, b"\x00\x00\x00\x00")
        + tlv(0x05, b"id-1"),
    ),
    "v2-tlv-overrun": v2(1, 0x11, INET + b"\x04\x00\x09ab"),
    "v2-too-long": SIG + b"\x21\x11\xff\xff",
    "http": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
}


def main():
    for name, (cfg, piece, wire) in AJP.items():
        write("ajp", name, bytes([cfg, piece]) + wire)
    for name, raw in PROXY.items():
        write("proxy", name, raw)
    for name, raw in HEADS.items():
        write("head", name, raw)
        write("head_split", name, raw)
    for name, raw in CHUNKED.items():
        write("body", f"chunked-{name}", body_cfg(True) + raw)
    # The same bodies fed in small pieces with a small max_out, and tiny limits.
    for name in ("extensions", "trailers", "two-chunks-next"):
        raw = CHUNKED[name]
        write(
            "body", f"chunked-{name}-pieces", body_cfg(True, max_out=2, pieces=(1, 3, 7, 2)) + raw
        )
        write(
            "body", f"chunked-{name}-tiny", body_cfg(True, tiny=True, pieces=(5, 1, 255, 2)) + raw
        )
    for name, (n, raw) in LENGTH.items():
        write("body", f"length-{name}", body_cfg(False, length=n) + raw)
        write(
            "body",
            f"length-{name}-pieces",
            body_cfg(False, length=n, max_out=0, pieces=(1, 2, 3, 4)) + raw,
        )
    write(
        "body", "length-huge", body_cfg(False, huge=True, pieces=(3, 255, 1, 1)) + b"endless body"
    )
    write_fastcgi()
    for name, raw in scgi_seeds().items():
        write("scgi", name, raw)
    for name, raw in uwsgi_seeds().items():
        write("uwsgi", name, raw)


# FastCGI (target "fastcgi"): config bytes (limits, max_out, cut point), then records.


def fcgi_rec(kind, rid, content=b"", pad=0):
    return struct.pack(">BBHHBB", 1, kind, rid, len(content), pad, 0) + content + b"\0" * pad


def fcgi_pairs(pairs):
    out = b""
    for name, value in pairs:
        for n in (len(name), len(value)):
            out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
        out += name + value
    return out


def fcgi_request(rid, pairs, body=None, keep=True, role=1, per=1000):
    wire = fcgi_rec(1, rid, struct.pack(">HB5x", role, 1 if keep else 0))
    p = fcgi_pairs(pairs)
    for i in range(0, len(p), per):
        wire += fcgi_rec(4, rid, p[i : i + per], pad=i % 7)
    wire += fcgi_rec(4, rid)
    for chunk in body or []:
        wire += fcgi_rec(5, rid, chunk, pad=len(chunk) % 3)
    return wire + fcgi_rec(5, rid)


FCGI_GET = [
    (b"REQUEST_METHOD", b"GET"),
    (b"REQUEST_URI", b"/a%20b?x=1"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"CONTENT_LENGTH", b""),
    (b"HTTP_HOST", b"example.com"),
    (b"REMOTE_ADDR", b"192.0.2.1"),
]
FCGI_POST = [
    (b"REQUEST_METHOD", b"POST"),
    (b"REQUEST_URI", b"/up"),
    (b"CONTENT_LENGTH", b"11"),
    (b"HTTP_X_LONG", b"v" * 200),
]

FCGI = {
    "get": fcgi_request(1, FCGI_GET),
    "get-get-close": fcgi_request(1, FCGI_GET) + fcgi_request(1, FCGI_GET, keep=False),
    "post-length": fcgi_request(3, FCGI_POST, [b"hello", b" world"], per=9),
    "post-unknown-length": fcgi_request(1, FCGI_POST[:2], [b"abc", b"def"]),
    "management": fcgi_rec(9, 0, fcgi_pairs([(b"FCGI_MAX_CONNS", b""), (b"FCGI_MPXS_CONNS", b"")]))
    + fcgi_rec(77, 0, b"x")
    + fcgi_request(1, FCGI_GET),
    "unknown-role": fcgi_request(2, FCGI_GET, role=2) + fcgi_request(1, FCGI_GET),
    "multiplexed": fcgi_request(1, FCGI_POST, [b"hello"])[:-8]
    + fcgi_request(2, FCGI_GET)
    + fcgi_rec(5, 1, b" world")
    + fcgi_rec(5, 1),
    "abort": fcgi_request(1, FCGI_POST, [b"hel"])[:-8] + fcgi_rec(2, 1),
    "abort-params": fcgi_rec(1, 1, struct.pack(">HB5x", 1, 1))
    + fcgi_rec(4, 1, fcgi_pairs(FCGI_GET[:2]))
    + fcgi_rec(2, 1)
    + fcgi_request(1, FCGI_GET),
}


def fcgi_cfg(tiny=False, max_out=255, cut=0x8000):
    return bytes([0 if tiny else 1, max_out]) + struct.pack(">H", cut)


def write_fastcgi():
    for name, wire in FCGI.items():
        write("fastcgi", name, fcgi_cfg() + wire)
        write("fastcgi", f"{name}-tiny", fcgi_cfg(tiny=True, max_out=2, cut=0x1234) + wire)


if __name__ == "__main__":
    main()
