//! Forwarded request facts: which peers are trusted to state them
//! ([`TrustedProxies`], from `--forwarded-allow-ips`), and what the
//! `Forwarded` (RFC 7239) and `X-Forwarded-For`/`-Proto`/`-Host`/`-Port`/
//! `-Prefix` headers of a request from such a peer come to
//! ([`ForwardedHeaders::resolve`]).
//!
//! The rules, which docs/DEPLOY.md ("Trusting proxies") shows as a table:
//!
//! * Only a trusted peer's headers count. The server removes them from the
//!   environ of any other peer's request, so that nothing downstream reads
//!   them either.
//! * The client is found by walking the list of addresses from the right
//!   (the hop nearest to this server) and skipping trusted proxies: the
//!   first address that is not a trusted proxy is the client. When every
//!   address is trusted, the leftmost is. When the node found is not an
//!   address (`unknown`, an obfuscated name, or a value that does not
//!   parse), the client's address is not known and the peer's stands.
//! * `Forwarded` wins: when a request has one, its `for=`, `proto=` and
//!   `host=` (all taken from the element of the client found) decide, and
//!   `X-Forwarded-For`, `-Proto`, `-Host` and `-Port` are not read.
//!   `X-Forwarded-Prefix`, which `Forwarded` has no parameter for, is read
//!   either way.
//! * `X-Forwarded-Proto`, `-Host`, `-Port` and `-Prefix` may be lists too
//!   when each proxy appends to them. Their entries line up with
//!   `X-Forwarded-For`'s from the right, so the entry at the client's
//!   position (counted from the right) is taken; a shorter list (proxies
//!   that pass the first proxy's value through) gives its leftmost entry.
//! * A value that is not valid is ignored, never an error for the request:
//!   a scheme other than `http`/`https`, a host that is not `host[:port]`,
//!   a port outside 1–65535, a prefix that does not start with `/`, ends
//!   with `/`, or has a `?`, `#`, `%`, `\`, an empty, `.` or `..` segment
//!   or a byte outside visible ASCII.
//!
//! Work is bounded: at most [`MAX_HOPS`] list entries are looked at from
//! the right, and the header values themselves are bounded by the request
//! head's limits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::h1::syntax::{is_valid_host, trim_ows};

/// Most entries of an address list looked at, from the right. Real chains
/// have a handful of proxies; a longer list is walked this far and the
/// entry reached is taken as the client.
pub const MAX_HOPS: usize = 64;

/// The default of `--forwarded-allow-ips`: this host's loopback
/// addresses, as gunicorn's default (unix-socket peers are trusted too).
pub const DEFAULT_FORWARDED_ALLOW_IPS: &str = "127.0.0.1,::1";

/// An address range: an address and how many leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    bits: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), usize::from(self.bits))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), usize::from(self.bits))
            }
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    let whole = bits / 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address
/// it stands for, in trust decisions and in the environ.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The peers whose forwarded headers are believed (`--forwarded-allow-ips`):
/// addresses and CIDR ranges, or everyone (`*`). Peers on unix sockets are
/// always trusted, as in gunicorn: only processes allowed to open the
/// socket's file can connect there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxies {
    all: bool,
    nets: Vec<Net>,
}

impl Default for TrustedProxies {
    fn default() -> Self {
        TrustedProxies {
            all: false,
            nets: vec![
                Net {
                    addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    bits: 32,
                },
                Net {
                    addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    bits: 128,
                },
            ],
        }
    }
}

impl TrustedProxies {
    /// Parses a comma-separated list of IPv4/IPv6 addresses and CIDR
    /// ranges (`10.0.0.0/8`, `fd00::/8`), or `*` for every peer. Spaces
    /// around entries are allowed; an empty list trusts no TCP peer. The
    /// error is one line naming the entry at fault.
    pub fn parse(s: &str) -> Result<TrustedProxies, String> {
        let mut t = TrustedProxies {
            all: false,
            nets: Vec::new(),
        };
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                t.all = true;
                continue;
            }
            let bad = || {
                format!(
                    "{entry:?} in --forwarded-allow-ips is not an IP address, a CIDR range or *"
                )
            };
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => {
                    let addr = canonical(a.parse::<IpAddr>().map_err(|_| bad())?);
                    let max = if addr.is_ipv4() { 32 } else { 128 };
                    let ok_digits =
                        !b.is_empty() && b.len() <= 3 && b.bytes().all(|c| c.is_ascii_digit());
                    let bits: u8 = b
                        .parse()
                        .ok()
                        .filter(|n| ok_digits && *n <= max)
                        .ok_or_else(bad)?;
                    (addr, bits)
                }
                None => {
                    let addr = canonical(entry.parse::<IpAddr>().map_err(|_| bad())?);
                    (addr, if addr.is_ipv4() { 32 } else { 128 })
                }
            };
            t.nets.push(Net { addr, bits });
        }
        Ok(t)
    }

    /// Whether a TCP peer (or a forwarded hop) at `ip` is trusted.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        if self.all {
            return true;
        }
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// Whether every peer is trusted (`*`).
    pub fn trusts_all(&self) -> bool {
        self.all
    }
}

