//! The checks behind the cargo-fuzz targets of `ferrowsgi-proto`.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line wrapper around
//! [`check_head`], [`check_head_split`], [`check_body`],
//! [`check_fastcgi`], [`check_ajp`] or [`check_proxy`]. Keeping the
//! invariants in this library means the seed corpus and the minimised crash
//! reproducers can be replayed on the stable toolchain with plain
//! `cargo test` (see the tests at the bottom), without libFuzzer or nightly
//! flags.
//!
//! Every check panics (which libFuzzer reports as a crash) when an invariant
//! breaks; a panic inside `ferrowsgi-proto` itself is of course a crash too.

pub mod fastcgi;
pub use fastcgi::check_fastcgi;
pub mod ajp;
pub use ajp::check_ajp;

pub mod scgi_uwsgi;
pub use scgi_uwsgi::{check_scgi, check_uwsgi};

use ferrowsgi_proto::proxy::{
    parse_proxy_header, ProxyParsed, DEFAULT_MAX_V2_LEN, V1_MAX_LEN, V2_FIXED_LEN, V2_SIGNATURE,
};
use ferrowsgi_proto::{
    parse_head, write_chunk, BodyDecoder, BodyError, BodyKind, Limits, ParseError, Parsed,
    RequestHead, Version, LAST_CHUNK,
};

/// Small limits, so that the fuzzer reaches every limit check (414, 431) with
/// short inputs, and so that the 64-slot stack path for headers is exercised
/// next to the default 100-slot heap fallback.
pub fn tiny_limits() -> Limits {
    Limits {
        max_request_line: 32,
        max_header_count: 4,
        max_header_field_size: 24,
        max_head_size: 96,
        max_chunk_ext_size: 8,
        max_trailer_size: 24,
    }
}

/// Whether `e` is one of the size-limit errors (414 / 431).
fn is_limit_error(e: &ParseError) -> bool {
    matches!(
        e,
        ParseError::UriTooLong
            | ParseError::HeadTooLarge
            | ParseError::HeaderFieldTooLarge
            | ParseError::TooManyHeaders
    )
}

/// Lossy text of some bytes, for assertion messages.
fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

// ---------------------------------------------------------------------------
// head
// ---------------------------------------------------------------------------

/// Everything observable about a parsed head except its raw bytes, so that two
/// heads parsed from differently spelt (but equivalent) input can be compared.
#[derive(Debug, PartialEq, Eq)]
pub struct HeadView {
    method: Vec<u8>,
    target: Vec<u8>,
    path: Vec<u8>,
    query: Vec<u8>,
    version: Version,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    host: Option<Vec<u8>>,
    scheme: Option<Vec<u8>>,
    body: BodyKind,
    keep_alive: bool,
    expects_continue: bool,
    content_type: Option<Vec<u8>>,
    content_length_raw: Option<Vec<u8>>,
}

impl HeadView {
    /// The view of `h`.
    pub fn of(h: &RequestHead) -> HeadView {
        HeadView {
            method: h.method().to_vec(),
            target: h.target().to_vec(),
            path: h.path().to_vec(),
            query: h.query().to_vec(),
            version: h.version(),
            headers: h.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
            host: h.host().map(<[u8]>::to_vec),
            scheme: h.scheme().map(<[u8]>::to_vec),
            body: h.body(),
            keep_alive: h.keep_alive(),
            expects_continue: h.expects_continue(),
            content_type: h.content_type().map(<[u8]>::to_vec),
            content_length_raw: h.content_length_raw().map(<[u8]>::to_vec),
        }
    }
}

