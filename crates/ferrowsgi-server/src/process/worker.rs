//! The worker's side: what a forked worker sets up before the application
//! is imported, how it serves the inherited listeners, how it tells the
//! master that it is ready or wants to be replaced, and its signals.
//!
//! Worker signals (the master sends them; an operator may too):
//! `SIGTERM` graceful stop, `SIGUSR2` graceful stop of a worker being
//! replaced (idle keep-alive connections are closed once idle for a
//! moment rather than at once), `SIGINT`/`SIGQUIT` fast stop, `SIGUSR1`
//! reopen the log files. `SIGHUP`, `SIGTTIN` and `SIGTTOU` are the
//! master's business and are ignored. None of them ever reaches Python
//! code (no `KeyboardInterrupt` inside an application).

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::{signals, Settings, EXIT_BOOT_FAILED};
use crate::handler::Handler;
use crate::listen::Listener;
use crate::server::Server;
use crate::stop::StopHandle;
use crate::{log, Config};

/// Why a worker asks to be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireReason {
    /// `--max-requests` (with its jitter) reached.
    MaxRequests,
    /// `--max-rss` exceeded after a request.
    MaxRss,
    /// The worker is unhealthy (a request thread that did not come back
    /// after its deadline, for example) and should be replaced.
    Unhealthy,
}

impl RetireReason {
    fn code(self) -> &'static [u8] {
        match self {
            RetireReason::MaxRequests => b"M\n",
            RetireReason::MaxRss => b"S\n",
            RetireReason::Unhealthy => b"U\n",
        }
    }
}

/// Write end of the pipe to the master (-1 outside a worker).
static NOTIFY_FD: AtomicI32 = AtomicI32::new(-1);
/// Set once the worker asked to be replaced.
static RETIRING: AtomicBool = AtomicBool::new(false);
/// The running server's stop handle.
static STOP: OnceLock<StopHandle> = OnceLock::new();
/// Called (on the signal thread) when the worker is told to stop fast.
type Callback = Box<dyn Fn() + Send + Sync>;
static ON_INTERRUPT: OnceLock<Callback> = OnceLock::new();

/// Runs `f` when this worker gets `SIGINT` or `SIGQUIT`, before it stops
/// (gunicorn's `worker_int` hook). Set once, on the worker's side.
pub fn on_interrupt(f: Box<dyn Fn() + Send + Sync>) {
    let _ = ON_INTERRUPT.set(f);
}
/// Whether anything is counted after each request.
static RECYCLE_ON: AtomicBool = AtomicBool::new(false);
/// Requests served, when counted.
static SERVED: AtomicU64 = AtomicU64::new(0);
/// `--max-requests` plus this worker's jitter (0: none).
static REQUEST_LIMIT: AtomicU64 = AtomicU64::new(0);
/// `--max-rss` in bytes (0: none).
static RSS_LIMIT: AtomicU64 = AtomicU64::new(0);

/// Asks the master to replace this worker: it stops accepting new
/// connections at once, the master forks a replacement and, as soon as that
/// one is ready, stops this one gracefully (which finishes the requests it
/// has: the worker leaves after its replacement accepts). Called once per worker; later calls do
/// nothing. Outside a worker (`ferrowsgi.serve()`), or when the master is
/// gone, the server stops gracefully by itself instead.
pub fn retire(reason: RetireReason) {
    if RETIRING.swap(true, Ordering::SeqCst) {
        return;
    }
    let fd = NOTIFY_FD.load(Ordering::SeqCst);
    let told = fd >= 0 && write_all(fd, reason.code()).is_ok();
    if let Some(stop) = STOP.get() {
        if told {
            // New connections go to the other workers and the
            // replacement; the open ones are served until the master's
            // TERM, which comes once the replacement is ready.
            stop.pause_accept();
        } else {
            stop.stop();
        }
    }
}