/// Which forwarding header a field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// `Forwarded` (RFC 7239).
    Forwarded,
    /// `X-Forwarded-For`.
    For,
    /// `X-Forwarded-Proto`.
    Proto,
    /// `X-Forwarded-Host`.
    Host,
    /// `X-Forwarded-Port`.
    Port,
    /// `X-Forwarded-Prefix`.
    Prefix,
}

/// Which forwarding header `name` is (any case), if any. Cheap enough to
/// ask of every header of every request: one length and first-byte test
/// rules out nearly all other names.
pub fn header_kind(name: &[u8]) -> Option<HeaderKind> {
    match name.len() {
        9 if name.eq_ignore_ascii_case(b"forwarded") => Some(HeaderKind::Forwarded),
        15..=18 if name[..12].eq_ignore_ascii_case(b"x-forwarded-") => {
            let rest = &name[12..];
            if rest.eq_ignore_ascii_case(b"for") {
                Some(HeaderKind::For)
            } else if rest.eq_ignore_ascii_case(b"proto") {
                Some(HeaderKind::Proto)
            } else if rest.eq_ignore_ascii_case(b"host") {
                Some(HeaderKind::Host)
            } else if rest.eq_ignore_ascii_case(b"port") {
                Some(HeaderKind::Port)
            } else if rest.eq_ignore_ascii_case(b"prefix") {
                Some(HeaderKind::Prefix)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The forwarding headers of one request, gathered while its headers are
/// walked. Repeated fields are one list, in order (RFC 9110 §5.3).
#[derive(Clone, Debug, Default)]
pub struct ForwardedHeaders<'a> {
    forwarded: Vec<&'a [u8]>,
    xff: Vec<&'a [u8]>,
    proto: Vec<&'a [u8]>,
    host: Vec<&'a [u8]>,
    port: Vec<&'a [u8]>,
    prefix: Vec<&'a [u8]>,
}

/// What a trusted peer's forwarding headers change in a request.
/// `None` leaves the request's own value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// The client's address (REMOTE_ADDR).
    pub client_addr: Option<IpAddr>,
    /// The client's port, when the forwarded node gave one (REMOTE_PORT).
    pub client_port: Option<u16>,
    /// `http` or `https` (wsgi.url_scheme).
    pub scheme: Option<&'static str>,
    /// The host the client asked for, `name[:port]` (HTTP_HOST).
    pub http_host: Option<String>,
    /// The host name without the port (SERVER_NAME).
    pub server_name: Option<String>,
    /// The port the client connected to (SERVER_PORT).
    pub server_port: Option<u16>,
    /// The path prefix the proxy removed, no trailing `/` (SCRIPT_NAME).
    pub prefix: Option<String>,
}

/// A node of a forwarded address list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    /// An address, with a port when one was given.
    Ip(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated name, or a value that does not parse: no
    /// address, and never a trusted proxy.
    Opaque,
}

impl<'a> ForwardedHeaders<'a> {
    /// Adds one field's value.
    pub fn add(&mut self, kind: HeaderKind, value: &'a [u8]) {
        let list = match kind {
            HeaderKind::Forwarded => &mut self.forwarded,
            HeaderKind::For => &mut self.xff,
            HeaderKind::Proto => &mut self.proto,
            HeaderKind::Host => &mut self.host,
            HeaderKind::Port => &mut self.port,
            HeaderKind::Prefix => &mut self.prefix,
        };
        list.push(value);
    }

    /// Whether no forwarding header was added.
    pub fn is_empty(&self) -> bool {
        self.forwarded.is_empty()
            && self.xff.is_empty()
            && self.proto.is_empty()
            && self.host.is_empty()
            && self.port.is_empty()
            && self.prefix.is_empty()
    }

    /// What the headers say, for a request from a trusted peer. `trusted`
    /// decides which hops are skipped; `original_host` is the request's own
    /// Host (for a forwarded port without a forwarded host); `https`
    /// whether the connection itself counts as https (for default ports).
    pub fn resolve(
        &self,
        trusted: &TrustedProxies,
        original_host: Option<&[u8]>,
        https: bool,
    ) -> Forwarding {
        let mut out = Forwarding::default();
        let mut host: Option<&[u8]> = None;
        let mut port: Option<u16> = None;
        let mut hop = 0;
        if !self.forwarded.is_empty() {
            let elements = rlist(&self.forwarded, true);
            let mut chosen: Option<&[u8]> = None;
            for element in elements.take(MAX_HOPS) {
                let for_node = pair(element, b"for").map_or(Node::Opaque, node);
                chosen = Some(element);
                match for_node {
                    Node::Ip(ip, _) if trusted.trusts(ip) => {}
                    _ => break,
                }
            }
            if let Some(element) = chosen {
                if let Node::Ip(ip, p) = pair(element, b"for").map_or(Node::Opaque, node) {
                    out.client_addr = Some(canonical(ip));
                    out.client_port = p;
                }
                out.scheme = pair(element, b"proto").and_then(scheme);
                host = pair(element, b"host").filter(|h| !h.is_empty() && is_valid_host(h));
            }
        } else {
            if !self.xff.is_empty() {
                let mut last = None;
                for (i, entry) in rlist(&self.xff, false).take(MAX_HOPS).enumerate() {
                    let n = node(entry);
                    last = Some((i, n));
                    match n {
                        Node::Ip(ip, _) if trusted.trusts(ip) => {}
                        _ => break,
                    }
                }
                if let Some((i, n)) = last {
                    hop = i;
                    if let Node::Ip(ip, p) = n {
                        out.client_addr = Some(canonical(ip));
                        out.client_port = p;
                    }
                }
            }
            out.scheme = at_hop(&self.proto, hop).and_then(scheme);
            host = at_hop(&self.host, hop).filter(|h| !h.is_empty() && is_valid_host(h));
            port = at_hop(&self.port, hop).and_then(parse_port);
        }
        out.prefix = at_hop(&self.prefix, hop).and_then(prefix);

        let https = out.scheme.map_or(https, |s| s == "https");
        let default_port = if https { 443 } else { 80 };
        let base = host.or(if port.is_some() { original_host } else { None });
        if let Some(h) = base.filter(|h| !h.is_empty() && is_valid_host(h)) {
            let (name, own_port) = split_host(h);
            let own_port = own_port.and_then(parse_port);
            let text = String::from_utf8_lossy(name).into_owned();
            out.server_port = port.or(own_port).or(Some(default_port));
            out.http_host = Some(match (port, own_port) {
                (Some(p), _) if p != default_port => format!("{text}:{p}"),
                (Some(_), _) => text.clone(),
                (None, _) => String::from_utf8_lossy(h).into_owned(),
            });
            out.server_name = Some(text);
        } else if let Some(p) = port {
            out.server_port = Some(p);
        } else if out.scheme.is_some() {
            // The scheme changed and nothing names the port: the scheme's
            // own port is the one the client used.
            out.server_port = Some(default_port);
        }
        out
    }
}

/// The entries of the comma-separated lists in `fields` (in order),
/// yielded from the last to the first, trimmed. With `quoted`, commas
/// inside quoted strings do not split (RFC 7239's `Forwarded`).
fn rlist<'a, 'f>(fields: &'f [&'a [u8]], quoted: bool) -> impl Iterator<Item = &'a [u8]> + 'f {
    fields
        .iter()
        .rev()
        .flat_map(move |f| split_outside_quotes(f, quoted).into_iter().rev())
        .map(trim_ows)
}

/// Splits `v` at commas (outside quoted strings when `quoted`). Bounded by
/// the length of one header value.
fn split_outside_quotes(v: &[u8], quoted: bool) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, &b) in v.iter().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' && quoted {
            in_quotes = true;
        } else if b == b',' {
            out.push(&v[start..i]);
            start = i + 1;
        }
    }
    out.push(&v[start..]);
    out
}

