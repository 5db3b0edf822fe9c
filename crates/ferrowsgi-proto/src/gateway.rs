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

    /// The checks of [`CgiVars::push`], counting the variable's bytes.
    #[inline(always)]
    fn check(
        &mut self,
        name: &[u8],
        value: &[u8],
        value_clean: bool,
        limits: &Limits,
    ) -> Result<(), ParseError> {
        self.size = check(
            self.vars.len(),
            self.size,
            name,
            value,
            false,
            value_clean,
            limits,
        )?;
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
        let mut c = Collector::new(self.vars.len());
        for &(n, v) in &self.vars {
            c.add(&self.bytes, n, v);
        }
        c.finish(self.bytes, limits)
    }
}

/// Sorts a front end's variables into the request as each one arrives:
/// `HTTP_*` ones (and a non-empty `CONTENT_TYPE` or `CONTENT_LENGTH`)
/// become header fields, the rest server variables, and the names that make
/// the request line are noted. Both lists share one allocation made at its
/// final size: the fields fill it from the front, the server variables from
/// the back, and [`Collector::finish`] closes the gap between them.
///
/// A variable repeated with a different value, an `HTTP_` name with
/// nothing after it and a bad `CONTENT_LENGTH` are noted and reported by
/// [`Collector::finish`], in the order [`CgiVars::into_request`] has always
/// reported them, so a codec that checks each variable as it finds it gives
/// the errors it gave when the checks of all variables came first.
#[derive(Debug)]
pub(crate) struct Collector {
    /// Fields at `[0, n_fields)`, server variables at `[back, len)` with
    /// the latest first.
    spans: Vec<(Span, Span)>,
    /// The number of fields.
    n_fields: usize,
    /// Where the server variables start.
    back: usize,
    /// The first value of each of the names in [`KNOWN`], by place.
    known: [Option<Span>; KNOWN.len()],
    /// The first `HTTP_HOST`, for the repeat check.
    host_first: Option<Span>,
    /// The Host field: the last `HTTP_*` named host in any case.
    host: Option<Span>,
    /// A non-empty `CONTENT_TYPE`.
    content_type: Option<Span>,
    /// A non-empty `CONTENT_LENGTH`, 1*DIGIT.
    content_length: Option<Span>,
    /// The body's framing: `Length` from `CONTENT_LENGTH`, else `Empty`.
    body: BodyKind,
    /// A bit per hash of the other server variables' names seen so far:
    /// earlier names are compared only when the bit is set already.
    seen: u64,
    /// Whether a variable came again with another value.
    repeated: bool,
    /// The first `HTTP_` name without a field name or bad `CONTENT_LENGTH`.
    late: Option<ParseError>,
}

/// The server variables the request is made from, by place in
/// [`Collector::known`].
const KNOWN: [&[u8]; 8] = [
    b"REQUEST_METHOD",
    b"SERVER_PROTOCOL",
    b"REQUEST_URI",
    b"SCRIPT_NAME",
    b"PATH_INFO",
    b"QUERY_STRING",
    b"CONTENT_TYPE",
    b"CONTENT_LENGTH",
];
// The places in [`KNOWN`].
const METHOD: usize = 0;
const PROTOCOL: usize = 1;
const URI: usize = 2;
const SCRIPT: usize = 3;
const INFO: usize = 4;
const QUERY: usize = 5;
const CTYPE: usize = 6;
const CLENGTH: usize = 7;

/// The place in [`KNOWN`] of `name`, found by its length and first byte,
/// then one comparison with a name known when this is compiled (a few word
/// comparisons, where one with a name picked at run time is a call).
#[inline(always)]
fn known_place(name: &[u8]) -> Option<usize> {
    let is = |known: &[u8], place: usize| (name == known).then_some(place);
    match (name.len(), name.first()) {
        (9, _) => is(b"PATH_INFO", INFO),
        (11, Some(b'R')) => is(b"REQUEST_URI", URI),
        (11, _) => is(b"SCRIPT_NAME", SCRIPT),
        (12, Some(b'Q')) => is(b"QUERY_STRING", QUERY),
        (12, _) => is(b"CONTENT_TYPE", CTYPE),
        (14, Some(b'R')) => is(b"REQUEST_METHOD", METHOD),
        (14, _) => is(b"CONTENT_LENGTH", CLENGTH),
        (15, _) => is(b"SERVER_PROTOCOL", PROTOCOL),
        _ => None,
    }
}