/// Re-serialises an accepted head canonically: `method SP target SP version
/// CRLF`, then `name ": " value CRLF` per header line in order, then `CRLF`.
pub fn serialise(h: &RequestHead) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.as_bytes().len() + 2 * h.header_count() + 8);
    out.extend_from_slice(h.method());
    out.push(b' ');
    out.extend_from_slice(h.target());
    out.push(b' ');
    out.extend_from_slice(h.version().as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in h.headers() {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Whether the canonical form of `h` fits `limits` (line lengths exclude CRLF).
fn canonical_fits(h: &RequestHead, canon: &[u8], limits: &Limits) -> bool {
    let line = h.method().len() + 1 + h.target().len() + 1 + 8;
    line <= limits.max_request_line
        && h.header_count() <= limits.max_header_count
        && h.headers()
            .all(|(n, v)| n.len() + 2 + v.len() <= limits.max_header_field_size)
        && canon.len() <= limits.max_head_size
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Internal consistency of the accessors of one accepted head.
fn check_accessors(h: &RequestHead, limits: &Limits) {
    let ctx = show(h.as_bytes());
    assert!(
        !h.method().is_empty() && h.method().iter().all(|&b| is_tchar(b)),
        "method not a token: {ctx}"
    );
    assert_ne!(h.method(), b"CONNECT", "CONNECT accepted: {ctx}");
    let t = h.target();
    assert!(!t.is_empty(), "empty target: {ctx}");
    assert!(
        t.iter().all(|&b| b > 0x20 && b < 0x7f && b != b'#'),
        "target holds a forbidden byte: {ctx}"
    );
    if t[0] == b'/' {
        // origin-form: target == path ["?" query]
        let mut rebuilt = h.path().to_vec();
        if t.contains(&b'?') {
            rebuilt.push(b'?');
            rebuilt.extend_from_slice(h.query());
        } else {
            assert!(h.query().is_empty(), "query without '?': {ctx}");
        }
        assert_eq!(rebuilt, t, "path/query do not rebuild the target: {ctx}");
        assert!(h.scheme().is_none(), "scheme on origin-form: {ctx}");
    } else if t == b"*" {
        assert_eq!(
            h.method(),
            b"OPTIONS",
            "asterisk-form without OPTIONS: {ctx}"
        );
        assert_eq!((h.path(), h.query()), (&b"*"[..], &b""[..]), "{ctx}");
    } else {
        // absolute-form: the authority wins over Host.
        let scheme = h.scheme().expect("absolute-form without a scheme");
        let lower = t.to_ascii_lowercase();
        assert!(
            lower.starts_with(scheme) && lower[scheme.len()..].starts_with(b"://"),
            "scheme does not match the target: {ctx}"
        );
        let host = h.host().expect("absolute-form without host");
        assert!(
            !host.is_empty(),
            "absolute-form with empty authority: {ctx}"
        );
        assert_eq!(
            &t[scheme.len() + 3..scheme.len() + 3 + host.len()],
            host,
            "host is not the target's authority: {ctx}"
        );
        assert!(h.path() == b"/" || h.path().starts_with(b"/"), "{ctx}");
    }
    if h.version() == Version::Http11 {
        assert!(h.host().is_some(), "HTTP/1.1 accepted without host: {ctx}");
    }
    if h.expects_continue() {
        assert_eq!(h.version(), Version::Http11, "100-continue in 1.0: {ctx}");
    }
    assert_eq!(h.header_count(), h.headers().len(), "{ctx}");
    assert!(h.header_count() <= limits.max_header_count, "{ctx}");
    assert!(h.as_bytes().len() <= limits.max_head_size, "{ctx}");
    let hosts = h
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"host"))
        .count();
    assert!(hosts <= 1, "several Host lines accepted: {ctx}");
    for (n, v) in h.headers() {
        assert!(
            !n.is_empty() && n.iter().all(|&b| is_tchar(b)),
            "header name not a token: {ctx}"
        );
        assert!(
            v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
            "control byte in header value: {ctx}"
        );
        assert!(
            !v.starts_with(b" ")
                && !v.starts_with(b"\t")
                && !v.ends_with(b" ")
                && !v.ends_with(b"\t"),
            "header value not trimmed: {ctx}"
        );
    }
    assert_eq!(h.content_type(), h.header(b"content-type"), "{ctx}");
    assert!(
        h.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .all(|(_, v)| Some(v) == h.content_type()),
        "differing Content-Type lines accepted: {ctx}"
    );
    let has = |name: &[u8]| h.headers().any(|(n, _)| n.eq_ignore_ascii_case(name));
    match h.body() {
        BodyKind::Empty => {
            assert!(
                !has(b"content-length") && !has(b"transfer-encoding"),
                "{ctx}"
            );
            assert!(h.content_length_raw().is_none(), "{ctx}");
        }
        BodyKind::Length(n) => {
            assert!(!has(b"transfer-encoding"), "CL+TE accepted: {ctx}");
            let raw = h.content_length_raw().expect("Length without raw value");
            assert!(raw.iter().all(u8::is_ascii_digit), "{ctx}");
            let parsed = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            assert_eq!(parsed, Some(n), "raw Content-Length differs: {ctx}");
        }
        BodyKind::Chunked => {
            assert!(!has(b"content-length"), "CL+TE accepted: {ctx}");
            assert_eq!(h.version(), Version::Http11, "chunked in 1.0: {ctx}");
            assert!(h.content_length_raw().is_none(), "{ctx}");
        }
    }
}

/// Parses `data` with `limits` and checks everything that must hold for that
/// one outcome. Returns the outcome.
pub fn check_head_with(data: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let result = parse_head(data, limits);
    // Deterministic: the same bytes always give the same answer.
    assert_eq!(parse_head(data, limits), result);
    let Ok(Parsed::Complete { head, consumed }) = &result else {
        return result;
    };
    let (head, consumed) = (head, *consumed);
    let ctx = show(data);
    assert!(consumed <= data.len(), "consumed {consumed} > len: {ctx}");
    assert!(consumed > 0, "complete head of 0 bytes: {ctx}");
    let raw = head.as_bytes();
    assert!(
        data[..consumed].ends_with(raw),
        "as_bytes is not the end of the consumed bytes: {ctx}"
    );
    assert!(
        data[..consumed - raw.len()]
            .iter()
            .all(|&b| b == b'\r' || b == b'\n'),
        "skipped bytes are not empty lines: {ctx}"
    );
    assert!(
        raw.ends_with(b"\n\n") || raw.ends_with(b"\n\r\n"),
        "head does not end with an empty line: {ctx}"
    );
    // Bytes after the head are never looked at.
    assert_eq!(
        parse_head(&data[..consumed], limits),
        result,
        "result depends on bytes after the head: {ctx}"
    );
    check_accessors(head, limits);

    // Differential: the canonical re-serialisation parses to the same head.
    let view = HeadView::of(head);
    let canon = serialise(head);
    let relaxed = Limits {
        max_request_line: canon.len(),
        max_header_field_size: canon.len(),
        max_head_size: canon.len(),
        max_header_count: limits.max_header_count.max(head.header_count()),
        ..limits.clone()
    };
    let mut limit_sets = vec![relaxed];
    if canonical_fits(head, &canon, limits) {
        limit_sets.push(limits.clone());
    }
    for l in &limit_sets {
        match parse_head(&canon, l) {
            Ok(Parsed::Complete {
                head: again,
                consumed: c2,
            }) => {
                assert_eq!(c2, canon.len(), "canonical head not fully consumed: {ctx}");
                assert_eq!(
                    HeadView::of(&again),
                    view,
                    "canonical form parses differently: {ctx} vs {}",
                    show(&canon)
                );
                assert_eq!(serialise(&again), canon, "canonical form not idempotent");
            }
            other => panic!(
                "canonical form of an accepted head is not accepted: {ctx} -> {} -> {other:?}",
                show(&canon)
            ),
        }
    }
    result
}

/// Target `head`: `parse_head` on arbitrary bytes with the default and the
/// tiny limits; see `docs/ROBUSTNESS.md` for the list of invariants.
pub fn check_head(data: &[u8]) {
    let default = check_head_with(data, &Limits::default());
    let tiny = check_head_with(data, &tiny_limits());
    let ctx = show(data);
    // Monotonic in the limits: every tiny limit is below the default one.
    match (&tiny, &default) {
        (Ok(Parsed::Complete { .. }), d) => {
            assert_eq!(d, &tiny, "tiny limits accept, default limits differ: {ctx}")
        }
        (Ok(Parsed::Partial), d) => {
            assert_eq!(d, &Ok(Parsed::Partial), "tiny partial, default not: {ctx}")
        }
        (Err(e), d) if !is_limit_error(e) => {
            assert_eq!(d, &tiny, "non-limit error depends on the limits: {ctx}")
        }
        (Err(_), _) => {}
    }
    if let (Ok(Parsed::Complete { .. }), Err(e)) = (&default, &tiny) {
        assert!(
            is_limit_error(e),
            "default accepts but tiny rejects with a non-limit error {e:?}: {ctx}"
        );
    }
    // The bytes after a complete head start the next request (pipelining).
    if let Ok(Parsed::Complete { consumed, .. }) = default {
        let _ = check_head_with(&data[consumed..], &Limits::default());
    }
}

// ---------------------------------------------------------------------------
// head_split
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), seeded from the input, so that a
/// crash reproduces from the input alone.
struct Rng(u64);

