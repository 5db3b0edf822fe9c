//! The master: forks workers over the bound listeners and supervises them.
//!
//! One thread, one poll(2) over the self-pipe of its signal handlers, one
//! pipe per worker (the worker writes one-line messages: `R` ready, `M`/`S`
//! /`U` replace me, `E msg` could not load the application; end of file
//! means the worker is gone) and any extra [`Source`]. Children are reaped
//! with `waitpid(-1, WNOHANG)` after every wake-up, so a `SIGCHLD` that
//! arrives while another is being handled is never lost.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::sd_notify::{monotonic_usec, Notifier};
use super::worker::{self, WorkerCtx};
use super::{signals, system, Settings, EXIT_BOOT_FAILED};
use crate::listen::Listener;
use crate::log;

/// What the binding provides: how to fork, and what a worker runs.
pub trait Binding {
    /// Forks the process with whatever bookkeeping the embedding runtime
    /// needs around a fork (CPython: `PyOS_BeforeFork` and the two
    /// `PyOS_AfterFork_*`). Returns the child's pid in the parent and 0 in
    /// the child.
    fn fork(&mut self) -> io::Result<libc::pid_t>;

    /// Runs a new worker (in the child, after [`worker`]'s set-up): loads
    /// the application if the master did not, then
    /// [`WorkerCtx::serve`]s it, or [`WorkerCtx::boot_failed`]. Returns
    /// the worker's exit status.
    fn run_worker(&mut self, ctx: WorkerCtx) -> i32;

    /// Re-reads the configuration on `SIGHUP`. The settings returned apply
    /// to the workers started from now on; an error (one line) keeps the
    /// old ones and the old workers.
    fn reload(&mut self) -> Result<Settings, String>;

    /// Runs the master-side server hook `name` (`when_ready`, `on_reload`,
    /// `on_exit`), if there is one.
    fn hook(&mut self, name: &str) {
        let _ = name;
    }

    /// Runs just before the master forks the worker numbered `age`
    /// (gunicorn's `pre_fork` hook), with the master's signals still
    /// unblocked and no other thread running.
    fn pre_fork(&mut self, age: u64) {
        let _ = age;
    }

    /// Told, in the master, that the worker numbered `age` was forked as
    /// `pid`.
    fn spawned(&mut self, pid: libc::pid_t, age: u64) {
        let _ = (pid, age);
    }

    /// Told about every worker that left (its pid and age), and why.
    fn worker_exited(&mut self, pid: libc::pid_t, age: u64, cause: ExitCause) {
        let _ = (pid, age, cause);
    }

    /// Told that the number of workers changed (`SIGTTIN`/`SIGTTOU`).
    fn workers_changed(&mut self, new: usize, old: usize) {
        let _ = (new, old);
    }
}

/// Why a worker left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// The master stopped it (shutdown, reload, one worker fewer).
    Stopped,
    /// It exited by itself, with this status.
    Exit(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It could not load the application.
    BootFailed,
    /// Replaced after `--max-requests`.
    MaxRequests,
    /// Replaced after `--max-rss`.
    MaxRss,
    /// Replaced because it reported itself unhealthy.
    Unhealthy,
}

/// What a [`Source`] asks of the master when its descriptor is readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAction {
    /// Nothing more.
    Nothing,
    /// Reload as on `SIGHUP`.
    Reload,
    /// Stop gracefully as on `SIGTERM`.
    Stop,
}

/// An extra descriptor the master watches (an exporter's socket, a file
/// watcher). It must be non-blocking; [`Source::ready`] is called when it
/// is readable.
pub trait Source {
    /// The descriptor to watch for input.
    fn fd(&self) -> RawFd;
    /// Handles the input.
    fn ready(&mut self) -> SourceAction;
}

/// How a call of [`Master::run`] ended, in the process that returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The master is done: exit with this status.
    Master(i32),
    /// This process is a worker that is done: exit with this status.
    Worker(i32),
}

