"""Request smuggling and malformed input, RFC 9112 / RFC 9110 negative cases.

Every row of ``NEGATIVE`` is one request that a server must refuse. Each is sent on a fresh
TCP connection to ``apps.counting`` (started with ``--limit-request-body 1024``) and must get:

* exactly one response, with the expected status and ``Connection: close``;
* the connection closed right after it, so nothing behind the bad request is ever parsed;
* an info-level ``rejected:`` log line naming the client and the status;
* no call of the application (``/_count`` is unchanged).

``test_smuggled_request_is_never_served`` sends every row again with a complete, valid request
appended: still exactly one response and no app call, whatever the error was.

``POSITIVE`` holds the same shapes done right (chunk extensions and trailers, repeated identical
Content-Length, absolute-form over Host, leading empty lines, pipelining behind a body, the
limits' exact boundaries): the app is called once per request and the framing is honoured.

The expected statuses follow ferrowsgi-proto's rules (``error.rs``): 400 unless stated, 413
body over the limit, 414 request line, 417 Expect, 431 header limits, 501 CONNECT and unknown
transfer codings, 505 unsupported ``HTTP/d.d`` versions.
"""

from __future__ import annotations

import re

import pytest
from support import IO_TIMEOUT, RawConn, Response, Server, wait_until

pytestmark = pytest.mark.timeout(60)

BODY_LIMIT = 1024  # --limit-request-body of the server under test
LIMIT = 8190  # default --limit-request-line and --limit-request-field-size
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


# --- request builders (kept short so that each table row fits on one line) -------------------


def msg(line: bytes, *fields: bytes, body: bytes = b"") -> bytes:
    """A request line, header field lines and a body, joined with CRLF."""
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def get(*fields: bytes) -> bytes:
    """``GET / HTTP/1.1`` with ``Host: a`` and ``fields``."""
    return msg(b"GET / HTTP/1.1", b"Host: a", *fields)


def line(request_line: bytes) -> bytes:
    """Any request line with ``Host: a``."""
    return msg(request_line, b"Host: a")


def host(*fields: bytes) -> bytes:
    """``GET / HTTP/1.1`` with only ``fields`` (to vary the Host header)."""
    return msg(b"GET / HTTP/1.1", *fields)


def post(*fields: bytes, body: bytes = b"") -> bytes:
    """``POST / HTTP/1.1`` with ``Host: a``, ``fields`` and ``body``."""
    return msg(b"POST / HTTP/1.1", b"Host: a", *fields, body=body)


def ch(body: bytes) -> bytes:
    """A ``Transfer-Encoding: chunked`` POST whose body bytes are given raw."""
    return post(b"Transfer-Encoding: chunked", body=body)


def cl(value: bytes, body: bytes = b"hello") -> bytes:
    """A POST with one ``Content-Length: value`` line."""
    return post(b"Content-Length: " + value, body=body)


TE = b"Transfer-Encoding: chunked"
CL5 = b"Content-Length: 5"
CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"  # a valid chunked body
HIDE = b"0\r\n\r\n" + SMUGGLED  # what a TE-honouring parser sees as a second request
MANY = b"".join(b"X-%d: v\r\n" % i for i in range(199))  # 200 header lines with Host
BIG = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 4000) for i in range(17))  # 68 KB head
OVER = b"".join(b"64\r\n" + b"x" * 100 + b"\r\n" for _ in range(11)) + b"0\r\n\r\n"  # 1100 B