impl Rng {
    fn from_bytes(data: &[u8]) -> Rng {
        // FNV-1a
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r % n as u64) as usize
    }
}

/// Where to cut `data`: every offset for short inputs; for longer ones the
/// ends, both sides of every line ending (up to 64), both sides of the end of
/// the head, and 16 offsets chosen from the input's hash. Sorted, deduplicated.
pub fn split_points(data: &[u8], whole: &Result<Parsed, ParseError>) -> Vec<usize> {
    let n = data.len();
    if n <= 320 {
        return (0..=n).collect();
    }
    let mut pts = vec![0, 1, 2, n - 1, n];
    for (i, _) in data
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n' || b == b'\r')
        .take(64)
    {
        pts.extend([i, i + 1]);
    }
    if let Ok(Parsed::Complete { consumed, .. }) = whole {
        pts.extend([consumed - 1, *consumed, consumed + 1]);
    }
    let mut rng = Rng::from_bytes(data);
    for _ in 0..16 {
        pts.push(rng.below(n + 1));
    }
    pts.retain(|&p| p <= n);
    pts.sort_unstable();
    pts.dedup();
    pts
}

/// Checks one set of limits: the input fed as growing prefixes.
fn check_split_with(data: &[u8], limits: &Limits) {
    let whole = parse_head(data, limits);
    let ctx = show(data);
    for p in split_points(data, &whole) {
        let part = parse_head(&data[..p], limits);
        match &whole {
            Ok(Parsed::Complete { consumed, .. }) => {
                if p < *consumed {
                    assert_eq!(
                        part,
                        Ok(Parsed::Partial),
                        "prefix of {p} bytes of an accepted head is not Partial: {ctx}"
                    );
                } else {
                    assert_eq!(
                        part, whole,
                        "prefix of {p} bytes (past the head) differs from the whole: {ctx}"
                    );
                }
            }
            Ok(Parsed::Partial) => assert_eq!(
                part,
                Ok(Parsed::Partial),
                "prefix of {p} bytes of a Partial input is not Partial: {ctx}"
            ),
            Err(_) => assert!(
                !matches!(part, Ok(Parsed::Complete { .. })),
                "prefix of {p} bytes complete though the whole is rejected: {ctx}"
            ),
        }
    }
}