/// The master's set-up: settings and bound listeners.
pub struct Master {
    settings: Settings,
    listeners: Vec<Listener>,
    sig_read: OwnedFd,
    sig_write: OwnedFd,
    sources: Vec<Box<dyn Source + Send>>,
    notifier: Option<Notifier>,
}

impl fmt::Debug for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Master")
            .field("settings", &self.settings)
            .field("listeners", &self.listeners)
            .field("sources", &self.sources.len())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Booting,
    Ready,
    Stopping,
}

#[derive(Debug)]
struct Worker {
    pid: libc::pid_t,
    age: u64,
    generation: u64,
    pipe: Option<OwnedFd>,
    buf: Vec<u8>,
    state: State,
    ready_at: Option<Instant>,
    /// Asked to be replaced, with this cause.
    retiring: Option<ExitCause>,
    /// Killed with SIGKILL at this moment if still there.
    kill_at: Option<Instant>,
    boot_error: Option<String>,
}

/// How long a worker must have served for its death not to count as a
/// failure in a row (the back-off is for workers that fail at once).
const HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// First back-off delay, doubled at each failure in a row.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest back-off delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The running master's state.
struct Run<'a> {
    settings: Settings,
    listeners: Vec<Listener>,
    sources: Vec<Box<dyn Source + Send>>,
    notifier: Option<Notifier>,
    binding: &'a mut dyn Binding,
    sig_read: OwnedFd,
    _sig_write: OwnedFd,
    workers: Vec<Worker>,
    generation: u64,
    /// The generation being replaced by a reload.
    reloading_from: Option<u64>,
    age: u64,
    /// A worker has been ready at some point.
    ever_ready: bool,
    /// READY=1 has been sent for the current generation.
    announced: bool,
    failures: u32,
    next_spawn: Instant,
    /// Stopping: (graceful, deadline).
    stopping: Option<(bool, Instant)>,
    exit_code: i32,
    master_pid: libc::pid_t,
}

impl Master {
    /// A master with `settings`. Its signal handlers are installed at
    /// once, so that a signal that arrives while the listeners are bound
    /// or the application is preloaded is handled (by stopping before any
    /// worker starts) rather than lost or raised inside Python.
    pub fn new(settings: Settings) -> io::Result<Master> {
        let (sig_read, sig_write) = super::pipe()?;
        signals::set_pipe(sig_write.as_raw_fd());
        signals::catch(signals::MASTER)?;
        Ok(Master {
            settings,
            listeners: Vec::new(),
            sig_read,
            sig_write,
            sources: Vec::new(),
            notifier: None,
        })
    }

    /// Serves `listeners` too (bound, with their options set).
    pub fn add_listeners(&mut self, listeners: Vec<Listener>) {
        self.listeners.extend(listeners);
    }

    /// Watches `source` too.
    pub fn add_source(&mut self, source: Box<dyn Source + Send>) {
        self.sources.push(source);
    }

    /// Talks to systemd through `notifier` (see [`Notifier::from_env`]).
    pub fn set_notifier(&mut self, notifier: Option<Notifier>) {
        self.notifier = notifier;
    }

