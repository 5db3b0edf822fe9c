//! Requests a front end hands over already parsed.
//!
//! FastCGI, SCGI and the uwsgi protocol carry a request as CGI variables
//! (RFC 3875 §4.1: `REQUEST_METHOD`, `REQUEST_URI`, `HTTP_HOST`, …); AJP13
//! carries coded fields that its codec names the same way. Every gateway
//! codec collects them in a [`CgiVars`] and turns that into the same
//! [`RequestHead`] the HTTP/1.x parser makes, so the server and the
//! application side handle one kind of request:
//!
//! * `HTTP_*` variables become header fields (`HTTP_X_REQUEST_ID` is
//!   `X-Request-Id`), as do `CONTENT_TYPE` and `CONTENT_LENGTH`;
//! * every other variable is kept as a server variable
//!   ([`RequestHead::vars`]): a client can only ever produce `HTTP_*` names,
//!   so nothing it sends can pose as `REMOTE_ADDR`, `HTTPS` or `SCRIPT_NAME`;
//! * the request-target is `REQUEST_URI` when the front end sent one (nginx
//!   and Apache do), else it is rebuilt from `SCRIPT_NAME`, `PATH_INFO` and
//!   `QUERY_STRING`.
//!
//! Limits: the variables' bytes count against [`Limits::max_head_size`] and
//! their number against [`Limits::max_header_count`] plus
//! [`MAX_SERVER_VARS`], checked as each one arrives, so a front end cannot
//! make the server buffer more than an HTTP client could.
//!
//! ```
//! use ferrowsgi_proto::gateway::CgiVars;
//! use ferrowsgi_proto::{BodyKind, Limits};
//!
//! let limits = Limits::default();
//! let mut vars = CgiVars::new();
//! for (n, v) in [
//!     ("REQUEST_METHOD", "POST"),
//!     ("REQUEST_URI", "/a%20b?x=1"),
//!     ("SERVER_PROTOCOL", "HTTP/1.1"),
//!     ("CONTENT_LENGTH", "5"),
//!     ("HTTP_HOST", "example.com"),
//!     ("REMOTE_ADDR", "192.0.2.7"),
//! ] {
//!     vars.push(n.as_bytes(), v.as_bytes(), &limits).unwrap();
//! }
//! let head = vars.into_request(&limits).unwrap();
//! assert_eq!(head.method(), b"POST");
//! assert_eq!(head.path(), b"/a%20b");
//! assert_eq!(head.query(), b"x=1");
//! assert_eq!(head.header(b"host"), Some(&b"example.com"[..]));
//! assert_eq!(head.var(b"REMOTE_ADDR"), Some(&b"192.0.2.7"[..]));
//! assert_eq!(head.body(), BodyKind::Length(5));
//! ```

use crate::h1::head::{GatewayParts, Span};
use crate::h1::syntax::is_tchar;
use crate::{BodyKind, Limits, ParseError, RequestHead, Version};

/// Server variables (names that are not `HTTP_*`) accepted beyond
/// [`Limits::max_header_count`]: nginx's `fastcgi_params` sends 17, Apache's
/// mod_proxy_fcgi about 25 with its environment.
pub const MAX_SERVER_VARS: usize = 64;

/// The CGI variables of one request as a front end sends them, collected
/// with their limits checked on the way in.
#[derive(Debug, Default, Clone)]
pub struct CgiVars {
    bytes: Vec<u8>,
    /// (name, value) spans of `bytes`, in arrival order.
    vars: Vec<(Span, Span)>,
    /// The bytes of the names and values so far, which the head-size limit
    /// counts (`bytes` also holds the separators of a block taken whole).
    size: usize,
}

impl CgiVars {
    /// An empty set.
    pub fn new() -> CgiVars {
        CgiVars::default()
    }

    /// An empty set with room for `bytes` bytes of names and values and
    /// `count` variables, for a codec that knows the size of the block it
    /// decodes (checked against its limits first): the buffers then never
    /// grow while the variables are pushed.
    pub fn with_capacity(bytes: usize, count: usize) -> CgiVars {
        CgiVars {
            bytes: Vec::with_capacity(bytes),
            vars: Vec::with_capacity(count),
            size: 0,
        }
    }

