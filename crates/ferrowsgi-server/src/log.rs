//! The error log and the access log.
//!
//! The error log takes lines with a level (`[time] [pid] [LEVEL] msg`, or
//! one JSON object per line) and goes to stderr or a file. The access log
//! writes one line per request in a format compiled once at start
//! (gunicorn's `%(h)s`-style atoms, Apache's combined format by default, or
//! JSON) to stdout, stderr or a file. Either can go to an [`ExternalSink`]
//! instead (the binding hands them to Python's `logging`), which keeps this
//! crate free of Python.
//!
//! Files are opened with `O_APPEND` and every line is one `write(2)`, so
//! lines from several threads or processes sharing a file never interleave.
//! [`reopen`] opens each file again by its path and puts the new file on the
//! old descriptor number with `dup3(2)`, which is atomic: a thread writing
//! at that moment writes to the old file or to the new one, never to a
//! closed descriptor, and writers take no lock.

use std::borrow::Cow;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrowsgi_proto::{percent_decode, RequestHead};

use crate::peer::PeerInfo;

/// Error-log severity. The numbers are those of Python's `logging`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Per-connection detail.
    Debug = 10,
    /// Start-up, shutdown and rejected requests.
    Info = 20,
    /// Something the operator should look at.
    Warning = 30,
    /// Application errors.
    Error = 40,
    /// The server cannot go on.
    Critical = 50,
}

impl Level {
    /// Parses a level name as given to `--log-level`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    /// The level's name in capitals, as Python's `logging` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// The level's number in Python's `logging` (10 for DEBUG … 50).
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// The shape of error-log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[2026-11-25 13:30:00 +0000] [PID] [LEVEL] message`, as gunicorn.
    Text,
    /// `{"time": "...", "pid": N, "level": "INFO", "message": "..."}`.
    Json,
}

impl Format {
    /// Parses `text` or `json`; the error is one line.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(format!("{s:?} is not a log format (text or json)")),
        }
    }
}

/// Where a log's lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, opened for appending (and created if missing).
    File(PathBuf),
}

impl Target {
    /// `-` means `dash` (stdout for the access log, stderr for the error
    /// log, as in gunicorn); anything else is a file path.
    pub fn from_arg(s: &str, dash: Target) -> Target {
        if s == "-" {
            dash
        } else {
            Target::File(PathBuf::from(s))
        }
    }

    /// The descriptor to write to, opening the file on first use.
    fn open(&self) -> io::Result<RawFd> {
        match self {
            Target::Stdout => Ok(1),
            Target::Stderr => Ok(2),
            Target::File(path) => file_fd(path),
        }
    }
}

/// Receives log records instead of the descriptors: the binding's
/// hand-over to Python's `logging`. Called on whatever thread logs, with
/// no lock of this module held.
pub trait ExternalSink: Send + Sync {
    /// One error-log record at `level` (already past `--log-level`).
    fn error(&self, level: Level, msg: &str);
    /// One access-log record: `line` as the configured format renders it
    /// and the record's fields (the keys of the JSON format).
    fn access(&self, line: &str, fields: &[(&'static str, Field<'_>)]);
}