/// Reads `data` as a connection would: head, body (Content-Length or chunked,
/// through [`BodyDecoder`]), next head, … Only checks that it never panics
/// and always makes progress.
fn simulate_connection(data: &[u8], limits: &Limits) {
    let mut rest = data;
    for _ in 0..16 {
        let Ok(Parsed::Complete { head, consumed }) = parse_head(rest, limits) else {
            return;
        };
        assert!(consumed > 0 && consumed <= rest.len());
        rest = &rest[consumed..];
        let mut dec = BodyDecoder::new(head.body(), limits);
        let mut out = Vec::new();
        let Ok(used) = dec.decode(rest, &mut out, usize::MAX) else {
            return;
        };
        assert!(used <= rest.len() && out.len() <= used);
        if !dec.is_done() || !head.keep_alive() {
            return;
        }
        rest = &rest[used..];
    }
}

/// Target `head_split`: the input fed as growing prefixes must give Partial
/// until the head is complete and then exactly the whole input's result.
pub fn check_head_split(data: &[u8]) {
    check_split_with(data, &Limits::default());
    check_split_with(data, &tiny_limits());
    simulate_connection(data, &Limits::default());
    simulate_connection(data, &tiny_limits());
}

// ---------------------------------------------------------------------------
// body
// ---------------------------------------------------------------------------

/// Bytes of configuration in front of a `body` input.
pub const BODY_CONFIG_LEN: usize = 8;

