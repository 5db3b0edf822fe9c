//! The PROXY protocol header (HAProxy's specification, versions 1 and 2):
//! the few bytes a load balancer sends at the start of a connection to say
//! which client and which address of its own the connection stands for.
//!
//! [`parse_proxy_header`] looks at the start of a connection's input and
//! answers "need more bytes", "complete, this many bytes consumed" or an
//! error. It keeps no state: called again with more input it parses from the
//! start, which costs nothing worth saving for a header of at most
//! [`V1_MAX_LEN`] bytes (version 1) or 16 bytes plus a declared length that
//! is checked against a limit before any of it is waited for (version 2).
//!
//! The parser is strict, because the header decides who the client is: a
//! version 1 line follows the specification's grammar exactly (one space
//! between fields, addresses valid for the protocol named, ports without
//! leading zeros, CRLF), and a version 2 header must have the signature,
//! version 2, a known command, a stream transport for the address families
//! that carry addresses, an address block as long as its family needs, and
//! type-length-value fields (TLVs) that end exactly where the header ends.
//!
//! ```
//! use ferrowsgi_proto::proxy::{parse_proxy_header, ProxyParsed, DEFAULT_MAX_V2_LEN};
//!
//! let buf = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
//! let Ok(ProxyParsed::Complete { header, consumed }) = parse_proxy_header(buf, DEFAULT_MAX_V2_LEN)
//! else {
//!     panic!("expected a complete header");
//! };
//! let (src, dst) = header.addresses.unwrap();
//! assert_eq!(src.to_string(), "192.0.2.1:56324");
//! assert_eq!(dst.port(), 443);
//! assert_eq!(&buf[consumed..], b"GET / HTTP/1.1\r\n");
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest version 1 header, CRLF included (the specification's bound:
/// `PROXY TCP6` with two full IPv6 addresses and two five-digit ports).
pub const V1_MAX_LEN: usize = 107;

/// The twelve bytes that open a version 2 header. They cannot start an HTTP
/// request (nor a version 1 header), so the two are told apart at once.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Length of the fixed part of a version 2 header: the signature, the
/// version and command byte, the family byte and the two-byte length.
pub const V2_FIXED_LEN: usize = 16;

/// Default bound on a version 2 header's declared length (the address block
/// and the TLVs, after the fixed 16 bytes). Real load balancers send well
/// under 300 bytes (HAProxy's own limit for what it accepts is 216 bytes of
/// addresses plus its TLVs); 2 KiB leaves room for a client certificate's
/// common name and a unique id while keeping what a peer can make the
/// server hold small.
pub const DEFAULT_MAX_V2_LEN: usize = 2048;

/// PP2_TYPE_ALPN: the application protocol the client negotiated.
const PP2_TYPE_ALPN: u8 = 0x01;
/// PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI).
const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// PP2_TYPE_CRC32C: a checksum of the header (four bytes).
const PP2_TYPE_CRC32C: u8 = 0x03;
/// PP2_TYPE_UNIQUE_ID: an opaque connection id, at most 128 bytes.
const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
/// PP2_TYPE_SSL: facts about the client's TLS connection.
const PP2_TYPE_SSL: u8 = 0x20;
/// In PP2_TYPE_SSL's client byte: the client connected over TLS.
const PP2_CLIENT_SSL: u8 = 0x01;
/// Longest PP2_TYPE_UNIQUE_ID value the specification allows.
const MAX_UNIQUE_ID: usize = 128;

/// Why a PROXY header was refused. After any of these the connection must
/// be closed: nothing after a bad header can be trusted to be a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyError {
    /// The input starts with neither `PROXY ` nor the version 2 signature.
    NotProxy,
    /// A version 1 line of more than [`V1_MAX_LEN`] bytes, or one whose end
    /// is not a CRLF.
    V1TooLong,
    /// A version 1 line that does not follow the grammar; the text names
    /// the part at fault.
    V1Syntax(&'static str),
    /// A version 2 header whose version nibble is not 2.
    V2Version,
    /// A version 2 command other than LOCAL (0) and PROXY (1).
    V2Command,
    /// A version 2 address family or transport that is unknown or not a
    /// stream (UDP is not served).
    V2Family,
    /// A version 2 header declaring more bytes than the limit given.
    V2TooLong,
    /// A version 2 address block shorter than its family needs.
    V2Addresses,
    /// A TLV that overruns the header, or whose value is invalid for its
    /// type; the text names which.
    V2Tlv(&'static str),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy => {
                f.write_str("the connection does not start with a PROXY header")
            }
            ProxyError::V1TooLong => write!(
                f,
                "PROXY v1 line longer than {V1_MAX_LEN} bytes or not ended by CRLF"
            ),
            ProxyError::V1Syntax(what) => write!(f, "PROXY v1 header: invalid {what}"),
            ProxyError::V2Version => f.write_str("PROXY v2 header: version is not 2"),
            ProxyError::V2Command => f.write_str("PROXY v2 header: unknown command"),
            ProxyError::V2Family => {
                f.write_str("PROXY v2 header: unknown address family or not a stream transport")
            }
            ProxyError::V2TooLong => f.write_str("PROXY v2 header: declared length over the limit"),
            ProxyError::V2Addresses => {
                f.write_str("PROXY v2 header: address block too short for its family")
            }
            ProxyError::V2Tlv(what) => write!(f, "PROXY v2 header: invalid TLV ({what})"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// What a complete PROXY header says.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The client's address and the address it connected to, for a header
    /// that carries TCP over IPv4 or IPv6. `None` means the connection's
    /// own addresses stand: a version 2 LOCAL command (the load balancer's
    /// own health check), `UNKNOWN` in version 1, and the UNSPEC and UNIX
    /// families of version 2.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// The client connected to the load balancer over TLS (version 2's
    /// PP2_TYPE_SSL with its PP2_CLIENT_SSL bit): the request's scheme is
    /// `https`.
    pub tls: bool,
    /// The host name the client asked for (PP2_TYPE_AUTHORITY, the TLS
    /// server name), when given.
    pub authority: Option<String>,
}

/// The outcome of [`parse_proxy_header`] on the input so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyParsed {
    /// The input is a valid beginning; more bytes are needed.
    Partial,
    /// A complete header, which took the first `consumed` bytes.
    Complete {
        /// What the header says.
        header: ProxyHeader,
        /// Bytes of input the header took; the first request follows.
        consumed: usize,
    },
}

/// Parses the PROXY header at the start of `buf` (version 1 or 2, told
/// apart by their first bytes). A version 2 header whose declared length
/// exceeds `max_v2_len` is refused as soon as its fixed 16 bytes are in,
/// before the rest is waited for.
pub fn parse_proxy_header(buf: &[u8], max_v2_len: usize) -> Result<ProxyParsed, ProxyError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if n < V2_SIGNATURE.len() {
            return Ok(ProxyParsed::Partial);
        }
        return parse_v2(buf, max_v2_len);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        if n < V1_PREFIX.len() {
            return Ok(ProxyParsed::Partial);
        }
        return parse_v1(buf);
    }
    Err(ProxyError::NotProxy)
}

