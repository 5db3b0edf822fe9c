//! Listening sockets: TCP (IPv4 and IPv6) and unix-domain, bound with the
//! options a production server wants, and the accepted streams they yield.

use std::fmt;
use std::io::{self, Read, Write};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::oneshot::{OneShot, OneShotProtocol};

/// Port used when a bind address names only a host.
pub const DEFAULT_PORT: u16 = 8000;

/// The protocol a listener speaks, from its bind address's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// HTTP/1.x, the default (`http://` or no scheme).
    #[default]
    Http,
    /// FastCGI responder (`fastcgi://`), for a front end such as nginx's
    /// `fastcgi_pass` or Apache's mod_proxy_fcgi.
    FastCgi,
    /// AJP13 (`ajp://`), for Apache's mod_proxy_ajp.
    Ajp,
    /// SCGI (`scgi://`), for nginx's `scgi_pass` or Apache's
    /// mod_proxy_scgi.
    Scgi,
    /// uWSGI's uwsgi protocol (`uwsgi://`), for nginx's `uwsgi_pass` or
    /// Apache's mod_proxy_uwsgi.
    Uwsgi,
}

impl Scheme {
    /// The scheme's name in a bind address.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::FastCgi => "fastcgi",
            Scheme::Ajp => "ajp",
            Scheme::Scgi => "scgi",
            Scheme::Uwsgi => "uwsgi",
        }
    }

    /// The scheme a bind address names (`http`, `fastcgi`, `ajp`, `scgi`,
    /// `uwsgi`), if any.
    pub fn from_name(name: &str) -> Option<Scheme> {
        match name {
            "http" => Some(Scheme::Http),
            "fastcgi" => Some(Scheme::FastCgi),
            "ajp" => Some(Scheme::Ajp),
            "scgi" => Some(Scheme::Scgi),
            "uwsgi" => Some(Scheme::Uwsgi),
            _ => None,
        }
    }

    /// Every scheme, in the order the documentation lists them.
    pub const ALL: [Scheme; 5] = [
        Scheme::Http,
        Scheme::FastCgi,
        Scheme::Scgi,
        Scheme::Uwsgi,
        Scheme::Ajp,
    ];

    /// A protocol as a bind address's scheme or a systemd socket's
    /// `FileDescriptorName=` spells it: a scheme name, optionally followed
    /// by `+proxy` (`fastcgi`, `scgi+proxy`). Returns the scheme and
    /// whether connections start with a PROXY protocol header.
    pub fn parse_protocol(name: &str) -> Option<(Scheme, bool)> {
        match name.strip_suffix(PROXY_SUFFIX) {
            Some(p) => Scheme::from_name(p).map(|s| (s, true)),
            None => Scheme::from_name(name).map(|s| (s, false)),
        }
    }
}

/// The suffix of a scheme whose connections start with a PROXY protocol
/// header (`http+proxy://`, `fastcgi+proxy://`).
const PROXY_SUFFIX: &str = "+proxy";

/// A bind address with the protocol to speak there:
/// `[SCHEME[+proxy]://]ADDRESS`, e.g. `fastcgi://127.0.0.1:9000`,
/// `fastcgi://unix:/run/app.sock`, `http+proxy://127.0.0.1:8000`, or
/// `scgi://fd:3` for an inherited socket (`fd://3`, gunicorn's spelling,
/// is `http://fd:3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The protocol.
    pub scheme: Scheme,
    /// Each connection starts with a PROXY protocol header (version 1 or
    /// 2) that names the client, before the protocol's first byte: the
    /// `+proxy` suffix of the scheme.
    pub proxy: bool,
    /// Where.
    pub addr: BindAddr,
}

impl Bind {
    /// Parses `[SCHEME[+proxy]://]ADDRESS` (see [`BindAddr::parse`] for
    /// the address); an address without a scheme is HTTP without a PROXY
    /// header. The error is one line naming the address.
    pub fn parse(s: &str) -> Result<Bind, String> {
        let Some((name, rest)) = s.split_once("://") else {
            return BindAddr::parse(s).map(Bind::from);
        };
        if name == FD_SCHEME {
            // gunicorn's spelling of an inherited socket: `fd://3` is
            // `http://fd:3`.
            return parse_fd(rest)
                .map(|fd| Bind::from(BindAddr::Fd(fd)))
                .map_err(|why| format!("invalid bind address {s:?}: {why}"));
        }
        let Some((scheme, proxy)) = Scheme::parse_protocol(name) else {
            return Err(format!(
                "invalid bind address {s:?}: unknown scheme {name:?} \
                 (known: http, fastcgi, ajp, scgi, uwsgi, each optionally followed by +proxy; \
                 fd://N for an inherited socket)"
            ));
        };
        // The address's error names the address; the whole bind is named
        // too, so that `scgi://` alone is not reported as `""`.
        let addr = BindAddr::parse(rest).map_err(|e| format!("{e} (in {s:?})"))?;
        Ok(Bind {
            scheme,
            proxy,
            addr,
        })
    }
}

