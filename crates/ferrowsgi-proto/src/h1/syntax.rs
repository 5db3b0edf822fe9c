//! Character classes and small grammar checks shared by the head parser, the
//! body decoder and the response side (RFC 9110 §5.6, RFC 3986 §3.2.2).

/// A 256-entry table of the bytes that are ASCII letters or digits or one
/// of `extra`.
const fn byte_class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

/// `tchar` of RFC 9110 §5.6.2, as a 256-entry table.
static TCHAR: [bool; 256] = byte_class(b"!#$%&'*+-.^_`|~");

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Whether `b` is a non-empty `token` (RFC 9110 §5.6.2): `1*tchar`.
/// Every byte is looked up, without stopping at a bad one: a loop without
/// branches (a bad name is rare, and refused either way).
#[inline]
pub(crate) fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().fold(true, |ok, &c| ok & is_tchar(c))
}

/// Whether `b` may appear in a field value: anything but the controls
/// (`%x00-1F` and `%x7F`), except HTAB (RFC 9110 §5.5). Obs-text is allowed.
#[inline]
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Whether `b` is a visible ASCII byte (`VCHAR`) other than `#`: what a
/// request-target may hold on the wire (RFC 9112 §3.2, RFC 3986 §3.5: the
/// fragment is never sent).
#[inline]
pub(crate) fn is_target_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b'#'
}

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// The elements of a comma-separated list (RFC 9110 §5.6.1), trimmed of OWS.
/// Empty elements are yielded too; callers decide whether to skip them.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// `unreserved / sub-delims` of RFC 3986 §2, as a 256-entry table (the
/// Host of every request is checked against it).
static REG_NAME: [bool; 256] = byte_class(b"-._~!$&'()*+,;=");

/// `unreserved / sub-delims` of RFC 3986 §2.
#[inline]
fn is_reg_name_byte(b: u8) -> bool {
    REG_NAME[usize::from(b)]
}

/// Whether `host` is a non-empty `reg-name` or `IPv4address` (RFC 3986 §3.2.2),
/// percent-encodings included.
fn is_reg_name(host: &[u8]) -> bool {
    if host.is_empty() {
        return false;
    }
    // A name without percent-encodings (nearly every one) is checked in one
    // pass without branches; only one that fails it is walked for '%XX'.
    if host.iter().fold(true, |ok, &b| ok & is_reg_name_byte(b)) {
        return true;
    }
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            match host.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if is_reg_name_byte(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Whether `inner` (between the brackets) is an `IPv6address` or `IPvFuture`
/// (RFC 3986 §3.2.2). IPv6 is checked for its alphabet only; the address is
/// never resolved, so a finer check buys nothing.
fn is_ip_literal(inner: &[u8]) -> bool {
    match inner {
        [b'v' | b'V', rest @ ..] => {
            let dot = rest.iter().position(|&b| b == b'.');
            match dot {
                Some(d) if d > 0 && d + 1 < rest.len() => {
                    rest[..d].iter().all(u8::is_ascii_hexdigit)
                        && rest[d + 1..]
                            .iter()
                            .all(|&b| is_reg_name_byte(b) || b == b':')
                }
                _ => false,
            }
        }
        _ => {
            inner.contains(&b':')
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
    }
}

/// Whether `v` is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2–3.2.3)
/// with a non-empty host. The port may be empty (`port = *DIGIT`).
pub(crate) fn is_valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        if !is_ip_literal(&v[1..close]) {
            return false;
        }
        match &v[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&v[..=close], port),
            _ => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(c) => (&v[..c], &v[c + 1..]),
            None => (v, &[][..]),
        }
    };
    (host.first() == Some(&b'[') || is_reg_name(host)) && port.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let cases: &[(&[u8], bool)] = &[
            (b"example.com", true),
            (b"example.com:8080", true),
            (b"example.com:", true),
            (b"127.0.0.1:80", true),
            (b"[::1]", true),
            (b"[::1]:8000", true),
            (b"[v1.fe80::a+en1]", true),
            (b"ex%41mple", true),
            (b"", false),
            (b":80", false),
            (b"a b", false),
            (b"a/b", false),
            (b"a@b", false),
            (b"a:8x", false),
            (b"a:80:90", false),
            (b"[::1", false),
            (b"[::1]x", false),
            (b"[zz]", false),
            (b"ex%4", false),
            (b"ex%zz", false),
        ];
        for (v, ok) in cases {
            assert_eq!(is_valid_host(v), *ok, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn trimming_and_lists() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        let v: Vec<&[u8]> = list_elements(b"a, b ,,c").collect();
        assert_eq!(v, [&b"a"[..], b"b", b"", b"c"]);
    }

    #[test]
    fn classes() {
        assert!(is_token(b"X-Custom_1!"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert!(is_field_value_byte(b'\t') && is_field_value_byte(0x80));
        assert!(!is_field_value_byte(0) && !is_field_value_byte(0x7f));
        assert!(!is_target_byte(b'#') && !is_target_byte(b' ') && !is_target_byte(0xc3));
    }

    #[test]
    fn reg_name_table_is_rfc3986_unreserved_and_sub_delims() {
        let allowed: &[u8] = b"-._~!$&'()*+,;=";
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || allowed.contains(&b);
            assert_eq!(is_reg_name_byte(b), expected, "byte {b:#04x}");
        }
    }
}