/// The list entry that lines up with hop `hop` counted from the right, or
/// the leftmost entry when the list is shorter.
fn at_hop<'a>(fields: &[&'a [u8]], hop: usize) -> Option<&'a [u8]> {
    if fields.is_empty() {
        return None;
    }
    let mut last = None;
    for (i, e) in rlist(fields, false).take(MAX_HOPS).enumerate() {
        last = Some(e);
        if i == hop {
            break;
        }
    }
    last
}

/// The value of parameter `name` in one `Forwarded` element
/// (`a=b;c="d"`), unquoted. A quoted value with an escape is taken
/// literally without its backslashes. A malformed pair yields `None` for
/// that name.
fn pair<'a>(element: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for p in split_pairs(element) {
        let p = trim_ows(p);
        let Some(eq) = p.iter().position(|&b| b == b'=') else {
            continue;
        };
        if !p[..eq].eq_ignore_ascii_case(name) {
            continue;
        }
        let v = &p[eq + 1..];
        return match v {
            [b'"', inner @ .., b'"'] => {
                // Backslash escapes never occur in the values used here
                // (addresses, schemes, hosts); a value holding one is
                // refused rather than unescaped.
                (!inner.contains(&b'\\') && !inner.contains(&b'"')).then_some(inner)
            }
            _ if v.iter().all(|&b| crate::h1::syntax::is_tchar(b)) => Some(v),
            _ => None,
        };
    }
    None
}