/// The value of one access-record field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<'a> {
    /// Text (request bytes decoded as UTF-8, invalid bytes replaced).
    Str(Cow<'a, str>),
    /// A number.
    Int(u64),
    /// Absent (a header the request did not have).
    Null,
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// The error log's descriptor: 2, or a file's (which [`reopen`] keeps).
static ERROR_FD: AtomicI32 = AtomicI32::new(2);
static ERROR_JSON: AtomicBool = AtomicBool::new(false);
/// Whether [`EXTERNAL`] is set, read without the lock.
static EXTERNAL_ON: AtomicBool = AtomicBool::new(false);
static EXTERNAL: RwLock<Option<Arc<dyn ExternalSink>>> = RwLock::new(None);

/// The log files opened so far, by path, with their descriptors. A file
/// is opened once per process however many logs use it.
static FILES: Mutex<Vec<(PathBuf, RawFd)>> = Mutex::new(Vec::new());

/// Sets the lowest level that is printed.
pub fn set_level(level: Level) {
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a line at `level` would be printed.
pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Sends the error log to `target` in `format`. A file is opened (created
/// if missing) at once, so an unwritable path fails here; the error names
/// the path.
pub fn set_error_log(target: &Target, format: Format) -> Result<(), String> {
    let fd = target.open().map_err(|e| open_error(target, &e))?;
    ERROR_FD.store(fd, Ordering::Relaxed);
    ERROR_JSON.store(format == Format::Json, Ordering::Relaxed);
    Ok(())
}

/// Hands both logs to `sink` from now on (`None`: back to the
/// descriptors). Access logs built with `external` set are the only ones
/// that go there.
pub fn set_external(sink: Option<Arc<dyn ExternalSink>>) {
    let mut slot = EXTERNAL.write().unwrap_or_else(|e| e.into_inner());
    EXTERNAL_ON.store(sink.is_some(), Ordering::Release);
    *slot = sink;
}

fn external() -> Option<Arc<dyn ExternalSink>> {
    if !EXTERNAL_ON.load(Ordering::Acquire) {
        return None;
    }
    EXTERNAL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn open_error(target: &Target, e: &io::Error) -> String {
    match target {
        Target::File(p) => format!("cannot open log file {}: {e}", p.display()),
        _ => format!("cannot use {target:?} for logging: {e}"),
    }
}

/// Opens `path` for appending: `O_APPEND` makes every write(2) land whole
/// at the end, whichever process or thread writes.
fn open_append(path: &Path) -> io::Result<RawFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the path"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn file_fd(path: &Path) -> io::Result<RawFd> {
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, fd)) = files.iter().find(|(p, _)| p == path) {
        return Ok(*fd);
    }
    let fd = open_append(path)?;
    files.push((path.to_path_buf(), fd));
    Ok(fd)
}

/// Reopens every log file by its path, as `SIGUSR1` asks once logrotate
/// has moved the files away: a file that was renamed is created anew, and
/// the following lines go to it. Each new file takes its old descriptor's
/// number (`dup3`, atomic), so writers on other threads never see a closed
/// or missing descriptor. Every file is tried; the first failure is
/// returned (and the log it concerns keeps its old file).
pub fn reopen() -> io::Result<()> {
    let files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    let mut first_err = None;
    for (path, fd) in files.iter() {
        let result = open_append(path).and_then(|new| {
            // SAFETY: `new` was just opened and `fd` is a log descriptor
            // this module owns; dup3 replaces `fd` atomically and keeps
            // close-on-exec. `new` is closed once, whatever dup3 did.
            let rc = unsafe { libc::dup3(new, *fd, libc::O_CLOEXEC) };
            let err = io::Error::last_os_error();
            // SAFETY: as above; `new` is not used after this.
            unsafe { libc::close(new) };
            if rc < 0 {
                Err(err)
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            first_err.get_or_insert(io::Error::new(
                e.kind(),
                format!("cannot reopen log file {}: {e}", path.display()),
            ));
        }
    }
    drop(files);
    match first_err {
        Some(e) => {
            error(&e.to_string());
            Err(e)
        }
        None => Ok(()),
    }
}

/// Writes `line` with one write(2) (more only if the kernel takes part of
/// it, which a regular file does only when full). Failures are dropped: a
/// log that cannot be written must not stop the server.
fn write_fd(fd: RawFd, line: &[u8]) {
    let mut rest = line;
    while !rest.is_empty() {
        // SAFETY: `rest` is a live slice; a bad descriptor only makes
        // write(2) fail.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        rest = &rest[(n as usize).min(rest.len())..];
    }
}

/// Writes one error-log line (more lines when `msg` has them) at `level`.
pub fn log(level: Level, msg: &str) {
    if !enabled(level) {
        return;
    }
    let msg = msg.trim_end();
    if let Some(sink) = external() {
        sink.error(level, msg);
        return;
    }
    let now = SystemTime::now();
    let mut line = Vec::with_capacity(64 + msg.len());
    if ERROR_JSON.load(Ordering::Relaxed) {
        line.extend_from_slice(b"{\"time\":\"");
        push_rfc3339(&mut line, now);
        line.extend_from_slice(b"\",\"pid\":");
        line.extend_from_slice(itoa::Buffer::new().format(std::process::id()).as_bytes());
        line.extend_from_slice(b",\"level\":\"");
        line.extend_from_slice(level.name().as_bytes());
        line.extend_from_slice(b"\",\"message\":");
        push_json_str(&mut line, msg.as_bytes());
        line.extend_from_slice(b"}\n");
    } else {
        line.push(b'[');
        push_iso(&mut line, now);
        line.extend_from_slice(b"] [");
        line.extend_from_slice(itoa::Buffer::new().format(std::process::id()).as_bytes());
        line.extend_from_slice(b"] [");
        line.extend_from_slice(level.name().as_bytes());
        line.extend_from_slice(b"] ");
        line.extend_from_slice(msg.as_bytes());
        line.push(b'\n');
    }
    write_fd(ERROR_FD.load(Ordering::Relaxed), &line);
}

/// Logs at info level.
pub fn info(msg: &str) {
    log(Level::Info, msg);
}

/// Logs at debug level.
pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// Logs at warning level.
pub fn warning(msg: &str) {
    log(Level::Warning, msg);
}

/// Logs at error level.
pub fn error(msg: &str) {
    log(Level::Error, msg);
}

/// gunicorn's default `access_log_format`, which is Apache's combined log
/// format: `host - user [time] "request line" status bytes "referer"
/// "user agent"`.
pub const COMBINED: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
/// Apache's common log format (combined without referer and user agent).
pub const COMMON: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s"#;

/// One piece of a compiled access-log format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text copied as it is.
    Lit(Vec<u8>),
    /// `h`: the client's address (`unix` over a unix socket).
    RemoteAddr,
    /// `l`: always `-` (identd is not asked).
    Dash,
    /// `u`: the user of HTTP Basic authorization, or `-`.
    User,
    /// `t`: `[25/Nov/2026:13:30:00 +0000]`.
    Time,
    /// `r`: `GET /path?q HTTP/1.1`.
    RequestLine,
    /// `m`: the method.
    Method,
    /// `U`: the path, percent-decoded (`PATH_INFO`).
    Path,
    /// `q`: the query string.
    Query,
    /// `H`: the protocol.
    Protocol,
    /// `s`: the status code.
    Status,
    /// `B`: body bytes sent.
    Bytes,
    /// `b`: body bytes sent, `-` for none.
    BytesOrDash,
    /// `f`: the Referer header, or `-`.
    Referer,
    /// `a`: the User-Agent header, or `-`.
    UserAgent,
    /// `T`: the request's duration in whole seconds.
    Secs,
    /// `M`: in whole milliseconds.
    Millis,
    /// `D`: in microseconds.
    Micros,
    /// `L`: in seconds with six decimals.
    DecimalSecs,
    /// `p`: `<PID>`.
    Pid,
    /// `{name}i`: a request header (lower-case name), or `-`.
    RequestHeader(Vec<u8>),
    /// `{name}o`: a response header, by its index in
    /// [`AccessLog::response_headers`].
    ResponseHeader(usize),
    /// `{name}e`: an environ variable.
    Env(EnvVar),
}

/// What `{name}e` stands for, decided when the format is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvVar {
    /// A CGI variable of the WSGI environ that the request defines.
    Method,
    ScriptName,
    PathInfo,
    Query,
    Protocol,
    RemoteAddr,
    RemotePort,
    ServerName,
    ServerPort,
    RawUri,
    Scheme,
    /// `HTTP_*`, `CONTENT_TYPE`, `CONTENT_LENGTH`: a request header.
    Header(Vec<u8>),
    /// Anything else: the process environment's value at start (`-` when
    /// unset), which does not change while the server runs.
    Fixed(Vec<u8>),
}

/// How access lines are rendered.
#[derive(Debug)]
enum Shape {
    Parts(Vec<Part>),
    Json,
}

#[derive(Debug)]
struct AccessInner {
    target: Target,
    /// The descriptor, -1 until [`AccessLog::open`].
    fd: AtomicI32,
    shape: Shape,
    /// Records go to the [`ExternalSink`] (`--log-to-python`).
    external: bool,
    /// The format reads the request's duration.
    timing: bool,
    /// The response headers the format reads, lower-case.
    response_headers: Vec<Vec<u8>>,
}

/// A compiled access log: its format, parsed once, and its destination.
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct AccessLog {
    inner: Arc<AccessInner>,
}

/// What one access-log line is made from.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// The connection's two ends.
    pub peer: &'a PeerInfo,
    /// The request head.
    pub head: &'a RequestHead,
    /// Response status code.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Time from the hand-over to the application to the end of the
    /// response, when [`AccessLog::needs_timing`].
    pub duration: Option<Duration>,
    /// Values of [`AccessLog::response_headers`], in that order (empty
    /// when the format reads none).
    pub response_headers: &'a [Option<Vec<u8>>],
}