/// Version 1: `PROXY SP proto SP src SP dst SP sport SP dport CRLF`, or
/// `PROXY SP UNKNOWN [anything] CRLF`.
fn parse_v1(buf: &[u8]) -> Result<ProxyParsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = memchr::memchr2(b'\r', b'\n', window) else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(ProxyParsed::Partial)
        };
    };
    if window[cr] != b'\r' {
        return Err(ProxyError::V1Syntax("line ending (a bare LF)"));
    }
    if cr + 2 > V1_MAX_LEN {
        return Err(ProxyError::V1TooLong);
    }
    match buf.get(cr + 1) {
        None => return Ok(ProxyParsed::Partial),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1Syntax("line ending (a bare CR)")),
    }
    let consumed = cr + 2;
    let line = &buf[6..cr];
    let header = |addresses| ProxyParsed::Complete {
        header: ProxyHeader {
            version: 1,
            addresses,
            ..ProxyHeader::default()
        },
        consumed,
    };
    // UNKNOWN: whatever follows, up to the CRLF, is ignored (the
    // specification's rule), and the connection's own addresses stand.
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        return Ok(header(None));
    }
    // TCP4, what a load balancer in front of an IPv4 service sends with
    // every connection, is read in one pass over its fields; the rest by
    // the general path (which gives the same answer for TCP4 too).
    let addresses = match line.strip_prefix(b"TCP4 ") {
        Some(rest) => v1_tcp4(rest)?,
        None => v1_fields(line)?,
    };
    Ok(header(Some(addresses)))
}

