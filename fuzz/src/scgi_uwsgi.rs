//! Checks behind the `scgi` and `uwsgi` targets: the two gateway codecs
//! that carry a request as a block of CGI variables.
//!
//! For each input, with the default and the tiny limits:
//!
//! * the same bytes give the same answer, and the bytes after an accepted
//!   head are never looked at;
//! * every prefix of the input gives "incomplete" or the whole input's
//!   error (resumable at any byte, and an error is decided as early as the
//!   first byte that proves it);
//! * an accepted head re-encodes, from an independent decoding of its
//!   variables, to exactly the bytes consumed, and the request is a valid
//!   gateway request (method a token, an origin-form target without
//!   forbidden bytes, no control bytes in values, within the limits, never
//!   keep-alive, the body exactly `CONTENT_LENGTH`);
//! * the same variables sent through the other protocol make the same
//!   request;
//! * the tiny limits never accept what the default limits reject, and a
//!   non-limit error does not depend on the limits.

use ferrowsgi_proto::{scgi, uwsgi, BodyDecoder, BodyKind, Limits, ParseError, RequestHead};

use crate::{show, tiny_limits, HeadView};

/// The result type both codecs share.
type Outcome = Result<Option<(RequestHead, usize)>, ParseError>;

/// CGI variables, (name, value) in order.
type Vars = Vec<(Vec<u8>, Vec<u8>)>;

/// A codec's head parser.
type Parse = fn(&[u8], &Limits) -> Outcome;

/// An independent decoding of an accepted head's variables.
type DecodeVars = fn(&[u8], usize) -> Vars;

/// An encoder of variables into a codec's head.
type Encode = fn(&[(Vec<u8>, Vec<u8>)]) -> Option<Vec<u8>>;

/// What is compared between two accepted heads: the HTTP view plus the
/// server variables.
fn view(h: &RequestHead) -> (HeadView, Vars) {
    (
        HeadView::of(h),
        h.vars().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
    )
}

/// The outcome with the head replaced by its view, for comparisons.
fn summary(r: &Outcome) -> Result<Option<usize>, ParseError> {
    r.as_ref()
        .map(|o| o.as_ref().map(|(_, c)| *c))
        .map_err(|e| *e)
}

fn is_limit_error(e: &ParseError) -> bool {
    matches!(
        e,
        ParseError::HeadTooLarge | ParseError::TooManyHeaders | ParseError::HeaderFieldTooLarge
    )
}

/// An independent decoding of an SCGI netstring's variables.
fn scgi_vars(data: &[u8], consumed: usize) -> Vars {
    let colon = data.iter().position(|&b| b == b':').expect("no colon");
    let body = &data[colon + 1..consumed - 1];
    let parts: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    // "a\0b\0" splits into a, b and a final empty piece.
    assert_eq!(parts.last(), Some(&&b""[..]));
    let parts = &parts[..parts.len() - 1];
    assert_eq!(parts.len() % 2, 0, "odd number of strings accepted");
    parts
        .chunks(2)
        .map(|p| (p[0].to_vec(), p[1].to_vec()))
        .collect()
}

/// An SCGI netstring of `vars`.
pub fn scgi_encode(vars: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut s = Vec::new();
    for (n, v) in vars {
        s.extend_from_slice(n);
        s.push(0);
        s.extend_from_slice(v);
        s.push(0);
    }
    let mut out = s.len().to_string().into_bytes();
    out.push(b':');
    out.extend_from_slice(&s);
    out.push(b',');
    out
}

/// An independent decoding of a uwsgi packet's variables.
fn uwsgi_vars(data: &[u8], consumed: usize) -> Vars {
    let mut s = &data[4..consumed];
    let mut out = Vec::new();
    let take = |s: &mut &[u8]| {
        let len = usize::from(s[0]) | usize::from(s[1]) << 8;
        let v = s[2..2 + len].to_vec();
        *s = &s[2 + len..];
        v
    };
    while !s.is_empty() {
        let k = take(&mut s);
        let v = take(&mut s);
        out.push((k, v));
    }
    out
}