impl AccessLog {
    /// Compiles `format` for `target`: `combined` (the default), `common`,
    /// `json`, or a gunicorn `access_log_format` string of `%(atom)s`
    /// items (`%%` for a percent sign). An unknown atom or a stray `%` is a
    /// one-line error. `external` sends the records to the
    /// [`ExternalSink`] instead of `target`. Nothing is opened here.
    pub fn new(target: Target, format: &str, external: bool) -> Result<AccessLog, String> {
        let (shape, response_headers) = match format {
            "json" => (Shape::Json, Vec::new()),
            "combined" => compile(COMBINED)?,
            "common" => compile(COMMON)?,
            f => compile(f)?,
        };
        let timing = external
            || match &shape {
                Shape::Json => true,
                Shape::Parts(parts) => parts.iter().any(|p| {
                    matches!(
                        p,
                        Part::Secs | Part::Millis | Part::Micros | Part::DecimalSecs
                    )
                }),
            };
        Ok(AccessLog {
            inner: Arc::new(AccessInner {
                target,
                fd: AtomicI32::new(-1),
                shape,
                external,
                timing,
                response_headers,
            }),
        })
    }

    /// Opens the destination (a file is created if missing); the error is
    /// one line naming the path. Until then, lines are dropped.
    pub fn open(&self) -> Result<(), String> {
        if self.inner.external {
            return Ok(());
        }
        let fd = self
            .inner
            .target
            .open()
            .map_err(|e| open_error(&self.inner.target, &e))?;
        self.inner.fd.store(fd, Ordering::Relaxed);
        Ok(())
    }