/// The fields of a version 1 line after `PROXY `, other than `UNKNOWN`:
/// the protocol, the two addresses and the two ports, split at each
/// space.
fn v1_fields(line: &[u8]) -> Result<(SocketAddr, SocketAddr), ProxyError> {
    // The fields are taken one after another by a cursor over the line (a
    // split iterator's closure per byte cost more than the rest of the
    // header's parsing).
    let mut fields = Fields { line, at: 0 };
    let proto = fields.next().unwrap_or_default();
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(ProxyError::V1Syntax("protocol (not TCP4, TCP6 or UNKNOWN)")),
    };
    let mut next = |what| fields.next().ok_or(ProxyError::V1Syntax(what));
    let src = v1_ip(next("source address")?, v6).ok_or(ProxyError::V1Syntax("source address"))?;
    let dst = v1_ip(next("destination address")?, v6)
        .ok_or(ProxyError::V1Syntax("destination address"))?;
    let sport = v1_port(next("source port")?).ok_or(ProxyError::V1Syntax("source port"))?;
    let dport =
        v1_port(next("destination port")?).ok_or(ProxyError::V1Syntax("destination port"))?;
    if fields.next().is_some() {
        return Err(ProxyError::V1Syntax("line (extra fields)"));
    }
    Ok((SocketAddr::new(src, sport), SocketAddr::new(dst, dport)))
}

/// The four fields of a `TCP4` line (`rest`, after `TCP4 `), each read where
/// it stands and checked to end at a space (the last at the line's end),
/// with the errors [`v1_fields`] gives: a field that is missing or bad names
/// itself, a line that ends after a field names the next one.
fn v1_tcp4(rest: &[u8]) -> Result<(SocketAddr, SocketAddr), ProxyError> {
    const NAMES: [&str; 4] = [
        "source address",
        "destination address",
        "source port",
        "destination port",
    ];
    // After field `k`: a space leads to the next field, the line's end
    // means it is missing (or, after the last field, that the line is
    // whole), anything else makes field `k` bad.
    let after = |at: &mut usize, k: usize| -> Result<(), ProxyError> {
        match rest.get(*at) {
            Some(b' ') if k < 3 => {
                *at += 1;
                Ok(())
            }
            Some(b' ') => Err(ProxyError::V1Syntax("line (extra fields)")),
            None if k < 3 => Err(ProxyError::V1Syntax(NAMES[k + 1])),
            None => Ok(()),
            Some(_) => Err(ProxyError::V1Syntax(NAMES[k])),
        }
    };
    let mut at = 0;
    let src = ipv4_at(rest, &mut at).ok_or(ProxyError::V1Syntax(NAMES[0]))?;
    after(&mut at, 0)?;
    let dst = ipv4_at(rest, &mut at).ok_or(ProxyError::V1Syntax(NAMES[1]))?;
    after(&mut at, 1)?;
    let sport = port_at(rest, &mut at).ok_or(ProxyError::V1Syntax(NAMES[2]))?;
    after(&mut at, 2)?;
    let dport = port_at(rest, &mut at).ok_or(ProxyError::V1Syntax(NAMES[3]))?;
    after(&mut at, 3)?;
    Ok((
        SocketAddr::new(IpAddr::V4(src), sport),
        SocketAddr::new(IpAddr::V4(dst), dport),
    ))
}

