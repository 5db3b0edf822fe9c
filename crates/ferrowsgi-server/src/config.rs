//! The one place where the server's settings and their defaults live, and
//! the command-line parser that fills them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use ferrowsgi_proto::forwarded::{TrustedProxies, DEFAULT_FORWARDED_ALLOW_IPS};
use ferrowsgi_proto::Limits;

use crate::listen::Bind;

/// Default address when no `--bind` is given (gunicorn's).
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// Default idle time allowed between requests on a persistent connection.
/// Long enough for a browser or an upstream pool to reuse the connection,
/// short enough that idle sockets do not pile up.
pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 5;
/// Default time a client may take to send a request head or to go quiet in
/// the middle of a body before the connection is dropped.
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 30;
/// Default time a client may leave a response unread before the connection
/// is dropped.
pub const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 30;
/// Default listen(2) backlog.
pub const DEFAULT_BACKLOG: u32 = 2048;
/// Default cap on open connections per worker. Each idle connection costs
/// a socket and a few hundred bytes; 10,000 leaves room for slow and idle
/// clients without letting them exhaust the process's descriptors.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Default number of requests served on one persistent connection before it
/// is closed (nginx's default), so no connection lives forever.
pub const DEFAULT_KEEP_ALIVE_REQUESTS: u64 = 1000;

/// Default for `--max-pipelined`: more than the 16 in flight that fast
/// pipelining clients use, so their batches still go out in one write.
pub const DEFAULT_MAX_PIPELINED: u32 = 32;
/// Default TCP congestion control for connections over loopback (see
/// `--loopback-congestion`).
pub const DEFAULT_LOOPBACK_CONGESTION: &str = "reno";
/// Default cap on a request body (0 means no cap), like gunicorn's unlimited
/// default but bounded: 1 GiB.
pub const DEFAULT_MAX_BODY: u64 = 1 << 30;
/// Default request deadline (`--timeout`): gunicorn's number. Its sync
/// workers are killed by a request that runs this long, so no application
/// moved from there counts on longer requests without saying so; here the
/// deadline costs the worker nothing, so it can be on by default and keep
/// a stuck request from holding a thread for good.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Default time a request's thread has to come back after its deadline
/// before the worker is retired (`--timeout-grace`).
pub const DEFAULT_TIMEOUT_GRACE_SECS: u64 = 10;

/// Which clients' large request bodies reach the application as they
/// arrive rather than being stored completely before it is called
/// (`--stream-bodies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamBodies {
    /// Connections over unix sockets and from this host: where a front-end
    /// server runs, such as nginx, which buffers request bodies itself (one
    /// that relays them at the client's pace, like HAProxy, wants `None`).
    Local,
    /// Every connection (a server that only a front-end can reach).
    All,
    /// No connection: every large body is stored first.
    None,
}

impl StreamBodies {
    /// Parses `local`, `all` or `none`; the error is one line.
    pub fn parse(s: &str) -> Result<StreamBodies, String> {
        match s {
            "local" => Ok(StreamBodies::Local),
            "all" => Ok(StreamBodies::All),
            "none" => Ok(StreamBodies::None),
            _ => Err(format!(
                "{s:?} is not a stream-bodies choice (local, all or none)"
            )),
        }
    }

    /// Whether a connection whose peer is on this host (`local`) streams.
    pub fn applies(self, local: bool) -> bool {
        match self {
            StreamBodies::Local => local,
            StreamBodies::All => true,
            StreamBodies::None => false,
        }
    }
}