impl From<BindAddr> for Bind {
    /// An HTTP address without a PROXY header.
    fn from(addr: BindAddr) -> Bind {
        Bind {
            scheme: Scheme::Http,
            proxy: false,
            addr,
        }
    }
}

impl fmt::Display for Bind {
    /// As given: the address alone for plain HTTP, `scheme://address`
    /// otherwise (`http+proxy://address` with a PROXY header).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.scheme, self.proxy) {
            (Scheme::Http, false) => write!(f, "{}", self.addr),
            (s, proxy) => write!(f, "{}{}://{}", s.name(), suffix(proxy), self.addr),
        }
    }
}

/// The scheme suffix of a listener with or without a PROXY header.
fn suffix(proxy: bool) -> &'static str {
    if proxy {
        PROXY_SUFFIX
    } else {
        ""
    }
}

/// gunicorn's scheme for an inherited socket (`fd://3`).
const FD_SCHEME: &str = "fd";

/// The descriptor number of `fd:N` or `fd://N`; the error says why it is
/// not one.
fn parse_fd(digits: &str) -> Result<RawFd, String> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the descriptor must be a number, as in fd:3".into());
    }
    digits
        .parse()
        .map_err(|_| "the descriptor number is too large".into())
}

/// Where to listen, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// A TCP address; the host may be a name to resolve.
    Tcp(SocketAddr),
    /// A unix-domain socket path.
    Unix(PathBuf),
    /// A socket bound already and inherited with this descriptor number
    /// (from a process manager, systemd or a parent that execs the
    /// server).
    Fd(RawFd),
}

impl BindAddr {
    /// Parses `HOST:PORT`, `[IPV6]:PORT`, `HOST` (port 8000), `unix:PATH`
    /// or `fd:N` (an inherited socket). The error is one line naming the
    /// address.
    pub fn parse(s: &str) -> Result<BindAddr, String> {
        let bad = |why: &str| format!("invalid bind address {s:?}: {why}");
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        if let Some(digits) = s.strip_prefix("fd:") {
            return parse_fd(digits).map(BindAddr::Fd).map_err(|why| bad(&why));
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after the IPv6 address"))?;
            let port = match after {
                "" => DEFAULT_PORT,
                p => p
                    .strip_prefix(':')
                    .ok_or_else(|| bad("expected ':PORT' after ']'"))?
                    .parse()
                    .map_err(|_| bad("the port must be a number from 0 to 65535"))?,
            };
            (h.to_string(), port)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => {
                    if h.contains(':') {
                        return Err(bad("write IPv6 addresses in brackets, as [::1]:8000"));
                    }
                    let port = p
                        .parse()
                        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
                    (h.to_string(), port)
                }
                None => (s.to_string(), DEFAULT_PORT),
            }
        };
        let host = if host.is_empty() {
            "0.0.0.0".to_string()
        } else {
            host
        };
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(BindAddr::Tcp(SocketAddr::new(ip, port)));
        }
        let mut addrs = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| bad(&format!("cannot resolve host {host:?} ({e})")))?;
        addrs
            .next()
            .map(BindAddr::Tcp)
            .ok_or_else(|| bad(&format!("host {host:?} has no address")))
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(a) => write!(f, "{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Fd(n) => write!(f, "fd:{n}"),
        }
    }
}

/// A bound, listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp {
        /// The socket.
        listener: TcpListener,
        /// The local address every connection shares when the bind address
        /// is not a wildcard (saving a getsockname(2) per connection).
        fixed: Option<SocketAddr>,
        /// The congestion control to give each connection from this host,
        /// when the listener could not do it for all of them (any bind
        /// address but a loopback one; see [`Listener::bind`]).
        loopback_congestion: Option<Box<str>>,
        /// The protocol spoken.
        scheme: Scheme,
        /// Connections start with a PROXY protocol header.
        proxy: bool,
    },
    /// Unix-domain, with its path, whether the file is removed when the
    /// listener goes away (not in a worker, nor for an inherited one), the
    /// protocol spoken, and whether connections start with a PROXY
    /// protocol header.
    Unix(UnixListener, PathBuf, bool, Scheme, bool),
}

