//! Who is on either end of a connection, as strings ready for the environ.

use std::any::Any;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

/// Who is on either end of a connection, as strings ready for the environ.
#[derive(Debug)]
pub struct PeerInfo {
    /// Client address ("" for unix sockets).
    pub remote_addr: String,
    /// Client port ("" for unix sockets).
    pub remote_port: String,
    /// Local address (the server's name when no better one is known).
    pub server_name: String,
    /// Local port.
    pub server_port: String,
    /// Whether the connection came over a unix socket.
    pub is_unix: bool,
    /// Whether the client is on this host: a unix socket, a loopback
    /// address, or the address the connection came in on.
    pub is_local: bool,
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
            remote_port: peer.port().to_string(),
            server_name: canonical_ip(local),
            server_port: local.port().to_string(),
            is_unix: false,
            ext: OnceLock::new(),
        }
    }

    /// For a unix-socket connection.
    pub fn unix(_path: &Path) -> PeerInfo {
        PeerInfo {
            remote_addr: String::new(),
            remote_port: String::new(),
            server_name: "localhost".to_string(),
            server_port: String::new(),
            is_unix: true,
            is_local: true,
            ext: OnceLock::new(),
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

/// An IPv4-mapped IPv6 peer is shown as the IPv4 address it is.
fn canonical_ip(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.ip().to_string(),
        },
        SocketAddr::V4(v4) => v4.ip().to_string(),
    }
}