/// The dotted quad that starts at `*at` in `s`, as [`v1_ipv4`] reads a
/// field, leaving `*at` on the byte after its last digit (which the caller
/// checks). `None` for a part of no digits, of more than three, with a
/// leading zero or above 255, or fewer than four parts.
#[inline]
fn ipv4_at(s: &[u8], at: &mut usize) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            if s.get(*at) != Some(&b'.') {
                return None;
            }
            *at += 1;
        }
        *octet = u8::try_from(number_at(s, at, 3)?).ok()?;
    }
    // A dot after the fourth part would make a fifth: the field is bad.
    (s.get(*at) != Some(&b'.')).then(|| Ipv4Addr::from(octets))
}

/// The port that starts at `*at` in `s`, as [`v1_port`] reads a field,
/// leaving `*at` on the byte after its last digit.
#[inline]
fn port_at(s: &[u8], at: &mut usize) -> Option<u16> {
    u16::try_from(number_at(s, at, 5)?).ok()
}

/// The decimal number of 1 to `max_digits` digits that starts at `*at` in
/// `s`, without a leading zero (but `0` itself), leaving `*at` on the byte
/// after its last digit; `None` for no digit, more digits or a leading
/// zero.
#[inline]
fn number_at(s: &[u8], at: &mut usize, max_digits: usize) -> Option<u32> {
    let start = *at;
    let mut n: u32 = 0;
    while let Some(&d) = s.get(*at).filter(|d| d.is_ascii_digit()) {
        if *at - start == max_digits {
            return None;
        }
        n = n * 10 + u32::from(d - b'0');
        *at += 1;
    }
    let len = *at - start;
    if len == 0 || (len > 1 && s.get(start) == Some(&b'0')) {
        return None;
    }
    Some(n)
}

/// The space-separated fields of a version 1 line, as `split(' ')` gives
/// them (two spaces make an empty field, a space at the end an empty last
/// one).
struct Fields<'a> {
    line: &'a [u8],
    /// Where the next field starts; past the line's end once the last field
    /// was taken.
    at: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.line.get(self.at..)?;
        let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.at += len + 1;
        rest.get(..len)
    }
}

/// An address of the family named by the line's protocol. The standard
/// library's parsers accept only the plain forms (no leading zeros in an
/// IPv4 part, no zone index), which is what the specification allows.
fn v1_ip(field: &[u8], v6: bool) -> Option<IpAddr> {
    if v6 {
        let text = std::str::from_utf8(field).ok()?;
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        v1_ipv4(field).map(IpAddr::V4)
    }
}

/// A dotted-quad IPv4 address: four decimal parts of one to three digits,
/// no leading zero, each at most 255. Written out because it is most of
/// the work of a version 1 header, and the general parser's UTF-8 check and
/// generic paths cost several times more.
fn v1_ipv4(field: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    // One pass over the field: each part's digits, then a dot (three of
    // them) or the field's end.
    let mut at = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        let start = at;
        let mut n: u16 = 0;
        while let Some(&d) = field.get(at).filter(|d| d.is_ascii_digit()) {
            n = n * 10 + u16::from(d - b'0');
            at += 1;
            if at - start > 3 {
                return None;
            }
        }
        let len = at - start;
        if len == 0 || (len > 1 && field[start] == b'0') {
            return None;
        }
        *octet = u8::try_from(n).ok()?;
        match field.get(at) {
            Some(b'.') if i < 3 => at += 1,
            None if i == 3 => {}
            _ => return None,
        }
    }
    Some(Ipv4Addr::from(octets))
}