    /// Forks the workers and supervises them until a stop. Returns in the
    /// master when it is done, and in each worker when the worker is done.
    pub fn run(self, binding: &mut dyn Binding) -> Outcome {
        let (sig_read, sig_write) = (self.sig_read, self.sig_write);
        if let Some(path) = &self.settings.pid_file {
            if let Err(e) = system::write_pid_file(path) {
                log::error(&format!(
                    "cannot write the pid file {}: {e}",
                    path.display()
                ));
                return Outcome::Master(1);
            }
        }
        let pid_file = self.settings.pid_file.clone();
        let mut run = Run {
            settings: self.settings,
            listeners: self.listeners,
            sources: self.sources,
            notifier: self.notifier,
            binding,
            sig_read,
            _sig_write: sig_write,
            workers: Vec::new(),
            generation: 1,
            reloading_from: None,
            age: 0,
            ever_ready: false,
            announced: false,
            failures: 0,
            next_spawn: Instant::now(),
            stopping: None,
            exit_code: 0,
            // SAFETY: getpid has no preconditions.
            master_pid: unsafe { libc::getpid() },
        };
        if let Err(e) = super::drain::setup() {
            // Only the connections queued at a stop depend on it.
            log::warning(&format!(
                "cannot map the region for draining at stop ({e}): connections queued then are reset"
            ));
        }
        if let Err(e) = super::census::setup() {
            // Only the cost of rotating a lone worker depends on it.
            log::debug(&format!("cannot map the workers' census ({e})"));
        }
        // gunicorn's moment for it: the master is set up, the workers
        // are about to be forked.
        run.binding.hook("when_ready");
        match run.supervise() {
            Ok(code) => {
                run.binding.hook("on_exit");
                if let Some(path) = &pid_file {
                    system::remove_pid_file(path);
                }
                log::info("Shutting down: master");
                Outcome::Master(code)
            }
            Err(ctx) => {
                // A new worker: the master's state (pipes, sockets of the
                // sources, the other workers' pipes) is dropped here.
                let binding = run.binding;
                drop(run.sources);
                drop(run.workers);
                drop(run.notifier);
                drop(run.sig_read);
                drop(run._sig_write);
                drop(run.listeners);
                Outcome::Worker(binding.run_worker(*ctx))
            }
        }
    }
}

