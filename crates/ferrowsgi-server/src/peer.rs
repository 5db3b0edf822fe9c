//! Who is on either end of a connection, as strings ready for the environ.

use std::any::Any;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;

/// Who is on either end of a connection, as strings ready for the environ.
#[derive(Debug)]
pub struct PeerInfo {
    /// Client address ("" for unix sockets).
    pub remote_addr: String,
    /// Client port ("" for unix sockets).
    pub remote_port: String,
    /// Local address (the server's name when no better one is known:
    /// `localhost` for a unix socket, borrowed rather than allocated for
    /// each of its connections).
    pub server_name: Cow<'static, str>,
    /// Local port.
    pub server_port: String,
    /// Whether the connection came over a unix socket.
    pub is_unix: bool,
    /// Whether the client is on this host: a unix socket, a loopback
    /// address, or the address the connection came in on.
    pub is_local: bool,
    /// The client's address (IPv4-mapped ones as IPv4), for trust
    /// decisions; `None` for unix sockets.
    pub ip: Option<IpAddr>,
    /// The client reached the front end over TLS (a PROXY protocol v2
    /// header said so): the connection's scheme is `https`.
    pub https: bool,
    /// Per-connection data of the application side, made on first use and
    /// dropped with the connection (the binding keeps these strings as
    /// Python objects, so keep-alive requests do not rebuild them).
    pub ext: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl PeerInfo {
    /// For a TCP connection.
    pub fn tcp(peer: SocketAddr, local: SocketAddr) -> PeerInfo {
        PeerInfo {
            is_local: is_same_host(peer, local),
            remote_addr: canonical_ip(peer),
            remote_port: decimal(peer.port()),
            server_name: Cow::Owned(canonical_ip(local)),
            server_port: decimal(local.port()),
            is_unix: false,
            ip: Some(ferrowsgi_proto::forwarded::canonical(peer.ip())),
            https: false,
            ext: OnceLock::new(),
        }
    }

    /// For a unix-socket connection.
    pub fn unix(_path: &Path) -> PeerInfo {
        PeerInfo {
            remote_addr: String::new(),
            remote_port: String::new(),
            server_name: Cow::Borrowed("localhost"),
            server_port: String::new(),
            is_unix: true,
            is_local: true,
            ip: None,
            https: false,
            ext: OnceLock::new(),
        }
    }
}

impl PeerInfo {
    /// Makes this the connection as a PROXY protocol header describes it:
    /// the client and server addresses it names (`None`: the connection's
    /// own stand), and whether the client came over TLS. Done before any
    /// request has seen the peer; the strings are rewritten in the buffers
    /// they have (a connection's worth of allocations saved).
    pub fn set_proxied(&mut self, addresses: Option<(SocketAddr, SocketAddr)>, https: bool) {
        if let Some((client, server)) = addresses {
            self.is_local = is_same_host(client, server);
            self.ip = Some(ferrowsgi_proto::forwarded::canonical(client.ip()));
            write_ip(&mut self.remote_addr, client.ip());
            write_port(&mut self.remote_port, client.port());
            write_ip(self.server_name.to_mut(), server.ip());
            write_port(&mut self.server_port, server.port());
            self.is_unix = false;
        }
        self.https = https;
        // Nothing has made the application side's strings yet; should
        // anything have, they describe the old peer.
        self.ext = OnceLock::new();
    }

    /// Whether this peer's forwarding headers are believed: a unix-socket
    /// peer always, a TCP peer when `trusted` names its address.
    pub fn is_trusted(&self, trusted: &ferrowsgi_proto::forwarded::TrustedProxies) -> bool {
        match self.ip {
            Some(ip) => trusted.trusts(ip),
            None => self.is_unix,
        }
    }
}

/// Whether `peer` is on this host: a loopback address (IPv4-mapped ones
/// included) or the local address of its own connection.
pub fn is_same_host(peer: SocketAddr, local: SocketAddr) -> bool {
    let unmap = |a: SocketAddr| match a {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(*v6.ip()), std::net::IpAddr::V4),
        SocketAddr::V4(v4) => std::net::IpAddr::V4(*v4.ip()),
    };
    let ip = unmap(peer);
    ip.is_loopback() || ip == unmap(local)
}

