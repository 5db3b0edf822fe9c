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


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}.bin").write_bytes(data)


def main():
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


if __name__ == "__main__":
    main()