impl Listener {
    /// Binds `addr` with SO_REUSEADDR (and IPV6_V6ONLY for IPv6, so that
    /// `[::]` and `0.0.0.0` can be bound side by side), non-blocking and
    /// close-on-exec, listening with `backlog`. A stale unix socket file left
    /// by a dead server is replaced; a live one is "address in use".
    ///
    /// `loopback_congestion` names the TCP congestion control for connections
    /// from this host (`None` keeps the system's). A listener on a loopback
    /// address gets it itself, and its connections inherit it; any other
    /// listener sets it on each accepted connection whose peer is a loopback
    /// address or the connection's own local address (the kernel routes
    /// both over the loopback device). See [`set_congestion`] for why.
    ///
    /// An inherited socket (`fd:N`) is adopted as [`Listener::from_fd`]
    /// does; the backlog and the options above stay as its owner set them.
    pub fn bind(
        addr: &BindAddr,
        backlog: u32,
        loopback_congestion: Option<&str>,
    ) -> io::Result<Listener> {
        Listener::bind_with(addr, backlog, loopback_congestion, false)
    }

    /// [`Listener::bind`], with `SO_REUSEPORT` set before the bind when
    /// `reuse_port` (TCP only): another process may then bind the same
    /// address, a new version of the server started beside this one.
    pub fn bind_with(
        addr: &BindAddr,
        backlog: u32,
        loopback_congestion: Option<&str>,
        reuse_port: bool,
    ) -> io::Result<Listener> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        match addr {
            // Bound and listening already: adopted as it is, with the
            // backlog and options its owner gave it.
            BindAddr::Fd(fd) => Listener::from_fd(*fd).map_err(io::Error::other),
            BindAddr::Tcp(sa) => {
                let sock =
                    Socket::new(Domain::for_address(*sa), Type::STREAM, Some(Protocol::TCP))?;
                sock.set_reuse_address(true)?;
                if reuse_port {
                    sock.set_reuse_port(true)?;
                }
                if sa.is_ipv6() {
                    sock.set_only_v6(true)?;
                }
                sock.bind(&(*sa).into())?;
                sock.listen(backlog)?;
                sock.set_nonblocking(true)?;
                defer_accept(&sock);
                let mut per_conn = None;
                if let Some(name) = loopback_congestion {
                    // A loopback listener takes the algorithm itself; any
                    // other one tries it once on a spare socket, so that a
                    // name the kernel refuses is reported here and not tried
                    // again on every connection.
                    let tried = if sa.ip().is_loopback() {
                        set_congestion(&sock, name)
                    } else {
                        Socket::new(Domain::for_address(*sa), Type::STREAM, Some(Protocol::TCP))
                            .and_then(|spare| set_congestion(&spare, name))
                    };
                    match tried {
                        Ok(()) if !sa.ip().is_loopback() => per_conn = Some(name.into()),
                        Ok(()) => {}
                        Err(e) => crate::log::warning(&format!(
                            "congestion control {name:?} not available for {sa}: {e}"
                        )),
                    }
                }
                let listener = TcpListener::from_std(sock.into());
                let fixed = match listener.local_addr() {
                    Ok(a) if !a.ip().is_unspecified() => Some(a),
                    _ => None,
                };
                Ok(Listener::Tcp {
                    listener,
                    fixed,
                    loopback_congestion: per_conn,
                    scheme: Scheme::Http,
                    proxy: false,
                })
            }
            BindAddr::Unix(path) => {
                if path.exists() {
                    match std::os::unix::net::UnixStream::connect(path) {
                        Ok(_) => {
                            return Err(io::Error::new(
                                io::ErrorKind::AddrInUse,
                                "a server is already listening on this socket",
                            ))
                        }
                        Err(_) => {
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
                let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                sock.bind(&socket2::SockAddr::unix(path)?)?;
                sock.listen(backlog)?;
                sock.set_nonblocking(true)?;
                let std_listener: std::os::unix::net::UnixListener = sock.into();
                Ok(Listener::Unix(
                    UnixListener::from_std(std_listener),
                    path.clone(),
                    true,
                    Scheme::Http,
                    false,
                ))
            }
        }
    }

    /// The address actually bound (with the real port when 0 was asked).
    pub fn local_addr(&self) -> BindAddr {
        match self {
            Listener::Tcp { listener: l, .. } => match l.local_addr() {
                Ok(a) => BindAddr::Tcp(a),
                Err(_) => BindAddr::Unix(PathBuf::new()),
            },
            Listener::Unix(_, p, ..) => BindAddr::Unix(p.clone()),
        }
    }

    /// The protocol this listener speaks.
    pub fn scheme(&self) -> Scheme {
        match self {
            Listener::Tcp { scheme, .. } | Listener::Unix(_, _, _, scheme, _) => *scheme,
        }
    }

    /// Whether its protocol ends every connection after one answer (SCGI,
    /// uwsgi).
    pub fn one_request_per_connection(&self) -> bool {
        matches!(self.scheme(), Scheme::Scgi | Scheme::Uwsgi)
    }

    /// This listener, speaking `scheme`.
    pub fn with_scheme(mut self, to: Scheme) -> Listener {
        match &mut self {
            Listener::Tcp { scheme, .. } | Listener::Unix(_, _, _, scheme, _) => *scheme = to,
        }
        self
    }

    /// Makes every connection of this listener start with a PROXY
    /// protocol header (see [`ferrowsgi_proto::proxy`]), before the first
    /// byte of the protocol it speaks.
    pub fn set_proxy_protocol(&mut self, on: bool) {
        match self {
            Listener::Tcp { proxy, .. } | Listener::Unix(.., proxy) => *proxy = on,
        }
    }

    /// Whether connections start with a PROXY protocol header.
    pub fn proxy_protocol(&self) -> bool {
        match self {
            Listener::Tcp { proxy, .. } | Listener::Unix(.., proxy) => *proxy,
        }
    }

    /// A URL-ish name for logs: `http://127.0.0.1:8000` or `unix:/path`;
    /// `fastcgi://127.0.0.1:9000` or `fastcgi://unix:/path` for another
    /// protocol; `http+proxy://...` or `fastcgi+proxy://...` when
    /// connections start with a PROXY header.
    pub fn url(&self) -> String {
        match (self.scheme(), self.proxy_protocol(), self.local_addr()) {
            (Scheme::Http, false, u @ BindAddr::Unix(_)) => u.to_string(),
            (s, proxy, a) => format!("{}{}://{a}", s.name(), suffix(proxy)),
        }
    }

    /// The codec of a connection accepted here: the protocol this
    /// listener speaks (HTTP/1.x unless its bind address named another),
    /// with the server's connection limit (FastCGI reports it) and AJP13
    /// settings.
    pub fn codec(
        &self,
        max_connections: usize,
        ajp: &Arc<ferrowsgi_proto::ajp::Ajp>,
    ) -> crate::codec::Codec {
        match self.scheme() {
            Scheme::Http => crate::codec::Codec::Http1,
            Scheme::FastCgi => crate::codec::Codec::Gateway(Box::new(
                crate::fastcgi::FastCgi::new(max_connections),
            )),
            Scheme::Ajp => {
                crate::codec::Codec::Gateway(Box::new(crate::ajp::AjpGateway::new(Arc::clone(ajp))))
            }
            Scheme::Scgi => {
                crate::codec::Codec::Gateway(Box::new(OneShot::new(OneShotProtocol::Scgi)))
            }
            Scheme::Uwsgi => {
                crate::codec::Codec::Gateway(Box::new(OneShot::new(OneShotProtocol::Uwsgi)))
            }
        }
    }

    /// Accepts one connection and returns it with its peer and local
    /// addresses. TCP_NODELAY is left to [`Stream::set_nodelay`]: a
    /// connection answered in one write and closed never needs it.
    pub fn accept(&self) -> io::Result<(Stream, crate::peer::PeerInfo)> {
        match self {
            Listener::Tcp {
                listener,
                fixed,
                loopback_congestion,
                ..
            } => {
                let fd = listener.as_raw_fd();
                // SAFETY: try_init hands the closure a zeroed address storage
                // and its size, which accept4 fills; the address is read
                // only over the length accept4 reports.
                let (s, addr) = unsafe {
                    socket2::SockAddr::try_init(|storage, len| {
                        crate::syscall::accept4(fd, storage.cast(), len)
                    })
                }?;
                // SAFETY: accept4 returned a new descriptor that nothing else
                // owns; the stream owns it from here (and closes it on the
                // error paths below, before it is a `Stream`).
                let tcp = unsafe { TcpStream::from_raw_fd(s) };
                let Some(peer) = addr.as_socket() else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "accepted a TCP connection without an IP address",
                    ));
                };
                let local = match fixed {
                    Some(a) => *a,
                    None => tcp.local_addr()?,
                };
                if let Some(name) = loopback_congestion {
                    if crate::peer::is_same_host(peer, local) {
                        // Best effort: the connection works either way.
                        let _ = set_congestion(&socket2::SockRef::from(&tcp), name);
                    }
                }
                let s = Stream::Tcp(ManuallyDrop::new(tcp));
                Ok((s, crate::peer::PeerInfo::tcp(peer, local)))
            }
            Listener::Unix(l, path, ..) => {
                // SAFETY: null address and length: the peer's unix address
                // is not wanted (the listener's path names the peer).
                let s = unsafe {
                    crate::syscall::accept4(
                        l.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                }?;
                // SAFETY: accept4 returned a new descriptor that nothing else
                // owns; the stream owns it from here.
                let s = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(s) });
                Ok((Stream::Unix(s), crate::peer::PeerInfo::unix(path)))
            }
        }
    }

    /// Registers the listener for readable events.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp { listener, .. } => {
                listener.register(registry, token, Interest::READABLE)
            }
            Listener::Unix(l, ..) => l.register(registry, token, Interest::READABLE),
        }
    }

    /// The listening socket's descriptor.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp { listener, .. } => listener.as_raw_fd(),
            Listener::Unix(l, ..) => l.as_raw_fd(),
        }
    }

    /// Leaves the unix socket's file in place when this listener goes away
    /// (a worker's copy: the file belongs to the master).
    pub fn disown(&mut self) {
        if let Listener::Unix(_, _, owned, ..) = self {
            *owned = false;
        }
    }

    /// Gives a unix socket's file the mode `mode` and, if given, the
    /// owner (the workers' user and group, so that they can use it).
    pub fn set_unix_mode(
        &self,
        mode: Option<u32>,
        owner: Option<(libc::uid_t, libc::gid_t)>,
    ) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if let Listener::Unix(_, path, ..) = self {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            }
            if let Some(m) = mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))?;
            }
        }
        Ok(())
    }

    /// Adopts an inherited listening socket (`--fd N`, systemd's
    /// `LISTEN_FDS`): a TCP or unix stream socket that is already bound and
    /// listening. It is made non-blocking and close-on-exec; a unix
    /// socket's file is never removed by this server. The error is one
    /// line naming the descriptor.
    pub fn from_fd(fd: RawFd) -> Result<Listener, String> {
        use std::os::fd::FromRawFd;
        let bad = |why: String| format!("descriptor {fd}: {why}");
        // SAFETY: fcntl(F_GETFD) only asks whether fd is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(bad("not an open descriptor".into()));
        }
        // SAFETY: fd is open; the socket takes ownership of it, which is
        // what adopting an inherited descriptor means (nothing else in this
        // process uses it).
        let sock = unsafe { Socket::from_raw_fd(fd) };
        let fail = |sock: Socket, why: String| {
            // Not ours to close: it was only looked at.
            std::mem::forget(sock);
            Err(bad(why))
        };
        let ty = match sock.r#type() {
            Ok(t) => t,
            Err(e) => return fail(sock, format!("not a socket ({e})")),
        };
        if ty != Type::STREAM {
            return fail(sock, "not a stream socket".into());
        }
        match sock.is_listener() {
            Ok(true) => {}
            Ok(false) => return fail(sock, "not a listening socket".into()),
            Err(e) => return fail(sock, format!("cannot be inspected ({e})")),
        }
        let local = match sock.local_addr() {
            Ok(a) => a,
            Err(e) => return fail(sock, format!("has no address ({e})")),
        };
        if let Err(e) = sock
            .set_nonblocking(true)
            .and_then(|_| sock.set_cloexec(true))
        {
            return fail(sock, format!("cannot be set up ({e})"));
        }
        if let Some(sa) = local.as_socket() {
            defer_accept(&sock);
            let listener = TcpListener::from_std(sock.into());
            let fixed = (!sa.ip().is_unspecified()).then_some(sa);
            return Ok(Listener::Tcp {
                listener,
                fixed,
                loopback_congestion: None,
                scheme: Scheme::Http,
                proxy: false,
            });
        }
        if local.is_unix() {
            let path = local.as_pathname().map(PathBuf::from).unwrap_or_default();
            let std_listener: std::os::unix::net::UnixListener = sock.into();
            return Ok(Listener::Unix(
                UnixListener::from_std(std_listener),
                path,
                false,
                Scheme::Http,
                false,
            ));
        }
        fail(sock, "neither a TCP nor a unix socket".into())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path, true, ..) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An accepted connection's socket. Its reads, writes and close go