impl Collector {
    /// Room for `count` variables (more are taken too, at the cost of
    /// growing the list).
    pub(crate) fn new(count: usize) -> Collector {
        Collector {
            spans: vec![(Span::default(), Span::default()); count],
            n_fields: 0,
            back: count,
            known: [None; KNOWN.len()],
            host_first: None,
            host: None,
            content_type: None,
            content_length: None,
            body: BodyKind::Empty,
            seen: 0,
            repeated: false,
            late: None,
        }
    }

    /// Adds a field at the end of the fields.
    #[inline(always)]
    fn push_field(&mut self, pair: (Span, Span)) {
        if self.n_fields == self.back {
            self.grow();
        }
        if let Some(slot) = self.spans.get_mut(self.n_fields) {
            *slot = pair;
            self.n_fields += 1;
        }
    }

    /// Adds a server variable before the earlier ones.
    #[inline(always)]
    fn push_var(&mut self, pair: (Span, Span)) {
        if self.n_fields == self.back {
            self.grow();
        }
        if let Some(slot) = self.back.checked_sub(1).and_then(|b| self.spans.get_mut(b)) {
            *slot = pair;
            self.back -= 1;
        }
    }

    /// Doubles the room (the codec's estimate of the number of variables
    /// was short): the fields stay in front, the server variables move to
    /// the new end. The count limit, checked before a variable is added,
    /// bounds how far this goes.
    #[cold]
    fn grow(&mut self) {
        let len = self.spans.len();
        let new_len = (len * 2).max(8);
        let mut spans = vec![(Span::default(), Span::default()); new_len];
        let n_vars = len.saturating_sub(self.back);
        let new_back = new_len - n_vars;
        if let (Some(to), Some(from)) = (
            spans.get_mut(..self.n_fields),
            self.spans.get(..self.n_fields),
        ) {
            to.copy_from_slice(from);
        }
        if let (Some(to), Some(from)) = (spans.get_mut(new_back..), self.spans.get(self.back..)) {
            to.copy_from_slice(from);
        }
        self.spans = spans;
        self.back = new_back;
    }

    /// Whether `value` differs from the value of the first variable like
    /// `first` (none: this is the first).
    #[inline(always)]
    fn differs(buf: &[u8], first: &mut Option<Span>, value: Span) -> bool {
        match first {
            Some(f) => !same_bytes(f.get(buf), value.get(buf)),
            None => {
                *first = Some(value);
                false
            }
        }
    }

    /// Sorts the variable whose name and value lie at `n` and `v` of `buf`
    /// (checked already: a token and a value without NUL, CR or LF).
    #[inline(always)]
    pub(crate) fn add(&mut self, buf: &[u8], n: Span, v: Span) {
        let name = n.get(buf);
        if name.first_chunk::<5>() == Some(b"HTTP_") {
            let h = name.get(5..).unwrap_or(&[]);
            // nginx passes every request header, Content-Type and
            // Content-Length included; the body's framing and type are the
            // front end's CONTENT_TYPE and CONTENT_LENGTH (which differ when
            // it de-chunked the body), and the environ must not hold them
            // twice.
            match h {
                b"" => {
                    self.late.get_or_insert(ParseError::InvalidHeaderName);
                    return;
                }
                b"CONTENT_TYPE" | b"CONTENT_LENGTH" => return,
                _ => {}
            }
            if h.len() == 4 && h.eq_ignore_ascii_case(b"host") {
                // A header the client sent twice is no repeat (nginx before
                // 1.23 passes each line as its own `HTTP_*` variable, and
                // the environ joins them as for HTTP/1), but Host stays
                // single, as RFC 9112 §3.2 wants it.
                if h == b"HOST" && Collector::differs(buf, &mut self.host_first, v) {
                    self.repeated = true;
                }
                self.host = Some(v);
            }
            // The field's name is the variable's after `HTTP_`, with '_'
            // made '-' by `finish` (HTTP_X_REQUEST_ID → X-REQUEST-ID; case
            // does not matter to HTTP, and the environ key is made again
            // from it).
            self.push_field((n.tail(h.len()), v));
            return;
        }
        let Some(place) = known_place(name) else {
            // Earlier names are searched only when one with the same small
            // hash came before (a bit of `seen`): with a front end's dozen
            // other names that is rare.
            let bit = 1u64 << (name_hash(name) & 63);
            if self.seen & bit != 0 {
                let first = self.spans.get(self.back..).unwrap_or(&[]);
                if let Some((_, f)) = first
                    .iter()
                    .rev()
                    .find(|(m, _)| same_bytes(m.get(buf), name))
                {
                    if !same_bytes(f.get(buf), v.get(buf)) {
                        self.repeated = true;
                    }
                }
            }
            self.seen |= bit;
            self.push_var((n, v));
            return;
        };
        if Collector::differs(buf, &mut self.known[place], v) {
            self.repeated = true;
        }
        let value = v.get(buf);
        match place {
            CTYPE => {
                if !value.is_empty() {
                    self.content_type = Some(v);
                    self.push_field((n, v));
                }
            }
            CLENGTH => {
                if !value.is_empty() {
                    match parse_length(value) {
                        Some(len) => {
                            self.content_length = Some(v);
                            self.body = BodyKind::Length(len);
                            self.push_field((n, v));
                        }
                        None => {
                            self.late.get_or_insert(ParseError::BadContentLength);
                        }
                    }
                }
            }
            _ => self.push_var((n, v)),
        }
    }