/// Replaces `out` with `ip` as [`canonical_ip`] writes it, IPv4 without
/// the formatting machinery (a PROXY header rewrites a connection's
/// addresses, and this is most of what that costs).
fn write_ip(out: &mut String, ip: IpAddr) {
    out.clear();
    match ferrowsgi_proto::forwarded::canonical(ip) {
        IpAddr::V4(v4) => push_dotted(out, v4),
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Replaces `out` with the decimal `port`.
fn write_port(out: &mut String, port: u16) {
    out.clear();
    out.push_str(itoa::Buffer::new().format(port));
}

/// An IPv4-mapped IPv6 peer is shown as the IPv4 address it is.
fn canonical_ip(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => dotted(v4),
            None => v6.ip().to_string(),
        },
        SocketAddr::V4(v4) => dotted(*v4.ip()),
    }
}

/// `a.b.c.d`, written without the formatting machinery: with a front end
/// that opens a connection per request (SCGI, uwsgi, HTTP/1.0 upstreams),
/// the two addresses and ports of every connection were a tenth of the
/// server's own user-space time.
fn dotted(ip: std::net::Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    push_dotted(&mut out, ip);
    out
}

/// Appends `a.b.c.d` to `out`. The text is made on the stack and copied
/// once: a `String::push` or `push_str` per octet checked the capacity
/// each time, out of line, which cost about as much as the digits.
fn push_dotted(out: &mut String, ip: std::net::Ipv4Addr) {
    let mut text = [0u8; 15];
    let mut n = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            text[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            text[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        text[n] = b'0' + o % 10;
        n += 1;
    }
    let written = text.get(..n).unwrap_or_default();
    // SAFETY: every byte written above is an ASCII digit or '.', so the
    // bytes are UTF-8. Checking it again (`str::from_utf8`) cost about 85
    // instructions per address, as much as the digits.
    out.push_str(unsafe { std::str::from_utf8_unchecked(written) });
}

/// A port in decimal.
fn decimal(port: u16) -> String {
    itoa::Buffer::new().format(port).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:8000",
            "255.255.255.255:65535",
            "10.0.12.3:80",
        ] {
            let sa: SocketAddr = a.parse().unwrap();
            let p = PeerInfo::tcp(sa, sa);
            assert_eq!(format!("{}:{}", p.remote_addr, p.remote_port), a);
            assert_eq!(format!("{}:{}", p.server_name, p.server_port), a);
        }
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:443".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "192.0.2.1");
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(canonical_ip(v6), "2001:db8::1");
    }

    #[test]
    fn a_proxied_peer_is_written_as_canonical_ip_writes_it() {
        for (client, server) in [
            ("192.0.2.1:56324", "10.0.0.255:443"),
            ("0.0.0.0:0", "255.255.255.255:65535"),
            ("[2001:db8::1]:1", "[::1]:80"),
            ("[::ffff:198.51.100.7]:9", "[::ffff:127.0.0.1]:8000"),
        ] {
            let (c, s): (SocketAddr, SocketAddr) =
                (client.parse().unwrap(), server.parse().unwrap());
            let mut peer = PeerInfo::unix(Path::new("/x"));
            peer.set_proxied(Some((c, s)), true);
            let fresh = PeerInfo::tcp(c, s);
            assert_eq!(peer.remote_addr, fresh.remote_addr);
            assert_eq!(peer.remote_port, fresh.remote_port);
            assert_eq!(peer.server_name, fresh.server_name);
            assert_eq!(peer.server_port, fresh.server_port);
            assert_eq!(
                (peer.ip, peer.is_local, peer.is_unix),
                (fresh.ip, fresh.is_local, false)
            );
            assert!(peer.https);
        }
        let mut peer = PeerInfo::tcp(
            "127.0.0.1:5".parse().unwrap(),
            "127.0.0.1:6".parse().unwrap(),
        );
        peer.set_proxied(None, false);
        assert_eq!(
            (peer.remote_addr.as_str(), peer.remote_port.as_str()),
            ("127.0.0.1", "5")
        );
    }
}