/// Splits a `Forwarded` element at semicolons outside quoted strings.
fn split_pairs(element: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut in_quotes = false;
    element.split(move |&b| {
        if b == b'"' {
            in_quotes = !in_quotes;
        }
        b == b';' && !in_quotes
    })
}

/// A node: `1.2.3.4`, `1.2.3.4:80`, `[v6]`, `[v6]:80`, or a bare IPv6
/// address (as `X-Forwarded-For` writes them). Anything else (`unknown`,
/// `_hidden`, garbage) is opaque.
fn node(v: &[u8]) -> Node {
    let Ok(text) = std::str::from_utf8(v) else {
        return Node::Opaque;
    };
    if let Some(rest) = text.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Node::Opaque;
        };
        let Ok(ip) = ip.parse::<Ipv6Addr>() else {
            return Node::Opaque;
        };
        return match after {
            "" => Node::Ip(IpAddr::V6(ip), None),
            p => match p.strip_prefix(':') {
                // An obfuscated port (`_abc`) leaves the port unknown.
                Some(p) if p.starts_with('_') => Node::Ip(IpAddr::V6(ip), None),
                Some(p) => match parse_port(p.as_bytes()) {
                    Some(port) => Node::Ip(IpAddr::V6(ip), Some(port)),
                    None => Node::Opaque,
                },
                None => Node::Opaque,
            },
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Node::Ip(ip, None);
    }
    if let Some((ip, p)) = text.split_once(':') {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            if p.starts_with('_') {
                return Node::Ip(IpAddr::V4(ip), None);
            }
            if let Some(port) = parse_port(p.as_bytes()) {
                return Node::Ip(IpAddr::V4(ip), Some(port));
            }
        }
    }
    Node::Opaque
}

/// `http` or `https`, in any case.
fn scheme(v: &[u8]) -> Option<&'static str> {
    if v.eq_ignore_ascii_case(b"https") {
        Some("https")
    } else if v.eq_ignore_ascii_case(b"http") {
        Some("http")
    } else {
        None
    }
}

/// A port from 1 to 65535, plain digits.
fn parse_port(v: &[u8]) -> Option<u16> {
    if v.is_empty() || v.len() > 5 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok().filter(|&p| p != 0)
}