/// through the `syscall` module (not glibc's cancellable wrappers), so the
/// mio stream inside is never dropped: [`Stream`]'s own drop closes the
/// descriptor, which is all a mio stream owns.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(ManuallyDrop<TcpStream>),
    /// Unix-domain.
    Unix(ManuallyDrop<UnixStream>),
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The inner stream is not dropped (ManuallyDrop), so this is the
        // descriptor's only close.
        crate::syscall::close(self.as_raw_fd());
    }
}

impl Stream {
    /// Registers the stream for edge-triggered read and write readiness; it
    /// is never re-registered.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let both = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => s.register(registry, token, both),
            Stream::Unix(s) => s.register(registry, token, both),
        }
    }

    /// Removes the stream from the poller.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }

    /// Turns Nagle's algorithm off (TCP_NODELAY), so that a write made
    /// while earlier bytes are unacknowledged goes out at once instead of
    /// waiting for the acknowledgement, which a client may delay by up to
    /// 40 ms. Nothing to do on a unix socket.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(true),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// Makes the coming close reset the connection (`SO_LINGER` with a zero
    /// time): the kernel drops whatever it still holds unsent instead of
    /// keeping the closed socket alive to deliver it. For a client that
    /// stopped reading, that is up to the whole autotuned send buffer
    /// (megabytes) trickled out through its small window after we gave up.
    /// Nothing to do on a unix socket. A failure only means a plain close,
    /// so it is logged at debug level and not returned.
    pub fn reset_on_close(&self) {
        if let Stream::Tcp(s) = self {
            if let Err(e) = socket2::SockRef::from(&**s).set_linger(Some(std::time::Duration::ZERO))
            {
                crate::log::debug(&format!("cannot set SO_LINGER: {e}"));
            }
        }
    }

    /// Writes the last bytes before the write side is shut down: on TCP
    /// with `MSG_MORE` (see [`crate::sys::send_more`]), so that the FIN of
    /// the shutdown goes in the same segment as the end of the response.
    /// The caller must shut the write side down next.
    pub fn write_last(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => crate::sys::send_more(s.as_raw_fd(), buf),
            Stream::Unix(s) => crate::syscall::send(s.as_raw_fd(), buf, libc::MSG_NOSIGNAL),
        }
    }

    /// Shuts down the sending side (a FIN after the last response byte).
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and read(2)
        // writes only initialised bytes into the slice.
        let spare = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
        crate::syscall::read(self.as_raw_fd(), spare)
    }
}

