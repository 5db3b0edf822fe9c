//! The `ajp` target: AJP13 request packets, body packets and the response
//! head encoder.
//!
//! Input: one configuration byte (bit 0: 1024-byte packets instead of 8192;
//! bit 1: the secret `k` is required; bit 2: tiny limits), one byte of
//! piece size for the piecewise body run (255: everything at once), then
//! the bytes a web server sends: control packets, a FORWARD_REQUEST, its
//! body packets, the next request, and so on.
//!
//! Invariants: no panic; a packet is only ever reported whole and with its
//! own length; every prefix of a packet is `Incomplete` or fails as the
//! whole does; a request's target, method and variables are well formed; a
//! body decodes to the same bytes and the same verdict whether it arrives
//! at once or in pieces, never beyond its Content-Length; a head encodes
//! into one packet that decodes back to the same status and fields, or is
//! refused as too large.

use ferrowsgi_proto::ajp::{Ajp, AjpBodyDecoder, Decoded, EncodeError};
use ferrowsgi_proto::{BodyError, BodyKind, Limits, ParseError, RequestHead};

use crate::tiny_limits;

/// Splits the input into settings and wire bytes.
fn config(data: &[u8]) -> Option<(Ajp, Limits, usize, &[u8])> {
    let (&cfg, rest) = data.split_first()?;
    let (&piece, wire) = rest.split_first()?;
    let size = if cfg & 1 != 0 { 1024 } else { 8192 };
    let mut ajp = Ajp::new(size).expect("valid packet size");
    if cfg & 2 != 0 {
        ajp = ajp.with_secret(b"k");
    }
    let limits = if cfg & 4 != 0 {
        tiny_limits()
    } else {
        Limits::default()
    };
    let piece = if piece == 255 {
        usize::MAX
    } else {
        usize::from(piece).max(1)
    };
    Some((ajp, limits, piece, wire))
}

/// The check behind `fuzz_targets/ajp.rs`.
pub fn check_ajp(data: &[u8]) {
    let Some((ajp, limits, piece, wire)) = config(data) else {
        return;
    };
    let mut pos = 0;
    // A handful of messages is enough to reach every state.
    for _ in 0..8 {
        let input = &wire[pos..];
        let whole = ajp.parse_request(input, &limits);
        check_prefixes(&ajp, &limits, input, &whole);
        match whole {
            Ok(Decoded::Incomplete) | Err(_) => return,
            Ok(Decoded::Cping { consumed }) | Ok(Decoded::Shutdown { consumed }) => {
                assert_eq!(consumed, 5);
                pos += consumed;
            }
            Ok(Decoded::Request { head, consumed }) => {
                assert!(consumed >= 5 && consumed <= input.len());
                assert_eq!(
                    consumed,
                    4 + usize::from(u16::from_be_bytes([input[2], input[3]]))
                );
                assert!(consumed <= ajp.packet_size());
                check_request(&head);
                check_encode(&ajp, &head);
                pos += consumed;
                match check_body(&ajp, head.body(), &wire[pos..], piece) {
                    Some(used) => pos += used,
                    None => return,
                }
            }
        }
    }
}

/// Every prefix shorter than the packet is `Incomplete`, or (for a packet
/// refused early: wrong magic, too long) the same error.
fn check_prefixes(ajp: &Ajp, limits: &Limits, input: &[u8], whole: &Result<Decoded, ParseError>) {
    let end = match whole {
        Ok(Decoded::Request { consumed, .. })
        | Ok(Decoded::Cping { consumed })
        | Ok(Decoded::Shutdown { consumed }) => *consumed,
        _ => input.len(),
    };
    // Every cut for short packets, a sample for long ones.
    let step = (end / 256).max(1);
    for cut in (0..end).step_by(step) {
        match ajp.parse_request(&input[..cut], limits) {
            Ok(Decoded::Incomplete) => {}
            Err(e) => assert_eq!(
                Err(&e),
                whole.as_ref().map(|_| ()),
                "prefix of {cut} bytes fails differently"
            ),
            Ok(other) => panic!("prefix of {cut} bytes decoded as {other:?}"),
        }
    }
}