/// A port: 1 to 5 decimal digits, no leading zero (but `0` itself), at
/// most 65535.
fn v1_port(field: &[u8]) -> Option<u16> {
    if field.is_empty() || field.len() > 5 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if field.len() > 1 && field[0] == b'0' {
        return None;
    }
    let n = field
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

/// Version 2: the fixed 16 bytes, then `len` bytes of addresses and TLVs.
fn parse_v2(buf: &[u8], max_len: usize) -> Result<ProxyParsed, ProxyError> {
    let Some(fixed) = buf.get(..V2_FIXED_LEN) else {
        // Check what is there already, so that garbage is refused early.
        if let Some(&vc) = buf.get(12) {
            check_version_command(vc)?;
        }
        if let Some(&fam) = buf.get(13) {
            check_family(fam)?;
        }
        return Ok(ProxyParsed::Partial);
    };
    let local = check_version_command(fixed[12])?;
    let fam = check_family(fixed[13])?;
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > max_len {
        return Err(ProxyError::V2TooLong);
    }
    let Some(body) = buf.get(V2_FIXED_LEN..V2_FIXED_LEN + len) else {
        return Ok(ProxyParsed::Partial);
    };
    let consumed = V2_FIXED_LEN + len;
    let mut header = ProxyHeader {
        version: 2,
        ..ProxyHeader::default()
    };
    if local {
        // LOCAL: the load balancer speaks for itself (a health check). The
        // specification tells the receiver to ignore the address block and
        // keep the connection's own addresses.
        return Ok(ProxyParsed::Complete { header, consumed });
    }
    let (addr_len, addresses) = match fam {
        Family::Unspec => (0, None),
        Family::Inet => {
            let a = body.get(..12).ok_or(ProxyError::V2Addresses)?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                12,
                Some((
                    SocketAddr::new(ip(0), port(8)),
                    SocketAddr::new(ip(4), port(10)),
                )),
            )
        }
        Family::Inet6 => {
            let a = body.get(..36).ok_or(ProxyError::V2Addresses)?;
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                36,
                Some((
                    SocketAddr::new(ip(0), port(32)),
                    SocketAddr::new(ip(16), port(34)),
                )),
            )
        }
        // Two 108-byte paths: the client is a local socket, which has no
        // address to report, so the connection's own addresses stand.
        Family::Unix => {
            body.get(..216).ok_or(ProxyError::V2Addresses)?;
            (216, None)
        }
    };
    header.addresses = addresses;
    walk_tlvs(&body[addr_len..], &mut header, true)?;
    Ok(ProxyParsed::Complete { header, consumed })
}

/// Version nibble 2 and command LOCAL (`true`) or PROXY (`false`).
fn check_version_command(vc: u8) -> Result<bool, ProxyError> {
    if vc >> 4 != 2 {
        return Err(ProxyError::V2Version);
    }
    match vc & 0x0f {
        0 => Ok(true),
        1 => Ok(false),
        _ => Err(ProxyError::V2Command),
    }
}

/// The address families of version 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

/// The family byte: UNSPEC with an unspecified transport, or INET, INET6
/// or UNIX over a stream. Datagrams are refused: nothing here serves them.
fn check_family(fam: u8) -> Result<Family, ProxyError> {
    match fam {
        0x00 => Ok(Family::Unspec),
        0x11 => Ok(Family::Inet),
        0x21 => Ok(Family::Inet6),
        0x31 => Ok(Family::Unix),
        _ => Err(ProxyError::V2Family),
    }
}