impl Write for Stream {
    /// A `send(2)` with `MSG_NOSIGNAL`, as std's sockets write: a client
    /// gone is `EPIPE`, never a `SIGPIPE` (which an embedding program may
    /// not ignore).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::syscall::send(self.as_raw_fd(), buf, libc::MSG_NOSIGNAL)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        crate::syscall::send_vectored(self.as_raw_fd(), bufs, libc::MSG_NOSIGNAL)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// Sets the TCP congestion control of `sock` (Linux `TCP_CONGESTION`).
///
/// ferrowsgi uses it for connections over loopback (a front-end server or
/// a client on the same host), with `reno` by default. Where the system's
/// default is a pacing algorithm (BBR), the kernel paces loopback traffic
/// too: every burst above the pacing rate arms a high-resolution timer and
/// waits for it, although a loopback connection has no link or queue that
/// pacing could protect. A 1 MiB response cost about a third more server
/// CPU that way (docs/PERFORMANCE.md). On loopback nothing is lost, so a
/// loss-based algorithm stays in slow start and behaves like any other;
/// `reno` is the one every Linux kernel builds in and lets an unprivileged
/// process choose.
fn set_congestion(sock: &Socket, name: &str) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        sock.set_tcp_congestion(name.as_bytes())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (sock, name);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP_CONGESTION is Linux-only",
        ))
    }
}