/// Settings of one server, whether it came from the command line or from
/// `ferrowsgi.serve()`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on, with the protocol each listener speaks
    /// and whether its connections start with a PROXY protocol header.
    pub binds: Vec<Bind>,
    /// Every listener's connections start with a PROXY protocol header
    /// (`--proxy-protocol`), besides those bound with `+proxy`.
    pub proxy_protocol: bool,
    /// The peers whose forwarding headers (`Forwarded`, `X-Forwarded-*`)
    /// are believed; everyone else's are removed from the environ.
    pub forwarded_allow: TrustedProxies,
    /// Number of threads that run the application; 1 runs it on the I/O
    /// thread itself.
    pub threads: usize,
    /// Minimum level of error-log lines.
    pub log_level: crate::log::Level,
    /// The access log, compiled; `None` when off (the request path then
    /// does nothing for it).
    pub access_log: Option<crate::log::AccessLog>,
    /// Where the error log goes.
    pub error_log: crate::log::Target,
    /// The error log's line format.
    pub log_format: crate::log::Format,
    /// Both logs go to Python's `logging` instead of their destinations.
    pub log_to_python: bool,
    /// Whether to add a `Server: ferrowsgi` header.
    pub server_header: bool,
    /// Whether a 500 page carries the traceback.
    pub debug: bool,
    /// Idle time allowed between requests on a persistent connection.
    pub keep_alive: Duration,
    /// Time allowed for a request head, and between body reads.
    pub read_timeout: Duration,
    /// Time allowed for the client to take response bytes.
    pub write_timeout: Duration,
    /// listen(2) backlog.
    pub backlog: u32,
    /// Request parsing limits.
    pub limits: Limits,
    /// Largest request body accepted (413 past it); 0 for no cap.
    pub max_body: u64,
    /// Most connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The packet size and shared secret of `ajp://` listeners.
    pub ajp: std::sync::Arc<ferrowsgi_proto::ajp::Ajp>,
    /// Requests served on one connection before it closes (0: no limit);
    /// requests already pipelined behind the last are answered first, up
    /// to `max_pipelined` more.
    pub keep_alive_requests: u64,
    /// Pipelined requests served back to back from one connection's buffer
    /// before the server turns to other connections and reads more from it.
    pub max_pipelined: usize,
    /// TCP congestion control for connections from this host (a front-end
    /// server or client over loopback); `None` keeps the system's default.
    pub loopback_congestion: Option<String>,
    /// Whose bodies larger than the in-memory buffer go to the application
    /// as they arrive instead of to a temporary file first.
    pub stream_bodies: StreamBodies,
    /// Deadline of a request from the moment it is handed to the
    /// application (504 and an exception in its thread); zero for none.
    pub timeout: Duration,
    /// How long a request's thread may run on after its deadline before the
    /// worker is marked unhealthy.
    pub timeout_grace: Duration,
    /// An unhealthy worker exits the process (the command line) instead of
    /// only stopping its server (an embedded one).
    pub exit_when_unhealthy: bool,
    /// A path the server answers itself (200 while accepting, 503 while
    /// draining) without calling the application (`--health-path`).
    pub health_path: Option<Box<[u8]>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            binds: Vec::new(),
            proxy_protocol: false,
            forwarded_allow: TrustedProxies::default(),
            threads: 1,
            log_level: crate::log::Level::Info,
            access_log: None,
            error_log: crate::log::Target::Stderr,
            log_format: crate::log::Format::Text,
            log_to_python: false,
            server_header: true,
            debug: false,
            keep_alive: Duration::from_secs(DEFAULT_KEEP_ALIVE_SECS),
            read_timeout: Duration::from_secs(DEFAULT_READ_TIMEOUT_SECS),
            write_timeout: Duration::from_secs(DEFAULT_WRITE_TIMEOUT_SECS),
            backlog: DEFAULT_BACKLOG,
            limits: Limits::default(),
            max_body: DEFAULT_MAX_BODY,
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            ajp: std::sync::Arc::default(),
            keep_alive_requests: DEFAULT_KEEP_ALIVE_REQUESTS,
            max_pipelined: DEFAULT_MAX_PIPELINED as usize,
            loopback_congestion: Some(DEFAULT_LOOPBACK_CONGESTION.to_string()),
            stream_bodies: StreamBodies::Local,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            timeout_grace: Duration::from_secs(DEFAULT_TIMEOUT_GRACE_SECS),
            exit_when_unhealthy: false,
            health_path: None,
        }
    }
}

impl Config {
    /// Sets [`Config::loopback_congestion`] from a name checked by
    /// [`parse_congestion`]; `system` keeps the system's default.
    pub fn set_loopback_congestion(&mut self, name: &str) -> Result<(), String> {
        let name = parse_congestion(name)?;
        self.loopback_congestion = Some(name).filter(|n| n != "system");
        Ok(())
    }
}