    /// Whether records must carry the request's duration (a clock read at
    /// the start and at the end of each request).
    pub fn needs_timing(&self) -> bool {
        self.inner.timing
    }

    /// The response headers (lower-case names) whose values records must
    /// carry, in order; empty for most formats.
    pub fn response_headers(&self) -> &[Vec<u8>] {
        &self.inner.response_headers
    }

    /// Writes the line for `rec`.
    pub fn write(&self, rec: &AccessRecord<'_>) {
        let inner = &*self.inner;
        let mut line = Vec::with_capacity(200);
        if inner.external {
            if let Some(sink) = external() {
                match &inner.shape {
                    Shape::Parts(parts) => render(parts, rec, &mut line),
                    Shape::Json => render_json(rec, &mut line),
                }
                let fields = record_fields(rec);
                sink.access(&String::from_utf8_lossy(&line), &fields);
                return;
            }
        }
        match &inner.shape {
            Shape::Parts(parts) => render(parts, rec, &mut line),
            Shape::Json => render_json(rec, &mut line),
        }
        line.push(b'\n');
        write_fd(inner.fd.load(Ordering::Relaxed), &line);
    }
}

/// Parses a gunicorn-style format into parts, and the response headers it
/// reads.
fn compile(format: &str) -> Result<(Shape, Vec<Vec<u8>>), String> {
    let bytes = format.as_bytes();
    let mut parts = Vec::new();
    let mut headers_out: Vec<Vec<u8>> = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            lit.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'%') => {
                lit.push(b'%');
                i += 2;
                continue;
            }
            Some(b'(') => {}
            _ => {
                return Err(format!(
                    "access log format: a '%' at byte {i} is not followed by '(name)' \
                     (write %% for a percent sign)"
                ))
            }
        }
        let start = i + 2;
        let Some(len) = bytes[start..].iter().position(|&b| b == b')') else {
            return Err(format!(
                "access log format: '%(' at byte {i} has no closing ')'"
            ));
        };
        let name = &format[start..start + len];
        let conv = bytes.get(start + len + 1).copied();
        if !matches!(conv, Some(b's' | b'd' | b'i')) {
            return Err(format!(
                "access log format: %({name}) must be followed by 's' (as in %({name})s)"
            ));
        }
        i = start + len + 2;
        let part = atom(name, &mut headers_out)?;
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(part);
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok((Shape::Parts(parts), headers_out))
}