/// Tells the master (if there is one) that this worker is to be replaced,
/// without stopping anything: for a caller that stops the worker itself
/// ([`crate::health::mark_unhealthy`]).
pub(crate) fn tell_master(reason: RetireReason) {
    let fd = NOTIFY_FD.load(Ordering::SeqCst);
    if fd >= 0 && !RETIRING.swap(true, Ordering::SeqCst) {
        let _ = write_all(fd, reason.code());
    }
}

/// Counts a finished request and asks for a replacement past
/// `--max-requests` or `--max-rss`. Called after each request by the
/// event loop and the application threads; costs one relaxed load when
/// neither option is set.
#[inline]
pub(crate) fn request_done() {
    if RECYCLE_ON.load(Ordering::Relaxed) {
        count_request();
    }
}

#[cold]
fn count_request() {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    let limit = REQUEST_LIMIT.load(Ordering::Relaxed);
    if limit > 0 && served >= limit && !RETIRING.load(Ordering::Relaxed) {
        log::info(&format!(
            "Worker reached --max-requests ({served} requests): replacing it"
        ));
        retire(RetireReason::MaxRequests);
        return;
    }
    let rss_limit = RSS_LIMIT.load(Ordering::Relaxed);
    if rss_limit > 0 && !RETIRING.load(Ordering::Relaxed) {
        if let Some(rss) = super::system::rss_bytes() {
            if rss > rss_limit {
                log::info(&format!(
                    "Worker uses {} MiB, over --max-rss ({} MiB): replacing it",
                    rss >> 20,
                    rss_limit >> 20
                ));
                retire(RetireReason::MaxRss);
            }
        }
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice; fd is the worker's pipe end.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    // The master reads its pipes all the time; a full
                    // pipe only needs a moment.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                _ => return Err(e),
            }
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// What a freshly forked worker gets from the master.
#[derive(Debug)]
pub struct WorkerCtx {
    /// The worker's number, counting from 1 over the master's life
    /// (gunicorn's `age`).
    pub age: u64,
    /// The master's process id.
    pub master_pid: libc::pid_t,
    /// The listening sockets, shared with the master and the other workers.
    pub listeners: Vec<Listener>,
    /// The process settings.
    pub settings: Settings,
    notify: OwnedFd,
}

impl WorkerCtx {
    pub(crate) fn new(
        age: u64,
        master_pid: libc::pid_t,
        mut listeners: Vec<Listener>,
        settings: Settings,
        notify: OwnedFd,
    ) -> WorkerCtx {
        for l in &mut listeners {
            // The unix socket files belong to the master.
            l.disown();
        }
        NOTIFY_FD.store(notify.as_raw_fd(), Ordering::SeqCst);
        WorkerCtx {
            age,
            master_pid,
            listeners,
            settings,
            notify,
        }
    }

    /// Reports that the application could not be loaded (`msg` is one
    /// line) and returns the exit status the worker should leave with. The
    /// master prints the message (once, however many workers failed).
    pub fn boot_failed(self, msg: &str) -> i32 {
        let line = format!("E {}\n", msg.replace('\n', " "));
        let _ = write_all(self.notify.as_raw_fd(), line.as_bytes());
        EXIT_BOOT_FAILED
    }

    /// Serves the inherited listeners with `handler` until the worker is
    /// told to stop (or retires), after telling the master it is ready.
    /// The graceful timeout of `settings` bounds a stop.
    pub fn serve<H: Handler>(self, mut cfg: Config, handler: H) -> io::Result<()> {
        cfg.binds.clear();
        let grace = self.settings.graceful_timeout;
        let server = Server::from_listeners(cfg, handler, self.listeners, true)
            .map_err(|(what, e)| io::Error::new(e.kind(), format!("{what}: {e}")))?;
        let stop = server.stop_handle();
        stop.set_grace(grace);
        let _ = STOP.set(stop);
        let s = &self.settings;
        if s.max_requests > 0 {
            let jitter = if s.max_requests_jitter > 0 {
                random_u64() % (s.max_requests_jitter + 1)
            } else {
                0
            };
            REQUEST_LIMIT.store(s.max_requests + jitter, Ordering::SeqCst);
        }
        RSS_LIMIT.store(s.max_rss, Ordering::SeqCst);
        RECYCLE_ON.store(s.max_requests > 0 || s.max_rss > 0, Ordering::SeqCst);
        write_all(self.notify.as_raw_fd(), b"R\n")?;
        let result = server.run();
        NOTIFY_FD.store(-1, Ordering::SeqCst);
        drop(self.notify);
        result
    }
}

/// A random number for the jitter (no cryptographic need).
fn random_u64() -> u64 {
    let mut x = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into x.
    let n = unsafe { libc::getrandom((&mut x as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
    if n != 8 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        x = t ^ (u64::from(std::process::id()) << 32);
    }
    x
}

/// Sets up a freshly forked worker before anything else runs in it:
/// signals, the user and group, and the parent-death signal. Returns an
/// error (one line) when the worker must not go on.
pub(crate) fn prepare(settings: &Settings, master_pid: libc::pid_t) -> Result<(), String> {
    signals::ignore(&[libc::SIGHUP, libc::SIGTTIN, libc::SIGTTOU])
        .map_err(|e| format!("cannot set signal handlers: {e}"))?;
    signals::default(&[libc::SIGCHLD]).map_err(|e| format!("cannot set signal handlers: {e}"))?;
    let (read, write) = super::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    signals::set_pipe(write.as_raw_fd());
    signals::catch(&[
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ])
    .map_err(|e| format!("cannot set signal handlers: {e}"))?;
    signals::unblock_all();
    if let Some(id) = &settings.identity {
        id.switch()
            .map_err(|e| format!("cannot switch to the user and group given: {e}"))?;
    }
    // After the switch: changing credentials clears the parent-death signal.
    if !super::system::die_with_parent(master_pid, libc::SIGTERM) {
        return Err("the master is gone".to_string());
    }
    // The thread that acts on the signals: a handler can only write to the
    // pipe. It never touches Python.
    let old = signals::block_all();
    let spawned = std::thread::Builder::new()
        .name("ferrowsgi-signals".into())
        .spawn(move || signal_thread(read, write));
    signals::restore_mask(&old);
    spawned.map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

fn signal_thread(read: OwnedFd, _write: OwnedFd) {
    let fd = read.as_raw_fd();
    // Blocking reads: the pipe was made non-blocking for the handler's
    // sake; this end waits in poll.
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe {
            libc::poll(&mut pfd, 1, -1);
        }
        let mut buf = [0u8; 64];
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        for &sig in &buf[..n as usize] {
            act(libc::c_int::from(sig));
        }
    }
}

fn act(sig: libc::c_int) {
    match sig {
        libc::SIGTERM => match STOP.get() {
            Some(stop) => {
                // Stopped first, then said: once the line is out, the
                // event loop takes no connection as an ordinary one.
                stop.stop();
                log::info("Worker stopping gracefully (SIGTERM)");
            }
            None => exit_now(),
        },
        libc::SIGUSR2 => match STOP.get() {
            Some(stop) => {
                log::info("Worker stopping gracefully, replaced (SIGUSR2)");
                stop.stop_replaced();
            }
            None => exit_now(),
        },
        libc::SIGINT | libc::SIGQUIT => match STOP.get() {
            Some(stop) => {
                if let Some(f) = ON_INTERRUPT.get() {
                    f();
                }
                stop.stop_now();
            }
            None => exit_now(),
        },
        libc::SIGUSR1 => {
            // A failure is logged by the reopen itself.
            let _ = log::reopen();
        }
        _ => {}
    }
}

/// Leaves at once: told to stop before serving (while importing the
/// application), there is nothing to finish.
fn exit_now() {
    let _ = io::stderr().flush();
    // SAFETY: _exit ends the process without running anything else, which
    // is what a stop before serving wants (the import is abandoned).
    unsafe { libc::_exit(0) }
}
