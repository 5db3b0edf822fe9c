//! The floor behind a front end (`ferrowsgi-floor --gateway scgi|uwsgi
//! [--processes N] ADDRESS`): the least work a server can do for requests that
//! come one to a connection, as nginx's `scgi_pass` and `uwsgi_pass` send them.
//!
//! Each process waits on the shared listener (level-triggered, as uWSGI
//! registers its own), accepts until the backlog is empty without asking for
//! the peer's address, and reads each new connection at once. A connection
//! whose head is all there is answered with one send of the bytes ferrowsgi
//! sends for `apps.hello:app` on that protocol and closed: four system calls.
//! One whose head is not complete yet waits in epoll (edge-triggered) for the
//! rest. The head is only measured (the uwsgi packet's length, the SCGI
//! netstring's), never parsed: this exists to show what the kernel costs per
//! request in this arrangement, so that a server's CPU per request can be set
//! against it, not to be a server. ADDRESS is `HOST:PORT` (with
//! `TCP_DEFER_ACCEPT`, and `reno` on loopback, as ferrowsgi listens) or
//! `unix:PATH`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::os::raw::c_int;

use crate::{accept, check, epoll_add, wait};

const LISTENER: u64 = u64::MAX;
const READ_CHUNK: usize = 16 * 1024;

/// The two protocols a front end speaks one request per connection.
#[derive(Clone, Copy)]
pub enum Protocol {
    Scgi,
    Uwsgi,
}

impl Protocol {
    /// `scgi` or `uwsgi`.
    pub fn parse(name: &str) -> Option<Protocol> {
        match name {
            "scgi" => Some(Protocol::Scgi),
            "uwsgi" => Some(Protocol::Uwsgi),
            _ => None,
        }
    }

    /// The hello answer, byte for byte as ferrowsgi sends it on this protocol
    /// (SCGI with a CGI `Status` line, uwsgi with an HTTP/1.1 status line; the
    /// front end adds Date and Server).
    fn answer(self) -> &'static [u8] {
        match self {
            Protocol::Scgi => {
                b"Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Content-Length: 13\r\n\r\nHello, World!"
            }
            Protocol::Uwsgi => {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Content-Length: 13\r\n\r\nHello, World!"
            }
        }
    }

    /// Whether `buf` holds a whole head: a uwsgi packet (4 bytes and its
    /// datasize), or an SCGI netstring (its digits, `:`, that many bytes and
    /// `,`). Bodies are not waited for: the floor serves the hello GET.
    fn complete(self, buf: &[u8]) -> bool {
        match self {
            Protocol::Uwsgi => match buf {
                [_, lo, hi, _, rest @ ..] => {
                    rest.len() >= usize::from(u16::from_le_bytes([*lo, *hi]))
                }
                _ => false,
            },
            Protocol::Scgi => {
                let Some(colon) = buf.iter().position(|&b| b == b':') else {
                    return false;
                };
                let len = buf[..colon]
                    .iter()
                    .try_fold(0usize, |n, &d| {
                        d.is_ascii_digit()
                            .then(|| n.saturating_mul(10).saturating_add(usize::from(d - b'0')))
                    })
                    .unwrap_or(usize::MAX);
                buf.len() - colon - 1 > len
            }
        }
    }
}

/// A listening socket and the flags its answers are sent with.
pub struct Listener {
    fd: c_int,
    /// `MSG_MORE` on TCP: the answer waits in its segment for the FIN that
    /// the close adds, as ferrowsgi sends a closing answer.
    send_flags: c_int,
}