fn atom(name: &str, headers_out: &mut Vec<Vec<u8>>) -> Result<Part, String> {
    if let Some(inner) = name.strip_prefix('{') {
        let (key, kind) = inner
            .rsplit_once('}')
            .filter(|(k, kind)| !k.is_empty() && kind.len() == 1)
            .ok_or_else(|| {
                format!("access log format: %({name})s is not {{header}}i, {{header}}o or {{var}}e")
            })?;
        let lower = key.to_ascii_lowercase().into_bytes();
        return match kind {
            "i" => Ok(Part::RequestHeader(lower)),
            "o" => {
                let at = match headers_out.iter().position(|h| *h == lower) {
                    Some(at) => at,
                    None => {
                        headers_out.push(lower);
                        headers_out.len() - 1
                    }
                };
                Ok(Part::ResponseHeader(at))
            }
            "e" => Ok(Part::Env(env_var(key))),
            _ => Err(format!(
                "access log format: %({name})s is not {{header}}i, {{header}}o or {{var}}e"
            )),
        };
    }
    Ok(match name {
        "h" => Part::RemoteAddr,
        "l" => Part::Dash,
        "u" => Part::User,
        "t" => Part::Time,
        "r" => Part::RequestLine,
        "m" => Part::Method,
        "U" => Part::Path,
        "q" => Part::Query,
        "H" => Part::Protocol,
        "s" => Part::Status,
        "B" => Part::Bytes,
        "b" => Part::BytesOrDash,
        "f" => Part::Referer,
        "a" => Part::UserAgent,
        "T" => Part::Secs,
        "M" => Part::Millis,
        "D" => Part::Micros,
        "L" => Part::DecimalSecs,
        "p" => Part::Pid,
        _ => {
            return Err(format!(
                "access log format: unknown atom %({name})s (known: h l u t r m U q H s B b f a \
                 T M D L p {{header}}i {{header}}o {{var}}e)"
            ))
        }
    })
}

fn env_var(key: &str) -> EnvVar {
    let upper = key.to_ascii_uppercase();
    match upper.as_str() {
        "REQUEST_METHOD" => EnvVar::Method,
        "SCRIPT_NAME" => EnvVar::ScriptName,
        "PATH_INFO" => EnvVar::PathInfo,
        "QUERY_STRING" => EnvVar::Query,
        "SERVER_PROTOCOL" => EnvVar::Protocol,
        "REMOTE_ADDR" => EnvVar::RemoteAddr,
        "REMOTE_PORT" => EnvVar::RemotePort,
        "SERVER_NAME" => EnvVar::ServerName,
        "SERVER_PORT" => EnvVar::ServerPort,
        "RAW_URI" | "REQUEST_URI" => EnvVar::RawUri,
        "WSGI.URL_SCHEME" => EnvVar::Scheme,
        "CONTENT_TYPE" => EnvVar::Header(b"content-type".to_vec()),
        "CONTENT_LENGTH" => EnvVar::Header(b"content-length".to_vec()),
        _ => match upper.strip_prefix("HTTP_") {
            Some(h) if !h.is_empty() => {
                EnvVar::Header(h.to_ascii_lowercase().replace('_', "-").into_bytes())
            }
            _ => EnvVar::Fixed(
                std::env::var_os(key)
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_else(|| b"-".to_vec()),
            ),
        },
    }
}

