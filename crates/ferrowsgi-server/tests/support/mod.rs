//! Shared helpers for the server's integration tests: a Rust test handler
//! routed on the request path, a server running it on a background thread,
//! a raw-bytes client and a small HTTP/1.1 response reader.
//!
//! Every socket read has a timeout, so a server that fails to answer makes a
//! test fail instead of hang.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrowsgi_server::exchange::{BodyOverLimit, ResponseHead};
use ferrowsgi_server::{BindAddr, Config, Exchange, Handler, Server, StopHandle, Waiter};

/// How long any single read from the server may block.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Body of `/hello`.
pub const HELLO: &[u8] = b"Hello, world!";

/// Blocks `/stream` sends, in order.
pub const STREAM_BLOCKS: [&[u8]; 3] = [b"one,", b"two,", b"three"];

/// Content of the file `/file` sends.
pub const FILE_CONTENT: &[u8] = b"file contents, served by sendfile(2)\n";

// ---------------------------------------------------------------------------
// The test handler
// ---------------------------------------------------------------------------

/// The application under test. Routes on the path:
///
/// - `/hello`: 200 with [`HELLO`]; never reads the body.
/// - `/echo`: reads the whole body with `fill_body`, answers with it.
/// - `/stream`: `start_stream` + one `send` per [`STREAM_BLOCKS`] + `finish`,
///   no Content-Length (chunked on 1.1, close-delimited on 1.0).
/// - `/cl-short`: declares Content-Length: 10 and sends 5 bytes (`?stream`
///   streams them, otherwise `respond`).
/// - `/cl-long`: declares Content-Length: 3 and sends 10 bytes (same query).
/// - `/panic`: panics before responding (`?after-head`: after sending the
///   head and one block).
/// - `/noresponse`: returns without responding.
/// - `/headers`: answers with the request headers, one `name: value` a line.
/// - `/file`: streams [`FILE_CONTENT`] from a temp file with `send_file`
///   (`?cl` declares its Content-Length first).
/// - `/status/NNN`: answers with status NNN and a body (`?stream` streams it).
/// - `/slow?MS`: sleeps MS milliseconds (300 by default), then like `/hello`.
/// - `/meet?N`: waits (up to 10 s) until N requests are inside `/meet` at
///   once, then like `/hello`; 503 when they never were.
/// - `/big?N`: answers with N bytes (`?N&stream` sends them in 64 KiB blocks).
/// - `/paused?N`: streams [`big_body`]`(N)` in 64 KiB blocks with
///   `send_nowait`, pausing whenever the socket is full.
#[derive(Debug)]
pub struct TestHandler {
    /// How many times `handle` was entered.
    pub calls: Arc<AtomicUsize>,
    /// How many times `resume` was entered.
    pub resumes: Arc<AtomicUsize>,
    /// Paused responses dropped before their end.
    pub abandoned: Arc<AtomicUsize>,
    /// Handlers inside `/meet` right now.
    meeting: Arc<AtomicUsize>,
    file: PathBuf,
}

/// The state `/paused` pauses with.
struct PausedBig {
    body: Vec<u8>,
    next: usize,
    abandoned: Arc<AtomicUsize>,
}