    /// An empty set that holds a copy of `block`, the encoded variables of
    /// a codec whose names and values lie whole in one block (SCGI's
    /// netstring, uwsgi's packet), with room for `count` variables: they
    /// are then added with [`CgiVars::push_range`], which records
    /// where they lie instead of copying each. `block` is bounded by the
    /// codec's limits already.
    pub(crate) fn over_block(block: &[u8], count: usize) -> CgiVars {
        CgiVars {
            bytes: block.to_vec(),
            vars: Vec::with_capacity(count),
            size: 0,
        }
    }

    /// Adds a variable. Fails with 431 once the variables together pass the
    /// head-size limit or their number passes the header count plus
    /// [`MAX_SERVER_VARS`], and with 400 for an empty name or a name or
    /// value holding NUL, CR or LF (which no front end sends and which
    /// could not be passed on safely).
    pub fn push(&mut self, name: &[u8], value: &[u8], limits: &Limits) -> Result<(), ParseError> {
        self.check(name, value, false, limits)?;
        let n = Span::new(self.bytes.len(), self.bytes.len() + name.len());
        self.bytes.extend_from_slice(name);
        let v = Span::new(self.bytes.len(), self.bytes.len() + value.len());
        self.bytes.extend_from_slice(value);
        self.vars.push((n, v));
        Ok(())
    }

    /// Adds the variable whose name and value lie at the byte ranges `name`
    /// and `value` of the block this set was made over
    /// ([`CgiVars::over_block`]), with the checks and errors of
    /// [`CgiVars::push`]; nothing is copied. A range outside the block is a
    /// bug of the codec and is rejected as a bad name. `value_clean` says
    /// that the codec has found no NUL, CR or LF in the value already (SCGI
    /// looks for CR and LF once in its whole block, and its values end at a
    /// NUL), so the value is not searched again.
    #[inline]
    pub(crate) fn push_range(
        &mut self,
        name: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
        value_clean: bool,
        limits: &Limits,
    ) -> Result<(), ParseError> {
        let n = Span::new(name.start, name.end);
        let v = Span::new(value.start, value.end);
        let (Some(name), Some(value)) = (self.bytes.get(name), self.bytes.get(value)) else {
            return Err(ParseError::InvalidHeaderName);
        };
        self.size = check(self.vars.len(), self.size, name, value, value_clean, limits)?;
        self.vars.push((n, v));
        Ok(())
    }

    /// The checks of [`CgiVars::push`], counting the variable's bytes.
    #[inline(always)]
    fn check(
        &mut self,
        name: &[u8],
        value: &[u8],
        value_clean: bool,
        limits: &Limits,
    ) -> Result<(), ParseError> {
        self.size = check(self.vars.len(), self.size, name, value, value_clean, limits)?;
        Ok(())
    }