/// How a `body` input configures the run: its first [`BODY_CONFIG_LEN`] bytes.
///
/// * byte 0: bit 0 chunked (else Content-Length); bit 1 tiny limits; bit 2 a
///   huge Content-Length (`u64::MAX - n`);
/// * bytes 1–2: Content-Length `n`, little-endian;
/// * byte 3: `max_out` per call, `byte + 1`, or unlimited for 255;
/// * bytes 4–7: piece sizes, used in turn: 255 means "all the rest", other
///   values `max(1, byte)`.
#[derive(Debug)]
pub struct BodyConfig {
    /// The framing under test.
    pub kind: BodyKind,
    /// The decoder limits.
    pub limits: Limits,
    /// `max_out` for the piecewise run.
    pub max_out: usize,
    /// Piece sizes, used cyclically.
    pub pieces: [usize; 4],
}

impl BodyConfig {
    /// Splits `data` into configuration and body bytes.
    pub fn parse(data: &[u8]) -> Option<(BodyConfig, &[u8])> {
        if data.len() < BODY_CONFIG_LEN {
            return None;
        }
        let (c, body) = data.split_at(BODY_CONFIG_LEN);
        let n = u64::from(u16::from_le_bytes([c[1], c[2]]));
        let kind = if c[0] & 1 != 0 {
            BodyKind::Chunked
        } else if c[0] & 4 != 0 {
            BodyKind::Length(u64::MAX - n)
        } else {
            BodyKind::Length(n)
        };
        let limits = if c[0] & 2 != 0 {
            tiny_limits()
        } else {
            Limits::default()
        };
        let max_out = if c[3] == 255 {
            usize::MAX
        } else {
            usize::from(c[3]) + 1
        };
        let piece = |b: u8| {
            if b == 255 {
                usize::MAX
            } else {
                usize::from(b).max(1)
            }
        };
        let pieces = [piece(c[4]), piece(c[5]), piece(c[6]), piece(c[7])];
        Some((
            BodyConfig {
                kind,
                limits,
                max_out,
                pieces,
            },
            body,
        ))
    }
}

/// Decodes `body` in one call with unlimited output.
fn decode_all(
    kind: BodyKind,
    limits: &Limits,
    body: &[u8],
) -> (Result<usize, BodyError>, Vec<u8>, BodyDecoder) {
    let mut d = BodyDecoder::new(kind, limits);
    let mut out = Vec::new();
    let r = d.decode(body, &mut out, usize::MAX);
    (r, out, d)
}

/// Decodes `body` the way a connection does: bytes arrive in pieces, the
/// decoder is offered all unconsumed bytes each time, and each call may emit
/// at most `max_out` bytes. Returns the total consumed (or the error), the
/// output and the decoder.
fn decode_pieces(
    cfg: &BodyConfig,
    body: &[u8],
) -> (Result<usize, BodyError>, Vec<u8>, BodyDecoder) {
    let ctx = show(body);
    let mut d = BodyDecoder::new(cfg.kind, &cfg.limits);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut total = 0;
    let mut turn = 0;
    loop {
        // An empty read never changes anything.
        let before = out.len();
        assert_eq!(d.decode(&[], &mut out, cfg.max_out), Ok(0), "{ctx}");
        assert_eq!(out.len(), before, "output from empty input: {ctx}");

        if fed < body.len() {
            let size = cfg.pieces[turn % cfg.pieces.len()];
            turn += 1;
            let end = fed.saturating_add(size).min(body.len());
            pending.extend_from_slice(&body[fed..end]);
            fed = end;
        }
        loop {
            let before = out.len();
            match d.decode(&pending, &mut out, cfg.max_out) {
                Ok(n) => {
                    let wrote = out.len() - before;
                    assert!(
                        n <= pending.len(),
                        "consumed {n} of {}: {ctx}",
                        pending.len()
                    );
                    assert!(wrote <= cfg.max_out, "wrote {wrote} > max_out: {ctx}");
                    assert!(wrote <= n, "wrote more than consumed: {ctx}");
                    if n == 0 {
                        assert!(
                            pending.is_empty() || d.is_done(),
                            "no progress on {} pending bytes: {ctx}",
                            pending.len()
                        );
                        break;
                    }
                    pending.drain(..n);
                    total += n;
                    if d.is_done() {
                        break;
                    }
                }
                Err(e) => {
                    // Failed decoders stay failed and write nothing more.
                    let before = out.len();
                    assert_eq!(d.decode(&pending, &mut out, cfg.max_out), Err(e));
                    assert_eq!(d.decode(&[], &mut out, cfg.max_out), Err(e));
                    assert_eq!(out.len(), before);
                    return (Err(e), out, d);
                }
            }
        }
        if d.is_done() || fed == body.len() {
            return (Ok(total), out, d);
        }
    }
}