/// A uwsgi packet (modifier1 0) of `vars`, or `None` when they do not fit
/// the u16 lengths.
pub fn uwsgi_encode(vars: &[(Vec<u8>, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut block = Vec::new();
    for (k, v) in vars {
        for s in [k, v] {
            block.extend_from_slice(&u16::try_from(s.len()).ok()?.to_le_bytes());
            block.extend_from_slice(s);
        }
    }
    let mut out = vec![0];
    out.extend_from_slice(&u16::try_from(block.len()).ok()?.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&block);
    Some(out)
}

/// What must hold for any accepted gateway head.
fn check_accepted(h: &RequestHead, vars: &[(Vec<u8>, Vec<u8>)], limits: &Limits, ctx: &str) {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    assert!(h.is_gateway(), "{ctx}");
    assert!(
        !h.keep_alive(),
        "keep-alive on a one-request protocol: {ctx}"
    );
    assert!(
        !h.method().is_empty() && h.method().iter().all(|&b| tchar(b)),
        "method not a token: {ctx}"
    );
    let t = h.target();
    assert_eq!(t.first(), Some(&b'/'), "target not origin-form: {ctx}");
    assert!(
        t.iter().all(|&b| b > b' ' && b < 0x7f),
        "target holds a forbidden byte: {ctx}"
    );
    let mut rebuilt = h.path().to_vec();
    if t.contains(&b'?') {
        rebuilt.push(b'?');
        rebuilt.extend_from_slice(h.query());
    }
    assert_eq!(
        rebuilt, t,
        "path and query do not rebuild the target: {ctx}"
    );
    assert!(h.header_count() <= limits.max_header_count, "{ctx}");
    let bytes: usize = vars.iter().map(|(n, v)| n.len() + v.len()).sum();
    assert!(bytes <= limits.max_head_size, "{ctx}");
    for (n, v) in vars {
        assert!(!n.is_empty() && n.iter().all(|&b| tchar(b)), "{ctx}");
        assert!(
            !v.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')),
            "control byte in a value: {ctx}"
        );
    }
    for (n, v) in h.vars() {
        assert!(
            !n.starts_with(b"HTTP_"),
            "HTTP_ name as a server variable: {ctx}"
        );
        assert!(vars.iter().any(|(a, b)| a == n && b == v), "{ctx}");
    }
    let cl = vars
        .iter()
        .find(|(n, _)| n == b"CONTENT_LENGTH")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    match h.body() {
        BodyKind::Empty => assert!(cl.is_none(), "{ctx}"),
        BodyKind::Length(n) => {
            let cl = cl.expect("a length without CONTENT_LENGTH");
            assert_eq!(Some(&cl[..]), h.content_length_raw(), "{ctx}");
            assert_eq!(
                std::str::from_utf8(&cl)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok()),
                Some(n),
                "{ctx}"
            );
        }
        BodyKind::Chunked => panic!("chunked body from a gateway head: {ctx}"),
    }
}

/// The body after a head is exactly `CONTENT_LENGTH` bytes.
fn check_body_after(h: &RequestHead, rest: &[u8], limits: &Limits, ctx: &str) {
    let mut dec = BodyDecoder::new(h.body(), limits);
    let mut out = Vec::new();
    let used = dec
        .decode(rest, &mut out, usize::MAX)
        .expect("length body error");
    let want = match h.body() {
        BodyKind::Length(n) => usize::try_from(n).unwrap_or(usize::MAX).min(rest.len()),
        _ => 0,
    };
    assert_eq!(used, want, "{ctx}");
    assert_eq!(out, &rest[..want], "{ctx}");
}

/// One codec under one set of limits: determinism, prefixes, and what an
/// accepted head must be.
fn check_codec(
    data: &[u8],
    limits: &Limits,
    parse: Parse,
    decode_vars: DecodeVars,
    encode: Encode,
) -> Outcome {
    let ctx = show(data);
    let whole = parse(data, limits);
    assert_eq!(summary(&parse(data, limits)), summary(&whole), "{ctx}");
    let end = match &whole {
        Ok(Some((_, c))) => *c,
        _ => data.len(),
    };
    let points: Vec<usize> = if end <= 400 {
        (0..end).collect()
    } else {
        let mut p: Vec<usize> = (0..64).chain(end - 64..end).collect();
        p.extend((0..end).step_by(end / 64 + 1));
        p
    };
    for k in points {
        let r = summary(&parse(&data[..k], limits));
        match (&whole, r) {
            (_, Ok(None)) => {}
            (Err(e), Err(f)) if *e == f => {}
            (w, r) => panic!(
                "prefix of {k} bytes gives {r:?}, the whole {:?}: {ctx}",
                summary(w)
            ),
        }
    }
    if let Ok(Some((head, consumed))) = &whole {
        let consumed = *consumed;
        assert!(consumed > 0 && consumed <= data.len(), "{ctx}");
        let again = parse(&data[..consumed], limits);
        match &again {
            Ok(Some((h2, c2))) => {
                assert_eq!(*c2, consumed, "{ctx}");
                assert_eq!(view(h2), view(head), "{ctx}");
            }
            other => panic!("head alone gives {:?}: {ctx}", summary(other)),
        }
        let vars = decode_vars(data, consumed);
        assert_eq!(
            encode(&vars).as_deref(),
            Some(&data[..consumed]),
            "not the canonical encoding of its variables: {ctx}"
        );
        check_accepted(head, &vars, limits, &ctx);
        check_body_after(head, &data[consumed..], limits, &ctx);
    }
    whole
}

/// Runs `check_codec` with both limits and compares them.
fn check_both(data: &[u8], parse: Parse, decode_vars: DecodeVars, encode: Encode) -> Outcome {
    let default = check_codec(data, &Limits::default(), parse, decode_vars, encode);
    let tiny = check_codec(data, &tiny_limits(), parse, decode_vars, encode);
    let ctx = show(data);
    match (&tiny, &default) {
        (Ok(Some((t, tc))), Ok(Some((d, dc)))) => {
            assert_eq!((view(t), tc), (view(d), dc), "{ctx}");
        }
        (Ok(Some(_)), d) => panic!("tiny accepts, default gives {:?}: {ctx}", summary(d)),
        (Ok(None), d) => assert_eq!(summary(d), Ok(None), "{ctx}"),
        (Err(e), d) if !is_limit_error(e) => {
            assert_eq!(
                summary(d),
                Err(*e),
                "non-limit error depends on limits: {ctx}"
            )
        }
        (Err(_), _) => {}
    }
    if let (Ok(Some(_)), Err(e)) = (&default, &tiny) {
        assert!(is_limit_error(e), "default accepts, tiny says {e:?}: {ctx}");
    }
    default
}

/// Target `scgi`: [`scgi::parse_request`] on arbitrary bytes; an accepted
/// request's variables sent as a uwsgi packet make the same request.
pub fn check_scgi(data: &[u8]) {
    let r = check_both(data, scgi::parse_request, scgi_vars, |v| {
        Some(scgi_encode(v))
    });
    if let Ok(Some((head, consumed))) = r {
        let vars = scgi_vars(data, consumed);
        let limits = Limits::default();
        if let Some(packet) = uwsgi_encode(&vars) {
            if packet.len() - uwsgi::HEADER_LEN <= uwsgi::max_datasize(&limits) {
                match uwsgi::parse_request(&packet, &limits) {
                    Ok(Some((u, c))) => {
                        assert_eq!(c, packet.len());
                        assert_eq!(view(&u), view(&head), "{}", show(data));
                    }
                    other => panic!(
                        "SCGI accepts, uwsgi gives {:?}: {}",
                        summary(&other),
                        show(data)
                    ),
                }
            }
        }
    }
}

/// Target `uwsgi`: [`uwsgi::parse_request`] on arbitrary bytes; an
/// accepted request whose variables start with a non-empty
/// `CONTENT_LENGTH` and hold `SCGI=1` makes the same request over SCGI.
pub fn check_uwsgi(data: &[u8]) {
    let r = check_both(data, uwsgi::parse_request, uwsgi_vars, uwsgi_encode);
    if let Ok(Some((head, consumed))) = r {
        let vars = uwsgi_vars(data, consumed);
        let scgi_shaped = vars
            .first()
            .is_some_and(|(n, v)| n == b"CONTENT_LENGTH" && !v.is_empty())
            && vars.iter().any(|(n, v)| n == b"SCGI" && v == b"1")
            && !vars.iter().any(|(n, v)| n == b"SCGI" && v != b"1");
        if scgi_shaped {
            let netstring = scgi_encode(&vars);
            match scgi::parse_request(&netstring, &Limits::default()) {
                Ok(Some((s, c))) => {
                    assert_eq!(c, netstring.len());
                    assert_eq!(view(&s), view(&head), "{}", show(data));
                }
                other => panic!(
                    "uwsgi accepts, SCGI gives {:?}: {}",
                    summary(&other),
                    show(data)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach both the accepting path and the rejecting ones, so
    /// the checks above are exercised from the first run.
    #[test]
    fn seeds_are_accepted_and_rejected() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let outcome = |target: &str, name: &str| {
            let data = std::fs::read(root.join(target).join(format!("seed-{name}.bin")))
                .expect("seed missing: run fuzz/make_corpus.py");
            let r = match target {
                "scgi" => scgi::parse_request(&data, &Limits::default()),
                _ => uwsgi::parse_request(&data, &Limits::default()),
            };
            summary(&r)
        };
        for name in ["post", "get", "spec-example", "rebuilt-target"] {
            assert!(matches!(outcome("scgi", name), Ok(Some(_))), "{name}");
        }
        for name in ["scgi-missing", "cl-not-first", "leading-zero", "no-comma"] {
            assert!(outcome("scgi", name).is_err(), "{name}");
        }
        assert_eq!(
            outcome("scgi", "huge-length"),
            Err(ParseError::HeadTooLarge)
        );
        for name in ["post", "get-empty-length", "scgi-shaped"] {
            assert!(matches!(outcome("uwsgi", name), Ok(Some(_))), "{name}");
        }
        for name in ["modifier1", "modifier2", "short-datasize"] {
            assert!(outcome("uwsgi", name).is_err(), "{name}");
        }
        assert_eq!(outcome("uwsgi", "huge-datasize"), Ok(None));
    }
}