    /// Builds the request over `bytes` (the buffer the spans index), with
    /// the errors and the rules of [`CgiVars::into_request`].
    pub(crate) fn finish(
        self,
        mut bytes: Vec<u8>,
        limits: &Limits,
    ) -> Result<RequestHead, ParseError> {
        if self.repeated {
            return Err(ParseError::BadRequest("a server variable repeated"));
        }
        let known = self.known;
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
            None => rebuild_target(&mut bytes, &known, limits)?,
        };
        let (path, query) = {
            let t = target.get(&bytes);
            let start = target.start();
            match memchr::memchr(b'?', t) {
                Some(q) => (
                    Span::new(start, start + q),
                    Span::new(start + q + 1, start + t.len()),
                ),
                None => (target, Span::new(start + t.len(), start + t.len())),
            }
        };
        if let Some(e) = self.late {
            return Err(e);
        }
        if self.n_fields > limits.max_header_count {
            return Err(ParseError::TooManyHeaders);
        }
        let Collector {
            mut spans,
            n_fields,
            back,
            ..
        } = self;
        // The field names, written over the variables' own bytes ('_' →
        // '-'), so that nothing is copied.
        for (n, _) in spans.get(..n_fields).unwrap_or(&[]) {
            let e = n.start() + n.get(&bytes).len();
            if let Some(name) = bytes.get_mut(n.start()..e) {
                for b in name {
                    *b = if *b == b'_' { b'-' } else { *b };
                }
            }
        }
        // The server variables in arrival order, right after the fields.
        let n_vars = spans.len().saturating_sub(back);
        if let Some(vars) = spans.get_mut(back..) {
            vars.reverse();
        }
        let from = back.min(spans.len());
        spans.copy_within(from.., n_fields.min(from));
        spans.truncate(n_fields + n_vars);
        Ok(GatewayParts {
            bytes,
            method,
            target,
            path,
            query,
            version,
            fields: spans,
            n_fields,
            host: self.host,
            body: self.body,
            content_type: self.content_type,
            content_length: self.content_length,
        }
        .into())
    }
}