/// Target `body`: [`BodyDecoder`] over arbitrary bytes for Content-Length and
/// chunked framing, whole versus piecewise, plus a chunked round trip.
pub fn check_body(data: &[u8]) {
    let Some((cfg, body)) = BodyConfig::parse(data) else {
        return;
    };
    let ctx = show(data);
    let (whole, whole_out, whole_dec) = decode_all(cfg.kind, &cfg.limits, body);
    let whole_done = whole_dec.is_done();

    match (cfg.kind, whole) {
        (BodyKind::Length(len), r) => {
            let want = usize::try_from(len).unwrap_or(usize::MAX).min(body.len());
            assert_eq!(r, Ok(want), "{ctx}");
            assert_eq!(whole_out, &body[..want], "{ctx}");
            assert_eq!(whole_done, want as u64 == len, "{ctx}");
            assert_eq!(whole_dec.remaining_hint(), Some(len - want as u64), "{ctx}");
        }
        (_, Ok(n)) => {
            assert!(n <= body.len(), "consumed {n} > {}: {ctx}", body.len());
            assert!(whole_out.len() <= n, "{ctx}");
            if whole_done {
                assert_eq!(whole_dec.remaining_hint(), Some(0), "{ctx}");
            } else {
                // Not done and no error: everything offered was consumed.
                assert_eq!(n, body.len(), "stopped early without error: {ctx}");
                assert_eq!(whole_dec.remaining_hint(), None, "{ctx}");
            }
        }
        (_, Err(e)) => {
            let mut d = whole_dec.clone();
            let mut out = Vec::new();
            assert_eq!(
                d.decode(body, &mut out, usize::MAX),
                Err(e),
                "not sticky: {ctx}"
            );
            assert!(out.is_empty(), "{ctx}");
            assert!(!whole_done, "{ctx}");
        }
    }

    // max_out = 0: framing may be consumed, but no body byte is written.
    {
        let mut d = BodyDecoder::new(cfg.kind, &cfg.limits);
        let mut out = Vec::new();
        if let Ok(n) = d.decode(body, &mut out, 0) {
            assert!(n <= body.len(), "{ctx}");
        }
        assert!(out.is_empty(), "max_out 0 wrote output: {ctx}");
    }

    // Piecewise equals whole.
    let (pieces, pieces_out, pieces_dec) = decode_pieces(&cfg, body);
    assert_eq!(pieces, whole, "piecewise result differs: {ctx} {cfg:?}");
    assert_eq!(
        pieces_out, whole_out,
        "piecewise output differs: {ctx} {cfg:?}"
    );
    assert_eq!(
        pieces_dec.is_done(),
        whole_done,
        "piecewise done differs: {ctx}"
    );

    if cfg.kind != BodyKind::Chunked || !whole_done {
        return;
    }
    let Ok(end) = whole else { unreachable!() };
    // The body ends exactly at `end`: its bytes alone decode the same, one
    // byte fewer is not a whole body.
    let (r, out, d) = decode_all(cfg.kind, &cfg.limits, &body[..end]);
    assert_eq!((r, &out, d.is_done()), (Ok(end), &whole_out, true), "{ctx}");
    let (r, _, d) = decode_all(cfg.kind, &cfg.limits, &body[..end - 1]);
    assert!(r.is_ok() && !d.is_done(), "body done before its end: {ctx}");

    // Round trip: re-encoded with write_chunk + LAST_CHUNK, it decodes to the
    // same bytes, consuming exactly the encoding.
    let mut wire = Vec::new();
    let mut rest = &whole_out[..];
    let mut turn = 0;
    while !rest.is_empty() {
        let size = cfg.pieces[turn % cfg.pieces.len()].min(rest.len());
        turn += 1;
        write_chunk(&mut wire, &rest[..size]);
        rest = &rest[size..];
    }
    wire.extend_from_slice(LAST_CHUNK);
    for limits in [&Limits::default(), &cfg.limits] {
        let (r, out, d) = decode_all(BodyKind::Chunked, limits, &wire);
        assert_eq!(
            r,
            Ok(wire.len()),
            "re-encoded body: {ctx} -> {}",
            show(&wire)
        );
        assert!(d.is_done(), "re-encoded body not done: {ctx}");
        assert_eq!(out, whole_out, "re-encoded body differs: {ctx}");
    }
}