/// Walks the TLVs of `tlvs`, which must end exactly at its end. `top`:
/// these are the header's own TLVs, not the sub-TLVs of PP2_TYPE_SSL
/// (which may not nest another SSL TLV).
fn walk_tlvs(mut tlvs: &[u8], header: &mut ProxyHeader, top: bool) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [kind, hi, lo, rest @ ..] = tlvs else {
            return Err(ProxyError::V2Tlv("truncated type and length"));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let value = rest
            .get(..len)
            .ok_or(ProxyError::V2Tlv("length past the header's end"))?;
        match *kind {
            PP2_TYPE_ALPN if value.is_empty() => return Err(ProxyError::V2Tlv("empty ALPN")),
            PP2_TYPE_AUTHORITY if top => {
                let host = std::str::from_utf8(value)
                    .ok()
                    .filter(|h| !h.is_empty() && crate::h1::syntax::is_valid_host(h.as_bytes()))
                    .ok_or(ProxyError::V2Tlv("authority is not a host name"))?;
                header.authority = Some(host.to_string());
            }
            PP2_TYPE_CRC32C if len != 4 => {
                return Err(ProxyError::V2Tlv("CRC32C is not four bytes"))
            }
            PP2_TYPE_UNIQUE_ID if len > MAX_UNIQUE_ID => {
                return Err(ProxyError::V2Tlv("unique id over 128 bytes"))
            }
            PP2_TYPE_SSL if top => {
                // One byte of client flags, four of verify result, then
                // sub-TLVs (version, CN, cipher, ...) walked with the same
                // bounds.
                let [client, _, _, _, _, sub @ ..] = value else {
                    return Err(ProxyError::V2Tlv("SSL value under five bytes"));
                };
                header.tls = client & PP2_CLIENT_SSL != 0;
                walk_tlvs(sub, header, false)?;
            }
            PP2_TYPE_SSL => return Err(ProxyError::V2Tlv("SSL inside SSL")),
            // Other types (NOOP, NETNS, the SSL sub-types, custom and
            // experimental ranges) carry nothing this server uses; the
            // specification has receivers skip types they do not know.
            _ => {}
        }
        tlvs = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<ProxyParsed, ProxyError> {
        parse_proxy_header(b, DEFAULT_MAX_V2_LEN)
    }

    fn complete(b: &[u8]) -> (ProxyHeader, usize) {
        match parse(b) {
            Ok(ProxyParsed::Complete { header, consumed }) => (header, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(b)),
        }
    }

    /// Every strict prefix of a valid header is `Partial`.
    fn prefixes_partial(b: &[u8], end: usize) {
        for i in 0..end {
            assert_eq!(parse(&b[..i]), Ok(ProxyParsed::Partial), "prefix {i}");
        }
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn inet_block() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 1, 198, 51, 100, 2];
        b.extend_from_slice(&56324u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        t.extend_from_slice(value);
        t
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        let (h, n) = complete(line);
        assert_eq!(n, line.len() - 5);
        assert_eq!(h.version, 1);
        let (s, d) = h.addresses.unwrap();
        assert_eq!(s, "192.0.2.1:56324".parse().unwrap());
        assert_eq!(d, "198.51.100.2:443".parse().unwrap());
        assert!(!h.tls);
        prefixes_partial(line, n);

        let (h, _) = complete(b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
        let (s, d) = h.addresses.unwrap();
        assert_eq!(s, "[2001:db8::1]:0".parse().unwrap());
        assert_eq!(d, "[::1]:65535".parse().unwrap());
    }

    #[test]
    fn the_tcp4_pass_answers_as_the_general_path() {
        // Every combination of good and bad fields, separators and endings:
        // the one-pass TCP4 reader gives what splitting the line gives.
        let addrs = [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4.",
            "1..3.4",
            "1.2.3.4x",
            "1234.1.1.1",
            "",
            "a",
        ];
        let ports = [
            "0", "443", "65535", "65536", "00", "012", "123456", "", "1x", " ",
        ];
        let mut lines = Vec::new();
        for src in addrs {
            for dst in ["198.51.100.2", addrs[3], addrs[6], ""] {
                for sport in ports {
                    for dport in ["443", ports[3], ports[5], ports[8], ""] {
                        lines.push(format!("{src} {dst} {sport} {dport}"));
                    }
                }
            }
        }
        let mut endings = Vec::new();
        for cut in 0..30 {
            endings.push(
                "192.0.2.1 198.51.100.2 56324 443 x"
                    .get(..cut)
                    .unwrap()
                    .to_string(),
            );
        }
        lines.extend(endings);
        lines.extend(
            [
                "1.2.3.4  5.6.7.8 1 2",
                "1.2.3.4 5.6.7.8 1 2 ",
                "1.2.3.4 5.6.7.8 1  2",
            ]
            .map(String::from),
        );
        for rest in &lines {
            let general = v1_fields(format!("TCP4 {rest}").as_bytes());
            assert_eq!(v1_tcp4(rest.as_bytes()), general, "{rest:?}");
        }
    }

    #[test]
    fn v1_ipv4_agrees_with_the_standard_parser() {
        // Every 1- to 3-character part, in each position.
        let mut parts: Vec<String> = (0..1000).map(|n| n.to_string()).collect();
        parts.extend((0..100).map(|n| format!("{n:02}")));
        parts.extend((0..10).map(|n| format!("{n:03}")));
        parts.extend(["", "a", "-1", "+1", " 1"].map(String::from));
        for p in &parts {
            for pos in 0..4 {
                let mut quad = ["1"; 4].map(String::from);
                quad[pos] = p.clone();
                let text = quad.join(".");
                assert_eq!(
                    v1_ipv4(text.as_bytes()),
                    text.parse::<Ipv4Addr>().ok(),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn v1_unknown_keeps_the_connection() {
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        ] {
            let (h, n) = complete(line);
            assert_eq!(n, line.len());
            assert_eq!(h.addresses, None);
        }
    }

    #[test]
    fn v1_longest_line_fits_and_longer_does_not() {
        let max = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(max.len(), V1_MAX_LEN);
        assert_eq!(complete(max).1, V1_MAX_LEN);
        let tcp6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert!(complete(tcp6).0.addresses.is_some());
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN, b'x');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        long.truncate(V1_MAX_LEN - 1);
        assert_eq!(parse(&long), Ok(ProxyParsed::Partial));
        long.push(b'\r');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v1_rejects_bad_grammar() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX",
            b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",
            b"PROXY TCP4 ::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1.5 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0..1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1000 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.+1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2. 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 080 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +80 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 \r\n",
            b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
            b"PROXY \r\n",
        ];
        for b in bad {
            assert!(
                matches!(parse(b), Err(ProxyError::V1Syntax(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(b),
                parse(b)
            );
        }
    }

    #[test]
    fn not_a_proxy_header_is_refused_at_once() {
        for b in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"G",
            b"PROXX",
            b"\r\n\r\n\0\r\nQUIX",
        ] {
            assert_eq!(parse(b), Err(ProxyError::NotProxy), "{b:?}");
        }
        assert_eq!(parse(b""), Ok(ProxyParsed::Partial));
        assert_eq!(parse(b"PROX"), Ok(ProxyParsed::Partial));
        assert_eq!(parse(b"\r\n\r\n\0"), Ok(ProxyParsed::Partial));
    }

    #[test]
    fn v2_inet_with_tls_and_authority() {
        let mut body = inet_block();
        let mut ssl = vec![PP2_CLIENT_SSL, 0, 0, 0, 0];
        ssl.extend(tlv(0x21, b"TLSv1.3"));
        ssl.extend(tlv(0x22, b"client cn"));
        body.extend(tlv(PP2_TYPE_SSL, &ssl));
        body.extend(tlv(PP2_TYPE_AUTHORITY, b"example.com"));
        body.extend(tlv(0x04, b"")); // NOOP
        body.extend(tlv(0xe0, b"custom"));
        let mut wire = v2(1, 0x11, &body);
        let len = wire.len();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (h, n) = complete(&wire);
        assert_eq!(n, len);
        assert_eq!(h.version, 2);
        assert!(h.tls);
        assert_eq!(h.authority.as_deref(), Some("example.com"));
        let (s, d) = h.addresses.unwrap();
        assert_eq!(s, "192.0.2.1:56324".parse().unwrap());
        assert_eq!(d, "198.51.100.2:443".parse().unwrap());
        prefixes_partial(&wire, len);
    }

    #[test]
    fn v2_ssl_without_client_bit_is_not_tls() {
        let mut body = inet_block();
        body.extend(tlv(PP2_TYPE_SSL, &[0, 0, 0, 0, 0]));
        assert!(!complete(&v2(1, 0x11, &body)).0.tls);
    }

    #[test]
    fn v2_inet6() {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&1234u16.to_be_bytes());
        body.extend_from_slice(&80u16.to_be_bytes());
        let (h, _) = complete(&v2(1, 0x21, &body));
        assert_eq!(
            h.addresses.unwrap().0,
            "[2001:db8::7]:1234".parse().unwrap()
        );
        // One byte short of the family's block.
        assert_eq!(
            parse(&v2(1, 0x21, &body[..35])),
            Err(ProxyError::V2Addresses)
        );
    }

    #[test]
    fn v2_local_unspec_and_unix_keep_the_connection() {
        // LOCAL ignores whatever family and block it carries.
        let (h, n) = complete(&v2(0, 0x00, b""));
        assert_eq!((h.addresses, n), (None, 16));
        assert_eq!(complete(&v2(0, 0x11, &inet_block())).0.addresses, None);
        assert_eq!(complete(&v2(1, 0x00, b"")).0.addresses, None);
        assert_eq!(complete(&v2(1, 0x31, &[0u8; 216])).0.addresses, None);
        assert_eq!(
            parse(&v2(1, 0x31, &[0u8; 215])),
            Err(ProxyError::V2Addresses)
        );
    }

    #[test]
    fn v2_rejects_bad_fixed_part() {
        let mut w = v2(1, 0x11, &inet_block());
        w[12] = 0x11; // version 1 in a v2 header
        assert_eq!(parse(&w), Err(ProxyError::V2Version));
        assert_eq!(parse(&w[..13]), Err(ProxyError::V2Version), "refused early");
        w[12] = 0x22; // command 2
        assert_eq!(parse(&w), Err(ProxyError::V2Command));
        for fam in [0x12u8, 0x22, 0x32, 0x10, 0x41, 0x01] {
            let w = v2(1, fam, &inet_block());
            assert_eq!(parse(&w), Err(ProxyError::V2Family), "{fam:#x}");
        }
        assert_eq!(parse(&v2(1, 0x11, &[0; 11])), Err(ProxyError::V2Addresses));
    }

    #[test]
    fn v2_declared_length_is_bounded_before_buffering() {
        let mut fixed = V2_SIGNATURE.to_vec();
        fixed.extend_from_slice(&[0x21, 0x11]);
        fixed.extend_from_slice(&(DEFAULT_MAX_V2_LEN as u16 + 1).to_be_bytes());
        // Only the 16 fixed bytes are there: refused without waiting.
        assert_eq!(parse(&fixed), Err(ProxyError::V2TooLong));
        assert_eq!(parse_proxy_header(&fixed, 4096), Ok(ProxyParsed::Partial));
    }

    #[test]
    fn v2_rejects_malformed_tlvs() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x04, 0], "truncated type and length"),
            (vec![0x04, 0, 5, 1, 2], "length past the header's end"),
            (tlv(PP2_TYPE_CRC32C, &[1, 2, 3]), "CRC32C is not four bytes"),
            (
                tlv(PP2_TYPE_UNIQUE_ID, &[7; 129]),
                "unique id over 128 bytes",
            ),
            (tlv(PP2_TYPE_ALPN, b""), "empty ALPN"),
            (
                tlv(PP2_TYPE_AUTHORITY, b"bad host/x"),
                "authority is not a host name",
            ),
            (tlv(PP2_TYPE_AUTHORITY, b""), "authority is not a host name"),
            (
                tlv(PP2_TYPE_SSL, &[1, 0, 0, 0]),
                "SSL value under five bytes",
            ),
            (
                tlv(PP2_TYPE_SSL, &[1, 0, 0, 0, 0, 0x21, 0, 9, b'x']),
                "length past the header's end",
            ),
            (
                tlv(PP2_TYPE_SSL, &[1, 0, 0, 0, 0, 0x20, 0, 0]),
                "SSL inside SSL",
            ),
        ];
        for (t, why) in cases {
            let mut body = inet_block();
            body.extend(&t);
            assert_eq!(parse(&v2(1, 0x11, &body)), Err(ProxyError::V2Tlv(why)));
        }
        // A valid unique id of the largest size, and CRC32C of four bytes.
        let mut body = inet_block();
        body.extend(tlv(PP2_TYPE_UNIQUE_ID, &[7; 128]));
        body.extend(tlv(PP2_TYPE_CRC32C, &[0; 4]));
        assert!(complete(&v2(1, 0x11, &body)).0.addresses.is_some());
    }

    #[test]
    fn errors_are_one_line() {
        for e in [
            ProxyError::NotProxy,
            ProxyError::V1TooLong,
            ProxyError::V1Syntax("x"),
            ProxyError::V2Version,
            ProxyError::V2Command,
            ProxyError::V2Family,
            ProxyError::V2TooLong,
            ProxyError::V2Addresses,
            ProxyError::V2Tlv("y"),
        ] {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "{s}");
        }
    }
}