impl Run<'_> {
    /// The loop; `Err` carries a new worker's context out of the master's
    /// frames (in the child).
    fn supervise(&mut self) -> Result<i32, Box<WorkerCtx>> {
        // A signal that came during the start-up is acted on first.
        self.read_signals();
        loop {
            self.maintain()?;
            if self.stopping.is_some() && self.workers.is_empty() {
                return Ok(self.exit_code);
            }
            let timeout = self.timeout();
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(1 + self.workers.len());
            let pfd = |fd: RawFd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(pfd(self.sig_read.as_raw_fd()));
            let mut owners: Vec<Option<usize>> = vec![None];
            for (i, w) in self.workers.iter().enumerate() {
                if let Some(p) = &w.pipe {
                    fds.push(pfd(p.as_raw_fd()));
                    owners.push(Some(i));
                }
            }
            let first_source = fds.len();
            for s in &self.sources {
                fds.push(pfd(s.fd()));
            }
            let ms = timeout.as_millis().min(1000) as libc::c_int;
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error(&format!("poll failed in the master: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            if fds[0].revents != 0 {
                self.read_signals();
            }
            let ready: Vec<usize> = fds[1..first_source]
                .iter()
                .zip(&owners[1..])
                .filter(|(f, _)| f.revents != 0)
                .filter_map(|(_, o)| *o)
                .collect();
            for i in ready {
                self.read_worker(i);
            }
            let actions: Vec<SourceAction> = fds[first_source..]
                .iter()
                .zip(self.sources.iter_mut())
                .filter(|(f, _)| f.revents != 0)
                .map(|(_, s)| s.ready())
                .collect();
            for a in actions {
                match a {
                    SourceAction::Nothing => {}
                    SourceAction::Reload => self.reload(),
                    SourceAction::Stop => self.stop(true),
                }
            }
            self.reap();
            self.kill_late();
        }
    }

    /// How long the loop may sleep: until the next kill deadline or
    /// back-off, at most a second.
    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let mut t = Duration::from_secs(1);
        for w in &self.workers {
            if let Some(k) = w.kill_at {
                t = t.min(k.saturating_duration_since(now));
            }
        }
        if self.stopping.is_none() && self.active() < self.settings.workers {
            t = t.min(self.next_spawn.saturating_duration_since(now));
        }
        if let Some((_, d)) = self.stopping {
            t = t.min(d.saturating_duration_since(now));
        }
        // Round up, so a deadline is not polled for in a busy loop of
        // zero-millisecond waits.
        t + Duration::from_micros(999)
    }

    /// Workers of the current generation that are or will be serving.
    fn active(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| {
                w.generation == self.generation
                    && w.state != State::Stopping
                    && w.retiring.is_none()
            })
            .count()
    }

    fn ready_current(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| {
                w.generation == self.generation && w.state == State::Ready && w.retiring.is_none()
            })
            .count()
    }

    /// Starts what is missing, drains what has been replaced.
    fn maintain(&mut self) -> Result<(), Box<WorkerCtx>> {
        if self.stopping.is_some() {
            return Ok(());
        }
        let target = self.settings.workers;
        while self.active() < target && Instant::now() >= self.next_spawn {
            if !self.spawn()? {
                break;
            }
        }
        // One worker fewer (SIGTTOU): the oldest go first.
        let mut extra = self.active().saturating_sub(target);
        if extra > 0 {
            let victims: Vec<usize> = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    w.generation == self.generation
                        && w.state != State::Stopping
                        && w.retiring.is_none()
                })
                .map(|(i, _)| i)
                .collect();
            for i in victims {
                if extra == 0 {
                    break;
                }
                self.stop_worker(i, libc::SIGUSR2);
                extra -= 1;
            }
        }
        if self.ready_current() >= target {
            // The replacements serve: the replaced workers (an older
            // generation, or retiring ones) finish and leave.
            let old: Vec<usize> = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    w.state != State::Stopping
                        && (w.generation != self.generation || w.retiring.is_some())
                })
                .map(|(i, _)| i)
                .collect();
            for i in old {
                self.stop_worker(i, libc::SIGUSR2);
            }
            if self.reloading_from.take().is_some() {
                log::info("Reload done: the new workers serve");
                self.announced = false;
            }
            if !self.announced {
                self.announced = true;
                self.notify(&format!(
                    "READY=1\nSTATUS=Serving with {target} worker(s)\nMAINPID={}",
                    self.master_pid
                ));
            }
        }
        Ok(())
    }

    /// Forks one worker. `Ok(false)` when the fork failed (retried later);
    /// `Err` in the child.
    fn spawn(&mut self) -> Result<bool, Box<WorkerCtx>> {
        let (read, write) = match super::pipe() {
            Ok(p) => p,
            Err(e) => {
                log::error(&format!("cannot create a worker's pipe: {e}"));
                self.next_spawn = Instant::now() + Duration::from_secs(1);
                return Ok(false);
            }
        };
        self.age += 1;
        self.binding.pre_fork(self.age);
        // Signals stay blocked across the fork: a signal for the new worker
        // waits until its own handlers are in place, instead of running the
        // master's (which would write to the master's pipe).
        let old = signals::block_all();
        // Counted before the fork: the workers already running learn that
        // they have company before the new one can take a connection.
        super::census::set_workers(self.workers.len() + 1);
        let forked = self.binding.fork();
        match forked {
            Ok(0) => {
                signals::set_pipe(-1);
                drop(read);
                let settings = self.settings.clone();
                if let Err(msg) = worker::prepare(&settings, self.master_pid) {
                    log::error(&format!("Worker could not start: {msg}"));
                    // SAFETY: leaving a child that has run nothing.
                    unsafe { libc::_exit(EXIT_BOOT_FAILED) }
                }
                let listeners = std::mem::take(&mut self.listeners);
                Err(Box::new(WorkerCtx::new(
                    self.age,
                    self.master_pid,
                    listeners,
                    settings,
                    write,
                )))
            }
            Ok(pid) => {
                signals::restore_mask(&old);
                drop(write);
                self.binding.spawned(pid, self.age);
                log::info(&format!("Booting worker with pid: {pid}"));
                self.workers.push(Worker {
                    pid,
                    age: self.age,
                    generation: self.generation,
                    pipe: Some(read),
                    buf: Vec::new(),
                    state: State::Booting,
                    ready_at: None,
                    retiring: None,
                    kill_at: None,
                    boot_error: None,
                });
                Ok(true)
            }
            Err(e) => {
                signals::restore_mask(&old);
                super::census::set_workers(self.workers.len());
                log::error(&format!("cannot fork a worker: {e}"));
                self.next_spawn = Instant::now() + Duration::from_secs(1);
                Ok(false)
            }
        }
    }

    /// Asks worker `i` to stop with `sig`; SIGKILL after the graceful
    /// timeout.
    fn stop_worker(&mut self, i: usize, sig: libc::c_int) {
        let grace = self.settings.graceful_timeout;
        let w = &mut self.workers[i];
        w.state = State::Stopping;
        w.kill_at = Some(Instant::now() + grace);
        signals::kill(w.pid, sig);
    }

    fn read_signals(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: buf is valid for its length; the pipe is non-blocking.
            let n = unsafe {
                libc::read(
                    self.sig_read.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n <= 0 {
                return;
            }
            for &s in &buf[..n as usize] {
                self.on_signal(libc::c_int::from(s));
            }
        }
    }

    fn on_signal(&mut self, sig: libc::c_int) {
        match sig {
            libc::SIGCHLD => {} // reaped after every wake-up
            libc::SIGTERM => self.stop(true),
            libc::SIGINT | libc::SIGQUIT => self.stop(false),
            libc::SIGHUP => self.reload(),
            libc::SIGTTIN => {
                if self.stopping.is_none() {
                    self.settings.workers += 1;
                    log::info(&format!(
                        "SIGTTIN: {} worker(s) from now on",
                        self.settings.workers
                    ));
                    let n = self.settings.workers;
                    self.binding.workers_changed(n, n - 1);
                }
            }
            libc::SIGTTOU => {
                if self.stopping.is_none() && self.settings.workers > 1 {
                    self.settings.workers -= 1;
                    log::info(&format!(
                        "SIGTTOU: {} worker(s) from now on",
                        self.settings.workers
                    ));
                    let n = self.settings.workers;
                    self.binding.workers_changed(n, n + 1);
                }
            }
            libc::SIGUSR1 => {
                // The workers first: they write the access log. A failure
                // is logged by the reopen itself.
                for w in &self.workers {
                    signals::kill(w.pid, libc::SIGUSR1);
                }
                let _ = log::reopen();
            }
            other => log::info(&format!("{} ignored", signals::name(other))),
        }
    }

    /// Stops every worker: gracefully (TERM) or fast (QUIT); SIGKILL after
    /// the graceful timeout.
    fn stop(&mut self, graceful: bool) {
        let sig = if graceful {
            libc::SIGTERM
        } else {
            libc::SIGQUIT
        };
        match self.stopping {
            Some((true, _)) if !graceful => {}
            Some(_) => return,
            None => {
                if graceful {
                    // Counted before anything else (the log line included):
                    // what is queued now came before the stop and is owed
                    // an answer; what comes later is not (super::drain).
                    for (i, l) in self.listeners.iter().enumerate() {
                        if let Some(n) = super::drain::count_queued(l.raw_fd()) {
                            super::drain::set_owed(i, n);
                            if n > 0 {
                                log::info(&format!(
                                    "{n} connection(s) queued on {} before the stop will be answered",
                                    l.url()
                                ));
                            }
                        }
                    }
                }
                log::info(&format!(
                    "Handling {}: {} shutdown",
                    signals::name(sig),
                    if graceful { "graceful" } else { "fast" }
                ));
                self.notify("STOPPING=1");
            }
        }
        let deadline = Instant::now() + self.settings.graceful_timeout;
        self.stopping = Some((graceful, deadline));
        // The master's copies of the listening sockets close now and each
        // worker closes its own as it stops, so that new connections are
        // refused once the last one is closed. At a graceful stop the
        // workers first take the connections counted above; a connection
        // queued after the count is reset with the last copy.
        self.listeners.clear();
        for i in 0..self.workers.len() {
            self.stop_worker(i, sig);
        }
    }

    /// SIGHUP: new settings, new workers; the old ones are drained once
    /// the new ones are ready ([`Run::maintain`]).
    fn reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        log::info("Handling SIGHUP: reloading");
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=Reloading",
            monotonic_usec()
        ));
        match self.binding.reload() {
            Ok(settings) => self.settings = settings,
            Err(msg) => {
                log::error(&format!("Reload failed, keeping the old workers: {msg}"));
                self.notify("READY=1\nSTATUS=Reload failed");
                return;
            }
        }
        self.binding.hook("on_reload");
        if self.reloading_from.is_none() {
            self.reloading_from = Some(self.generation);
        } else {
            // A reload during a reload: the workers of the one before are
            // superseded before they took over (the original ones serve
            // meanwhile), so repeated HUPs never pile up generations.
            let superseded: Vec<usize> = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.generation == self.generation && w.state != State::Stopping)
                .map(|(i, _)| i)
                .collect();
            for i in superseded {
                self.stop_worker(i, libc::SIGUSR2);
            }
        }
        self.generation += 1;
        self.failures = 0;
        self.next_spawn = Instant::now();
    }

    /// Reads worker `i`'s messages; closes its pipe at end of file.
    fn read_worker(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let Some(pipe) = &w.pipe else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: chunk is valid for its length; the pipe is non-blocking.
            let n = unsafe { libc::read(pipe.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                w.buf.extend_from_slice(&chunk[..n as usize]);
                continue;
            }
            if n == 0 {
                w.pipe = None;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    w.pipe = None;
                }
            }
            break;
        }
        while let Some(end) = self.workers[i].buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.workers[i].buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.on_message(i, &line);
        }
    }

    fn on_message(&mut self, i: usize, line: &str) {
        let (kind, rest) = line.split_at(line.len().min(1));
        let pid = self.workers[i].pid;
        match kind {
            "R" => {
                let w = &mut self.workers[i];
                if w.state == State::Booting {
                    w.state = State::Ready;
                    w.ready_at = Some(Instant::now());
                    self.ever_ready = true;
                    log::debug(&format!("Worker {pid} ready"));
                }
            }
            "M" | "S" | "U" => {
                let cause = match kind {
                    "M" => ExitCause::MaxRequests,
                    "S" => ExitCause::MaxRss,
                    _ => ExitCause::Unhealthy,
                };
                let w = &mut self.workers[i];
                if w.retiring.is_none() && w.state != State::Stopping {
                    w.retiring = Some(cause);
                    log::info(&format!("Replacing worker {pid} ({cause:?})"));
                }
            }
            "E" => {
                self.workers[i].boot_error = Some(rest.trim().to_string());
            }
            _ => log::debug(&format!("unknown message from worker {pid}: {line:?}")),
        }
    }

    /// Collects every child that exited, and decides what follows.
    fn reap(&mut self) {
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: status is a valid int for waitpid to fill.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(i) = self.workers.iter().position(|w| w.pid == pid) else {
                continue;
            };
            // Whatever it wrote before leaving is read first.
            self.read_worker(i);
            let w = self.workers.remove(i);
            super::census::set_workers(self.workers.len());
            self.on_exit(w, status);
        }
    }

    fn on_exit(&mut self, w: Worker, status: libc::c_int) {
        let pid = w.pid;
        let raw = if libc::WIFSIGNALED(status) {
            ExitCause::Signal(libc::WTERMSIG(status))
        } else {
            ExitCause::Exit(libc::WEXITSTATUS(status))
        };
        let boot_failed = w.boot_error.is_some()
            || (w.state == State::Booting && raw == ExitCause::Exit(EXIT_BOOT_FAILED));
        let cause = if boot_failed {
            ExitCause::BootFailed
        } else if let Some(c) = w.retiring {
            c
        } else if w.state == State::Stopping {
            ExitCause::Stopped
        } else {
            raw
        };
        self.binding.worker_exited(pid, w.age, cause);
        if let (Some(why), false) = (w.retiring, boot_failed) {
            // Its replacement is counted already (and may be serving).
            log::info(&format!(
                "Worker {pid} (replaced: {why:?}) {}",
                describe(raw)
            ));
            return;
        }
        if w.state == State::Stopping {
            match raw {
                ExitCause::Signal(libc::SIGKILL) => log::warning(&format!(
                    "Worker {pid} did not stop within --graceful-timeout and was killed"
                )),
                ExitCause::Exit(0) => log::info(&format!("Worker exited (pid: {pid})")),
                ExitCause::Exit(EXIT_BOOT_FAILED) if boot_failed => {
                    log::info(&format!("Worker exited (pid: {pid}) before it was ready"))
                }
                other => log::warning(&format!("Worker {pid} stopped: {}", describe(other))),
            }
            return;
        }
        if self.stopping.is_some() {
            return;
        }
        if boot_failed {
            let msg = w
                .boot_error
                .unwrap_or_else(|| "the worker could not start".to_string());
            if !self.ever_ready {
                // Nothing ever served: the error is the command's error,
                // printed once as the one-line CLI error, and the master
                // leaves (as gunicorn does at start).
                eprintln!("ferrowsgi: error: {msg}");
                self.exit_code = 1;
                self.stop(false);
                return;
            }
            if let Some(old) = self.reloading_from {
                if w.generation == self.generation {
                    // The new application does not load: keep the old
                    // workers, stop the new ones.
                    log::error(&format!("Reload failed, keeping the old workers: {msg}"));
                    self.abort_reload(old);
                    return;
                }
            }
            self.backoff(&format!("Worker {pid} failed to boot: {msg}"));
            return;
        }
        let quick = w.ready_at.map_or(true, |t| t.elapsed() < HEALTHY_AFTER);
        if quick {
            self.backoff(&format!("Worker {pid} {}", describe(raw)));
        } else {
            self.failures = 0;
            log::warning(&format!("Worker {pid} {}; replacing it", describe(raw)));
        }
    }

    fn abort_reload(&mut self, old: u64) {
        self.reloading_from = None;
        let current = self.generation;
        let new: Vec<usize> = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.generation == current && w.state != State::Stopping)
            .map(|(i, _)| i)
            .collect();
        for i in new {
            self.stop_worker(i, libc::SIGQUIT);
        }
        for w in &mut self.workers {
            if w.generation == old {
                w.generation = current;
            }
        }
        self.notify("READY=1\nSTATUS=Reload failed");
    }

    /// One failure more in a row: the next worker starts after a delay
    /// that doubles each time (so workers that fail at once never make a
    /// fork storm), and one line says so.
    fn backoff(&mut self, what: &str) {
        self.failures = self.failures.saturating_add(1);
        let delay = BACKOFF_START
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(BACKOFF_MAX);
        self.next_spawn = Instant::now() + delay;
        log::error(&format!(
            "{what}; starting a new one in {:.1} s",
            delay.as_secs_f64()
        ));
    }

    /// Kills workers past their graceful timeout.
    fn kill_late(&mut self) {
        let now = Instant::now();
        for w in &mut self.workers {
            if w.kill_at.is_some_and(|k| now >= k) {
                w.kill_at = None;
                signals::kill(w.pid, libc::SIGKILL);
            }
        }
    }

    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.send(state);
        }
    }
}

fn describe(cause: ExitCause) -> String {
    match cause {
        ExitCause::Exit(code) => format!("exited with status {code}"),
        ExitCause::Signal(sig) => format!("was killed by {}", signals::name(sig)),
        other => format!("left ({other:?})"),
    }
}
