//! Request-target forms (RFC 9112 §3.2): which form a target has, and where its
//! path, query and authority lie.

use memchr::memchr;

use super::syntax::{is_target_byte, is_valid_host};
use crate::ParseError;

/// The scheme of an absolute-form request-target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `http://…`
    Http,
    /// `https://…`
    Https,
}

/// Where the parts of a request-target lie, as offsets into the target.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TargetParts {
    /// The path (may be empty for an absolute-form target without one).
    pub(crate) path: (usize, usize),
    /// The query, without `?`.
    pub(crate) query: (usize, usize),
    /// The authority of an absolute-form target.
    pub(crate) authority: Option<(usize, usize)>,
    /// The scheme of an absolute-form target.
    pub(crate) scheme: Option<Scheme>,
}

/// Splits and checks a request-target per RFC 9112 §3.2 (CONNECT, the only
/// user of the authority-form, is refused before this).
pub(crate) fn classify_target(method: &[u8], t: &[u8]) -> Result<TargetParts, ParseError> {
    // RFC 9112 §3.2: no whitespace or controls; RFC 3986 §3.5: no fragment;
    // non-ASCII must be percent-encoded.
    if !t.iter().all(|&b| is_target_byte(b)) {
        return Err(ParseError::InvalidTarget);
    }
    let split_query = |from: usize| match memchr(b'?', &t[from..]) {
        Some(q) => ((from, from + q), (from + q + 1, t.len())),
        None => ((from, t.len()), (t.len(), t.len())),
    };
    if t.first() == Some(&b'/') {
        // §3.2.1 origin-form.
        let (path, query) = split_query(0);
        return Ok(TargetParts {
            path,
            query,
            authority: None,
            scheme: None,
        });
    }
    if t == b"*" {
        // §3.2.4 asterisk-form: only for a server-wide OPTIONS.
        if method != b"OPTIONS" {
            return Err(ParseError::InvalidTarget);
        }
        return Ok(TargetParts {
            path: (0, 1),
            query: (1, 1),
            authority: None,
            scheme: None,
        });
    }
    // §3.2.2 absolute-form; only http and https are served.
    let (scheme, after) = if starts_with_ignore_case(t, b"http://") {
        (Scheme::Http, 7)
    } else if starts_with_ignore_case(t, b"https://") {
        (Scheme::Https, 8)
    } else {
        return Err(ParseError::InvalidTarget);
    };
    let auth_end = t[after..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(t.len(), |p| after + p);
    let authority = &t[after..auth_end];
    // RFC 9110 §4.2.1: an empty host is invalid; §4.2.4: userinfo is an error.
    if authority.contains(&b'@') || !is_valid_host(authority) {
        return Err(ParseError::InvalidTarget);
    }
    let (path, query) = split_query(auth_end);
    Ok(TargetParts {
        path,
        query,
        authority: Some((after, auth_end)),
        scheme: Some(scheme),
    })
}

/// ASCII case-insensitive prefix test.
fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, target) -> (path, query, authority, scheme) or the error.
    type Want = Result<
        (
            &'static str,
            &'static str,
            Option<&'static str>,
            Option<Scheme>,
        ),
        ParseError,
    >;

    fn run(method: &str, t: &str) -> Want {
        let p = classify_target(method.as_bytes(), t.as_bytes())?;
        let s = |(a, b): (usize, usize)| &t[a..b];
        Ok((
            leak(s(p.path)),
            leak(s(p.query)),
            p.authority.map(|a| leak(s(a))),
            p.scheme,
        ))
    }

    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_owned().into_boxed_str())
    }

    #[test]
    fn forms() {
        use Scheme::*;
        let cases: &[(&str, &str, Want)] = &[
            ("GET", "/", Ok(("/", "", None, None))),
            ("GET", "/a/b?x=1&y", Ok(("/a/b", "x=1&y", None, None))),
            ("GET", "/a?b?c", Ok(("/a", "b?c", None, None))),
            ("GET", "/?", Ok(("/", "", None, None))),
            (
                "GET",
                "http://h/p?q",
                Ok(("/p", "q", Some("h"), Some(Http))),
            ),
            (
                "GET",
                "HTTPS://h:443/p",
                Ok(("/p", "", Some("h:443"), Some(Https))),
            ),
            ("GET", "http://h", Ok(("", "", Some("h"), Some(Http)))),
            ("GET", "http://h?q", Ok(("", "q", Some("h"), Some(Http)))),
            (
                "GET",
                "http://[::1]:80/",
                Ok(("/", "", Some("[::1]:80"), Some(Http))),
            ),
            ("OPTIONS", "*", Ok(("*", "", None, None))),
            ("GET", "*", Err(ParseError::InvalidTarget)),
            ("OPTIONS", "*?x", Err(ParseError::InvalidTarget)),
            ("GET", "http:///p", Err(ParseError::InvalidTarget)),
            ("GET", "http://u:p@h/", Err(ParseError::InvalidTarget)),
            ("GET", "ftp://h/", Err(ParseError::InvalidTarget)),
            ("GET", "h:80", Err(ParseError::InvalidTarget)),
            ("GET", "p", Err(ParseError::InvalidTarget)),
            ("GET", "/a#frag", Err(ParseError::InvalidTarget)),
            ("GET", "/caf\u{e9}", Err(ParseError::InvalidTarget)),
            ("GET", "/a\x7f", Err(ParseError::InvalidTarget)),
        ];
        for (m, t, want) in cases {
            assert_eq!(run(m, t), *want, "{m} {t}");
        }
    }
}
