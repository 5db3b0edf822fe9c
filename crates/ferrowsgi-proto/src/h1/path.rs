//! Percent-decoding of the request path for `PATH_INFO` (RFC 3986 §2.1).

use std::borrow::Cow;

/// Percent-decode a request path for PATH_INFO: `%XX` -> byte; an invalid
/// escape is kept literally (`%zz` stays); returns bytes (the caller makes a
/// latin-1 str). `+` is not decoded: that is a form-encoding rule, not a URI
/// one. Borrows when there is nothing to decode.
pub fn percent_decode(path: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'%', path) else {
        return Cow::Borrowed(path);
    };
    let mut out = Vec::with_capacity(path.len());
    out.extend_from_slice(&path[..first]);
    let mut i = first;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            if let Some(&[h, l]) = path.get(i + 1..i + 3) {
                if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

/// The value of a hex digit.
fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/plain", b"/plain"),
            (b"/a%20b", b"/a b"),
            (b"/%2F%2f", b"///"),
            (b"/caf%C3%A9", b"/caf\xc3\xa9"),
            (b"/%E9", b"/\xe9"),
            (b"/a+b", b"/a+b"),
            (b"/%zz", b"/%zz"),
            (b"/%", b"/%"),
            (b"/%4", b"/%4"),
            (b"/%4g%41", b"/%4gA"),
            (b"/%%41", b"/%A"),
            (b"%00", b"\x00"),
        ];
        for (input, want) in cases {
            assert_eq!(
                &*percent_decode(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn borrows_without_escapes() {
        assert!(matches!(percent_decode(b"/a/b"), Cow::Borrowed(_)));
        assert!(matches!(percent_decode(b"/a%41"), Cow::Owned(_)));
    }
}