// ---------------------------------------------------------------------------
// proxy
// ---------------------------------------------------------------------------

/// A small bound on a version 2 header's length, so that the fuzzer reaches
/// the "declared length over the limit" check with short inputs.
const TINY_V2_LEN: usize = 24;

/// Target `proxy`: [`parse_proxy_header`] on arbitrary bytes with the default
/// and a tiny version 2 bound.
///
/// * Deterministic, and a complete header consumes at least one byte, at most
///   [`V1_MAX_LEN`] (v1) or 16 plus the bound (v2), and parses the same from
///   its own bytes alone (nothing after it is looked at).
/// * Resumable: every strict prefix of a complete header is `Partial` (so
///   bytes arriving one at a time give the same answer), and a partial input
///   is shorter than the longest header allowed.
/// * Errors are final: more bytes after a rejected input never make it valid.
/// * Monotonic in the bound: the tiny bound accepts only what the default one
///   accepts, identically.
/// * Addresses round-trip: a complete header's addresses, written again as a
///   v1 line or a v2 header, parse to the same addresses.
pub fn check_proxy(data: &[u8]) {
    let ctx = show(data);
    for max in [DEFAULT_MAX_V2_LEN, TINY_V2_LEN] {
        let result = parse_proxy_header(data, max);
        assert_eq!(
            parse_proxy_header(data, max),
            result,
            "not deterministic: {ctx}"
        );
        match &result {
            Ok(ProxyParsed::Complete { header, consumed }) => {
                let n = *consumed;
                assert!(n > 0 && n <= data.len(), "consumed {n}: {ctx}");
                match header.version {
                    1 => assert!(n <= V1_MAX_LEN, "v1 of {n} bytes: {ctx}"),
                    2 => assert!(n <= V2_FIXED_LEN + max, "v2 of {n} bytes: {ctx}"),
                    v => panic!("version {v}: {ctx}"),
                }
                assert_eq!(
                    parse_proxy_header(&data[..n], max),
                    result,
                    "depends on bytes after the header: {ctx}"
                );
                // Every strict prefix is Partial (sampled densely at the start,
                // where the version is decided, and near the end).
                for i in (0..n).filter(|&i| i < 64 || i + 64 > n || i % 17 == 0) {
                    assert_eq!(
                        parse_proxy_header(&data[..i], max),
                        Ok(ProxyParsed::Partial),
                        "prefix {i} of a complete header is not partial: {ctx}"
                    );
                }
                if let Some((src, dst)) = header.addresses {
                    let v1 = format!(
                        "PROXY {} {} {} {} {}\r\n",
                        if src.is_ipv4() { "TCP4" } else { "TCP6" },
                        src.ip(),
                        dst.ip(),
                        src.port(),
                        dst.port()
                    );
                    match parse_proxy_header(v1.as_bytes(), max) {
                        Ok(ProxyParsed::Complete { header: again, .. }) => {
                            assert_eq!(again.addresses, header.addresses, "v1 round trip: {ctx}")
                        }
                        other => panic!("v1 round trip {v1:?}: {other:?}: {ctx}"),
                    }
                    let mut v2 = V2_SIGNATURE.to_vec();
                    let mut block = Vec::new();
                    match (src.ip(), dst.ip()) {
                        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
                            v2.extend_from_slice(&[0x21, 0x11]);
                            block.extend_from_slice(&a.octets());
                            block.extend_from_slice(&b.octets());
                        }
                        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
                            v2.extend_from_slice(&[0x21, 0x21]);
                            block.extend_from_slice(&a.octets());
                            block.extend_from_slice(&b.octets());
                        }
                        _ => panic!("mixed address families: {ctx}"),
                    }
                    block.extend_from_slice(&src.port().to_be_bytes());
                    block.extend_from_slice(&dst.port().to_be_bytes());
                    v2.extend_from_slice(&(block.len() as u16).to_be_bytes());
                    v2.extend_from_slice(&block);
                    if let Ok(ProxyParsed::Complete { header: again, .. }) =
                        parse_proxy_header(&v2, DEFAULT_MAX_V2_LEN)
                    {
                        assert_eq!(again.addresses, header.addresses, "v2 round trip: {ctx}");
                    } else {
                        panic!("v2 round trip failed: {ctx}");
                    }
                }
            }
            Ok(ProxyParsed::Partial) => {
                assert!(
                    data.len() < V2_FIXED_LEN + max.max(V1_MAX_LEN),
                    "partial at {} bytes: {ctx}",
                    data.len()
                );
            }
            Err(e) => {
                let mut more = data.to_vec();
                more.extend_from_slice(b"\r\n\r\n");
                more.extend_from_slice(&[0u8; 64]);
                assert!(
                    parse_proxy_header(&more, max).is_err(),
                    "rejected ({e}) but valid with more bytes: {ctx}"
                );
                assert!(!e.to_string().contains('\n'), "{ctx}");
            }
        }
    }
    let default = parse_proxy_header(data, DEFAULT_MAX_V2_LEN);
    if let Ok(ProxyParsed::Complete { .. }) = parse_proxy_header(data, TINY_V2_LEN) {
        assert_eq!(
            parse_proxy_header(data, TINY_V2_LEN),
            default,
            "tiny bound accepts differently: {ctx}"
        );
    }
}