/// The `ferrowsgi` command line.
#[derive(Debug, Parser)]
#[command(
    name = "ferrowsgi",
    version,
    about = "Serve a Python WSGI application with a Rust engine.",
    after_help = "APP is MODULE:NAME, MODULE (which must define `application` or `app`), \
                  or a factory call MODULE:NAME(ARGS) with literal arguments.\n\n\
                  `ferrowsgi cgi APP` serves one request from a CGI environment instead \
                  (see `ferrowsgi cgi --help`)."
)]
pub struct Cli {
    /// The application: `pkg.mod:name`, `pkg.mod`, or `pkg.mod:create_app(...)`.
    /// May be left out when a configuration file or `FERROWSGI_APP` names
    /// it (`app`, or gunicorn's `wsgi_app`); empty then until
    /// [`crate::settings::load`] fills it in.
    #[arg(
        value_name = "APP",
        required = false,
        default_value = "",
        hide_default_value = true
    )]
    pub app: String,

    /// Serve another application under a URL prefix: `PREFIX=APP`, such as
    /// `/api=api.wsgi:application`. Repeat for several. A request goes to
    /// the longest prefix that its path starts with on a segment boundary
    /// (`/api` takes `/api` and `/api/x`, not `/apix`), with the prefix
    /// moved to SCRIPT_NAME; APP, which may then be left out, gets the
    /// rest (without it, a 404).
    #[arg(long = "mount", value_name = "PREFIX=APP", action = ArgAction::Append,
          value_parser = parse_mount)]
    pub mount: Vec<String>,

    /// The URL prefix a proxy publishes the whole server at: SCRIPT_NAME
    /// starts with it, and it is taken off the front of PATH_INFO where the
    /// proxy passed it on (where the proxy stripped it, the path is kept).
    #[arg(long, value_name = "PREFIX", value_parser = parse_root_path)]
    pub root_path: Option<String>,

    /// Address to listen on: HOST:PORT, [IPV6]:PORT, HOST (port 8000),
    /// unix:PATH or fd:N (an inherited socket, descriptor N), optionally
    /// after a protocol scheme: http:// (the default), fastcgi:// (e.g.
    /// fastcgi://127.0.0.1:9000, fastcgi://unix:/run/app.sock,
    /// fastcgi://fd:3), ajp:// (AJP13, for Apache's mod_proxy_ajp),
    /// scgi:// or uwsgi:// (for scgi_pass / uwsgi_pass, mod_proxy_scgi /
    /// mod_proxy_uwsgi). A scheme ending in +proxy (http+proxy://,
    /// fastcgi+proxy://, ajp+proxy://) is for connections that start with
    /// a PROXY protocol header. fd://N (gunicorn's spelling) is
    /// http://fd:N. Repeat to listen on several.
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS", action = ArgAction::Append,
          default_value = DEFAULT_BIND)]
    pub bind: Vec<String>,

    /// Every listener's connections start with a PROXY protocol header
    /// (version 1 or 2, as HAProxy's `send-proxy`/`send-proxy-v2` send
    /// it), which names the client; a connection without a valid one is
    /// closed. `http+proxy://` in --bind does this for one listener.
    #[arg(long)]
    pub proxy_protocol: bool,

    /// Peers whose `Forwarded` and `X-Forwarded-*` headers are believed:
    /// comma-separated addresses and CIDR ranges, or `*` for all. Peers on
    /// unix sockets are always trusted. Other peers' forwarding headers
    /// are removed from the environ.
    #[arg(long, value_name = "ADDRESSES", default_value = DEFAULT_FORWARDED_ALLOW_IPS,
          value_parser = parse_forwarded_allow_ips)]
    pub forwarded_allow_ips: String,

    /// Threads that run the application (1 runs it on the event loop's
    /// thread; more take turns at running the loop).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,

    /// Change to this directory before importing the application.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Error-log level.
    #[arg(long, default_value = "info", ignore_case = true,
          value_parser = ["debug", "info", "warning", "error", "critical"])]
    pub log_level: String,

    /// Print one access-log line per request on stdout (the same as
    /// `--access-logfile -`).
    #[arg(long)]
    pub access_log: bool,

    /// Write the access log to this file (`-`: stdout), which turns it on.
    #[arg(long, value_name = "PATH")]
    pub access_logfile: Option<String>,

    /// Access-log format: `combined` (the default), `common`, `json`, or a
    /// gunicorn format such as '%(h)s "%(r)s" %(s)s %(D)s'.
    #[arg(long, value_name = "FORMAT", default_value = "combined")]
    pub access_logformat: String,

    /// Write the error log to this file (`-`: stderr).
    #[arg(long, alias = "log-file", value_name = "PATH", default_value = "-")]
    pub error_logfile: String,

    /// Error-log line format: `text` or `json` (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = crate::log::Format::parse)]
    pub log_format: crate::log::Format,

    /// Hand both logs to Python's `logging` (loggers `ferrowsgi.error` and
    /// `ferrowsgi.access`), so the application's logging set-up applies;
    /// with `--access-logfile`, the access log goes to that file instead.
    #[arg(long)]
    pub log_to_python: bool,

    /// Do not send a `Server` header.
    #[arg(long)]
    pub no_server_header: bool,

    /// Put the traceback in 500 responses (never in production).
    #[arg(long)]
    pub debug: bool,

    /// Seconds an idle persistent connection is kept open.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_KEEP_ALIVE_SECS)]
    pub keep_alive: u64,

    /// Seconds allowed for a whole request head, and between reads of a body.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_READ_TIMEOUT_SECS)]
    pub read_timeout: u64,

    /// Seconds a client may leave a response unread; then the connection is
    /// reset.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WRITE_TIMEOUT_SECS)]
    pub write_timeout: u64,

    /// listen(2) backlog.
    #[arg(long, default_value_t = DEFAULT_BACKLOG)]
    pub backlog: u32,

    /// Requests served on one connection before it closes (0: no limit);
    /// a pipelined batch already received is finished first, up to
    /// --max-pipelined more.
    #[arg(long, value_name = "COUNT", default_value_t = DEFAULT_KEEP_ALIVE_REQUESTS)]
    pub keep_alive_requests: u64,

    /// Pipelined requests served back to back from one connection before
    /// the others get their turn (and before more is read from it).
    #[arg(long, value_name = "COUNT", default_value_t = DEFAULT_MAX_PIPELINED,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pipelined: u32,

    /// Most connections open at once; more wait in the backlog.
    #[arg(long, value_name = "COUNT", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub worker_connections: u32,

    /// Longest request line in bytes (414 past it).
    #[arg(long, value_name = "BYTES")]
    pub limit_request_line: Option<usize>,

    /// Most header fields in a request (431 past it).
    #[arg(long, value_name = "COUNT")]
    pub limit_request_fields: Option<usize>,

    /// Longest header field in bytes (431 past it).
    #[arg(
        long = "limit-request-field-size",
        alias = "limit-request-field_size",
        value_name = "BYTES"
    )]
    pub limit_request_field_size: Option<usize>,

    /// The secret every AJP13 request must carry (Apache's `ProxyPass …
    /// secret=`); a request without it, or with another, gets 403. Only
    /// for ajp:// listeners; FERROWSGI_AJP_SECRET keeps it off the command
    /// line.
    #[arg(long, value_name = "SECRET")]
    pub ajp_secret: Option<String>,

    /// AJP13 packet size in bytes, the web server's as well (Apache's
    /// ProxyIOBufferSize): 8192 unless both are raised, up to 65536.
    #[arg(long, value_name = "BYTES", default_value_t = ferrowsgi_proto::ajp::DEFAULT_PACKET_SIZE)]
    pub ajp_packet_size: usize,

    /// Largest request body in bytes (413 past it); 0 for no cap.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY)]
    pub limit_request_body: u64,

    /// TCP congestion control for connections from this host, such as a
    /// front-end server's over loopback: the system's pacing (BBR) only
    /// costs CPU there. `system` keeps the system's default.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_LOOPBACK_CONGESTION,
          value_parser = parse_congestion)]
    pub loopback_congestion: String,

    /// Whose request bodies over 256 KiB the application reads as they
    /// arrive: `local` (unix sockets and this host, where a front-end
    /// server runs), `all`, or `none`. The others' bodies are stored
    /// completely first, so a slow uploader holds no application thread.
    #[arg(long, value_name = "WHOSE", default_value = "local",
          value_parser = StreamBodies::parse)]
    pub stream_bodies: StreamBodies,

    /// Seconds a request may run from the moment it is handed to the
    /// application: then the client gets a 504 (if no response has started)
    /// and the request's thread an exception; 0 for no deadline.
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,

    /// Seconds a request's thread may go on after its deadline; then the
    /// worker stops accepting, finishes its other requests and exits, to be
    /// replaced.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_GRACE_SECS)]
    pub timeout_grace: u64,

    /// Leave the objects that exist once the application is loaded to
    /// Python's garbage collector. By default they are collected once and
    /// then frozen (`gc.freeze()`), so that no later collection walks them
    /// again in the middle of a request.
    #[arg(long)]
    pub no_gc_freeze: bool,

    /// Configuration file: a `.toml` file (settings as top-level keys, or
    /// `[tool.ferrowsgi]` in a pyproject.toml), a gunicorn-style `.py`
    /// module, or `python:pkg.module` (such a module found on the import
    /// path, as gunicorn names it). Without it, ./ferrowsgi.toml, else ./pyproject.toml's
    /// `[tool.ferrowsgi]`, is read if there.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print every effective setting and where it came from, then exit.
    #[arg(long)]
    pub print_config: bool,

    /// Set an environment variable for the application (KEY=VALUE) before
    /// it is imported. Repeat for several.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", action = ArgAction::Append,
          value_parser = parse_env_pair)]
    pub env: Vec<String>,

    /// Directories to add to the module search path, comma-separated.
    #[arg(long, value_name = "DIRS")]
    pub pythonpath: Option<String>,

    /// Process name (the kernel's `comm`, 15 bytes, shown by ps and top).
    #[arg(short = 'n', long = "name", alias = "proc-name", value_name = "NAME")]
    pub name: Option<String>,

    /// gunicorn's worker class: `sync` or `gthread` (both mean ferrowsgi's
    /// threads, set with --threads); any other is refused.
    #[arg(short = 'k', long, value_name = "CLASS", value_parser = parse_worker_class)]
    pub worker_class: Option<String>,

    /// Load the configuration and import the application, then exit
    /// (status 0 if both worked).
    #[arg(long)]
    pub check_config: bool,

    // --- processes, signals and the system (gunicorn's spellings) ---
    /// Worker processes: a number, or `auto` for one per usable CPU (the
    /// affinity mask, capped by the cgroup's CPU quota).
    #[arg(short = 'w', long, value_name = "N|auto", default_value = "1",
          value_parser = crate::process::WorkerCount::parse)]
    pub workers: crate::process::WorkerCount,

    /// Seconds a stopping worker has to finish its requests (TERM, HUP,
    /// recycling); then it is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::process::DEFAULT_GRACEFUL_TIMEOUT_SECS)]
    pub graceful_timeout: u64,

    /// Requests a worker serves before it is replaced (0: never).
    #[arg(long, value_name = "COUNT", default_value_t = 0)]
    pub max_requests: u64,

    /// Up to this many requests added at random to --max-requests per
    /// worker, so that workers are not all replaced at once.
    #[arg(long, value_name = "COUNT", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Resident memory in MiB past which a worker is replaced (checked after
    /// each request; 0: never).
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    pub max_rss: u64,

    /// Import the application in the master before forking the workers, so
    /// that they share its memory.
    #[arg(long)]
    pub preload: bool,

    /// Write the master's process id to this file (removed at exit).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pid: Option<PathBuf>,

    /// Run the workers as this user (name or id), once the listeners are bound.
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Run the workers with this group (name or id).
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// File mode creation mask of the server's processes, in octal (`0o22`
    /// or `022`).
    #[arg(long, value_name = "MASK", value_parser = crate::process::parse_mode)]
    pub umask: Option<u32>,

    /// Permissions of the unix sockets bound with `-b unix:PATH`, in octal
    /// (`0660`); by default they follow the umask.
    #[arg(long, value_name = "MODE", value_parser = crate::process::parse_mode)]
    pub unix_socket_mode: Option<u32>,

    /// Set SO_REUSEPORT on TCP listeners, so another server can bind the
    /// same address (a new version started beside this one).
    #[arg(long)]
    pub reuse_port: bool,

    /// Listen on an inherited, already bound socket with this descriptor
    /// number, speaking HTTP (--bind SCHEME://fd:N for another protocol).
    /// Repeat for several.
    #[arg(long = "fd", value_name = "FD", action = ArgAction::Append,
          value_parser = clap::value_parser!(i32).range(0..))]
    pub fds: Vec<i32>,

    // Metrics, health and development reload.
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (from the
    /// master, over all the workers). Off by default; with it off the
    /// request path pays nothing for metrics.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_metrics_bind)]
    pub metrics_bind: Option<std::net::SocketAddr>,

    /// Answer GET/HEAD requests for this path in the server itself,
    /// without calling the application: 200 while accepting requests, 503
    /// while draining (a graceful stop). Off by default.
    #[arg(long, value_name = "PATH", value_parser = parse_health_path)]
    pub health_path: Option<String>,

    /// Restart the workers when a Python file of the application (any
    /// module imported when it was loaded) changes. For development.
    #[arg(long)]
    pub reload: bool,

    /// Another file whose change restarts the workers under --reload
    /// (repeatable).
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub reload_extra_file: Vec<PathBuf>,
}