    /// The number of variables so far.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The value of the first variable named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The variables in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.vars
            .iter()
            .map(|(n, v)| (n.get(&self.bytes), v.get(&self.bytes)))
    }

    /// Builds the request. Fails with 400 when `REQUEST_METHOD` is missing
    /// or not a token, when there is neither a `REQUEST_URI` starting with
    /// `/` nor a `SCRIPT_NAME`/`PATH_INFO` to make one from, when
    /// `CONTENT_LENGTH` is not 1*DIGIT, or when a variable is repeated with
    /// a different value (a front end sends each once; two would be read
    /// differently by different parts of the application).
    ///
    /// The body is `Length` from `CONTENT_LENGTH` (or `Empty`), and the
    /// request is not keep-alive: the codec sets both when its protocol
    /// says otherwise ([`RequestHead::set_body`],
    /// [`RequestHead::set_keep_alive`]).
    pub fn into_request(self, limits: &Limits) -> Result<RequestHead, ParseError> {
        let mut bytes = self.bytes;
        // Each list made at its final size: the server variables end up in
        // a boxed slice, which a vector grown by doubling would be copied
        // into once more.
        // One pass counts the headers and the server variables, notes where
        // the variables that make the request line are (the first of each
        // name), and checks that each name comes once (byte-identical
        // repeats are one value). A header the client sent twice is the
        // exception: nginx before 1.23 passes each line as its own `HTTP_*`
        // variable, and the environ joins repeated headers as it does for
        // HTTP/1. Host stays single, as RFC 9112 §3.2 wants it. Earlier
        // names are searched only when one with the same small hash came
        // before (a bit of `seen`): with a front end's dozen or two of
        // names that is rare, where comparing each name with every earlier
        // one was the larger part of building the request.
        let (mut n_headers, mut n_vars) = (0, 0);
        let mut known: [Option<Span>; 6] = [None; 6];
        let mut seen: u64 = 0;
        for (i, (n, v)) in self.vars.iter().enumerate() {
            let name = n.get(&bytes);
            let http = is_http(name);
            if http && name != b"HTTP_HOST" {
                n_headers += 1;
                continue;
            }
            let bit = 1u64 << (name_hash(name) & 63);
            if seen & bit != 0 {
                if let Some((_, first)) = self.vars[..i].iter().find(|(m, _)| m.get(&bytes) == name)
                {
                    if first.get(&bytes) != v.get(&bytes) {
                        return Err(ParseError::BadRequest("a server variable repeated"));
                    }
                }
            }
            seen |= bit;
            if http {
                n_headers += 1;
                continue;
            }
            let slot = match name {
                b"CONTENT_TYPE" | b"CONTENT_LENGTH" => {
                    n_headers += 1;
                    continue;
                }
                b"REQUEST_METHOD" => METHOD,
                b"SERVER_PROTOCOL" => PROTOCOL,
                b"REQUEST_URI" => URI,
                b"SCRIPT_NAME" => SCRIPT,
                b"PATH_INFO" => INFO,
                b"QUERY_STRING" => QUERY,
                _ => {
                    n_vars += 1;
                    continue;
                }
            };
            n_vars += 1;
            if known[slot].is_none() {
                known[slot] = Some(*v);
            }
        }
        let mut headers = Vec::with_capacity(n_headers);
        let mut vars = Vec::with_capacity(n_vars);
        let method = known[METHOD]
            .filter(|m| !m.is_empty() && m.get(&bytes).iter().all(|&b| is_tchar(b)))
            .ok_or(ParseError::InvalidMethod)?;
        let version = match known[PROTOCOL].map(|s| s.get(&bytes)) {
            Some(b"HTTP/1.0") => Version::Http10,
            // HTTP/1.1, and what a front end speaking HTTP/2 or 3 to its
            // client reports: the version only matters for HTTP/1 framing,
            // which a gateway request never uses; SERVER_PROTOCOL keeps the
            // front end's string.
            _ => Version::Http11,
        };
        let target = match known[URI].filter(|s| {
            let t = s.get(&bytes);
            t.first() == Some(&b'/') && t.iter().all(|&b| b > b' ' && b < 0x7f)
        }) {
            Some(t) => t,
            None => {
                // Rebuilt, percent-encoding what a target cannot hold.
                let script = known[SCRIPT].map(|s| s.get(&bytes).to_vec());
                let info = known[INFO].map(|s| s.get(&bytes).to_vec());
                let query = known[QUERY].map(|s| s.get(&bytes).to_vec());
                if script.is_none() && info.is_none() {
                    return Err(ParseError::InvalidTarget);
                }
                let start = bytes.len();
                // An origin-form target starts with '/', whatever the front
                // end put first.
                let first = script.iter().chain(info.iter()).flatten().next();
                if first != Some(&b'/') {
                    bytes.push(b'/');
                }
                for part in [script, info].into_iter().flatten() {
                    push_encoded(&mut bytes, &part);
                }
                if let Some(q) = query.filter(|q| !q.is_empty()) {
                    bytes.push(b'?');
                    push_encoded_query(&mut bytes, &q);
                }
                if bytes.len() > limits.max_head_size * 4 {
                    return Err(ParseError::HeadTooLarge);
                }
                Span::new(start, bytes.len())
            }
        };
        let (path, query) = {
            let t = target.get(&bytes);
            let start = target.start();
            match t.iter().position(|&b| b == b'?') {
                Some(q) => (
                    Span::new(start, start + q),
                    Span::new(start + q + 1, start + t.len()),
                ),
                None => (target, Span::new(start + t.len(), start + t.len())),
            }
        };
        let mut host = None;
        let mut content_type = None;
        let mut content_length = None;
        let mut body = BodyKind::Empty;
        for &(n, v) in &self.vars {
            let name = n.get(&bytes);
            if let Some(h) = name.get(5..).filter(|_| is_http(name)) {
                if h.is_empty() {
                    return Err(ParseError::InvalidHeaderName);
                }
                // nginx passes every request header, Content-Type and
                // Content-Length included; the body's framing and type are
                // the front end's CONTENT_TYPE and CONTENT_LENGTH (which
                // differ when it de-chunked the body), and the environ must
                // not hold them twice.
                if h == b"CONTENT_TYPE" || h == b"CONTENT_LENGTH" {
                    continue;
                }
                // The header's name is the variable's after `HTTP_`, with
                // '_' made '-' below (HTTP_X_REQUEST_ID → X-REQUEST-ID; case
                // does not matter to HTTP, and the environ key is made again
                // from it).
                if h.eq_ignore_ascii_case(b"host") {
                    host = Some(v);
                }
                let start = n.start() + 5;
                headers.push((Span::new(start, start + h.len()), v));
            } else if name == b"CONTENT_TYPE" {
                if !v.is_empty() {
                    content_type = Some(v);
                    headers.push((Span::new(n.start(), n.start() + 12), v));
                }
            } else if name == b"CONTENT_LENGTH" {
                let value = v.get(&bytes);
                if !value.is_empty() {
                    let len = parse_length(value).ok_or(ParseError::BadContentLength)?;
                    content_length = Some(v);
                    body = BodyKind::Length(len);
                    headers.push((Span::new(n.start(), n.start() + 14), v));
                }
            } else {
                vars.push((n, v));
            }
        }
        if headers.len() > limits.max_header_count {
            return Err(ParseError::TooManyHeaders);
        }
        // The header names, written over the variables' own bytes ('_' →
        // '-'), so that nothing is copied.
        for (n, _) in &headers {
            let s = n.start();
            let e = s + n.get(&bytes).len();
            for b in &mut bytes[s..e] {
                if *b == b'_' {
                    *b = b'-';
                }
            }
        }
        Ok(GatewayParts {
            bytes,
            method,
            target,
            path,
            query,
            version,
            headers,
            host,
            body,
            content_type,
            content_length,
            vars,
        }
        .into())
    }
}

