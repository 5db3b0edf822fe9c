//! The floor: the least work an HTTP/1.1 server can do for a keep-alive hello request.
//!
//! One thread, edge-triggered epoll, non-blocking sockets with TCP_NODELAY. Per
//! readable wake-up it does one read (another only if the buffer filled up), counts
//! the complete request heads in the buffer, and answers all of them with one
//! write of the same bytes ferrowsgi sends for `apps.hello:app` (Date and Server
//! included). `Connection: close` in a request closes the connection after its
//! answer, which then carries `Connection: close`. No parsing beyond that: it
//! exists to measure what the kernel and a minimal event loop cost, not to be a
//! server. The answer before a close is sent with `MSG_MORE` and followed by
//! `shutdown(SHUT_WR)`, so its FIN leaves in the same segment, as ferrowsgi does.
//!
//! With `--body N` it answers every request with an N-byte body instead (the
//! bytes ferrowsgi sends for `apps.big:app` when N is 1048576): each connection
//! queues a shared reference to the one prebuilt answer and sends from it, so the
//! only copy of the body is the kernel's, as for a WSGI server sending a bytes
//! object. That measures what the kernel costs for a large response.
//!
//! Usage: ferrowsgi-floor [--uring] [--body N] HOST:PORT (`--uring`: the same on
//! io_uring, uring.rs, hello only), or ferrowsgi-floor --gateway scgi|uwsgi
//! [--processes N] HOST:PORT|unix:PATH for one request per connection behind a
//! front end (gateway.rs).

mod gateway;
mod uring;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddrV4;
use std::os::raw::c_int;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

const LISTENER: u64 = u64::MAX;
const READ_CHUNK: usize = 64 * 1024;
/// Answers at least this long are queued by reference instead of copied into `out`.
const SHARED_MIN: usize = 16 * 1024;

struct Conn {
    fd: c_int,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Large answers waiting to be sent, and how much of the first one is sent.
    shared: VecDeque<Rc<Vec<u8>>>,
    shared_sent: usize,
    close_after_write: bool,
}

impl Conn {
    fn idle(&self) -> bool {
        self.out.is_empty() && self.shared.is_empty()
    }
}

fn check(ret: c_int, what: &str) -> io::Result<c_int> {
    if ret < 0 {
        let err = io::Error::last_os_error();
        Err(io::Error::new(err.kind(), format!("{what}: {err}")))
    } else {
        Ok(ret)
    }
}

fn listen(addr: SocketAddrV4) -> io::Result<c_int> {
    // SAFETY: plain socket syscalls on a descriptor we own; sockaddr_in is fully initialised.
    unsafe {
        let fd = check(
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ),
            "socket",
        )?;
        let one: c_int = 1;
        let len = std::mem::size_of::<c_int>() as libc::socklen_t;
        let opt = &one as *const c_int as *const libc::c_void;
        check(
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, opt, len),
            "SO_REUSEADDR",
        )?;
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = addr.port().to_be();
        sin.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
        let sa = &sin as *const libc::sockaddr_in as *const libc::sockaddr;
        let salen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(libc::bind(fd, sa, salen), "bind")?;
        check(libc::listen(fd, 2048), "listen")?;
        Ok(fd)
    }
}

/// TCP_NODELAY on an accepted socket (a failure only leaves Nagle's algorithm on).
fn set_nodelay(fd: c_int) {
    let one: c_int = 1;
    // SAFETY: valid option pointer and length for a socket the caller owns.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const c_int as *const libc::c_void,
            std::mem::size_of::<c_int>() as libc::socklen_t,
        );
    }
}

/// A connection from listener `lfd` (non-blocking, close-on-exec, the peer's
/// address not asked for), or `None` when the backlog is empty or accept fails.
fn accept(lfd: c_int) -> Option<c_int> {
    // SAFETY: accept4 with null address pointers is allowed.
    let fd = unsafe {
        libc::accept4(
            lfd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    (fd >= 0).then_some(fd)
}

/// Waits on `ep` for events into `events`: how many came (0 when a signal
/// interrupted the wait).
fn wait(ep: c_int, events: &mut [libc::epoll_event]) -> io::Result<usize> {
    // SAFETY: `events` has room for events.len() entries.
    let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as c_int, -1) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(err)
        };
    }
    Ok(n as usize)
}

fn epoll_add(ep: c_int, fd: c_int, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: ev is a valid epoll_event for the duration of the call.
    check(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) },
        "epoll_ctl",
    )
    .map(|_| ())
}