/// What a request made from AJP fields must look like.
fn check_request(h: &RequestHead) {
    assert!(!h.method().is_empty());
    let target = h.target();
    assert_eq!(target.first(), Some(&b'/'));
    assert!(target.iter().all(|&b| b > b' ' && b < 0x7f), "{target:?}");
    assert_eq!(h.var(b"REQUEST_URI"), Some(target));
    assert!(h.var(b"QUERY_STRING").is_some());
    assert!(h.var(b"SERVER_PORT").is_some());
    assert!(h.keep_alive());
    assert!(h.is_gateway());
    for (n, v) in h.headers() {
        assert!(!n.is_empty() && !n.contains(&b'_'), "{n:?}");
        assert!(!v.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')));
    }
    for (n, _) in h.vars() {
        assert!(!n.starts_with(b"HTTP_"));
    }
    if h.body() == BodyKind::Chunked {
        assert!(h.content_length_raw().is_none());
    }
}

/// The request's own headers as a response head: one packet that decodes
/// back to them, or `HeadTooLarge`.
fn check_encode(ajp: &Ajp, h: &RequestHead) {
    let fields: Vec<(&[u8], &[u8])> = h.headers().collect();
    let mut out = b"x".to_vec();
    match ajp.write_head(&mut out, b"299 Fine", fields.iter().copied()) {
        Ok(()) => {
            let packet = &out[1..];
            assert!(packet.len() <= ajp.packet_size());
            let (status, reason, got) = decode_head(packet);
            assert_eq!(status, 299);
            assert_eq!(reason, b"Fine");
            assert_eq!(got.len(), fields.len());
            for ((gn, gv), (n, v)) in got.iter().zip(&fields) {
                assert!(gn.eq_ignore_ascii_case(n), "{gn:?} {n:?}");
                assert_eq!(gv, v);
            }
        }
        Err(EncodeError::HeadTooLarge) => assert_eq!(out, b"x"),
        Err(e) => panic!("{e}"),
    }
}

/// A response head as a web server reads it: status, reason, fields.
type Head = (u16, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Decodes a SEND_HEADERS packet (as a web server would).
fn decode_head(p: &[u8]) -> Head {
    const CODED: [&[u8]; 11] = [
        b"content-type",
        b"content-language",
        b"content-length",
        b"date",
        b"last-modified",
        b"location",
        b"set-cookie",
        b"set-cookie2",
        b"servlet-engine",
        b"status",
        b"www-authenticate",
    ];
    assert_eq!(&p[..2], b"AB");
    assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len() - 4);
    assert_eq!(p[4], 4);
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
    let string = |i: &mut usize| {
        let n = u16_at(*i);
        let s = p[*i + 2..*i + 2 + n].to_vec();
        assert_eq!(p[*i + 2 + n], 0);
        *i += n + 3;
        s
    };
    let status = u16_at(5) as u16;
    let mut i = 7;
    let reason = string(&mut i);
    let count = u16_at(i);
    i += 2;
    let mut fields = Vec::new();
    for _ in 0..count {
        let name = if p[i] == 0xA0 {
            let n = CODED[usize::from(p[i + 1]) - 1].to_vec();
            i += 2;
            n
        } else {
            string(&mut i)
        };
        let value = string(&mut i);
        fields.push((name, value));
    }
    assert_eq!(i, p.len());
    (status, reason, fields)
}

/// A body run's verdict (input used, or the error), the body, and whether
/// it finished.
type Run = (Result<usize, BodyError>, Vec<u8>, bool);

/// Where the packet that starts at `at` in `wire` ends, by its header's
/// length (the end of `wire` when that is sooner or the header is cut).
fn packet_end(wire: &[u8], at: usize) -> usize {
    match wire.get(at + 2..at + 4) {
        Some(len) => (at + 4 + usize::from(u16::from_be_bytes([len[0], len[1]]))).min(wire.len()),
        None => wire.len(),
    }
}

/// One body run against a web server that keeps the protocol: it sends
/// the first packet of a Content-Length body unasked and each other packet
/// when asked, and the bytes it has sent arrive `piece` at a time.
/// Whenever the decoder wants more it is asked (its GET_BODY_CHUNK
/// checked). Returns the verdict, the body and whether it finished, with
/// the input used.
fn run(ajp: &Ajp, kind: BodyKind, wire: &[u8], piece: usize) -> Run {
    let mut d = AjpBodyDecoder::new(kind, ajp);
    let mut body = Vec::new();
    let mut pos = 0;
    let mut avail: usize = 0;
    let mut sent = match kind {
        BodyKind::Length(n) if n > 0 => packet_end(wire, 0),
        _ => 0,
    };
    loop {
        if d.wants_output() {
            let mut o = Vec::new();
            d.take_output(&mut o);
            assert_eq!(o.len(), 7);
            assert_eq!(&o[..5], b"AB\x00\x03\x06");
            let ask = usize::from(u16::from_be_bytes([o[5], o[6]]));
            assert!(ask > 0 && ask <= ajp.max_body_chunk());
            assert!(!d.wants_output());
            // Asked only once what was sent is used up.
            assert_eq!(pos, sent);
            sent = packet_end(wire, sent);
        }
        if d.is_done() {
            return (Ok(pos), body, true);
        }
        avail = avail.saturating_add(piece).min(sent);
        let before = body.len();
        match d.decode_with(&wire[pos..avail], usize::MAX, |b| body.extend_from_slice(b)) {
            Err(e) => {
                // Failed for good.
                assert_eq!(d.decode_with(b"", 0, |_| {}), Err(e));
                return (Err(e), body, false);
            }
            Ok((c, put)) => {
                assert_eq!(put, body.len() - before);
                assert!(c <= avail - pos);
                pos += c;
                if let (BodyKind::Length(n), Some(rest)) = (kind, d.remaining_hint()) {
                    assert_eq!(rest + body.len() as u64, n);
                }
                if c == 0 && avail == sent && !d.wants_output() {
                    return (Ok(pos), body, d.is_done());
                }
            }
        }
    }
}

/// A body decodes the same at once and in pieces; returns the input it
/// used when it finished.
fn check_body(ajp: &Ajp, kind: BodyKind, wire: &[u8], piece: usize) -> Option<usize> {
    let whole = run(ajp, kind, wire, usize::MAX);
    let pieces = run(ajp, kind, wire, piece);
    assert_eq!(whole, pieces, "piece size {piece}");
    let (verdict, body, done) = whole;
    if let BodyKind::Length(n) = kind {
        assert!(body.len() as u64 <= n);
        if done {
            assert_eq!(body.len() as u64, n);
        }
    }
    // A web server that does not wait for the questions: given everything
    // at once (with room for all of it), the decoder takes what was asked
    // for and refuses the rest, or stops only at the end of the body. It
    // never stops early with input left, which a caller that waits for the
    // input to be used up before asking would wait on for ever.
    let mut d = AjpBodyDecoder::new(kind, ajp);
    d.take_output(&mut Vec::new());
    if let Ok((c, _)) = d.decode_with(wire, usize::MAX, |_| {}) {
        assert!(c == wire.len() || d.is_done(), "stopped at {c} of {}", wire.len());
    }
    // Abandoning at the start reads at most the packet owed, and no body
    // bytes are lost before it.
    let mut d = AjpBodyDecoder::new(kind, ajp);
    d.abandon();
    let mut o = Vec::new();
    d.take_output(&mut o);
    assert!(o.is_empty());
    if let Ok((c, _)) = d.decode_with(wire, usize::MAX, |_| {}) {
        assert!(c <= ajp.packet_size());
        assert!(!d.wants_output());
    }
    match (verdict, done) {
        (Ok(used), true) => Some(used),
        _ => None,
    }
}