fn header<'h>(head: &'h RequestHead, name: &[u8]) -> Option<&'h [u8]> {
    head.headers()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn push_or_dash(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => push_escaped(out, v),
        _ => out.push(b'-'),
    }
}

/// The client's address: what a front end reported for a gateway request
/// (FastCGI, AJP13, …: the connection's peer is the front end itself),
/// else the connection's peer.
fn remote<'a>(rec: &AccessRecord<'a>) -> &'a [u8] {
    if let Some(addr) = rec.head.var(b"REMOTE_ADDR").filter(|a| !a.is_empty()) {
        return addr;
    }
    if rec.peer.is_unix {
        b"unix"
    } else {
        rec.peer.remote_addr.as_bytes()
    }
}

/// The user name of an `Authorization: Basic` header (RFC 7617).
fn basic_user(head: &RequestHead) -> Option<Vec<u8>> {
    let v = header(head, b"authorization")?;
    let (scheme, cred) = split_once(v, b' ')?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64_decode(cred.trim_ascii())?;
    let user = match decoded.iter().position(|&b| b == b':') {
        Some(at) => decoded[..at].to_vec(),
        None => decoded,
    };
    Some(user)
}

fn split_once(v: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = v.iter().position(|&b| b == sep)?;
    Some((&v[..at], &v[at + 1..]))
}

/// Decodes standard base64 (RFC 4648 §4), padding optional; `None` on a
/// character outside the alphabet.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn render(parts: &[Part], rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
    let head = rec.head;
    let dur = rec.duration.unwrap_or_default();
    for part in parts {
        match part {
            Part::Lit(s) => out.extend_from_slice(s),
            Part::RemoteAddr => push_escaped(out, remote(rec)),
            Part::Dash => out.push(b'-'),
            Part::User => push_or_dash(out, basic_user(head).as_deref()),
            Part::Time => {
                out.push(b'[');
                push_clf(out, SystemTime::now());
                out.push(b']');
            }
            Part::RequestLine => {
                push_escaped(out, head.method());
                out.push(b' ');
                push_escaped(out, head.target());
                out.push(b' ');
                out.extend_from_slice(head.version().as_str().as_bytes());
            }
            Part::Method => push_escaped(out, head.method()),
            Part::Path => push_escaped(out, &percent_decode(head.path())),
            Part::Query => push_escaped(out, head.query()),
            Part::Protocol => out.extend_from_slice(head.version().as_str().as_bytes()),
            Part::Status => push_num(out, u64::from(rec.status)),
            Part::Bytes => push_num(out, rec.bytes),
            Part::BytesOrDash => {
                if rec.bytes == 0 {
                    out.push(b'-');
                } else {
                    push_num(out, rec.bytes);
                }
            }
            Part::Referer => push_or_dash(out, header(head, b"referer")),
            Part::UserAgent => push_or_dash(out, header(head, b"user-agent")),
            Part::Secs => push_num(out, dur.as_secs()),
            Part::Millis => push_num(out, dur.as_millis() as u64),
            Part::Micros => push_num(out, dur.as_micros() as u64),
            Part::DecimalSecs => {
                use std::io::Write;
                let _ = write!(out, "{}.{:06}", dur.as_secs(), dur.subsec_micros());
            }
            Part::Pid => {
                out.push(b'<');
                push_num(out, u64::from(std::process::id()));
                out.push(b'>');
            }
            Part::RequestHeader(name) => push_or_dash(out, header(head, name)),
            Part::ResponseHeader(at) => push_or_dash(
                out,
                rec.response_headers.get(*at).and_then(|v| v.as_deref()),
            ),
            Part::Env(var) => push_env(out, var, rec),
        }
    }
}