/// The checks of [`CgiVars::push`] for a variable that would be the
/// `count`-th after `size` bytes of names and values: the new size, or the
/// error.
#[inline(always)]
fn check(
    count: usize,
    size: usize,
    name: &[u8],
    value: &[u8],
    value_clean: bool,
    limits: &Limits,
) -> Result<usize, ParseError> {
    if count >= limits.max_header_count + MAX_SERVER_VARS {
        return Err(ParseError::TooManyHeaders);
    }
    let size = size + name.len() + value.len();
    if size > limits.max_head_size {
        return Err(ParseError::HeadTooLarge);
    }
    // The name's bytes folded without a branch per byte, the value
    // searched with memchr when it is long (a call costs more than a
    // loop over the few bytes most values have): a front end sends a
    // few hundred bytes of variables with every request.
    if name.is_empty() || !name.iter().fold(true, |ok, &b| ok & is_tchar(b)) {
        return Err(ParseError::InvalidHeaderName);
    }
    let bad = if value_clean {
        false
    } else if value.len() <= 16 {
        value.iter().fold(false, |bad, &b| {
            bad | (b == 0) | (b == b'\r') | (b == b'\n')
        })
    } else {
        memchr::memchr3(0, b'\r', b'\n', value).is_some()
    };
    if bad {
        return Err(ParseError::InvalidHeaderValue);
    }
    Ok(size)
}

/// Where [`CgiVars::into_request`] notes the variables that make the
/// request line.
const METHOD: usize = 0;
const PROTOCOL: usize = 1;
const URI: usize = 2;
const SCRIPT: usize = 3;
const INFO: usize = 4;
const QUERY: usize = 5;