/// A path prefix: starts with `/`, no trailing `/`, segments of visible
/// ASCII that are not empty, `.` or `..`, and none of `?`, `#`, `%`, `\`
/// (SCRIPT_NAME is a decoded path, so an encoded one is not taken).
fn prefix(v: &[u8]) -> Option<String> {
    if v.len() < 2 || v[0] != b'/' || v.ends_with(b"/") {
        return None;
    }
    let ok_bytes = v
        .iter()
        .all(|&b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%' | b'\\'));
    let ok_segments = v[1..]
        .split(|&b| b == b'/')
        .all(|s| !s.is_empty() && s != b"." && s != b"..");
    (ok_bytes && ok_segments).then(|| String::from_utf8_lossy(v).into_owned())
}

/// Splits a valid `host[:port]` (`[v6]:port` too) into name and port.
fn split_host(h: &[u8]) -> (&[u8], Option<&[u8]>) {
    if h.first() == Some(&b'[') {
        if let Some(end) = h.iter().position(|&c| c == b']') {
            return (&h[..=end], h[end + 1..].strip_prefix(b":"));
        }
        return (h, None);
    }
    match h.iter().rposition(|&c| c == b':') {
        Some(i) => (&h[..i], Some(&h[i + 1..])),
        None => (h, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolve(headers: &[(&str, &str)], trusted: &str) -> Forwarding {
        let t = TrustedProxies::parse(trusted).unwrap();
        let mut f = ForwardedHeaders::default();
        for (n, v) in headers {
            f.add(header_kind(n.as_bytes()).unwrap(), v.as_bytes());
        }
        f.resolve(&t, Some(b"backend:8000"), false)
    }

    #[test]
    fn trusted_set_parses_addresses_ranges_and_star() {
        let d = TrustedProxies::default();
        assert_eq!(
            d,
            TrustedProxies::parse(DEFAULT_FORWARDED_ALLOW_IPS).unwrap()
        );
        assert!(d.trusts(ip("127.0.0.1")) && d.trusts(ip("::1")));
        assert!(d.trusts(ip("::ffff:127.0.0.1")), "IPv4-mapped");
        assert!(!d.trusts(ip("127.0.0.2")) && !d.trusts(ip("10.0.0.1")));
        let t = TrustedProxies::parse(" 10.0.0.0/8 , fd00::/8,192.0.2.7,  ").unwrap();
        assert!(t.trusts(ip("10.255.1.2")) && !t.trusts(ip("11.0.0.1")));
        assert!(t.trusts(ip("fd12::1")) && !t.trusts(ip("fe80::1")));
        assert!(t.trusts(ip("192.0.2.7")) && !t.trusts(ip("192.0.2.8")));
        let odd = TrustedProxies::parse("192.0.2.0/25,0.0.0.0/0").unwrap();
        assert!(odd.trusts(ip("8.8.8.8")) && !odd.trusts(ip("::2")));
        let t = TrustedProxies::parse("10.0.0.0/13").unwrap();
        assert!(t.trusts(ip("10.7.255.255")) && !t.trusts(ip("10.8.0.0")));
        let star = TrustedProxies::parse("*").unwrap();
        assert!(star.trusts_all() && star.trusts(ip("203.0.113.9")));
        assert!(!TrustedProxies::parse("").unwrap().trusts(ip("127.0.0.1")));
        for bad in [
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "1.2.3",
            "*x",
        ] {
            let e = TrustedProxies::parse(bad).unwrap_err();
            assert!(
                e.contains("forwarded-allow-ips") && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn header_names() {
        assert_eq!(header_kind(b"FORWARDED"), Some(HeaderKind::Forwarded));
        assert_eq!(header_kind(b"X-Forwarded-For"), Some(HeaderKind::For));
        assert_eq!(header_kind(b"x-forwarded-PROTO"), Some(HeaderKind::Proto));
        assert_eq!(header_kind(b"x-forwarded-host"), Some(HeaderKind::Host));
        assert_eq!(header_kind(b"x-forwarded-port"), Some(HeaderKind::Port));
        assert_eq!(header_kind(b"x-forwarded-prefix"), Some(HeaderKind::Prefix));
        for other in [
            &b"host"[..],
            b"x-forwarded-fo",
            b"x-forwarded-server",
            b"forwarde",
            b"x_forwarded_for",
        ] {
            assert_eq!(header_kind(other), None);
        }
    }

    #[test]
    fn rightmost_untrusted_address_is_the_client() {
        let trusted = "127.0.0.1,10.0.0.0/8";
        let f = resolve(
            &[("x-forwarded-for", "203.0.113.1, 198.51.100.2, 10.0.0.5")],
            trusted,
        );
        assert_eq!(
            f.client_addr,
            Some(ip("198.51.100.2")),
            "spoofed left entry ignored"
        );
        // Split over two fields, the same list.
        let f = resolve(
            &[
                ("x-forwarded-for", "203.0.113.1"),
                ("x-forwarded-for", "10.0.0.6 ,10.0.0.5"),
            ],
            trusted,
        );
        assert_eq!(f.client_addr, Some(ip("203.0.113.1")));
        // All trusted: the leftmost.
        let f = resolve(&[("x-forwarded-for", "10.1.1.1, 10.0.0.5")], trusted);
        assert_eq!(f.client_addr, Some(ip("10.1.1.1")));
        // Ports and brackets.
        let f = resolve(&[("x-forwarded-for", "[2001:db8::1]:4711")], trusted);
        assert_eq!(
            (f.client_addr, f.client_port),
            (Some(ip("2001:db8::1")), Some(4711))
        );
        let f = resolve(&[("x-forwarded-for", "192.0.2.9:81, 2001:db8::2")], "*");
        assert_eq!(
            (f.client_addr, f.client_port),
            (Some(ip("192.0.2.9")), Some(81))
        );
        let f = resolve(&[("x-forwarded-for", "::ffff:192.0.2.3")], trusted);
        assert_eq!(f.client_addr, Some(ip("192.0.2.3")));
        // Garbage at the client's position: address unknown, the peer stays.
        for junk in [
            "unknown",
            "not-an-ip",
            "1.2.3.4.5",
            "",
            "[::1",
            "1.2.3.4:99999",
        ] {
            let f = resolve(
                &[("x-forwarded-for", &format!("198.51.100.2, {junk}"))],
                trusted,
            );
            assert_eq!(f.client_addr, None, "{junk:?}");
        }
    }

    #[test]
    fn forwarded_rfc7239() {
        let trusted = "127.0.0.1,10.0.0.0/8";
        let f = resolve(
            &[(
                "forwarded",
                "for=203.0.113.1;proto=http, for=\"[2001:db8:cafe::17]:4711\";proto=https;host=\"example.com\", for=10.0.0.5;proto=http;by=10.0.0.1",
            )],
            trusted,
        );
        assert_eq!(f.client_addr, Some(ip("2001:db8:cafe::17")));
        assert_eq!(f.client_port, Some(4711));
        assert_eq!(f.scheme, Some("https"));
        assert_eq!(f.http_host.as_deref(), Some("example.com"));
        assert_eq!(f.server_name.as_deref(), Some("example.com"));
        assert_eq!(f.server_port, Some(443));
        // Case-insensitive names, quoted IPv4, obfuscated port.
        let f = resolve(
            &[(
                "forwarded",
                "For=\"192.0.2.60:_abc\";Proto=HTTPS;Host=\"a.example:8443\"",
            )],
            trusted,
        );
        assert_eq!(
            (f.client_addr, f.client_port),
            (Some(ip("192.0.2.60")), None)
        );
        assert_eq!(f.scheme, Some("https"));
        assert_eq!(f.http_host.as_deref(), Some("a.example:8443"));
        assert_eq!(f.server_port, Some(8443));
        // Obfuscated or unknown client: address unknown, proto still read.
        for node in ["unknown", "_hidden", "\"_x.y\""] {
            let f = resolve(
                &[("forwarded", &format!("for={node};proto=https"))],
                trusted,
            );
            assert_eq!(f.client_addr, None, "{node}");
            assert_eq!(f.scheme, Some("https"));
        }
        // Unquoted IPv6 is not a token: opaque.
        let f = resolve(&[("forwarded", "for=[2001:db8::1]")], trusted);
        assert_eq!(f.client_addr, None);
        // A comma inside a quoted string does not split elements.
        let f = resolve(&[("forwarded", "for=192.0.2.1;ext=\"a,b\"")], trusted);
        assert_eq!(f.client_addr, Some(ip("192.0.2.1")));
    }

    #[test]
    fn forwarded_wins_over_x_forwarded() {
        let f = resolve(
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "x.example"),
                ("x-forwarded-port", "9443"),
                ("forwarded", "for=192.0.2.1"),
                ("x-forwarded-prefix", "/app"),
            ],
            "127.0.0.1",
        );
        assert_eq!(f.client_addr, Some(ip("192.0.2.1")));
        assert_eq!(f.scheme, None);
        assert_eq!(f.http_host, None);
        assert_eq!(f.server_port, None);
        assert_eq!(
            f.prefix.as_deref(),
            Some("/app"),
            "prefix is read either way"
        );
    }

    #[test]
    fn x_forwarded_proto_host_port_prefix() {
        let f = resolve(
            &[
                ("x-forwarded-proto", "HTTPS"),
                ("x-forwarded-host", "www.example.com"),
                ("x-forwarded-prefix", "/shop/v1"),
            ],
            "127.0.0.1",
        );
        assert_eq!(f.scheme, Some("https"));
        assert_eq!(f.http_host.as_deref(), Some("www.example.com"));
        assert_eq!(f.server_name.as_deref(), Some("www.example.com"));
        assert_eq!(f.server_port, Some(443));
        assert_eq!(f.prefix.as_deref(), Some("/shop/v1"));
        // A port alone rewrites the request's own Host.
        let f = resolve(&[("x-forwarded-port", "8080")], "127.0.0.1");
        assert_eq!(f.http_host.as_deref(), Some("backend:8080"));
        assert_eq!(f.server_name.as_deref(), Some("backend"));
        assert_eq!(f.server_port, Some(8080));
        // The default port is left out of the host.
        let f = resolve(
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-host", "h:1"),
            ],
            "127.0.0.1",
        );
        assert_eq!(f.http_host.as_deref(), Some("h"));
        assert_eq!(f.server_port, Some(443));
        // The scheme alone: its default port.
        let f = resolve(&[("x-forwarded-proto", "https")], "127.0.0.1");
        assert_eq!((f.http_host, f.server_port), (None, Some(443)));
    }

    #[test]
    fn lists_line_up_with_the_client_hop() {
        // Two proxies that each append: 10.0.0.5 saw the client over https,
        // the inner one (the peer) saw 10.0.0.5 over http.
        let f = resolve(
            &[
                ("x-forwarded-for", "203.0.113.9, 10.0.0.5"),
                ("x-forwarded-proto", "https, http"),
                ("x-forwarded-host", "outer.example, inner.example"),
            ],
            "127.0.0.1,10.0.0.0/8",
        );
        assert_eq!(f.client_addr, Some(ip("203.0.113.9")));
        assert_eq!(f.scheme, Some("https"));
        assert_eq!(f.http_host.as_deref(), Some("outer.example"));
        // A single proto passed through: its leftmost (only) entry.
        let f = resolve(
            &[
                ("x-forwarded-for", "203.0.113.9, 10.0.0.5"),
                ("x-forwarded-proto", "https"),
            ],
            "127.0.0.1,10.0.0.0/8",
        );
        assert_eq!(f.scheme, Some("https"));
    }

    #[test]
    fn invalid_values_are_ignored() {
        let f = resolve(
            &[
                ("x-forwarded-proto", "ftp"),
                ("x-forwarded-host", "bad host"),
                ("x-forwarded-port", "0"),
                ("x-forwarded-prefix", "app"),
            ],
            "127.0.0.1",
        );
        assert_eq!(f, Forwarding::default());
        for p in [
            "/", "/app/", "//app", "/a//b", "/a/../b", "/a/./b", "/a?b", "/a#b", "/a%20b", "/a b",
            "/a\\b", "/é",
        ] {
            let f = resolve(&[("x-forwarded-prefix", p)], "127.0.0.1");
            assert_eq!(f.prefix, None, "{p:?}");
        }
        for p in ["65536", "-1", "+80", "80x", "", "123456"] {
            let f = resolve(&[("x-forwarded-port", p)], "127.0.0.1");
            assert_eq!(f.server_port, None, "{p:?}");
        }
        let f = resolve(
            &[("forwarded", "for=\"192.0.2.1\\\"\";proto=\"https")],
            "127.0.0.1",
        );
        assert_eq!((f.client_addr, f.scheme), (None, None));
    }

    #[test]
    fn long_lists_are_walked_a_bounded_distance() {
        let mut list: Vec<String> = (0..10_000).map(|_| "127.0.0.1".to_string()).collect();
        list[0] = "192.0.2.1".to_string();
        let f = resolve(&[("x-forwarded-for", &list.join(","))], "127.0.0.1");
        // Walked MAX_HOPS entries from the right, all trusted: the last one
        // reached is taken, never the spoofable far left.
        assert_eq!(f.client_addr, Some(ip("127.0.0.1")));
    }
}
