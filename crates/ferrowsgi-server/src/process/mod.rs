//! Master and worker processes (no Python here).
//!
//! The master binds every listener, then forks the workers through the
//! binding's [`Binding`] (which knows how to fork an interpreter and what a
//! worker runs), and from then on only supervises: it replaces workers that
//! die or retire, reloads on `SIGHUP`, adds or removes one on
//! `SIGTTIN`/`SIGTTOU`, and stops them on `SIGTERM` (graceful) or
//! `SIGINT`/`SIGQUIT` (fast). It is single-threaded and waits in poll(2)
//! over a self-pipe fed by its signal handlers and one pipe per worker.
//!
//! See docs/ARCHITECTURE.md, "Processes", for the measurements behind the
//! choices (shared listening sockets woken with `EPOLLEXCLUSIVE`, fork with
//! the interpreter's own bookkeeping, back-off for workers that fail).

use std::io;
use std::time::Duration;

pub(crate) mod census;
pub(crate) mod drain;
mod master;
pub mod sd_notify;
mod shared;
mod signals;
pub mod system;
pub mod worker;

pub use master::{Binding, ExitCause, Master, Outcome, Source, SourceAction};
pub use worker::{on_interrupt, retire, RetireReason, WorkerCtx};

/// Default for `--graceful-timeout` (gunicorn's).
pub const DEFAULT_GRACEFUL_TIMEOUT_SECS: u64 = 30;

/// Exit status of a worker that could not load the application (after it
/// told the master why over its pipe).
pub const EXIT_BOOT_FAILED: i32 = 3;

/// `-w/--workers`: a count or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerCount {
    /// This many workers.
    Count(usize),
    /// One per usable CPU ([`system::usable_cpus`]).
    Auto,
}

impl WorkerCount {
    /// Parses `N` (1 to 1024) or `auto`; the error is one line.
    pub fn parse(s: &str) -> Result<WorkerCount, String> {
        if s == "auto" {
            return Ok(WorkerCount::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(WorkerCount::Count(n)),
            _ => Err(format!(
                "{s:?} is not a worker count (a number from 1 to 1024, or auto)"
            )),
        }
    }

    /// The number of workers this stands for on this machine.
    pub fn resolve(self) -> usize {
        match self {
            WorkerCount::Count(n) => n,
            WorkerCount::Auto => system::usable_cpus(),
        }
    }
}

/// Parses a file mode or mask in octal: `0o22`, `022` or `0660`; a number
/// without a leading zero is taken as octal too, as chmod(1) does. The
/// error is one line.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if !digits.is_empty() && m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode such as 0o22 or 0660")),
    }
}

/// Whether systemd passed listening sockets to this process
/// (`LISTEN_FDS`, with `LISTEN_PID` naming this process), also once they
/// were taken and the variables removed.
pub fn has_listen_fds() -> bool {
    system::had_listen_fds()
}

/// What the master and its workers need to know beyond the server's
/// [`crate::Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many workers to keep running.
    pub workers: usize,
    /// How long a stopping worker may take before it is killed.
    pub graceful_timeout: Duration,
    /// Requests before a worker is replaced (0: never).
    pub max_requests: u64,
    /// Random extra requests per worker, up to this many.
    pub max_requests_jitter: u64,
    /// Resident memory in bytes past which a worker is replaced (0: never).
    pub max_rss: u64,
    /// File to write the master's pid to.
    pub pid_file: Option<std::path::PathBuf>,
    /// User and group the workers switch to.
    pub identity: Option<system::Identity>,
}

impl Settings {
    /// The process settings of a parsed command line. Users and groups are
    /// looked up here, so a wrong name is a one-line error before anything
    /// is bound.
    pub fn from_cli(cli: &crate::Cli) -> Result<Settings, String> {
        let identity = system::Identity::lookup(cli.user.as_deref(), cli.group.as_deref())?;
        Ok(Settings {
            workers: cli.workers.resolve(),
            graceful_timeout: Duration::from_secs(cli.graceful_timeout),
            max_requests: cli.max_requests,
            max_requests_jitter: cli.max_requests_jitter,
            max_rss: cli.max_rss.saturating_mul(1 << 20),
            pid_file: cli.pid.clone(),
            identity,
        })
    }
}

/// A pipe whose ends are close-on-exec and non-blocking.
pub(crate) fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are new and ours.
    unsafe {
        Ok((
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts() {
        assert_eq!(WorkerCount::parse("3"), Ok(WorkerCount::Count(3)));
        assert_eq!(WorkerCount::parse("auto"), Ok(WorkerCount::Auto));
        for bad in ["0", "1025", "-1", "two", ""] {
            let msg = WorkerCount::parse(bad).unwrap_err();
            assert!(msg.contains("worker count"), "{bad:?}: {msg}");
        }
        assert!(WorkerCount::Auto.resolve() >= 1);
        assert!(WorkerCount::Auto.resolve() <= std::thread::available_parallelism().unwrap().get());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0o22"), Ok(0o22));
        assert_eq!(parse_mode("022"), Ok(0o22));
        assert_eq!(parse_mode("660"), Ok(0o660));
        for bad in ["9", "0o", "", "rw-", "0o17777"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_user_and_group_are_one_line_errors() {
        let e = system::Identity::lookup(Some("no-such-user-for-ferrowsgi"), None).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        let e = system::Identity::lookup(None, Some("no-such-group-for-ferrowsgi")).unwrap_err();
        assert!(e.contains("no such group"), "{e}");
        assert!(system::Identity::lookup(None, None).unwrap().is_none());
    }

    #[test]
    fn systemd_socket_names_choose_the_protocol() {
        use crate::Scheme;
        for (name, want) in [
            ("fastcgi", (Scheme::FastCgi, false)),
            ("scgi", (Scheme::Scgi, false)),
            ("uwsgi+proxy", (Scheme::Uwsgi, true)),
            ("ajp", (Scheme::Ajp, false)),
            ("http", (Scheme::Http, false)),
            ("http+proxy", (Scheme::Http, true)),
            // Names that are not protocols keep their meaning of before.
            ("app.socket", (Scheme::Http, false)),
            ("unknown", (Scheme::Http, false)),
            ("app", (Scheme::Http, false)),
            ("web", (Scheme::Http, false)),
            ("", (Scheme::Http, false)),
        ] {
            assert_eq!(system::protocol_of_fd_name(3, name), Ok(want), "{name:?}");
        }
        for (name, hint) in [
            ("fastcig", "did you mean \"fastcgi\"?"),
            ("uwsg", "did you mean \"uwsgi\"?"),
            ("fastcgi+prox", "did you mean \"fastcgi+proxy\"?"),
            ("scgi+tls", "did you mean \"scgi+proxy\"?"),
            ("fastcgi+proxy+proxy", "did you mean \"fastcgi+proxy\"?"),
            ("gopher+proxy", "which is not a protocol:"),
        ] {
            let e = system::protocol_of_fd_name(4, name).expect_err(name);
            assert!(
                e.starts_with(&format!("systemd socket 4 is named {name:?}")),
                "{e}"
            );
            assert!(e.contains(hint), "{name}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn inherited_descriptors_are_checked() {
        let e = crate::Listener::from_fd(987_654).unwrap_err();
        assert!(e.contains("not an open descriptor"), "{e}");
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let e = crate::Listener::from_fd(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        let bound = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(bound);
        let l = crate::Listener::from_fd(fd).unwrap();
        assert!(l.url().starts_with("http://127.0.0.1:"), "{}", l.url());
    }
}