# (id, raw request, expected status)
NEGATIVE: list[tuple[str, bytes, int]] = [
    # Content-Length together with Transfer-Encoding (RFC 9112 §6.3 item 3), both orders
    ("te_then_cl", post(TE, b"Content-Length: 4", body=b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("cl_zero_then_te", post(b"Content-Length: 0", TE, body=HIDE), 400),
    ("cl_then_te_hiding_request", post(b"Content-Length: 39", TE, body=HIDE), 400),
    ("te_upper_name_cl_lower", post(b"TRANSFER-ENCODING: chunked", b"content-length: 5"), 400),
    ("te_upper_value_with_cl", post(b"Transfer-Encoding: CHUNKED", CL5, body=HIDE), 400),
    ("te_extra_spaces_with_cl", post(b"Transfer-Encoding:    chunked   ", CL5), 400),
    ("te_tabs_with_cl", post(b"Transfer-Encoding:\tchunked\t", CL5, body=HIDE), 400),
    ("te_space_before_colon", post(b"Transfer-Encoding : chunked", CL5, body=HIDE), 400),
    ("te_tab_before_colon", post(b"Transfer-Encoding\t: chunked", body=HIDE), 400),
    ("te_vtab_in_value", post(b"Transfer-Encoding: \x0bchunked", CL5, body=HIDE), 400),
    ("te_obs_folded_with_cl", post(b"Transfer-Encoding:", b" chunked", CL5, body=HIDE), 400),
    ("te_unknown_list_with_cl", post(b"Transfer-Encoding: gzip, chunked", CL5), 400),
    ("te_empty_with_cl", post(b"Transfer-Encoding:", CL5, body=b"hello"), 400),
    ("cl_invalid_with_te", post(b"Content-Length: x", TE, body=HIDE), 400),
    # Transfer-Encoding that does not end in exactly one chunked (§6.3 item 4, §6.1)
    ("te_identity_alone", post(b"Transfer-Encoding: identity", body=HIDE), 400),
    ("te_gzip_alone_with_body", post(b"Transfer-Encoding: gzip", body=HIDE), 400),
    ("te_deflate_alone", post(b"Transfer-Encoding: deflate", body=HIDE), 400),
    ("te_chunked_then_gzip", post(b"Transfer-Encoding: chunked, gzip", body=HIDE), 400),
    ("te_chunked_then_identity_line", post(TE, b"Transfer-Encoding: identity", body=HIDE), 400),
    ("te_chunked_twice_list", post(b"Transfer-Encoding: chunked, chunked", body=HIDE), 400),
    ("te_chunked_twice_lines", post(TE, TE, body=HIDE), 400),
    ("te_chunked_with_param", post(b"Transfer-Encoding: chunked;q=1", body=HIDE), 400),
    ("te_quoted_chunked", post(b'Transfer-Encoding: "chunked"', body=HIDE), 400),
    ("te_xchunked", post(b"Transfer-Encoding: xchunked", body=HIDE), 400),
    ("te_chunked_obs_text", post(b"Transfer-Encoding: chunked\xff", body=HIDE), 400),
    ("te_space_inside_coding", post(b"Transfer-Encoding: chun ked", body=HIDE), 400),
    ("te_comma_only", post(b"Transfer-Encoding: ,", body=HIDE), 400),
    ("te_identity_then_chunked", post(b"Transfer-Encoding: identity, chunked", body=CHUNKS), 501),
    ("te_br_line_then_chunked", post(b"Transfer-Encoding: br", TE, body=CHUNKS), 501),
    # Transfer-Encoding in HTTP/1.0 (§6.1)
    ("te_http10_chunked", msg(b"POST / HTTP/1.0", TE, body=HIDE), 400),
    ("te_http10_gzip", msg(b"POST / HTTP/1.0", b"Transfer-Encoding: gzip", body=HIDE), 400),
    # Content-Length values (RFC 9110 §8.6, RFC 9112 §6.3 item 5)
    ("cl_2_pow_64", cl(b"18446744073709551616"), 400),
    ("cl_minus_zero", cl(b"-0"), 400),
    ("cl_plus_zero", cl(b"+0"), 400),
    ("cl_space_inside", cl(b"1 0", body=b"0123456789"), 400),
    ("cl_tab_inside", cl(b"1\t0", body=b"0123456789"), 400),
    ("cl_hex", cl(b"0x5"), 400),
    ("cl_exponent", cl(b"5e0"), 400),
    ("cl_decimal_point", cl(b"5.0"), 400),
    ("cl_quoted", cl(b'"5"'), 400),
    ("cl_empty", cl(b""), 400),
    ("cl_only_spaces", cl(b"   "), 400),
    ("cl_comma_only", cl(b","), 400),
    ("cl_fullwidth_digit", cl(b"\xef\xbc\x95"), 400),
    ("cl_nul_after_digits", cl(b"5\x00"), 400),
    ("cl_list_then_differs", cl(b"5, 5, 6", body=b"hello!"), 400),
    ("cl_list_line_vs_line", post(b"Content-Length: 5, 5", b"Content-Length: 6", body=HIDE), 400),
    ("cl_valid_then_invalid", post(CL5, b"Content-Length: x", body=b"hello"), 400),
    ("cl_valid_then_empty", post(CL5, b"Content-Length:", body=b"hello"), 400),
    ("cl_obs_folded", post(b"Content-Length:", b" 5", body=b"hello"), 400),
    ("cl_space_before_colon", post(b"Content-Length : 5", body=b"hello"), 400),
    # chunk-size (RFC 9112 §7.1)
    ("chunk_size_2_pow_64", ch(b"10000000000000000\r\nx\r\n0\r\n\r\n"), 400),
    ("chunk_size_minus", ch(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_plus", ch(b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_0x_prefix", ch(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_leading_space", ch(b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_trailing_space", ch(b"5 \r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_trailing_tab", ch(b"5\t\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_empty", ch(b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_non_hex", ch(b"g\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_hex_then_junk", ch(b"5g\r\nhello\r\n0\r\n\r\n"), 400),
    # chunk extensions (§7.1.1)
    ("chunk_ext_bare_semicolon", ch(b"5;\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_ext_no_name", ch(b"5;=v\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_ext_unterminated_quote", ch(b'5;a="v\r\nhello\r\n0\r\n\r\n'), 400),
    ("chunk_ext_ctl_in_name", ch(b"5;a\x01b\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_ext_ctl_in_quoted", ch(b'5;a="\x01"\r\nhello\r\n0\r\n\r\n'), 400),
    ("chunk_ext_nul_in_value", ch(b"5;a=b\x00\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_ext_bare_lf", ch(b"5;a\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_ext_value_too_long", ch(b"5;a=" + b"v" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_ext_too_many", ch(b"5" + b";a" * 3000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    # chunk data and the CRLFs around it
    ("chunk_data_no_crlf", ch(b"5\r\nhello0\r\n\r\n"), 400),
    ("chunk_data_longer_than_size", ch(b"3\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_data_shorter_than_size", ch(b"6\r\nhello\r\n0\r\n\r\n" + SMUGGLED), 400),
    ("chunk_data_bare_lf", ch(b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk_size_line_bare_lf", ch(b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_line_cr_cr", ch(b"5\r\rhello\r\n0\r\n\r\n"), 400),
    ("last_chunk_bare_lf", ch(b"5\r\nhello\r\n0\n\n"), 400),
    ("final_crlf_bare_lf", ch(b"5\r\nhello\r\n0\r\n\n"), 400),
    ("final_crlf_cr_junk", ch(b"5\r\nhello\r\n0\r\n\rX"), 400),
    # trailer section (§7.1.2)
    ("trailer_obs_fold", ch(b"0\r\nX-T: a\r\n b\r\n\r\n"), 400),
    ("trailer_no_colon", ch(b"0\r\nNoColon\r\n\r\n"), 400),
    ("trailer_empty_name", ch(b"0\r\n: a\r\n\r\n"), 400),
    ("trailer_space_before_colon", ch(b"0\r\nX-T : a\r\n\r\n"), 400),
    ("trailer_nul_in_value", ch(b"0\r\nX-T: a\x00b\r\n\r\n"), 400),
    ("trailer_bare_cr", ch(b"0\r\nX-T: a\rb\r\n\r\n"), 400),
    ("trailer_bare_lf", ch(b"0\r\nX-T: a\n\r\n"), 400),
    ("trailer_one_too_large", ch(b"0\r\nX-T: " + b"v" * 17000 + b"\r\n\r\n"), 400),
    ("trailer_many_too_large", ch(b"0\r\n" + b"X-Trailer: 0123456789\r\n" * 800 + b"\r\n"), 400),
    # bare CR and NUL in the head (RFC 9112 §2.2, RFC 9110 §5.5)
    ("bare_cr_ends_request_line", b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    ("bare_cr_in_target", line(b"GET /a\rb HTTP/1.1"), 400),
    ("bare_cr_in_header_name", get(b"X\r: a"), 400),
    ("bare_cr_before_request_line", b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bare_cr_line_in_head", b"GET / HTTP/1.1\r\nHost: a\r\n\r" + SMUGGLED, 400),
    ("nul_in_method", line(b"G\x00T / HTTP/1.1"), 400),
    ("nul_in_version", line(b"GET / HTTP/1.1\x00"), 400),
    ("nul_in_header_name", get(b"X\x00A: b"), 400),
    ("nul_in_host_value", host(b"Host: a\x00.evil"), 400),
    # obs-fold and whitespace before the colon (RFC 9112 §5.1, §5.2)
    ("obs_fold_tab", get(b"X-A: a", b"\tb"), 400),
    ("obs_fold_host", host(b"Host: a", b" b"), 400),
    ("space_before_first_header", host(b" X: a", b"Host: a"), 400),
    ("tab_before_colon", get(b"X-A\t: b"), 400),
    # header names (field-name = token, RFC 9110 §5.1)
    ("name_with_space", get(b"X A: b"), 400),
    ("name_with_parens", get(b"X(A): b"), 400),
    ("name_with_quote", get(b'X"A: b'), 400),
    ("name_with_slash", get(b"X/A: b"), 400),
    ("name_with_braces", get(b"X{A}: b"), 400),
    ("name_non_ascii", get(b"X\xc3\xa9: b"), 400),
    ("name_with_del", get(b"X\x7f: b"), 400),
    ("name_empty", get(b": b"), 400),
    ("name_colon_only", get(b":"), 400),
    ("name_lf_split_line", get(b"X-A: a\nb"), 400),
    # header values (field-value has no CTL but HTAB, RFC 9110 §5.5)
    ("value_soh", get(b"X-A: a\x01b"), 400),
    ("value_del", get(b"X-A: a\x7fb"), 400),
    ("value_vtab", get(b"X-A: a\x0bb"), 400),
    ("value_form_feed", get(b"X-A: a\x0cb"), 400),
    ("value_esc_in_host", host(b"Host: a\x1b"), 400),
    # request-target (RFC 9112 §3.2, RFC 3986)
    ("target_fragment", line(b"GET /a#b HTTP/1.1"), 400),
    ("target_hash_only", line(b"GET # HTTP/1.1"), 400),
    ("target_tab", line(b"GET /a\tb HTTP/1.1"), 400),
    ("target_ctl", line(b"GET /a\x1fb HTTP/1.1"), 400),
    ("target_del", line(b"GET /a\x7f HTTP/1.1"), 400),
    ("target_utf8", line(b"GET /caf\xc3\xa9 HTTP/1.1"), 400),
    ("target_latin1", line(b"GET /\xff HTTP/1.1"), 400),
    ("target_userinfo", line(b"GET http://user@a/ HTTP/1.1"), 400),
    ("target_userinfo_password", line(b"GET http://u:p@a/ HTTP/1.1"), 400),
    ("target_empty_authority", line(b"GET http:///p HTTP/1.1"), 400),
    ("target_scheme_only", line(b"GET http:// HTTP/1.1"), 400),
    ("target_port_only_authority", line(b"GET http://:80/ HTTP/1.1"), 400),
    ("target_bad_percent_in_host", line(b"GET http://a%zz/ HTTP/1.1"), 400),
    ("target_scheme_ftp", line(b"GET ftp://a/ HTTP/1.1"), 400),
    ("target_scheme_ws", line(b"GET ws://a/ HTTP/1.1"), 400),
    ("target_scheme_file", line(b"GET file:///etc/passwd HTTP/1.1"), 400),
    ("target_asterisk_get", line(b"GET * HTTP/1.1"), 400),
    ("target_asterisk_post", line(b"POST * HTTP/1.1"), 400),
    ("target_asterisk_query", line(b"OPTIONS *?x HTTP/1.1"), 400),
    ("target_authority_form_get", line(b"GET a:80 HTTP/1.1"), 400),
    ("target_relative", line(b"GET a/b HTTP/1.1"), 400),
    ("target_backslash", line(b"GET \\a HTTP/1.1"), 400),
    ("connect_authority_form", msg(b"CONNECT a:443 HTTP/1.1", b"Host: a:443"), 501),
    ("connect_lowercase", msg(b"connect a:443 HTTP/1.1", b"Host: a:443"), 400),
    # request line and HTTP-version (RFC 9112 §2.3, §3)
    ("http09_request_line", b"GET /\r\n\r\n", 400),
    ("version_1_2", line(b"GET / HTTP/1.2"), 505),
    ("version_0_9", line(b"GET / HTTP/0.9"), 505),
    ("version_9_9", line(b"GET / HTTP/9.9"), 505),
    ("h2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("version_no_minor", line(b"GET / HTTP/1"), 400),
    ("version_three_parts", line(b"GET / HTTP/1.1.1"), 400),
    ("version_mixed_case", line(b"GET / Http/1.1"), 400),
    ("version_leading_zero", line(b"GET / HTTP/01.1"), 400),
    ("version_two_digit_minor", line(b"GET / HTTP/1.10"), 400),
    ("version_trailing_space", line(b"GET / HTTP/1.1 "), 400),
    ("version_empty", line(b"GET / "), 400),
    ("two_spaces_after_method", line(b"GET  / HTTP/1.1"), 400),
    ("two_spaces_before_version", line(b"GET /  HTTP/1.1"), 400),
    ("space_before_method", line(b" GET / HTTP/1.1"), 400),
    ("tabs_as_separators", line(b"GET\t/\tHTTP/1.1"), 400),
    ("nine_empty_lines_first", b"\r\n" * 9 + get(), 400),
    # method = token (RFC 9110 §9.1)
    ("method_at_sign", line(b"G@T / HTTP/1.1"), 400),
    ("method_parens", line(b"GE(T) / HTTP/1.1"), 400),
    ("method_quoted", line(b'"GET" / HTTP/1.1'), 400),
    ("method_comma", line(b"GET,POST / HTTP/1.1"), 400),
    ("method_slash", line(b"GET/ / HTTP/1.1"), 400),
    ("method_colon", line(b"GET: / HTTP/1.1"), 400),
    ("method_brackets", line(b"[GET] / HTTP/1.1"), 400),
    ("method_non_ascii", line(b"G\xc3\x89T / HTTP/1.1"), 400),
    # Host (RFC 9112 §3.2): exactly one valid Host in HTTP/1.1, never two
    ("host_missing_absolute_form", msg(b"GET http://a/ HTTP/1.1"), 400),
    ("host_missing_other_fields", host(b"X-Host: a", b"Forwarded: host=a"), 400),
    ("host_twice_same", host(b"Host: a", b"Host: a"), 400),
    ("host_twice_case", host(b"host: a", b"HOST: b"), 400),
    ("host_twice_http10", msg(b"GET / HTTP/1.0", b"Host: a", b"Host: b"), 400),
    ("host_twice_absolute_form", msg(b"GET http://a/ HTTP/1.1", b"Host: a", b"Host: b"), 400),
    ("host_invalid_absolute_form", msg(b"GET http://a/ HTTP/1.1", b"Host: a b"), 400),
    ("host_userinfo", host(b"Host: u@a"), 400),
    ("host_bad_port", host(b"Host: a:8x"), 400),
    ("host_two_ports", host(b"Host: a:80:90"), 400),
    ("host_slash", host(b"Host: a/b"), 400),
    ("host_ipv6_unclosed", host(b"Host: [::1"), 400),
    ("host_port_only", host(b"Host: :80"), 400),
    ("host_non_ascii", host(b"Host: caf\xc3\xa9"), 400),
    # Expect (RFC 9110 §10.1.1): only 100-continue
    ("expect_200_ok", get(b"Expect: 200-ok"), 417),
    ("expect_typo", get(b"Expect: 100-continu"), 417),
    ("expect_with_param", get(b"Expect: 100-continue;x=1"), 417),
    ("expect_continue_and_other", get(b"Expect: 100-continue, foo"), 417),
    ("expect_second_line", get(b"Expect: 100-continue", b"Expect: x"), 417),
    ("expect_unknown_with_body", post(CL5, b"Expect: foo", body=b"hello"), 417),
    ("expect_unknown_http10", msg(b"POST / HTTP/1.0", CL5, b"Expect: foo", body=b"hello"), 417),
    # size limits (414, 431)
    ("request_line_limit_plus_1", line(b"GET /" + b"a" * (LIMIT - 13) + b" HTTP/1.1"), 414),
    ("request_line_unterminated", b"GET /" + b"a" * 9000, 414),
    ("header_count_200", get(MANY[:-2]), 431),
    ("header_field_limit_plus_1", get(b"X: " + b"v" * (LIMIT - 2)), 431),
    ("header_field_unterminated", b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 9000, 431),
    ("head_over_64k", get(BIG[:-2]), 431),
    # body over --limit-request-body (413)
    ("cl_over_limit", cl(b"%d" % (BODY_LIMIT + 1), body=b"x" * (BODY_LIMIT + 1)), 413),
    ("cl_over_limit_no_body_sent", cl(b"1000000", body=b""), 413),
    ("cl_over_limit_expect", post(b"Content-Length: 2048", b"Expect: 100-continue"), 413),
    ("cl_max_u64", cl(b"18446744073709551615"), 413),
    ("chunked_over_limit_one", ch(b"401\r\n" + b"x" * 1025 + b"\r\n0\r\n\r\n"), 413),
    ("chunked_over_limit_many", ch(OVER), 413),
]

# (id, raw bytes of one or more pipelined requests, [(X-Path, body) expected per response])
POSITIVE: list[tuple[str, bytes, list[tuple[str, bytes]]]] = [
    (
        "chunked_with_extensions_and_trailers",
        msg(
            b"POST /c HTTP/1.1",
            b"Host: a",
            TE,
            b"Connection: close",
            body=b'5;name=val\r\nhello\r\n6 ; q="a \\"b\\"" ; flag\r\n world\r\n'
            b"0;last\r\nX-Trailer: t\r\nX-Empty:\r\n\r\n",
        ),
        [("/c", b"hello world")],
    ),
    (
        "cl_repeated_identical",
        post(CL5, b"content-length: 5", b"Connection: close", body=b"hello"),
        [("/", b"hello")],
    ),
    (
        "cl_identical_list",
        post(b"Content-Length: 5, 5", b"Connection: close", body=b"hello"),
        [("/", b"hello")],
    ),
    (
        "cl_leading_zeros",
        post(b"Content-Length: 007", b"Connection: close", body=b"abcdefg"),
        [("/", b"abcdefg")],
    ),
    (
        "te_case_insensitive_with_empty_elements",
        post(b"Transfer-Encoding: , CHUNKED", b"Connection: close", body=CHUNKS),
        [("/", b"hello")],
    ),
    (
        "leading_empty_lines_at_the_allowance",
        b"\r\n\n\r\n\n\r\n\n\r\n\n" + get(b"Connection: close"),
        [("/", b"")],
    ),
    (
        "pipelined_after_chunked_body",
        msg(b"POST /first HTTP/1.1", b"Host: a", TE, body=b"5\r\nhello\r\n0\r\nX-T: v\r\n\r\n")
        + msg(b"GET /second HTTP/1.1", b"Host: a", b"Connection: close"),
        [("/first", b"hello"), ("/second", b"")],
    ),
    (
        "pipelined_after_body_that_looks_like_a_request",
        msg(b"POST /first HTTP/1.1", b"Host: a", b"Content-Length: %d" % len(SMUGGLED))
        + SMUGGLED
        + msg(b"GET /second HTTP/1.1", b"Host: a", b"Connection: close"),
        [("/first", SMUGGLED), ("/second", b"")],
    ),
    (
        "chunked_body_at_the_limit",
        post(TE, b"Connection: close", body=b"400\r\n" + b"x" * BODY_LIMIT + b"\r\n0\r\n\r\n"),
        [("/", b"x" * BODY_LIMIT)],
    ),
    (
        "cl_body_at_the_limit",
        post(b"Content-Length: %d" % BODY_LIMIT, b"Connection: close", body=b"y" * BODY_LIMIT),
        [("/", b"y" * BODY_LIMIT)],
    ),
    (
        "request_line_at_the_limit",
        msg(b"GET /" + b"a" * (LIMIT - 14) + b" HTTP/1.1", b"Host: a", b"Connection: close"),
        [("/" + "a" * (LIMIT - 14), b"")],
    ),
    (
        "header_field_at_the_limit",
        get(b"X: " + b"v" * (LIMIT - 3), b"Connection: close"),
        [("/", b"")],
    ),
    (
        "host_empty_origin_form",
        host(b"Host:", b"Connection: close"),
        [("/", b"")],
    ),
    (
        "http10_without_host",
        msg(b"GET /old HTTP/1.0"),
        [("/old", b"")],
    ),
]


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(module_servers) -> Server:
    return module_servers("apps.counting:app", "--limit-request-body", str(BODY_LIMIT))


def app_calls(server: Server) -> int:
    with RawConn(server.addr) as c:
        c.send(b"GET /_count HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        resp = c.read_response()
    assert resp.status == 200, resp
    return int(resp.body)


def exchange(server: Server, raw: bytes) -> list[Response]:
    """Send ``raw`` on a fresh connection, read until the server closes, and split what came
    back into responses (1xx included)."""
    with RawConn(server.addr, timeout=IO_TIMEOUT) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the whole request is sent
        try:
            data = c.read_to_eof()
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection open {IO_TIMEOUT}s; got {c.buf[:300]!r}"
            ) from None
        c.buf = data
        responses = []
        while c.buf:
            responses.append(c.read_response(skip_1xx=False))
    return responses


def rejections(server: Server) -> int:
    """How many info-level ``rejected:`` lines the server has logged so far."""
    return len(re.findall(r"\[INFO\] \S+ rejected: \d{3} ", server.stderr_text()))


def check_rejected(server: Server, raw: bytes, status: int) -> None:
    before = app_calls(server)
    logged = rejections(server)
    responses = exchange(server, raw)
    statuses = [r.status for r in responses]
    assert len(responses) == 1, f"expected one response, got {statuses}"
    resp = responses[0]
    assert resp.status == status, (resp.status, resp.body[:200])
    assert resp.closes, f"no Connection: close on a {resp.status}"
    assert not resp.has_header("X-Call"), "the answer came from the app"
    assert wait_until(lambda: rejections(server) > logged), "no 'rejected:' log line"
    last = re.findall(r"rejected: (\d{3}) ", server.stderr_text())[-1]
    assert last == str(status), f"logged {last}, answered {status}"
    assert app_calls(server) == before, "the app was called for a malformed request"


# --- tests ------------------------------------------------------------------------------------


def test_table_sizes() -> None:
    ids = [c[0] for c in NEGATIVE] + [c[0] for c in POSITIVE]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(NEGATIVE) >= 80


@pytest.mark.parametrize(("raw", "status"), [c[1:] for c in NEGATIVE], ids=[c[0] for c in NEGATIVE])
def test_rejected(server: Server, raw: bytes, status: int) -> None:
    check_rejected(server, raw, status)


# Rows that stop inside a line: appended bytes would extend that line, not follow it.
UNTERMINATED = {"request_line_unterminated", "header_field_unterminated"}
SMUGGLE_ROWS = [c for c in NEGATIVE if c[0] not in UNTERMINATED]


@pytest.mark.parametrize(
    ("raw", "status"), [c[1:] for c in SMUGGLE_ROWS], ids=[c[0] for c in SMUGGLE_ROWS]
)
def test_smuggled_request_is_never_served(server: Server, raw: bytes, status: int) -> None:
    # A complete, valid request right behind the bad one: it must not be answered.
    check_rejected(server, raw + SMUGGLED, status)


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in POSITIVE], ids=[c[0] for c in POSITIVE]
)
def test_valid_shapes_reach_the_app(
    server: Server, raw: bytes, expected: list[tuple[str, bytes]]
) -> None:
    before = app_calls(server)
    responses = exchange(server, raw)
    responses = [r for r in responses if r.status >= 200]
    got = [(r.status, r.header("X-Path"), r.body) for r in responses]
    assert got == [(200, path, body) for path, body in expected]
    assert app_calls(server) == before + len(expected)


def test_absolute_form_target_overrides_host(server: Server) -> None:
    raw = msg(b"GET http://other.example:81/p?q=1 HTTP/1.1", b"Host: a", b"Connection: close")
    before = app_calls(server)
    (resp,) = exchange(server, raw)
    assert resp.status == 200
    assert (resp.header("X-Host"), resp.header("X-Path"), resp.header("X-Query")) == (
        "other.example:81",
        "/p",
        "q=1",
    )
    assert app_calls(server) == before + 1


def test_expect_continue_body_is_framed(server: Server) -> None:
    raw = post(CL5, b"Expect: 100-continue", b"Connection: close", body=b"hello")
    responses = exchange(server, raw)
    final = [r for r in responses if r.status >= 200]
    assert [(r.status, r.body) for r in final] == [(200, b"hello")]
    assert all(r.status == 100 for r in responses[:-1])


def test_rejections_close_even_after_a_served_request(server: Server) -> None:
    # A good request first on a keep-alive connection, then a smuggling attempt, then a
    # request that must never be read: one 200, one 400, nothing more.
    raw = (
        get() + post(b"Content-Length: 39", TE, body=HIDE) + msg(b"GET /after HTTP/1.1", b"Host: a")
    )
    before = app_calls(server)
    responses = exchange(server, raw)
    assert [r.status for r in responses] == [200, 400]
    assert responses[1].closes
    assert app_calls(server) == before + 1


def test_error_response_is_well_formed(server: Server) -> None:
    (resp,) = exchange(server, post(CL5, TE, body=HIDE))
    assert resp.version == "HTTP/1.1"
    assert resp.reason == "Bad Request"
    assert resp.framing == "length"
    assert resp.header("Content-Length") == str(len(resp.body))
    assert re.fullmatch(rb"[ -~\n]*", resp.body), resp.body


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n", b"5\r\nhelloXX0\r\n\r\n", b"3\r\nhello\r\n0\r\n\r\n", b"0\r\nX-T: a\r\n b\r\n\r\n"],
    ids=["bad_size", "missing_crlf", "data_longer_than_size", "trailer_obs_fold"],
)
def test_body_error_after_100_continue_is_a_400(server: Server, body: bytes) -> None:
    # With Expect: 100-continue the app is called before the body arrives (it decides whether
    # to read it), so here the framing error surfaces inside wsgi.input.read(). The request is
    # still the client's fault: RFC 9110 §15.5.1 makes invalid framing a 400, not a 5xx, and
    # nothing behind it may be served.
    raw = post(TE, b"Expect: 100-continue", body=body) + SMUGGLED
    before = app_calls(server)
    responses = exchange(server, raw)
    final = [r for r in responses if r.status >= 200]
    assert [r.status for r in responses if r.status < 200] in ([], [100])
    assert len(final) == 1, [r.status for r in responses]
    assert final[0].status == 400, (final[0].status, final[0].body[:200])
    assert final[0].closes
    assert app_calls(server) == before + 1, "only the first request may reach the app"