/// A listening socket on `HOST:PORT` or `unix:PATH` (an old socket file at
/// PATH is removed first).
pub fn listen(address: &str) -> io::Result<Listener> {
    let Some(path) = address.strip_prefix("unix:") else {
        let addr: SocketAddrV4 = address
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{address}: {e}")))?;
        let fd = crate::listen(addr)?;
        // As ferrowsgi's listeners: a connection is handed over once its
        // first bytes are there, so the read after accept finds them; on a
        // loopback address its connections get `reno` (no pacing).
        let secs: c_int = 1;
        let reno = b"reno";
        // SAFETY: a live socket, options of the sizes given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const c_int).cast(),
                std::mem::size_of::<c_int>() as libc::socklen_t,
            );
            if addr.ip().is_loopback() {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_CONGESTION,
                    reno.as_ptr().cast(),
                    reno.len() as libc::socklen_t,
                );
            }
        }
        let send_flags = libc::MSG_NOSIGNAL | libc::MSG_MORE;
        return Ok(Listener { fd, send_flags });
    };
    // SAFETY: zeroed sockaddr_un is a valid value; the path is copied within
    // its bounds (checked below) and stays NUL-terminated.
    unsafe {
        let mut sun: libc::sockaddr_un = std::mem::zeroed();
        let bytes = path.as_bytes();
        if bytes.is_empty() || bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{address}: not a usable unix socket path"),
            ));
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, &b) in sun.sun_path.iter_mut().zip(bytes) {
            *dst = b as libc::c_char;
        }
        let _ = std::fs::remove_file(path);
        let fd = check(
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ),
            "socket",
        )?;
        let sa = &sun as *const libc::sockaddr_un as *const libc::sockaddr;
        let salen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        check(libc::bind(fd, sa, salen), "bind")?;
        check(libc::listen(fd, 2048), "listen")?;
        let send_flags = libc::MSG_NOSIGNAL;
        Ok(Listener { fd, send_flags })
    }
}

/// Serves `listener` in `processes` processes (this one and `processes - 1`
/// forked children, which the parent's process group takes down with it).
pub fn run(listener: &Listener, proto: Protocol, processes: usize) -> io::Result<()> {
    for _ in 1..processes {
        // SAFETY: no other thread exists yet; the child only runs the loop.
        let pid = check(unsafe { libc::fork() }, "fork")?;
        if pid == 0 {
            return serve(listener, proto);
        }
    }
    serve(listener, proto)
}

/// What to do with a connection after a read.
enum Next {
    Done,
    Wait,
}

/// Reads what `fd` has into `head` and answers once it is whole.
fn on_readable(fd: c_int, head: &mut Vec<u8>, proto: Protocol, flags: c_int) -> Next {
    loop {
        head.reserve(READ_CHUNK);
        let spare = head.spare_capacity_mut();
        // SAFETY: `spare` is writable for its length; read writes at most that.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
        if n <= 0 {
            let blocked = n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
            return if blocked { Next::Wait } else { Next::Done };
        }
        // SAFETY: read initialised the first n bytes after the old length.
        unsafe { head.set_len(head.len() + n as usize) };
        if proto.complete(head) {
            let answer = proto.answer();
            // SAFETY: sends from a static buffer; a short send is not retried
            // (the answer is far below a socket buffer).
            unsafe { libc::send(fd, answer.as_ptr().cast(), answer.len(), flags) };
            return Next::Done;
        }
    }
}

fn serve(listener: &Listener, proto: Protocol) -> io::Result<()> {
    let (lfd, flags) = (listener.fd, listener.send_flags);
    // SAFETY: creating an epoll instance has no preconditions.
    let ep = check(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    epoll_add(ep, lfd, libc::EPOLLIN as u32, LISTENER)?;
    let mut waiting: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut head = Vec::with_capacity(READ_CHUNK);
    loop {
        let n = wait(ep, &mut events)?;
        for ev in &events[..n] {
            let token = ev.u64;
            if token == LISTENER {
                while let Some(fd) = accept(lfd) {
                    head.clear();
                    match on_readable(fd, &mut head, proto, flags) {
                        Next::Wait => {
                            let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
                            if epoll_add(ep, fd, events, fd as u64).is_ok() {
                                waiting.insert(fd as u64, std::mem::take(&mut head));
                                continue;
                            }
                            // SAFETY: closing a descriptor we own.
                            unsafe { libc::close(fd) };
                        }
                        // SAFETY: closing a descriptor we own.
                        Next::Done => unsafe {
                            libc::close(fd);
                        },
                    }
                }
                continue;
            }
            let Some(buf) = waiting.get_mut(&token) else {
                continue;
            };
            let fd = token as c_int;
            if let Next::Done = on_readable(fd, buf, proto, flags) {
                waiting.remove(&token);
                // SAFETY: closing a descriptor we own (which leaves epoll too).
                unsafe { libc::close(fd) };
            }
        }
    }
}