impl Drop for PausedBig {
    fn drop(&mut self) {
        if self.next < self.body.len() {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Sends `/paused` blocks from `st.next` until the end or a full socket.
fn paused_step(ex: &mut Exchange<'_>, mut st: Box<PausedBig>) {
    while st.next < st.body.len() {
        let end = (st.next + 64 * 1024).min(st.body.len());
        match ex.send_nowait(&st.body[st.next..end]) {
            Ok(done) => {
                st.next = end;
                if !done && st.next < st.body.len() {
                    let _ = ex.pause(st);
                    return;
                }
            }
            Err(_) => return ex.abort(),
        }
    }
    let _ = ex.finish();
}

impl Waiter for TestHandler {}

impl Handler for TestHandler {
    fn handle(&self, ex: &mut Exchange<'_>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let path = String::from_utf8_lossy(ex.head().path()).into_owned();
        let query = String::from_utf8_lossy(ex.head().query()).into_owned();
        let streamed = query.split('&').any(|q| q == "stream");
        match path.as_str() {
            "/hello" => ok(ex, &[], HELLO),
            "/peer" => {
                let p = ex.peer();
                let text = format!(
                    "{} {} {} {} {}",
                    p.remote_addr, p.remote_port, p.server_name, p.server_port, p.https
                );
                ok(ex, &[], text.as_bytes());
            }
            "/echo" => {
                let mut body = Vec::new();
                loop {
                    let buffered = ex.body_buffered();
                    let n = buffered.len();
                    body.extend_from_slice(buffered);
                    ex.consume_body(n);
                    match ex.fill_body() {
                        Ok(true) => {}
                        Ok(false) => {
                            let rest = ex.body_buffered().to_vec();
                            ex.consume_body(rest.len());
                            body.extend_from_slice(&rest);
                            break;
                        }
                        Err(_) => return ex.abort(),
                    }
                }
                ok(ex, &[], &body);
            }
            "/read" => {
                // Echo through `read_body`, 64 KiB (or `?n=N` bytes) at a
                // time into a buffer that is never initialised (as
                // `wsgi.input.read(n)` does). A body over the limit is
                // answered anyway (the exchange replaces the answer).
                let size = query
                    .split('&')
                    .find_map(|q| q.strip_prefix("n=")?.parse().ok())
                    .unwrap_or(64 * 1024);
                let mut body = Vec::new();
                let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); size];
                loop {
                    match ex.read_body(&mut buf) {
                        Err(e) if BodyOverLimit::is(&e) => {
                            assert!(ex.is_body_over_limit());
                            return ok(ex, &[], b"answered anyway");
                        }
                        Ok(0) if ex.body_left() == Some(0) => break,
                        Ok(0) => match ex.fill_body() {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(_) => return ex.abort(),
                        },
                        Ok(n) => body.extend(
                            // SAFETY: `read_body` initialised the first `n` bytes.
                            buf[..n].iter().map(|b| unsafe { b.assume_init() }),
                        ),
                        Err(_) => return ex.abort(),
                    }
                }
                ok(ex, &[], &body);
            }
            "/stream" => {
                let _ = ex.start_stream(&head(200, b"200 OK", &[]));
                for block in STREAM_BLOCKS {
                    let _ = ex.send(block);
                }
                let _ = ex.finish();
            }
            "/cl-short" => with_length(ex, 10, b"12345", streamed),
            "/cl-long" => with_length(ex, 3, b"0123456789", streamed),
            "/panic" => {
                if query == "after-head" {
                    let _ = ex.start_stream(&head(200, b"200 OK", &[]));
                    let _ = ex.send(b"partial");
                }
                panic!("test handler panics on purpose");
            }
            "/noresponse" => {}
            "/headers" => {
                let mut body = Vec::new();
                for (name, value) in ex.head().headers() {
                    body.extend_from_slice(name);
                    body.extend_from_slice(b": ");
                    body.extend_from_slice(value);
                    body.push(b'\n');
                }
                ok(ex, &[], &body);
            }
            "/file" => {
                let file = std::fs::File::open(&self.file).expect("open the test file");
                let len = FILE_CONTENT.len().to_string().into_bytes();
                let headers = if query == "cl" {
                    vec![(b"Content-Length".to_vec(), len)]
                } else {
                    vec![]
                };
                let _ = ex.start_stream(&head(200, b"200 OK", &headers));
                if ex.send_file(file.as_raw_fd(), 0, None).is_err() {
                    return ex.abort();
                }
                let _ = ex.finish();
            }
            "/meet" => {
                let n: usize = query.parse().unwrap_or(2);
                let inside = self.meeting.fetch_add(1, Ordering::SeqCst) + 1;
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut met = inside >= n;
                while !met && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                    met = self.meeting.load(Ordering::SeqCst) >= n;
                }
                if met {
                    ok(ex, &[], HELLO);
                } else {
                    self.meeting.fetch_sub(1, Ordering::SeqCst);
                    let unmet: &[u8] = b"not met";
                    let _ = ex.respond(&head(503, b"503 Service Unavailable", &[]), &[unmet]);
                }
            }
            "/slow" => {
                let ms = query.parse().unwrap_or(300);
                std::thread::sleep(Duration::from_millis(ms));
                ok(ex, &[], HELLO);
            }
            "/big" => {
                let n: usize = query
                    .split('&')
                    .find_map(|q| q.parse().ok())
                    .unwrap_or(1 << 20);
                let body = big_body(n);
                if streamed {
                    let _ = ex.start_stream(&head(200, b"200 OK", &[]));
                    for block in body.chunks(64 * 1024) {
                        if ex.send(block).is_err() {
                            return ex.abort();
                        }
                    }
                    let _ = ex.finish();
                } else {
                    ok(ex, &[], &body);
                }
            }
            "/paused" => {
                let n: usize = query.parse().unwrap_or(1 << 20);
                let st = Box::new(PausedBig {
                    body: big_body(n),
                    next: 0,
                    abandoned: Arc::clone(&self.abandoned),
                });
                let _ = ex.start_stream(&head(200, b"200 OK", &[]));
                paused_step(ex, st);
            }
            p if p.starts_with("/status/") => {
                let code: u16 = p["/status/".len()..].parse().unwrap_or(500);
                let line = format!("{code} Whatever");
                let h = head(code, line.as_bytes(), &[]);
                if streamed {
                    let _ = ex.start_stream(&h);
                    let _ = ex.send(b"must not be sent");
                    let _ = ex.finish();
                } else {
                    let _ = ex.respond(&h, &[b"must not be sent"]);
                }
            }
            _ => {
                let _ = ex.respond(&head(404, b"404 Not Found", &[]), &[b"not found\n"]);
            }
        }
    }