/// Checks a `--metrics-bind` address: HOST:PORT with a literal IP address
/// (or `localhost`). The error is one line.
pub fn parse_metrics_bind(s: &str) -> Result<std::net::SocketAddr, String> {
    let resolved = match s.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => s.to_string(),
    };
    resolved
        .parse()
        .map_err(|_| format!("{s:?} is not a HOST:PORT address (an IP address and a port)"))
}

/// Checks a `--health-path`: an absolute path (`/...`) of visible ASCII
/// characters, without a query. The error is one line.
pub fn parse_health_path(s: &str) -> Result<String, String> {
    let ok = s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a health path (it must start with / and have no spaces, ? or #)"
        ))
    }
}

/// Checks a URL prefix of `--mount` or `--root-path` (`what` names it in
/// the error): a decoded path that starts with `/` and does not end with
/// one, without empty, `.` or `..` segments, `?`, `#`, `%`, whitespace or
/// control characters. `ferrowsgi.Mount` applies the same rules. The error
/// is one line.
pub fn check_prefix(prefix: &str, what: &str) -> Result<(), String> {
    if prefix == "/" {
        return Err(format!("{what} '/' is the root: leave it out"));
    }
    if !prefix.starts_with('/') {
        return Err(format!("{what} {prefix:?} must start with '/'"));
    }
    if prefix.ends_with('/') {
        return Err(format!("{what} {prefix:?} must not end with '/'"));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| matches!(c, '?' | '#' | '%') || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{what} {prefix:?} must not contain {c:?}"));
    }
    if prefix[1..].split('/').any(|s| matches!(s, "" | "." | "..")) {
        return Err(format!(
            "{what} {prefix:?} has an empty, '.' or '..' segment"
        ));
    }
    Ok(())
}