/// Asks the kernel to hand over a TCP connection only once its first bytes
/// have arrived (Linux `TCP_DEFER_ACCEPT`, nginx's `deferred`): the request
/// is read right after accept(2), which saves an event-loop round and a
/// read that would find nothing, per connection. A client that sends
/// nothing is still accepted after about a second. Where the option is
/// missing, connections are accepted as usual.
fn defer_accept(sock: &Socket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let secs: libc::c_int = 1;
        // SAFETY: the descriptor is a live socket owned by `sock`, and the
        // option value is a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            crate::log::debug(&format!(
                "TCP_DEFER_ACCEPT not available: {}",
                io::Error::last_os_error()
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scgi_and_uwsgi_schemes() {
        for (input, scheme, shown) in [
            (
                "scgi://127.0.0.1:9000",
                Scheme::Scgi,
                "scgi://127.0.0.1:9000",
            ),
            (
                "uwsgi://unix:/run/a.sock",
                Scheme::Uwsgi,
                "uwsgi://unix:/run/a.sock",
            ),
            ("uwsgi://:3031", Scheme::Uwsgi, "uwsgi://0.0.0.0:3031"),
        ] {
            let b = Bind::parse(input).unwrap();
            assert_eq!(b.scheme, scheme, "{input}");
            assert_eq!(b.to_string(), shown, "{input}");
        }
        let t = Listener::bind(&BindAddr::parse("127.0.0.1:0").unwrap(), 4, None).unwrap();
        let t = t.with_scheme(Scheme::Uwsgi);
        assert!(t.url().starts_with("uwsgi://127.0.0.1:"), "{}", t.url());
        assert!(!t.codec(8, &Arc::default()).is_http1());
        let t = t.with_scheme(Scheme::Scgi);
        assert!(t.url().starts_with("scgi://127.0.0.1:"), "{}", t.url());
        assert!(!t.codec(8, &Arc::default()).is_http1());
    }

    #[test]
    fn bind_schemes_name_the_protocol() {
        let b = Bind::parse("fastcgi://127.0.0.1:9000").unwrap();
        assert_eq!(b.scheme, Scheme::FastCgi);
        assert_eq!(b.addr, BindAddr::Tcp("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(b.to_string(), "fastcgi://127.0.0.1:9000");
        let b = Bind::parse("fastcgi://unix:/run/app.sock").unwrap();
        assert_eq!(b.addr, BindAddr::Unix("/run/app.sock".into()));
        assert_eq!(b.to_string(), "fastcgi://unix:/run/app.sock");
        let b = Bind::parse("http://[::1]:80").unwrap();
        assert_eq!((b.scheme, b.to_string()), (Scheme::Http, "[::1]:80".into()));
        assert_eq!(Bind::parse("unix:/a").unwrap().scheme, Scheme::Http);
        let e = Bind::parse("gopher://127.0.0.1:70").unwrap_err();
        assert!(e.contains("unknown scheme \"gopher\""), "{e}");
        assert!(Bind::parse("fastcgi://").is_err());

        let dir = std::env::temp_dir().join(format!("fw-scheme-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let l = Listener::bind(&BindAddr::Unix(path.clone()), 4, None)
            .unwrap()
            .with_scheme(Scheme::FastCgi);
        assert_eq!(l.url(), format!("fastcgi://unix:{}", path.display()));
        assert!(!l.codec(8, &Arc::default()).is_http1());
        let t = Listener::bind(&BindAddr::parse("127.0.0.1:0").unwrap(), 4, None).unwrap();
        assert!(t.url().starts_with("http://127.0.0.1:"));
        assert!(t.codec(8, &Arc::default()).is_http1());
        let mut t = t.with_scheme(Scheme::FastCgi);
        assert!(t.url().starts_with("fastcgi://127.0.0.1:"));
        t.set_proxy_protocol(true);
        assert!(t.url().starts_with("fastcgi+proxy://127.0.0.1:"));
        assert!(!t.codec(8, &Arc::default()).is_http1());
        let mut l = l.with_scheme(Scheme::Http);
        assert_eq!(l.url(), format!("unix:{}", path.display()));
        l.set_proxy_protocol(true);
        assert_eq!(l.url(), format!("http+proxy://unix:{}", path.display()));
        drop(l);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_bind_forms() {
        let cases: &[(&str, &str)] = &[
            ("127.0.0.1:8000", "127.0.0.1:8000"),
            ("[::1]:9000", "[::1]:9000"),
            ("0.0.0.0", "0.0.0.0:8000"),
            (":8080", "0.0.0.0:8080"),
            ("unix:/tmp/a.sock", "unix:/tmp/a.sock"),
            ("localhost:81", "127.0.0.1:81"),
        ];
        for (input, want) in cases {
            let got = BindAddr::parse(input).unwrap();
            if *input == "localhost:81" {
                assert!(matches!(got, BindAddr::Tcp(a) if a.port() == 81));
            } else {
                assert_eq!(got.to_string(), *want, "{input}");
            }
        }
    }

    #[test]
    fn parses_schemes() {
        let plain = Bind::parse("127.0.0.1:8000").unwrap();
        assert_eq!((plain.scheme, plain.proxy), (Scheme::Http, false));
        assert_eq!(plain.to_string(), "127.0.0.1:8000");
        let http = Bind::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(http, plain);
        let proxied = Bind::parse("http+proxy://127.0.0.1:8000").unwrap();
        assert_eq!((proxied.scheme, proxied.proxy), (Scheme::Http, true));
        assert_eq!(proxied.to_string(), "http+proxy://127.0.0.1:8000");
        let unix = Bind::parse("http+proxy://unix:/tmp/a.sock").unwrap();
        assert_eq!(unix.addr, BindAddr::Unix("/tmp/a.sock".into()));
        assert_eq!(unix.to_string(), "http+proxy://unix:/tmp/a.sock");
        let fcgi = Bind::parse("fastcgi+proxy://127.0.0.1:9000").unwrap();
        assert_eq!((fcgi.scheme, fcgi.proxy), (Scheme::FastCgi, true));
        assert_eq!(fcgi.to_string(), "fastcgi+proxy://127.0.0.1:9000");
        let fcgi = Bind::parse("fastcgi+proxy://unix:/run/app.sock").unwrap();
        assert_eq!(fcgi.to_string(), "fastcgi+proxy://unix:/run/app.sock");
        let ajp = Bind::parse("ajp+proxy://[::1]:8009").unwrap();
        assert_eq!((ajp.scheme, ajp.proxy), (Scheme::Ajp, true));
        assert_eq!(ajp.to_string(), "ajp+proxy://[::1]:8009");
        for bad in [
            "ftp://127.0.0.1:1",
            "http+tls://127.0.0.1:1",
            "proxy://127.0.0.1:1",
            "+proxy://127.0.0.1:1",
            "http+proxy+proxy://127.0.0.1:1",
            "HTTP://127.0.0.1:1",
            "http+proxy://",
            "fastcgi+proxy://",
        ] {
            let err = Bind::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid bind address"), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn inherited_sockets_as_bind_addresses() {
        for (input, scheme, proxy, fd, shown) in [
            ("fd://3", Scheme::Http, false, 3, "fd:3"),
            ("fd:4", Scheme::Http, false, 4, "fd:4"),
            ("http://fd:5", Scheme::Http, false, 5, "fd:5"),
            (
                "fastcgi://fd:3",
                Scheme::FastCgi,
                false,
                3,
                "fastcgi://fd:3",
            ),
            (
                "scgi+proxy://fd:0",
                Scheme::Scgi,
                true,
                0,
                "scgi+proxy://fd:0",
            ),
            ("uwsgi://fd:10", Scheme::Uwsgi, false, 10, "uwsgi://fd:10"),
            ("ajp+proxy://fd:7", Scheme::Ajp, true, 7, "ajp+proxy://fd:7"),
            (
                "http+proxy://fd:3",
                Scheme::Http,
                true,
                3,
                "http+proxy://fd:3",
            ),
        ] {
            let b = Bind::parse(input).unwrap();
            assert_eq!(
                (b.scheme, b.proxy, &b.addr),
                (scheme, proxy, &BindAddr::Fd(fd))
            );
            assert_eq!(b.to_string(), shown, "{input}");
            assert_eq!(Bind::parse(shown).unwrap(), b, "{shown}");
        }
        for bad in [
            "fd://",
            "fd:",
            "fd://x",
            "fd://-1",
            "fd://+3",
            "fd://3 ",
            "fastcgi://fd:",
            "fastcgi://fd:three",
            "fd://99999999999",
            "fd+proxy://3",
            "fd://fd:3",
        ] {
            let err = Bind::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid bind address"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        for name in ["fastcgi", "scgi", "uwsgi", "ajp", "http"] {
            let s = Scheme::from_name(name).unwrap();
            assert!(Scheme::ALL.contains(&s));
            assert_eq!(Scheme::parse_protocol(name), Some((s, false)));
            assert_eq!(
                Scheme::parse_protocol(&format!("{name}+proxy")),
                Some((s, true))
            );
        }
        for bad in [
            "",
            "+proxy",
            "fcgi",
            "FastCGI",
            "http+proxy+proxy",
            "app.socket",
        ] {
            assert_eq!(Scheme::parse_protocol(bad), None, "{bad}");
        }
        // An fd address adopts the descriptor: its protocol is the bind's.
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_l.local_addr().unwrap().port();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(std_l);
        let l = Listener::bind(&BindAddr::Fd(fd), 4, None)
            .unwrap()
            .with_scheme(Scheme::Scgi);
        assert_eq!(l.url(), format!("scgi://127.0.0.1:{port}"));
        assert!(!l.codec(8, &Arc::default()).is_http1());
        let e = Listener::bind(&BindAddr::Fd(987_654), 4, None).unwrap_err();
        assert!(e.to_string().contains("descriptor 987654"), "{e}");
    }

    #[test]
    fn rejects_bad_binds() {
        for bad in [
            "",
            "unix:",
            "1.2.3.4:x",
            "::1:80",
            "[::1",
            "[::1]x",
            "1.2.3.4:70000",
        ] {
            let err = BindAddr::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid bind address"), "{bad}: {err}");
        }
    }

    #[test]
    fn ajp_binds_and_listeners() {
        for (input, shown) in [
            ("ajp://127.0.0.1:8009", "ajp://127.0.0.1:8009"),
            ("ajp://[::1]:8009", "ajp://[::1]:8009"),
            ("ajp://unix:/run/app.sock", "ajp://unix:/run/app.sock"),
        ] {
            let b = Bind::parse(input).unwrap();
            assert_eq!(b.scheme, Scheme::Ajp, "{input}");
            assert_eq!(b.to_string(), shown, "{input}");
        }
        for bad in ["ajp://", "ajp://1.2.3.4:x", "ajp13://1.2.3.4:1"] {
            assert!(Bind::parse(bad).is_err(), "{bad}");
        }
        let l = Listener::bind(&BindAddr::parse("127.0.0.1:0").unwrap(), 4, None)
            .unwrap()
            .with_scheme(Scheme::Ajp);
        assert!(l.url().starts_with("ajp://127.0.0.1:"), "{}", l.url());
        assert!(!l.codec(8, &Arc::default()).is_http1());
        let path = std::env::temp_dir().join(format!("fw-ajp-{}.sock", std::process::id()));
        let u = Listener::bind(&BindAddr::Unix(path.clone()), 4, None)
            .unwrap()
            .with_scheme(Scheme::Ajp);
        assert_eq!(u.url(), format!("ajp://unix:{}", path.display()));
    }

    #[test]
    fn port_zero_reports_real_port_and_in_use_fails() {
        let l = Listener::bind(&BindAddr::parse("127.0.0.1:0").unwrap(), 16, None).unwrap();
        let BindAddr::Tcp(a) = l.local_addr() else {
            panic!("not tcp")
        };
        assert_ne!(a.port(), 0);
        let again = Listener::bind(&BindAddr::Tcp(a), 16, None).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
    }
}