/// Whether a variable's name is `HTTP_*`, compared as one five-byte value.
#[inline]
fn is_http(name: &[u8]) -> bool {
    name.first_chunk::<5>() == Some(b"HTTP_")
}

/// A small hash of a name (its length, last and middle bytes) for the
/// repeat check of [`CgiVars::into_request`].
#[inline]
fn name_hash(name: &[u8]) -> usize {
    let last = name.last().copied().unwrap_or(0);
    let mid = name.get(name.len() / 2).copied().unwrap_or(0);
    name.len()
        .wrapping_mul(31)
        .wrapping_add(usize::from(last).wrapping_mul(7))
        .wrapping_add(usize::from(mid))
}

/// A decimal length: 1*DIGIT that fits in 64 bits.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether `b` may stand unencoded in a path (RFC 3986 pchar plus '/').
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

/// Appends a decoded path percent-encoded for a request-target.
fn push_encoded(out: &mut Vec<u8>, part: &[u8]) {
    for &b in part {
        if is_path_byte(b) {
            out.push(b);
        } else {
            push_escape(out, b);
        }
    }
}

/// Appends a query string, escaping only what a target cannot hold (a CGI
/// `QUERY_STRING` is still encoded).
fn push_encoded_query(out: &mut Vec<u8>, q: &[u8]) {
    for &b in q {
        if b > b' ' && b < 0x7f && b != b'#' {
            out.push(b);
        } else {
            push_escape(out, b);
        }
    }
}