/// Checks a `--mount` value: `PREFIX=APP`, split at the first `=`, with a
/// prefix that [`check_prefix`] accepts (or empty, for the root
/// application) and a non-empty APP. The error is one line.
pub fn parse_mount(s: &str) -> Result<String, String> {
    let Some((prefix, app)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} is not PREFIX=APP (such as /api=api.wsgi:application)"
        ));
    };
    if app.trim().is_empty() {
        return Err(format!("{s:?} names no application after '='"));
    }
    if !prefix.is_empty() {
        check_prefix(prefix, "mount prefix")?;
    }
    Ok(s.to_string())
}

/// Checks a `--root-path`: a prefix that [`check_prefix`] accepts; empty
/// means none.
pub fn parse_root_path(s: &str) -> Result<String, String> {
    if !s.is_empty() {
        check_prefix(s, "root path")?;
    }
    Ok(s.to_string())
}

/// Checks a `--forwarded-allow-ips` list (see [`TrustedProxies::parse`]).
/// The error is one line naming the entry.
pub fn parse_forwarded_allow_ips(s: &str) -> Result<String, String> {
    TrustedProxies::parse(s).map(|_| s.to_string())
}

/// Checks an `--env` pair: `KEY=VALUE` with a non-empty key without `=`.
pub fn parse_env_pair(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.is_empty() && !key.contains('\0') => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Checks a gunicorn worker class: only the thread-based ones have an
/// equivalent (gevent, eventlet, tornado and ASGI workers do not).
pub fn parse_worker_class(s: &str) -> Result<String, String> {
    match s {
        "sync" | "gthread" => Ok(s.to_string()),
        _ => Err(format!(
            "worker class {s:?} is not supported: ferrowsgi runs the application \
             on threads (use sync or gthread, with --threads)"
        )),
    }
}

/// Checks a `--loopback-congestion` name: `system`, or the name of a
/// congestion-control module (letters, digits, `_` and `-`, at most 15
/// bytes, as the kernel's `TCP_CA_NAME_MAX` allows). The error is one line.
pub fn parse_congestion(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() < 16
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a congestion-control name"))
    }
}