fn push_env(out: &mut Vec<u8>, var: &EnvVar, rec: &AccessRecord<'_>) {
    let head = rec.head;
    let peer = rec.peer;
    match var {
        EnvVar::Method => push_escaped(out, head.method()),
        // The server mounts the application at the root.
        EnvVar::ScriptName => out.push(b'-'),
        EnvVar::PathInfo => push_escaped(out, &percent_decode(head.path())),
        EnvVar::Query => push_or_dash(out, Some(head.query())),
        EnvVar::Protocol => out.extend_from_slice(head.version().as_str().as_bytes()),
        // A gateway request's own values first, as its environ has them.
        EnvVar::RemoteAddr => push_or_dash(
            out,
            Some(
                head.var(b"REMOTE_ADDR")
                    .unwrap_or(peer.remote_addr.as_bytes()),
            ),
        ),
        EnvVar::RemotePort => push_or_dash(
            out,
            Some(
                head.var(b"REMOTE_PORT")
                    .unwrap_or(peer.remote_port.as_bytes()),
            ),
        ),
        EnvVar::ServerName => push_or_dash(
            out,
            Some(
                head.var(b"SERVER_NAME")
                    .unwrap_or(peer.server_name.as_bytes()),
            ),
        ),
        EnvVar::ServerPort => push_or_dash(
            out,
            Some(
                head.var(b"SERVER_PORT")
                    .unwrap_or(peer.server_port.as_bytes()),
            ),
        ),
        EnvVar::RawUri => push_escaped(out, head.target()),
        EnvVar::Scheme => out.extend_from_slice(b"http"),
        EnvVar::Header(name) => push_or_dash(out, header(head, name)),
        EnvVar::Fixed(v) => push_escaped(out, v),
    }
}

fn text(v: &[u8]) -> Field<'_> {
    Field::Str(String::from_utf8_lossy(v))
}

/// The fixed fields of a record: the JSON format's keys, and the `extra`
/// of a Python record.
fn record_fields<'a>(rec: &AccessRecord<'a>) -> Vec<(&'static str, Field<'a>)> {
    let head = rec.head;
    let opt = |v: Option<&'a [u8]>| v.map_or(Field::Null, text);
    let path = match percent_decode(head.path()) {
        Cow::Borrowed(b) => text(b),
        Cow::Owned(v) => Field::Str(Cow::Owned(String::from_utf8_lossy(&v).into_owned())),
    };
    vec![
        ("remote_addr", text(remote(rec))),
        ("method", text(head.method())),
        ("uri", text(head.target())),
        ("path", path),
        ("query", text(head.query())),
        (
            "protocol",
            Field::Str(Cow::Borrowed(head.version().as_str())),
        ),
        ("status", Field::Int(u64::from(rec.status))),
        ("bytes", Field::Int(rec.bytes)),
        ("referer", opt(header(head, b"referer"))),
        ("user_agent", opt(header(head, b"user-agent"))),
        (
            "duration_us",
            Field::Int(rec.duration.unwrap_or_default().as_micros() as u64),
        ),
        ("pid", Field::Int(u64::from(std::process::id()))),
    ]
}

