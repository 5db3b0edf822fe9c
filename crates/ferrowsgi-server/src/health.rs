//! Whether this process may go on serving, and what happens when it may
//! not: [`mark_unhealthy`].
//!
//! A worker is unhealthy when one of its threads is lost (a request still
//! running `--timeout-grace` after its deadline, stuck in C code where no
//! exception reaches it). It then stops accepting, lets its other requests
//! finish, and exits with [`EXIT_UNHEALTHY`], so that whatever supervises
//! it starts a fresh one; the lost thread dies with the process. In the
//! inline mode (`--threads 1`) the lost thread is the event loop itself, so
//! nothing else can be finished and the process exits at once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use crate::log;
use crate::stop::StopHandle;
use crate::sync::lock;

/// The exit status of a worker that retired itself as unhealthy (sysexits'
/// `EX_SOFTWARE`): distinct from a clean stop (0), a start-up failure (1),
/// a command-line mistake (2) and a Ctrl-C (130).
pub const EXIT_UNHEALTHY: i32 = 70;

static UNHEALTHY: AtomicBool = AtomicBool::new(false);

/// Called when the worker is retired as unhealthy (gunicorn's
/// `worker_abort` hook, which gunicorn runs on the `SIGABRT` its arbiter
/// sends a worker past `--timeout`).
type AbortHook = Box<dyn Fn() + Send + Sync>;
static ON_ABORT: OnceLock<AbortHook> = OnceLock::new();
/// Signalled once the abort hook has returned.
static ABORT_DONE: Mutex<Option<mpsc::Receiver<()>>> = Mutex::new(None);
/// How long the process waits for the abort hook before it exits anyway:
/// the hook may need the GIL, which the lost thread may hold for good.
const ABORT_HOOK_WAIT: Duration = Duration::from_secs(5);

/// Runs `f` when this process is retired as unhealthy, on a thread of its
/// own, before the process exits (which waits up to 5 s for it). Set once.
pub fn on_abort(f: Box<dyn Fn() + Send + Sync>) {
    let _ = ON_ABORT.set(f);
}

/// Starts the abort hook, if one is set, on a thread of its own: the
/// caller is the deadline watcher, which must never wait for Python.
fn start_abort_hook() {
    let Some(hook) = ON_ABORT.get() else {
        return;
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ferrowsgi-abort".into())
        .spawn(move || {
            hook();
            let _ = tx.send(());
        });
    if spawned.is_ok() {
        *lock(&ABORT_DONE) = Some(rx);
    }
}

/// Waits (a bounded time) for the abort hook started by [`mark_unhealthy`].
fn wait_abort_hook() {
    let Some(done) = lock(&ABORT_DONE).take() else {
        return;
    };
    if done.recv_timeout(ABORT_HOOK_WAIT).is_err() {
        raw_stderr(&format!(
            "the worker_abort hook did not return within {} s; exiting without it",
            ABORT_HOOK_WAIT.as_secs()
        ));
    }
}

/// The running server, as [`mark_unhealthy`] needs it.
#[derive(Debug)]
struct Running {
    stop: StopHandle,
    /// The application runs on the event loop's thread.
    inline: bool,
    /// Exit the process (the command line) rather than only stop serving
    /// (a server embedded with `ferrowsgi.serve()` or `background()`).
    exit: bool,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// Called by a server as it starts to run.
pub(crate) fn running(stop: StopHandle, inline: bool, exit: bool) {
    UNHEALTHY.store(false, Ordering::SeqCst);
    *lock(&RUNNING) = Some(Running { stop, inline, exit });
}

/// Called by a server once it has stopped.
pub(crate) fn stopped() {
    lock(&RUNNING).take();
}

/// Whether [`mark_unhealthy`] was called since the server started.
pub fn is_unhealthy() -> bool {
    UNHEALTHY.load(Ordering::SeqCst)
}

/// Retires this worker: logs `reason`, stops accepting, lets the other
/// requests finish and exits with [`EXIT_UNHEALTHY`] (at once in the
/// inline mode, where the event loop is the lost thread). A master that
/// supervises workers replaces it.
pub fn mark_unhealthy(reason: &str) {
    if UNHEALTHY.swap(true, Ordering::SeqCst) {
        return;
    }
    // Under a master: it forks the replacement now, while this worker
    // finishes (or, inline, exits).
    crate::process::worker::tell_master(crate::process::RetireReason::Unhealthy);
    start_abort_hook();
    let running = lock(&RUNNING);
    let Some(r) = running.as_ref() else {
        critical(format!("Worker unhealthy: {reason}"));
        return;
    };
    if r.inline && r.exit {
        let line = critical(format!(
            "Worker unhealthy: {reason}; the event loop is that thread, so the \
             worker exits now (status {EXIT_UNHEALTHY})"
        ));
        written_or_raw(line);
        exit_now();
    }
    critical(format!(
        "Worker unhealthy: {reason}; no longer accepting, finishing the other requests{}",
        if r.exit {
            format!(", then exiting (status {EXIT_UNHEALTHY})")
        } else {
            String::new()
        }
    ));
    r.stop.stop();
}

/// A critical line being logged by a thread of its own (see [`critical`]).
struct Pending {
    done: std::sync::mpsc::Receiver<()>,
    line: String,
}

/// Logs a critical line from a thread of its own: with `--log-to-python`
/// a line needs the GIL, which the lost thread may hold for good, and the
/// caller (the deadline watcher) must never wait for it.
fn critical(line: String) -> Pending {
    let (tx, done) = std::sync::mpsc::channel();
    let text = line.clone();
    let spawned = std::thread::Builder::new()
        .name("ferrowsgi-log".into())
        .spawn(move || {
            log::log(log::Level::Critical, &text);
            let _ = tx.send(());
        });
    if spawned.is_err() {
        // No thread to spare: written raw, so the line is not lost.
        raw_stderr(&line);
    }
    Pending { done, line }
}

/// Waits a moment for a [`critical`] line before the process exits; one
/// still stuck (in Python's logging, behind the GIL) goes to stderr as it
/// is instead.
fn written_or_raw(p: Pending) {
    if p.done.recv_timeout(Duration::from_secs(1)).is_err() {
        raw_stderr(&p.line);
    }
}

fn raw_stderr(line: &str) {
    let _ = writeln!(std::io::stderr(), "[CRITICAL] {line}");
}

/// Ends the process with [`EXIT_UNHEALTHY`] without running anything that
/// could wait for the lost thread (interpreter finalisation needs the GIL,
/// which that thread may hold for good).
pub(crate) fn exit_now() -> ! {
    wait_abort_hook();
    written_or_raw(critical(format!(
        "Worker exiting (status {EXIT_UNHEALTHY}): retired as unhealthy"
    )));
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions; it ends the process at once.
    unsafe { libc::_exit(EXIT_UNHEALTHY) }
}