impl Cli {
    /// The applications of `--mount` as `(prefix, app)` pairs, in the order
    /// given. The error (one line) names a prefix mounted twice, counting
    /// APP as the root (`''`) when it is given.
    pub fn mounts(&self) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(self.mount.len());
        for m in &self.mount {
            let (prefix, app) = parse_mount(m)?
                .split_once('=')
                .map(|(p, a)| (p.to_string(), a.trim().to_string()))
                .ok_or_else(|| format!("{m:?} is not PREFIX=APP"))?;
            if prefix.is_empty() && !self.app.is_empty() {
                return Err(format!(
                    "--mount {m:?} mounts a root application, and APP ({}) is one already",
                    self.app
                ));
            }
            if let Some((_, first)) = out.iter().find(|(p, _)| *p == prefix) {
                return Err(format!(
                    "mount prefix {prefix:?} is given twice ({first} and {app})"
                ));
            }
            out.push((prefix, app));
        }
        Ok(out)
    }

    /// Turns the parsed command line into a [`Config`], checking the bind
    /// addresses. The error is one line naming the problem.
    pub fn to_config(&self) -> Result<Config, String> {
        let mut cfg = Config::default();
        let binds: Vec<&str> = if self.bind.is_empty() {
            vec![DEFAULT_BIND]
        } else {
            self.bind.iter().map(String::as_str).collect()
        };
        for b in binds {
            let bind = Bind::parse(b)?;
            // One descriptor is one socket: adopting it twice would close
            // it twice, and it can speak only one protocol.
            if let crate::listen::BindAddr::Fd(fd) = bind.addr {
                if let Some(first) = cfg.binds.iter().find(|o| o.addr == bind.addr) {
                    return Err(format!(
                        "descriptor {fd} is given twice in --bind ({first} and {bind})"
                    ));
                }
            }
            cfg.binds.push(bind);
        }
        cfg.proxy_protocol = self.proxy_protocol;
        cfg.forwarded_allow = TrustedProxies::parse(&self.forwarded_allow_ips)?;
        cfg.threads = usize::from(self.threads);
        cfg.log_level = crate::log::Level::parse(&self.log_level)
            .ok_or_else(|| format!("invalid log level {:?}", self.log_level))?;
        use crate::log::{AccessLog, Target};
        if self.access_log || self.access_logfile.is_some() {
            let target = match &self.access_logfile {
                Some(path) => Target::from_arg(path, Target::Stdout),
                None => Target::Stdout,
            };
            // An explicit file (or `-`) wins over the hand-over to Python,
            // which then takes the error log only.
            let to_python = self.log_to_python && self.access_logfile.is_none();
            cfg.access_log = Some(AccessLog::new(target, &self.access_logformat, to_python)?);
        }
        cfg.error_log = Target::from_arg(&self.error_logfile, Target::Stderr);
        cfg.log_format = self.log_format;
        cfg.log_to_python = self.log_to_python;
        cfg.server_header = !self.no_server_header;
        cfg.debug = self.debug;
        cfg.keep_alive = Duration::from_secs(self.keep_alive);
        cfg.read_timeout = Duration::from_secs(self.read_timeout.max(1));
        cfg.write_timeout = Duration::from_secs(self.write_timeout.max(1));
        cfg.backlog = self.backlog;
        cfg.max_connections = self.worker_connections as usize;
        let ajp = ferrowsgi_proto::ajp::Ajp::new(self.ajp_packet_size)
            .map_err(|e| format!("--ajp-packet-size: {e}"))?;
        cfg.ajp = std::sync::Arc::new(
            ajp.with_secret(self.ajp_secret.as_deref().unwrap_or("").as_bytes()),
        );
        cfg.keep_alive_requests = self.keep_alive_requests;
        cfg.max_pipelined = self.max_pipelined as usize;
        if let Some(n) = self.limit_request_line {
            cfg.limits.max_request_line = n;
        }
        if let Some(n) = self.limit_request_fields {
            cfg.limits.max_header_count = n;
        }
        if let Some(n) = self.limit_request_field_size {
            cfg.limits.max_header_field_size = n;
        }
        cfg.max_body = self.limit_request_body;
        cfg.set_loopback_congestion(&self.loopback_congestion)?;
        cfg.stream_bodies = self.stream_bodies;
        cfg.timeout = Duration::from_secs(self.timeout);
        cfg.timeout_grace = Duration::from_secs(self.timeout_grace);
        cfg.exit_when_unhealthy = true;
        cfg.health_path = self
            .health_path
            .as_ref()
            .map(|p| p.as_bytes().to_vec().into_boxed_slice());
        Ok(cfg)
    }
}