/// `Date: ...` value for the current second (RFC 9110 IMF-fixdate).
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The hello answer; `close` adds `Connection: close`, as ferrowsgi does when it will close.
fn response(secs: u64, close: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 13\r\n\
         Date: {}\r\nServer: ferrowsgi\r\n{}\r\nHello, World!",
        http_date(secs),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// An answer with an `n`-byte body, with the headers ferrowsgi sends for `apps.big:app`.
fn body_response(secs: u64, close: bool, n: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\
         Date: {}\r\nServer: ferrowsgi\r\n{}\r\n",
        http_date(secs),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.resize(out.len() + n, b'b');
    out
}

/// The two answers (keep-alive and closing) for the current second.
fn answers(secs: u64, body: Option<usize>) -> (Rc<Vec<u8>>, Rc<Vec<u8>>) {
    match body {
        Some(n) => (
            Rc::new(body_response(secs, false, n)),
            Rc::new(body_response(secs, true, n)),
        ),
        None => (
            Rc::new(response(secs, false)),
            Rc::new(response(secs, true)),
        ),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn has_close(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with(b"connection:") && find(&line, b"close").is_some()
    })
}

/// Reads once (again only while the buffer fills up), answers every complete head, writes once.
/// Returns false when the connection is finished.
fn on_readable(c: &mut Conn, resp: &Rc<Vec<u8>>, resp_close: &Rc<Vec<u8>>) -> bool {
    loop {
        let len = c.inbuf.len();
        c.inbuf.resize(len + READ_CHUNK, 0);
        // SAFETY: the buffer has READ_CHUNK writable bytes after `len`.
        let n = unsafe { libc::read(c.fd, c.inbuf[len..].as_mut_ptr().cast(), READ_CHUNK) };
        if n < 0 {
            c.inbuf.truncate(len);
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                break;
            }
            return false;
        }
        c.inbuf.truncate(len + n as usize);
        if n == 0 {
            return false;
        }
        if (n as usize) < READ_CHUNK {
            break; // a short read drained the socket: skip the EAGAIN read
        }
    }
    let mut start = 0;
    while let Some(end) = find(&c.inbuf[start..], b"\r\n\r\n") {
        let close = has_close(&c.inbuf[start..start + end]);
        let answer = if close { resp_close } else { resp };
        if answer.len() >= SHARED_MIN {
            c.shared.push_back(Rc::clone(answer));
        } else {
            c.out.extend_from_slice(answer);
        }
        start += end + 4;
        if close {
            c.close_after_write = true;
            break;
        }
    }
    c.inbuf.drain(..start);
    on_writable(c)
}

/// Writes what is pending; false when the connection is finished.
fn on_writable(c: &mut Conn) -> bool {
    while !c.out.is_empty() {
        // The last answer waits for the FIN of the shutdown before the close.
        let flags = if c.close_after_write {
            libc::MSG_MORE
        } else {
            0
        };
        // SAFETY: writes from an initialised buffer we own.
        let n = unsafe { libc::send(c.fd, c.out.as_ptr().cast(), c.out.len(), flags) };
        if n < 0 {
            return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        }
        c.out.drain(..n as usize);
    }
    while let Some(front) = c.shared.front() {
        let rest = &front[c.shared_sent..];
        let flags = if c.close_after_write && c.shared.len() == 1 {
            libc::MSG_MORE
        } else {
            0
        };
        // SAFETY: writes from an initialised buffer the queue keeps alive.
        let n = unsafe { libc::send(c.fd, rest.as_ptr().cast(), rest.len(), flags) };
        if n < 0 {
            return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        }
        c.shared_sent += n as usize;
        if c.shared_sent == front.len() {
            c.shared.pop_front();
            c.shared_sent = 0;
        }
    }
    !c.close_after_write
}

fn main() -> io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--gateway") {
        return run_gateway(&args[1..]);
    }
    let use_uring = args.first().is_some_and(|a| a == "--uring");
    if use_uring {
        args.remove(0);
    }
    let mut body = None;
    if args.first().is_some_and(|a| a == "--body") {
        let n = args
            .get(1)
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "--body needs a byte count")
            })?;
        body = Some(n);
        args.drain(..2);
    }
    let arg = args
        .into_iter()
        .next()
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let addr: SocketAddrV4 = arg
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{arg}: {e}")))?;
    let lfd = listen(addr)?;
    if use_uring {
        if body.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--body is for the epoll responder only",
            ));
        }
        eprintln!("floor (io_uring) listening on http://{addr}");
        return uring::run(lfd);
    }
    // SAFETY: creating an epoll instance has no preconditions.
    let ep = check(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    epoll_add(ep, lfd, libc::EPOLLIN as u32, LISTENER)?;
    eprintln!("floor listening on http://{addr}");
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut secs = now_secs();
    let (mut resp, mut resp_close) = answers(secs, body);
    loop {
        let n = wait(ep, &mut events)?;
        let t = now_secs();
        if t != secs {
            secs = t;
            (resp, resp_close) = answers(secs, body);
        }
        for ev in &events[..n] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                while let Some(fd) = accept(lfd) {
                    set_nodelay(fd);
                    let events =
                        (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
                    if epoll_add(ep, fd, events, fd as u64).is_err() {
                        // SAFETY: closing a descriptor we own.
                        unsafe { libc::close(fd) };
                        continue;
                    }
                    let conn = Conn {
                        fd,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        shared: VecDeque::new(),
                        shared_sent: 0,
                        close_after_write: false,
                    };
                    conns.insert(fd as u64, conn);
                }
                continue;
            }
            let Some(c) = conns.get_mut(&token) else {
                continue;
            };
            let mut alive = true;
            if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                != 0
            {
                alive = on_readable(c, &resp, &resp_close);
            } else if flags & libc::EPOLLOUT as u32 != 0 && !c.idle() {
                alive = on_writable(c);
            }
            if !alive || (c.close_after_write && c.idle()) {
                let fd = c.fd;
                if alive {
                    // SAFETY: shutting down a descriptor we own.
                    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                }
                conns.remove(&token);
                // SAFETY: closing a descriptor we own (closing also removes it from epoll).
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// `--gateway PROTO [--processes N] ADDRESS`.
fn run_gateway(args: &[String]) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let proto = args
        .first()
        .and_then(|p| gateway::Protocol::parse(p))
        .ok_or_else(|| bad("--gateway needs scgi or uwsgi"))?;
    let mut rest = &args[1..];
    let mut processes = 1;
    if rest.first().is_some_and(|a| a == "--processes") {
        processes = rest
            .get(1)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| bad("--processes needs a count of at least 1"))?;
        rest = &rest[2..];
    }
    let [address] = rest else {
        return Err(bad("--gateway needs one address: HOST:PORT or unix:PATH"));
    };
    let listener = gateway::listen(address)?;
    eprintln!("floor ({}) listening on {address}", args[0]);
    gateway::run(&listener, proto, processes)
}