    fn resume(&self, ex: &mut Exchange<'_>, state: Box<dyn std::any::Any + Send>) {
        self.resumes.fetch_add(1, Ordering::SeqCst);
        match state.downcast::<PausedBig>() {
            Ok(st) => paused_step(ex, st),
            Err(_) => ex.abort(),
        }
    }
}

/// Deterministic bytes for `/big`: byte `i` is `i % 251`.
pub fn big_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn head(status: u16, line: &[u8], headers: &[(Vec<u8>, Vec<u8>)]) -> ResponseHead {
    let mut h = ResponseHead::new(status, line);
    for (name, value) in headers {
        h.push_header(name, value);
    }
    h
}

fn ok(ex: &mut Exchange<'_>, extra: &[(Vec<u8>, Vec<u8>)], body: &[u8]) {
    let mut headers = vec![(b"Content-Type".to_vec(), b"text/plain".to_vec())];
    headers.extend_from_slice(extra);
    let _ = ex.respond(&head(200, b"200 OK", &headers), &[body]);
}

fn with_length(ex: &mut Exchange<'_>, declared: usize, body: &[u8], streamed: bool) {
    let headers = [(
        b"Content-Length".to_vec(),
        declared.to_string().into_bytes(),
    )];
    let h = head(200, b"200 OK", &headers);
    if streamed {
        let _ = ex.start_stream(&h);
        let _ = ex.send(body);
        let _ = ex.finish();
    } else {
        let _ = ex.respond(&h, &[body]);
    }
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/// Where a test server listens.
#[derive(Debug, Clone)]
pub enum Addr {
    /// A TCP address on 127.0.0.1.
    Tcp(SocketAddr),
    /// A unix-socket path.
    Unix(PathBuf),
}

/// A server running [`TestHandler`] on a background thread; stopped and
/// joined when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: Addr,
    /// Calls into the handler so far.
    pub calls: Arc<AtomicUsize>,
    /// Resumes of paused responses so far.
    pub resumes: Arc<AtomicUsize>,
    /// Paused responses dropped before their end.
    pub abandoned: Arc<AtomicUsize>,
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    file: PathBuf,
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "ferrowsgi-test-{}-{}.{what}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::SeqCst)
    ))
}

/// A config for tests: quiet logs and short timeouts, no binds yet, and
/// the thread mode of [`test_threads`].
pub fn test_config() -> Config {
    Config {
        keep_alive: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        threads: test_threads(),
        ..Config::default()
    }
}