/// The request-target made from `SCRIPT_NAME`, `PATH_INFO` and
/// `QUERY_STRING` (percent-encoding what a target cannot hold), appended to
/// `bytes`; 400 when there is neither `SCRIPT_NAME` nor `PATH_INFO`.
fn rebuild_target(
    bytes: &mut Vec<u8>,
    known: &[Option<Span>; KNOWN.len()],
    limits: &Limits,
) -> Result<Span, ParseError> {
    let script = known[SCRIPT].map(|s| s.get(bytes).to_vec());
    let info = known[INFO].map(|s| s.get(bytes).to_vec());
    let query = known[QUERY].map(|s| s.get(bytes).to_vec());
    if script.is_none() && info.is_none() {
        return Err(ParseError::InvalidTarget);
    }
    let start = bytes.len();
    // An origin-form target starts with '/', whatever the front end put
    // first.
    let first = script.iter().chain(info.iter()).flatten().next();
    if first != Some(&b'/') {
        bytes.push(b'/');
    }
    for part in [script, info].into_iter().flatten() {
        push_encoded(bytes, &part);
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        bytes.push(b'?');
        push_encoded_query(bytes, &q);
    }
    if bytes.len() > limits.max_head_size * 4 {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(Span::new(start, bytes.len()))
}

/// Whether `a` and `b` hold the same bytes. Up to 16 bytes are compared
/// inline, a word or two of overlapping loads from each, where `==` calls
/// `memcmp`: the names and values of a front end's variables are mostly
/// that short, and compared several times each per request.
#[inline(always)]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word(s: &[u8], at: usize) -> Option<u64> {
        s.get(at..)?
            .first_chunk::<8>()
            .map(|c| u64::from_le_bytes(*c))
    }
    fn half(s: &[u8], at: usize) -> Option<u32> {
        s.get(at..)?
            .first_chunk::<4>()
            .map(|c| u32::from_le_bytes(*c))
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// The end of the run of upper-case letters, digits and '_' (what CGI
/// names are made of, all tchar) that starts at `at`, looked at eight bytes
/// at a time: a byte loop over a front end's 200 bytes of names was the
/// larger part of decoding its head. The run may end early, before the last
/// eight bytes of `block`; a caller that needs the exact end goes on byte
/// by byte.
#[inline(always)]
pub(crate) fn name_run(block: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = block.get(at..).and_then(|s| s.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        // The high bit of each byte lane says "at least `c`" for a byte
        // below 0x80: x + (0x80 - c) cannot carry into the next lane then.
        // A byte from 0x80 up is refused by `!w`, and whatever its carry
        // does to the lanes after it does not matter: the run ends there.
        let ge = |c: u8| w.wrapping_add(ONES * u64::from(0x80 - c));
        let upper = ge(b'A') & !ge(b'Z' + 1);
        let digit = ge(b'0') & !ge(b'9' + 1);
        let underscore = ge(b'_') & !ge(b'_' + 1);
        let good = (upper | digit | underscore) & !w & HIGH;
        let bad = !good & HIGH;
        if bad != 0 {
            return at + (bad.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// The checks of [`CgiVars::push`] for a variable that would be the
/// `count`-th after `size` bytes of names and values: the new size, or the
/// error. `name_token` and `value_clean` say that the codec has found the
/// name a token or the value free of NUL, CR and LF already (SCGI finds a
/// name's end by its bytes, looks for CR and LF once in its whole block,
/// and ends values at a NUL), so neither is looked at again.
#[inline(always)]
pub(crate) fn check(
    count: usize,
    size: usize,
    name: &[u8],
    value: &[u8],
    name_token: bool,
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
    if !name_token && (name.is_empty() || !name.iter().fold(true, |ok, &b| ok & is_tchar(b))) {
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
    fn errors_come_in_the_order_they_always_came() {
        // The request-level errors of all variables come after the checks
        // of each variable, whatever their order in the request: a repeat
        // before a variable past the size limit is a 431, as when every
        // variable was checked before any was sorted.
        let limits = Limits {
            max_head_size: 200,
            ..Limits::default()
        };
        let big = "x".repeat(200);
        let mut v = CgiVars::new();
        for (n, val) in [
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/"),
            ("REMOTE_ADDR", "a"),
            ("REMOTE_ADDR", "b"),
        ] {
            v.push(n.as_bytes(), val.as_bytes(), &limits).unwrap();
        }
        assert_eq!(
            v.push(b"HTTP_X", big.as_bytes(), &limits),
            Err(ParseError::HeadTooLarge)
        );
        // Then: a repeat before a bad method, the method before the target,
        // the target before an empty `HTTP_` name or a bad CONTENT_LENGTH
        // (the first of these two in the request), and those before too
        // many fields.
        let vars = |extra: &[(&str, &str)]| {
            let mut all = vec![("HTTP_", "x"), ("CONTENT_LENGTH", "1x")];
            all.extend_from_slice(extra);
            request(&all)
        };
        assert!(matches!(
            vars(&[("REMOTE_ADDR", "a"), ("REMOTE_ADDR", "b")]),
            Err(ParseError::BadRequest(m)) if m.contains("repeated")
        ));
        assert_eq!(vars(&[]), Err(ParseError::InvalidMethod));
        assert_eq!(
            vars(&[("REQUEST_METHOD", "GET")]),
            Err(ParseError::InvalidTarget)
        );
        assert_eq!(
            vars(&[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/")]),
            Err(ParseError::InvalidHeaderName)
        );
        assert_eq!(
            request(&[
                ("CONTENT_LENGTH", "1x"),
                ("HTTP_", "x"),
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
            ]),
            Err(ParseError::BadContentLength)
        );
        let limits = Limits {
            max_header_count: 1,
            ..Limits::default()
        };
        let mut v = CgiVars::new();
        for (n, val) in [
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/"),
            ("HTTP_A", "1"),
            ("HTTP_B", "2"),
        ] {
            v.push(n.as_bytes(), val.as_bytes(), &limits).unwrap();
        }
        assert_eq!(v.into_request(&limits), Err(ParseError::TooManyHeaders));
    }

    #[test]
    fn a_collector_without_room_grows_and_keeps_the_order() {
        // A codec sizes the collector from its block; one that counted too
        // few still gets every variable, in order.
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        let mut pairs = vec![
            ("REQUEST_METHOD".to_string(), "GET".to_string()),
            ("REQUEST_URI".to_string(), "/".to_string()),
        ];
        for i in 0..30 {
            let name = if i % 3 == 0 { "HTTP_F" } else { "V" };
            pairs.push((format!("{name}{i}"), i.to_string()));
        }
        for (n, v) in &pairs {
            let n0 = bytes.len();
            bytes.extend_from_slice(n.as_bytes());
            let v0 = bytes.len();
            bytes.extend_from_slice(v.as_bytes());
            spans.push((Span::new(n0, v0), Span::new(v0, bytes.len())));
        }
        for room in [0, 1, 3, 8, 9, 40] {
            let mut c = Collector::new(room);
            for &(n, v) in &spans {
                c.add(&bytes, n, v);
            }
            let h = c.finish(bytes.clone(), &Limits::default()).unwrap();
            let fields: Vec<_> = h.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            let want: Vec<_> = pairs
                .iter()
                .filter_map(|(n, v)| {
                    let f = n.strip_prefix("HTTP_")?;
                    Some((f.as_bytes().to_vec(), v.as_bytes().to_vec()))
                })
                .collect();
            assert_eq!(fields, want, "{room}");
            let vars: Vec<_> = h.vars().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            let want: Vec<_> = pairs
                .iter()
                .filter(|(n, _)| !n.starts_with("HTTP_"))
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            assert_eq!(vars, want, "{room}");
        }
    }

    #[test]
    fn same_bytes_is_equality() {
        let words: Vec<Vec<u8>> = (0..=20)
            .flat_map(|n| {
                let base: Vec<u8> = (0..n).map(|i| b'a' + i as u8).collect();
                // The same length with one byte changed at each place.
                let changed = (0..n).map(move |i| {
                    let mut w: Vec<u8> = (0..n).map(|j| b'a' + j as u8).collect();
                    w[i] ^= 0x20;
                    w
                });
                std::iter::once(base).chain(changed).collect::<Vec<_>>()
            })
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn the_name_run_stops_at_the_first_byte_outside_its_set() {
        let in_set = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_';
        for b in 0..=255u8 {
            for k in 0..20 {
                let mut block = b"AZ09_QX_".repeat(3);
                block[k] = b;
                // The name run passes only bytes of its set and stops at
                // the first other one, or within the last eight bytes.
                let end = name_run(&block, 0);
                assert!(block[..end].iter().all(|&c| in_set(c)), "{b} at {k}");
                assert!(end + 8 > block.len() || !in_set(block[end]), "{b} at {k}");
                if !in_set(b) && k + 8 <= block.len() {
                    assert_eq!(end, k, "{b} at {k}");
                }
            }
        }
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