/// Parses `argv` (program name first). On `--help` or `--version` the text to
/// print comes back as `Err((text, 0))`; on a mistake, one line and exit
/// status 2.
pub fn parse_args(argv: &[String]) -> Result<Cli, (String, i32)> {
    match Cli::try_parse_from(argv) {
        Ok(cli) => Ok(cli),
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Err((e.to_string(), 0)),
                _ => {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or("invalid arguments");
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    Err((format!("ferrowsgi: error: {first} (see --help)\n"), 2))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_bind_localhost_8000() {
        let cli = parse_args(&args(&["ferrowsgi", "app:app"])).unwrap();
        let cfg = cli.to_config().unwrap();
        assert_eq!(cfg.binds.len(), 1);
        assert_eq!(cfg.binds[0].to_string(), "127.0.0.1:8000");
        assert_eq!(cfg.threads, 1);
        assert_eq!(cfg.max_pipelined, DEFAULT_MAX_PIPELINED as usize);
        assert_eq!(cfg.loopback_congestion.as_deref(), Some("reno"));
        assert_eq!(cfg.stream_bodies, StreamBodies::Local);
    }

    #[test]
    fn mount_values_are_checked() {
        assert_eq!(
            parse_mount("/api=m:app(x=1)").unwrap(),
            "/api=m:app(x=1)",
            "split at the first '='"
        );
        assert!(parse_mount("=m:app").is_ok(), "the root application");
        for bad in [
            "/api",
            "/api=",
            "api=m:a",
            "/=m:a",
            "/a/=m:a",
            "/a//b=m:a",
            "/a/../b=m:a",
            "/a?b=m:a",
            "/a%2Fb=m:a",
            "/a b=m:a",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
        assert!(parse_root_path("").is_ok());
        assert!(parse_root_path("/x/y").is_ok());
        assert!(parse_root_path("x").is_err());
        assert!(parse_root_path("/x/").is_err());
    }

    #[test]
    fn mounts_refuse_a_prefix_given_twice() {
        let mounts = |list: &[&str]| {
            let mut argv = vec!["ferrowsgi"];
            argv.extend_from_slice(list);
            parse_args(&args(&argv)).unwrap().mounts()
        };
        assert_eq!(
            mounts(&["--mount", "/a=m:a", "--mount", "/a/b=m:b", "m:root"]).unwrap(),
            vec![
                ("/a".to_string(), "m:a".to_string()),
                ("/a/b".to_string(), "m:b".to_string())
            ]
        );
        let twice = mounts(&["--mount", "/a=m:a", "--mount", "/a=m:b"]).unwrap_err();
        assert!(twice.contains("given twice"), "{twice}");
        let root = mounts(&["--mount", "=m:a", "m:root"]).unwrap_err();
        assert!(root.contains("root application"), "{root}");
        assert!(mounts(&["--mount", "=m:a"]).is_ok());
    }

    #[test]
    fn request_deadline_options() {
        let cfg = |extra: &[&str]| {
            let mut argv = vec!["ferrowsgi"];
            argv.extend_from_slice(extra);
            argv.push("m:app");
            parse_args(&args(&argv)).map(|cli| cli.to_config().unwrap())
        };
        let default = cfg(&[]).unwrap();
        assert_eq!(default.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        assert_eq!(
            default.timeout_grace,
            Duration::from_secs(DEFAULT_TIMEOUT_GRACE_SECS)
        );
        assert!(
            default.exit_when_unhealthy,
            "the command line's worker exits"
        );
        assert!(!Config::default().exit_when_unhealthy);
        assert_eq!(cfg(&["-t", "7"]).unwrap().timeout, Duration::from_secs(7));
        let set = cfg(&["--timeout", "0", "--timeout-grace", "3"]).unwrap();
        assert!(set.timeout.is_zero(), "0 turns the deadline off");
        assert_eq!(set.timeout_grace, Duration::from_secs(3));
        let (msg, code) = cfg(&["--timeout", "-1"]).unwrap_err();
        assert_eq!(code, 2);
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }

    #[test]
    fn stream_bodies_choices() {
        let cfg = |v: &str| {
            parse_args(&args(&["ferrowsgi", "--stream-bodies", v, "m:app"]))
                .map(|cli| cli.to_config().unwrap().stream_bodies)
        };
        assert_eq!(cfg("all").unwrap(), StreamBodies::All);
        assert_eq!(cfg("none").unwrap(), StreamBodies::None);
        assert_eq!(cfg("local").unwrap(), StreamBodies::Local);
        let (msg, code) = cfg("remote").unwrap_err();
        assert_eq!(code, 2);
        assert!(msg.contains("stream-bodies"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(StreamBodies::Local.applies(true));
        assert!(!StreamBodies::Local.applies(false));
        assert!(StreamBodies::All.applies(false));
        assert!(!StreamBodies::None.applies(true));
    }

    #[test]
    fn loopback_congestion_names() {
        let cfg = |name: &str| {
            parse_args(&args(&[
                "ferrowsgi",
                "--loopback-congestion",
                name,
                "m:app",
            ]))
            .map(|cli| cli.to_config().unwrap().loopback_congestion)
        };
        assert_eq!(cfg("system").unwrap(), None);
        assert_eq!(cfg("cubic").unwrap().as_deref(), Some("cubic"));
        for bad in [
            "",
            "no/slash",
            "a name",
            "sixteen-letters!",
            "abcdefghijklmnop",
        ] {
            let (msg, code) = cfg(bad).unwrap_err();
            assert_eq!(code, 2, "{bad:?}");
            assert!(msg.contains("congestion"), "{bad:?}: {msg}");
            assert_eq!(msg.lines().count(), 1, "{msg}");
        }
    }

    #[test]
    fn repeated_binds_and_options() {
        let cli = parse_args(&args(&[
            "ferrowsgi",
            "-b",
            "[::1]:9000",
            "--bind",
            "unix:/tmp/x.sock",
            "--threads",
            "4",
            "--access-log",
            "--max-pipelined",
            "8",
            "m:app",
        ]))
        .unwrap();
        let cfg = cli.to_config().unwrap();
        assert_eq!(cfg.binds.len(), 2);
        assert_eq!(cfg.threads, 4);
        assert!(cfg.access_log.is_some());
        assert_eq!(cfg.max_pipelined, 8);
        let (_, code) =
            parse_args(&args(&["ferrowsgi", "--max-pipelined", "0", "m:app"])).unwrap_err();
        assert_eq!(code, 2);
    }

    #[test]
    fn an_inherited_descriptor_is_bound_once() {
        let cfg = |list: &[&str]| {
            let mut argv = vec!["ferrowsgi"];
            argv.extend_from_slice(list);
            argv.push("m:app");
            parse_args(&args(&argv)).unwrap().to_config()
        };
        let c = cfg(&["-b", "fastcgi://fd:3", "-b", "fd://4", "-b", "unix:/a"]).unwrap();
        let addrs: Vec<String> = c.binds.iter().map(|b| b.to_string()).collect();
        assert_eq!(addrs, ["fastcgi://fd:3", "fd:4", "unix:/a"]);
        let e = cfg(&["-b", "fastcgi://fd:3", "-b", "scgi://fd:3"]).unwrap_err();
        assert_eq!(
            e,
            "descriptor 3 is given twice in --bind (fastcgi://fd:3 and scgi://fd:3)"
        );
        assert!(cfg(&["-b", "fd://3", "-b", "fd:3"]).is_err());
    }

    #[test]
    fn ajp_binds_take_the_ajp_settings() {
        let cfg = |list: &[&str]| {
            let mut argv = vec!["ferrowsgi"];
            argv.extend_from_slice(list);
            argv.push("m:app");
            parse_args(&args(&argv)).unwrap().to_config()
        };
        let c = cfg(&[
            "-b",
            "ajp://127.0.0.1:8009",
            "-b",
            "127.0.0.1:8000",
            "--ajp-secret",
            "k",
            "--ajp-packet-size",
            "16384",
        ])
        .unwrap();
        assert_eq!(c.binds[0].scheme, crate::listen::Scheme::Ajp);
        assert_eq!(c.binds[1].scheme, crate::listen::Scheme::Http);
        assert_eq!(c.ajp.packet_size(), 16384);
        assert_eq!(
            *c.ajp,
            ferrowsgi_proto::ajp::Ajp::new(16384)
                .unwrap()
                .with_secret(b"k")
        );
        assert_eq!(*cfg(&[]).unwrap().ajp, ferrowsgi_proto::ajp::Ajp::default());
        let err = cfg(&["-b", "ajp://127.0.0.1:8009", "--ajp-packet-size", "100"]).unwrap_err();
        assert!(err.contains("--ajp-packet-size"), "{err}");
        let err = cfg(&["-b", "spdy://127.0.0.1:1"]).unwrap_err();
        assert!(err.contains("unknown scheme"), "{err}");
    }

    #[test]
    fn log_options() {
        use crate::log::{Format, Target};
        let cfg = |list: &[&str]| {
            let mut argv = vec!["ferrowsgi"];
            argv.extend_from_slice(list);
            argv.push("m:app");
            parse_args(&args(&argv)).unwrap().to_config()
        };
        let plain = cfg(&[]).unwrap();
        assert!(plain.access_log.is_none());
        assert_eq!(plain.error_log, Target::Stderr);
        assert_eq!(plain.log_format, Format::Text);
        let files = cfg(&[
            "--access-logfile",
            "/tmp/a.log",
            "--access-logformat",
            "%(h)s %(D)s",
            "--error-logfile",
            "/tmp/e.log",
            "--log-format",
            "json",
        ])
        .unwrap();
        let access = files.access_log.expect("a file turns the access log on");
        assert!(access.needs_timing());
        assert_eq!(files.error_log, Target::File("/tmp/e.log".into()));
        assert_eq!(files.log_format, Format::Json);
        // A format alone does not turn the access log on (as in gunicorn).
        assert!(cfg(&["--access-logformat", "json"])
            .unwrap()
            .access_log
            .is_none());
        let err = cfg(&["--access-log", "--access-logformat", "%(nope)s"]).unwrap_err();
        assert!(err.contains("%(nope)s"), "{err}");
        let (msg, code) =
            parse_args(&args(&["ferrowsgi", "--log-format", "xml", "m:app"])).unwrap_err();
        assert_eq!(code, 2);
        assert!(msg.contains("log format"), "{msg}");
    }

    #[test]
    fn mistakes_are_one_line_with_status_2() {
        let (msg, code) = parse_args(&args(&["ferrowsgi", "--threads", "0", "m:app"])).unwrap_err();
        assert_eq!(code, 2);
        assert_eq!(msg.trim_end().lines().count(), 1);
        assert!(msg.starts_with("ferrowsgi: error: "));
    }

    #[test]
    fn proxy_options() {
        let cfg = |list: &[&str]| {
            let mut argv = vec!["ferrowsgi"];
            argv.extend_from_slice(list);
            argv.push("m:app");
            parse_args(&args(&argv)).map(|cli| cli.to_config())
        };
        let plain = cfg(&[]).unwrap().unwrap();
        assert!(!plain.proxy_protocol);
        assert_eq!(plain.forwarded_allow, TrustedProxies::default());
        let set = cfg(&[
            "--proxy-protocol",
            "--forwarded-allow-ips",
            "10.0.0.0/8, ::1",
            "-b",
            "http+proxy://127.0.0.1:0",
        ])
        .unwrap()
        .unwrap();
        assert!(set.proxy_protocol && set.binds[0].proxy);
        assert!(set.forwarded_allow.trusts("10.1.2.3".parse().unwrap()));
        assert!(!set.forwarded_allow.trusts("127.0.0.1".parse().unwrap()));
        let (msg, code) = cfg(&["--forwarded-allow-ips", "10.0.0.0/40"]).unwrap_err();
        assert_eq!(code, 2);
        assert!(msg.contains("10.0.0.0/40"), "{msg}");
        let err = cfg(&["-b", "gopher://127.0.0.1:1"]).unwrap().unwrap_err();
        assert!(err.contains("gopher"), "{err}");
    }

    #[test]
    fn bad_bind_is_reported() {
        let cli = parse_args(&args(&["ferrowsgi", "-b", "127.0.0.1:notaport", "m:app"])).unwrap();
        let err = cli.to_config().unwrap_err();
        assert!(err.contains("127.0.0.1:notaport"), "{err}");
    }
}