/// Application threads of the servers whose test does not choose:
/// `FERROWSGI_TEST_THREADS` (scripts/test.sh runs the suite with 1, the
/// handler on the event loop, and again with a pool), 1 when unset.
pub fn test_threads() -> usize {
    std::env::var("FERROWSGI_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

impl TestServer {
    /// A server on 127.0.0.1:0 with [`test_config`].
    pub fn tcp() -> TestServer {
        TestServer::tcp_with(|_| {})
    }

    /// A server on 127.0.0.1:0 with [`test_config`] changed by `adjust`.
    pub fn tcp_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = test_config();
        adjust(&mut cfg);
        cfg.binds = vec![BindAddr::Tcp("127.0.0.1:0".parse().unwrap()).into()];
        TestServer::start(cfg)
    }

    /// A server on a fresh unix socket with [`test_config`] changed by
    /// `adjust`.
    pub fn unix_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = test_config();
        adjust(&mut cfg);
        cfg.binds = vec![BindAddr::Unix(unique_path("sock")).into()];
        TestServer::start(cfg)
    }

    /// Binds `cfg` (exactly one bind address) and runs the server on a
    /// thread.
    pub fn start(cfg: Config) -> TestServer {
        assert_eq!(cfg.binds.len(), 1, "a test server listens on one address");
        ferrowsgi_server::log::set_level(ferrowsgi_server::log::Level::Critical);
        let file = unique_path("txt");
        std::fs::write(&file, FILE_CONTENT).expect("write the test file");
        let calls = Arc::new(AtomicUsize::new(0));
        let resumes = Arc::new(AtomicUsize::new(0));
        let abandoned = Arc::new(AtomicUsize::new(0));
        let handler = TestHandler {
            calls: Arc::clone(&calls),
            resumes: Arc::clone(&resumes),
            abandoned: Arc::clone(&abandoned),
            meeting: Arc::new(AtomicUsize::new(0)),
            file: file.clone(),
        };
        let server = Server::bind(cfg, handler).unwrap_or_else(|(a, e)| panic!("bind {a}: {e}"));
        let urls = server.urls();
        let url = urls.first().expect("one bound address");
        // A listener whose connections start with a PROXY header names its
        // scheme (`http+proxy://ADDRESS`); the address is what a client
        // connects to.
        let addr = match url.strip_prefix("http+proxy://") {
            Some(rest) => match rest.strip_prefix("unix:") {
                Some(p) => Addr::Unix(PathBuf::from(p)),
                None => Addr::Tcp(rest.parse().expect("a socket address")),
            },
            None => {
                if let Some(a) = url.strip_prefix("http://") {
                    Addr::Tcp(a.parse().expect("a socket address"))
                } else if let Some(p) = url.strip_prefix("unix:") {
                    Addr::Unix(PathBuf::from(p))
                } else {
                    panic!("unexpected url {url}")
                }
            }
        };
        let stop = server.stop_handle();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || server.run())
            .expect("spawn the server thread");
        TestServer {
            addr,
            calls,
            resumes,
            abandoned,
            stop,
            thread: Some(thread),
            file,
        }
    }

    /// Handler calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A new connection.
    pub fn connect(&self) -> Client {
        Client::connect(&self.addr)
    }

    /// A handle to stop the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the server and waits (up to `limit`) for `run` to return,
    /// returning its result.
    pub fn shutdown(mut self, limit: Duration) -> io::Result<()> {
        self.stop.stop();
        let thread = self.thread.take().expect("running");
        let start = Instant::now();
        while !thread.is_finished() {
            assert!(
                start.elapsed() < limit,
                "Server::run did not return within {limit:?} of stop()"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().expect("the server thread panicked")
    }

    /// Whether `run` has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map_or(true, |t| t.is_finished())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let result = t.join();
            if !std::thread::panicking() {
                let run = result.expect("the server thread panicked");
                run.expect("Server::run failed");
            }
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// A connection's socket, TCP or unix.
#[derive(Debug)]
pub enum Sock {
    /// TCP.
    Tcp(TcpStream),
    /// Unix-domain.
    Unix(UnixStream),
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A raw-bytes client: writes whatever it is given and parses responses
/// from its own buffer, so bytes past one response stay for the next.
#[derive(Debug)]
pub struct Client {
    sock: Sock,
    buf: Vec<u8>,
    eof: bool,
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Header fields in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
    /// Whether the body ran to the close of the connection.
    pub close_delimited: bool,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times header `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// Whether the response says `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    /// Connects to `addr` with read and write timeouts of [`READ_TIMEOUT`].
    pub fn connect(addr: &Addr) -> Client {
        let sock = match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, READ_TIMEOUT).expect("connect");
                s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
                s.set_nodelay(true).unwrap();
                Sock::Tcp(s)
            }
            Addr::Unix(p) => {
                let s = UnixStream::connect(p).expect("connect to the unix socket");
                s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
                Sock::Unix(s)
            }
        };
        Client {
            sock,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Changes the read timeout.
    pub fn set_read_timeout(&self, t: Duration) {
        match &self.sock {
            Sock::Tcp(s) => s.set_read_timeout(Some(t)).unwrap(),
            Sock::Unix(s) => s.set_read_timeout(Some(t)).unwrap(),
        }
    }

    /// Sends `bytes`; `false` if the server has closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.sock.write_all(bytes).is_ok()
    }

    /// Writes all of `bytes` in one write call (as far as the kernel takes
    /// it).
    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write to the server");
    }

    /// Sends `GET path HTTP/1.1` with a Host header and reads the response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// Shuts down the sending side.
    pub fn shutdown_write(&self) {
        let _ = match &self.sock {
            Sock::Tcp(s) => s.shutdown(Shutdown::Write),
            Sock::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// Bytes received and not yet parsed.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// One read into the buffer; `Ok(0)` at EOF. A reset counts as EOF.
    fn read_more(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.sock.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads until the buffer holds `n` bytes.
    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.read_more()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed with {} of {n} bytes", self.buf.len()),
                ));
            }
        }
        Ok(())
    }

    /// Reads until the buffer holds `\r\n`; returns the line without it and
    /// removes it from the buffer.
    fn line(&mut self) -> io::Result<String> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].windows(2).position(|w| w == b"\r\n") {
                let end = searched + i;
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            searched = self.buf.len().saturating_sub(1);
            if self.read_more()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed in the middle of a line: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Reads one response; panics with the reason when it cannot.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false)
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// Reads one response to a HEAD request (no body whatever the headers
    /// say).
    pub fn read_head_response(&mut self) -> Response {
        self.try_read_response(true)
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// Reads one response: head, then a body framed by Content-Length,
    /// chunked coding or the close of the connection (RFC 9112 §6.3).
    pub fn try_read_response(&mut self, to_head: bool) -> io::Result<Response> {
        let status_line = self.line()?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            close_delimited: false,
        };
        let bodyless = to_head || (100..200).contains(&status) || status == 204 || status == 304;
        if bodyless {
            return Ok(resp);
        }
        let te = resp.header("transfer-encoding").map(str::to_owned);
        let cl = resp.header("content-length").map(str::to_owned);
        if te.is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            resp.chunked = true;
            loop {
                let size_line = self.line()?;
                let hex = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| bad(format!("bad chunk size line {size_line:?}")))?;
                if size == 0 {
                    // Trailers up to the empty line.
                    while !self.line()?.is_empty() {}
                    break;
                }
                self.need(size + 2)?;
                resp.body.extend_from_slice(&self.buf[..size]);
                if &self.buf[size..size + 2] != b"\r\n" {
                    return Err(bad("chunk not followed by CRLF"));
                }
                self.buf.drain(..size + 2);
            }
        } else if let Some(cl) = cl {
            let n: usize = cl
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {cl:?}")))?;
            self.need(n)?;
            resp.body = self.buf.drain(..n).collect();
        } else {
            resp.close_delimited = true;
            while self.read_more()? > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Reads everything up to the close of the connection (buffered bytes
    /// first).
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self
            .read_more()
            .unwrap_or_else(|e| panic!("waiting for the server to close: {e}"))
            > 0
        {}
        std::mem::take(&mut self.buf)
    }

    /// Asserts that the server closes the connection without sending
    /// anything more (within [`READ_TIMEOUT`]).
    pub fn expect_closed(&mut self) {
        let rest = self.read_to_close();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Whether the connection is still open and silent: no byte and no EOF
    /// within `wait`.
    pub fn is_open_after(&mut self, wait: Duration) -> bool {
        self.set_read_timeout(wait);
        let r = self.read_more();
        self.set_read_timeout(READ_TIMEOUT);
        match r {
            Ok(0) => false,
            Ok(_) => panic!(
                "unexpected bytes from the server: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// `GET path HTTP/1.1` with a Host header, as bytes.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// `POST path HTTP/1.1` with a Content-Length body, as bytes.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}