/// Appends `%XX` for `b`.
fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(vars: &[(&str, &str)]) -> Result<RequestHead, ParseError> {
        let limits = Limits::default();
        let mut v = CgiVars::new();
        for (n, val) in vars {
            v.push(n.as_bytes(), val.as_bytes(), &limits)?;
        }
        v.into_request(&limits)
    }

    #[test]
    fn http_variables_become_headers_and_the_rest_server_variables() {
        let h = request(&[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/x?y=1"),
            ("HTTP_X_REQUEST_ID", "abc"),
            ("HTTP_HOST", "h.example"),
            ("CONTENT_TYPE", "text/plain"),
            ("HTTPS", "on"),
            ("REMOTE_ADDR", "192.0.2.1"),
        ])
        .unwrap();
        let headers: Vec<_> = h.headers().collect();
        assert_eq!(
            headers,
            vec![
                (&b"X-REQUEST-ID"[..], &b"abc"[..]),
                (b"HOST", b"h.example"),
                (b"CONTENT-TYPE", b"text/plain"),
            ]
        );
        assert_eq!(h.host(), Some(&b"h.example"[..]));
        assert_eq!(h.content_type(), Some(&b"text/plain"[..]));
        let vars: Vec<_> = h.vars().collect();
        assert_eq!(
            vars,
            vec![
                (&b"REQUEST_METHOD"[..], &b"GET"[..]),
                (b"REQUEST_URI", b"/x?y=1"),
                (b"HTTPS", b"on"),
                (b"REMOTE_ADDR", b"192.0.2.1"),
            ]
        );
        assert!(h.is_gateway());
        assert!(!h.keep_alive());
        assert_eq!(h.body(), BodyKind::Empty);
    }

    #[test]
    fn the_target_is_rebuilt_without_request_uri() {
        let h = request(&[
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", "/app"),
            ("PATH_INFO", "/a b/ü"),
            ("QUERY_STRING", "q=1"),
        ])
        .unwrap();
        assert_eq!(h.target(), b"/app/a%20b/%C3%BC?q=1");
        assert_eq!(h.path(), b"/app/a%20b/%C3%BC");
        assert_eq!(h.query(), b"q=1");
        // Whatever the parts hold, the target is origin-form.
        let h = request(&[("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "x.example")]).unwrap();
        assert_eq!(h.target(), b"/x.example");
        let h = request(&[("REQUEST_METHOD", "GET"), ("PATH_INFO", "")]).unwrap();
        assert_eq!(h.target(), b"/");
    }

    #[test]
    fn bad_variables_are_rejected() {
        assert_eq!(
            request(&[("REQUEST_URI", "/")]).unwrap_err(),
            ParseError::InvalidMethod
        );
        assert_eq!(
            request(&[("REQUEST_METHOD", "G T"), ("REQUEST_URI", "/")]).unwrap_err(),
            ParseError::InvalidMethod
        );
        assert_eq!(
            request(&[("REQUEST_METHOD", "GET")]).unwrap_err(),
            ParseError::InvalidTarget
        );
        assert_eq!(
            request(&[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("CONTENT_LENGTH", "1x")
            ])
            .unwrap_err(),
            ParseError::BadContentLength
        );
        assert!(matches!(
            request(&[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("REMOTE_ADDR", "a"),
                ("REMOTE_ADDR", "b"),
            ])
            .unwrap_err(),
            ParseError::BadRequest(_)
        ));
        assert_eq!(
            request(&[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("HTTP_", "x")
            ])
            .unwrap_err(),
            ParseError::InvalidHeaderName
        );
        let limits = Limits::default();
        let mut v = CgiVars::new();
        assert_eq!(
            v.push(b"HTTP_X", b"a\r\nb", &limits),
            Err(ParseError::InvalidHeaderValue)
        );
        assert_eq!(
            v.push(b"", b"", &limits),
            Err(ParseError::InvalidHeaderName)
        );
    }

    #[test]
    fn limits_hold_as_variables_arrive() {
        let limits = Limits {
            max_head_size: 400,
            max_header_count: 2,
            ..Limits::default()
        };
        let mut v = CgiVars::new();
        assert_eq!(
            v.push(b"HTTP_X", &[b'a'; 500], &limits),
            Err(ParseError::HeadTooLarge)
        );
        for i in 0..2 + MAX_SERVER_VARS {
            v.push(format!("V{i}").as_bytes(), b"", &limits).unwrap();
        }
        assert_eq!(v.push(b"V", b"", &limits), Err(ParseError::TooManyHeaders));
    }

    #[test]
    fn repeated_headers_pass_and_the_body_framing_is_the_front_ends() {
        let h = request(&[
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/"),
            ("HTTP_ACCEPT", "a"),
            ("HTTP_ACCEPT", "b"),
            ("HTTP_CONTENT_LENGTH", "999"),
            ("HTTP_CONTENT_TYPE", "text/html"),
            ("CONTENT_LENGTH", "3"),
            ("CONTENT_TYPE", "text/plain"),
        ])
        .unwrap();
        let headers: Vec<_> = h.headers().collect();
        assert_eq!(
            headers,
            vec![
                (&b"ACCEPT"[..], &b"a"[..]),
                (b"ACCEPT", b"b"),
                (b"CONTENT-LENGTH", b"3"),
                (b"CONTENT-TYPE", b"text/plain"),
            ]
        );
        assert_eq!(h.body(), BodyKind::Length(3));
        assert!(matches!(
            request(&[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("HTTP_HOST", "a"),
                ("HTTP_HOST", "b"),
            ]),
            Err(ParseError::BadRequest(_))
        ));
    }

    #[test]
    fn repeats_are_found_among_many_names() {
        // More names than the repeat check's hash has bits: names that share
        // a bit are told apart by their bytes, and a repeat is found
        // wherever it stands.
        let names: Vec<String> = (0..80).map(|i| format!("VAR_{i}")).collect();
        let mut vars = vec![("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/")];
        vars.extend(names.iter().map(|n| (n.as_str(), "x")));
        let h = request(&vars).unwrap();
        assert_eq!(h.vars().count(), 82);
        vars.push(("VAR_3", "x"));
        assert!(request(&vars).is_ok());
        vars.push(("VAR_41", "y"));
        assert!(matches!(request(&vars), Err(ParseError::BadRequest(_))));
    }

    #[test]
    fn content_length_frames_the_body() {
        let h = request(&[
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/"),
            ("CONTENT_LENGTH", "12"),
        ])
        .unwrap();
        assert_eq!(h.body(), BodyKind::Length(12));
        assert_eq!(h.content_length_raw(), Some(&b"12"[..]));
        assert_eq!(h.header(b"content-length"), Some(&b"12"[..]));
    }
}