fn render_json(rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    push_rfc3339(out, SystemTime::now());
    out.push(b'"');
    for (key, value) in record_fields(rec) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Field::Str(s) => push_json_str(out, s.as_bytes()),
            Field::Int(n) => push_num(out, n),
            Field::Null => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// Appends `v` as a JSON string (RFC 8259 §7): `"` and `\` escaped,
/// control characters as `\u00XX`, invalid UTF-8 replaced.
fn push_json_str(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in String::from_utf8_lossy(v).bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// Copies `v`, escaping `"`, `\` and bytes outside printable ASCII as `\xHH`
/// so that a client cannot forge log lines.
fn push_escaped(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in v {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
    }
}

/// Civil date (UTC) of a Unix time: (year, month, day, hour, min, sec).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `2026-11-25 13:30:00 +0000`, the text error log's time.
fn push_iso(out: &mut Vec<u8>, t: SystemTime) {
    use std::io::Write;
    let (y, mo, d, h, mi, s) = civil(since_epoch(t).as_secs());
    let _ = write!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000");
}

/// `2026-11-25T13:30:00.123Z` (RFC 3339), the JSON lines' time.
fn push_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    use std::io::Write;
    let since = since_epoch(t);
    let (y, mo, d, h, mi, s) = civil(since.as_secs());
    let ms = since.subsec_millis();
    let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
}

/// `25/Nov/2026:13:30:00 +0000`, the common log format's time. Each thread
/// keeps the text of the last second it wrote, so a busy access log formats
/// the date once a second rather than once a line.
fn push_clf(out: &mut Vec<u8>, t: SystemTime) {
    use std::cell::Cell;
    use std::io::Write;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const LEN: usize = 26;
    thread_local! {
        static LAST: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
    }
    let secs = since_epoch(t).as_secs();
    let (cached, text) = LAST.with(Cell::get);
    if cached == secs {
        out.extend_from_slice(&text);
        return;
    }
    let (y, mo, d, h, mi, s) = civil(secs);
    let month = MONTHS[(mo as usize).saturating_sub(1) % 12];
    let start = out.len();
    let _ = write!(out, "{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000");
    if let Ok(text) = <[u8; LEN]>::try_from(&out[start..]) {
        LAST.with(|c| c.set((secs, text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(784_111_777), (1994, 11, 6, 8, 49, 37));
        assert_eq!(civil(1_709_164_800), (2024, 2, 29, 0, 0, 0));
    }

    #[test]
    fn escapes_log_forgery() {
        let mut out = Vec::new();
        push_escaped(&mut out, b"a\"b\n\xff");
        assert_eq!(out, b"a\\\"b\\x0a\\xff");
    }

    #[test]
    fn json_strings_escape_controls() {
        let mut out = Vec::new();
        push_json_str(&mut out, b"a\"\\\n\x01\xff");
        assert_eq!(out, "\"a\\\"\\\\\\n\\u0001\u{fffd}\"".as_bytes());
    }

    #[test]
    fn formats_compile_into_parts() {
        let (Shape::Parts(parts), out) = compile("%(h)s %% %({X-Id}o)s %({X-Id}o)s%(D)s").unwrap()
        else {
            panic!("not parts")
        };
        assert_eq!(out, vec![b"x-id".to_vec()]);
        assert_eq!(
            parts,
            vec![
                Part::RemoteAddr,
                Part::Lit(b" % ".to_vec()),
                Part::ResponseHeader(0),
                Part::Lit(b" ".to_vec()),
                Part::ResponseHeader(0),
                Part::Micros,
            ]
        );
        for bad in [
            "%(zz)s", "%(h", "%(h)", "100%", "%(h)x", "%({a}z)s", "%({}i)s",
        ] {
            let err = compile(bad).unwrap_err();
            assert!(err.starts_with("access log format"), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
        assert!(AccessLog::new(Target::Stdout, "combined", false).is_ok());
        assert!(!AccessLog::new(Target::Stdout, "combined", false)
            .unwrap()
            .needs_timing());
        assert!(AccessLog::new(Target::Stdout, "%(L)s", false)
            .unwrap()
            .needs_timing());
        assert!(AccessLog::new(Target::Stdout, "json", false)
            .unwrap()
            .needs_timing());
    }

    #[test]
    fn clf_time_is_cached_per_second() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for _ in 0..2 {
            let mut out = Vec::new();
            push_clf(&mut out, t);
            assert_eq!(out, b"06/Nov/1994:08:49:37 +0000");
        }
        let mut out = Vec::new();
        push_clf(&mut out, t + Duration::from_secs(1));
        assert_eq!(out, b"06/Nov/1994:08:49:38 +0000");
    }

    #[test]
    fn basic_auth_user() {
        assert_eq!(base64_decode(b"YWxpY2U6c2VjcmV0").unwrap(), b"alice:secret");
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert!(base64_decode(b"a*b").is_none());
    }
}