#[cfg(test)]
mod tests {
    //! Replays the seed corpus and the kept crash reproducers through the
    //! checks, on the stable toolchain: `cd fuzz && cargo test --lib`.
    use std::path::Path;

    fn files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) != Some("md"));
        v.sort();
        v
    }

    fn run(target: &str, data: &[u8]) {
        match target {
            "head" => super::check_head(data),
            "head_split" => super::check_head_split(data),
            "body" => super::check_body(data),
            "fastcgi" => super::check_fastcgi(data),
            "ajp" => super::check_ajp(data),
            "proxy" => super::check_proxy(data),
            "scgi" => super::check_scgi(data),
            "uwsgi" => super::check_uwsgi(data),
            other => panic!("unknown target {other}"),
        }
    }

    #[test]
    fn seed_corpus_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let mut n = 0;
        for target in [
            "head",
            "head_split",
            "body",
            "fastcgi",
            "ajp",
            "proxy",
            "scgi",
            "uwsgi",
        ] {
            for f in files(&root.join(target)) {
                let data = std::fs::read(&f).unwrap();
                run(target, &data);
                n += 1;
            }
        }
        assert!(n > 0, "no seed corpus found");
    }

    /// Reproducers are named `<target>-<description>`; each one that is
    /// listed as fixed in artifacts-regressions/README.md must pass. The
    /// others are known open bugs and are expected to fail.
    #[test]
    fn fixed_regressions_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts-regressions");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
        for f in files(&dir) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let fixed = readme
                .lines()
                .any(|l| l.contains(&name) && l.to_ascii_lowercase().contains("fixed"));
            let target = if name.starts_with("head_split-") {
                "head_split"
            } else if name.starts_with("ajp-") {
                "ajp"
            } else if name.starts_with("proxy-") {
                "proxy"
            } else if name.starts_with("head-") {
                "head"
            } else if name.starts_with("fastcgi-") {
                "fastcgi"
            } else if name.starts_with("scgi-") {
                "scgi"
            } else if name.starts_with("uwsgi-") {
                "uwsgi"
            } else {
                "body"
            };
            let data = std::fs::read(&f).unwrap();
            let outcome = std::panic::catch_unwind(|| run(target, &data));
            if fixed {
                assert!(outcome.is_ok(), "{name} regressed");
            }
        }
    }
}
