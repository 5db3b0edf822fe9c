//! Request deadlines that keep the worker (`--timeout`, `--timeout-grace`).
//!
//! A request's deadline runs from the moment it is handed to the
//! application. Each thread that runs the application (the loop's thread
//! in the inline mode, every application thread otherwise) owns one
//! [`Watch`]: a thread serves one request at a time, so one slot per
//! thread is the whole timer wheel. Arming it is a clock read and a few
//! atomic stores on the thread's own cache line; no system call, no lock,
//! no wake-up.
//!
//! A watcher thread that never touches Python scans the slots. It sleeps
//! until the earliest armed deadline, or one timeout after its scan when
//! none is armed (a request armed after a scan cannot be due before that).
//! At a deadline it claims the slot with one compare-and-swap, which the
//! request's own thread also needs before its response head goes out, so
//! exactly one side answers:
//!
//! - no head has gone out: the watcher writes `504 Gateway Timeout` with
//!   `Connection: close` on the socket and shuts its write side, whatever
//!   the application's thread is doing (in Python, in C, holding the GIL or
//!   not). From then on the exchange refuses the application's head, so
//!   nothing else of this request reaches the wire;
//! - the head has gone out: nothing can be answered any more; the request
//!   is only interrupted.
//!
//! Then a second thread, the reporter, asks the handler
//! ([`crate::Handler::deadline_passed`]) to interrupt the request: the
//! binding takes the GIL (which may take long, so the watcher never waits
//! for it), logs the thread's Python stack and raises an exception in it.
//! If the thread has not come back `--timeout-grace` after the deadline,
//! the watcher marks the worker unhealthy ([`crate::health`]).
//!
//! The socket stays valid while the watcher writes: the request's thread
//! owns the connection and cannot end the request (and so drop or reuse
//! the descriptor) while the slot is claimed (`FIRING`); it waits the few
//! microseconds of one non-blocking `send`.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ferrowsgi_proto::DateCache;

use crate::clock::{coarse_lag_ns, coarse_ns, fine_ns, nanos};
use crate::log;
use crate::sync::lock;

/// No request is running on the slot's thread.
const IDLE: u8 = 0;
/// A request runs and its head has not gone out: the watcher may answer.
const ARMED: u8 = 1;
/// The request's thread writes something before the head (`100
/// Continue`): the watcher waits for it to finish.
const BUSY: u8 = 2;
/// The request's head has gone out: at the deadline the request is only
/// interrupted.
const HEAD: u8 = 3;
/// The watcher has claimed the slot and is writing the 504.
const FIRING: u8 = 4;
/// The deadline passed and the watcher did what it does: the request's
/// thread has not come back yet.
const FIRED: u8 = 5;

/// The deadline of a request handed to the application now. It is taken on
/// the coarse clock, the cheaper read of the two (one per request), which
/// trails the fine clock the watcher fires by; two ticks more keep it from
/// passing before a whole timeout has, so it passes up to two ticks (8 ms
/// at `HZ=250`) after.
pub(crate) fn due_after(timeout: Duration) -> u64 {
    coarse_ns()
        .saturating_add(coarse_lag_ns())
        .saturating_add(nanos(timeout))
}

/// What the watcher needs to name the request: the head's method and
/// target, borrowed from the request's head while the slot is armed.
#[derive(Clone, Copy)]
struct Tag {
    method: *const u8,
    method_len: usize,
    target: *const u8,
    target_len: usize,
    /// The protocol's own 504 for a request that did not come over
    /// HTTP/1.x (see [`crate::codec::Gateway::timeout_answer`]), borrowed
    /// from the connection's codec while the slot is armed; null for HTTP/1.x.
    answer: *const u8,
    answer_len: usize,
}

/// The deadline slot of one application thread.
pub struct Watch {
    state: AtomicU8,
    /// When the current request is due (monotonic nanoseconds, from
    /// [`due_after`]; compared with [`fine_ns`]).
    due: AtomicU64,
    /// Counts the arms, so that a late report about an earlier one is
    /// recognised.
    gen: AtomicU64,
    /// The request's socket, or -1 when the watcher may not write on it
    /// (answers to earlier pipelined requests are still unsent).
    fd: AtomicI32,
    /// The thread's identifier as Python knows it (`threading.get_ident()`,
    /// which is `pthread_self()` on Linux).
    pub ident: u64,
    /// When the watcher claimed the slot.
    fired_at: AtomicU64,
    /// The watcher wrote the 504.
    answered: AtomicBool,
    /// The worker was marked unhealthy for this request already.
    retired: AtomicBool,
    /// The request already learnt of its deadline from a wait of the
    /// server's that ended there ([`Watch::deliver_here`]): nothing more is
    /// to be raised in its thread.
    delivered: AtomicBool,
    /// The watcher's sleep, to wake it for a deadline earlier than planned.
    nap: Arc<Nap>,
    /// Held by the handler while it checks that the request still runs and
    /// interrupts it, and by the request's thread while it ends a request
    /// whose deadline fired: so an interruption either lands before the
    /// end (and the thread cancels it) or sees the request over.
    interrupting: Mutex<()>,
    /// "METHOD target" of the request that fired, kept by the watcher for
    /// the unhealthy line (only the watcher uses it).
    fired_tag: Mutex<String>,
    /// Written by the slot's thread only while the slot is `IDLE`; read by
    /// the watcher only while it holds the slot (`FIRING`).
    tag: UnsafeCell<Tag>,
}

// SAFETY: `tag` is the only field that is not thread-safe by itself. Its
// pointers are written by the owning thread only while the state is IDLE
// (before the Release store that arms the slot), and read by the watcher
// only after its Acquire compare-and-swap to FIRING, during which the owner
// cannot disarm (it waits), so the head they point into stays alive and
// unmodified while they are read.
unsafe impl Send for Watch {}
// SAFETY: as above.
unsafe impl Sync for Watch {}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("ident", &self.ident)
            .finish()
    }
}

/// How the request's thread found its slot when it claimed its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The head is the application's to send.
    Ours,
    /// The deadline passed first; `answered` says whether the watcher
    /// wrote the 504 itself (otherwise the exchange must).
    TimedOut {
        /// The 504 is on the wire already.
        answered: bool,
    },
}

/// The watcher's sleep.
#[derive(Debug)]
struct Nap {
    /// When the watcher will look next ([`fine_ns`] scale).
    until: AtomicU64,
    /// Set to make the watcher look now.
    poked: Mutex<bool>,
    wake: Condvar,
}

impl Nap {
    fn poke(&self) {
        *lock(&self.poked) = true;
        self.wake.notify_one();
    }
}

impl Watch {
    fn new(nap: Arc<Nap>) -> Watch {
        Watch {
            nap,
            state: AtomicU8::new(IDLE),
            due: AtomicU64::new(0),
            gen: AtomicU64::new(0),
            fd: AtomicI32::new(-1),
            // SAFETY: pthread_self has no preconditions.
            ident: unsafe { libc::pthread_self() } as u64,
            fired_at: AtomicU64::new(0),
            answered: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            delivered: AtomicBool::new(false),
            interrupting: Mutex::new(()),
            fired_tag: Mutex::new(String::new()),
            tag: UnsafeCell::new(Tag {
                method: std::ptr::null(),
                method_len: 0,
                target: std::ptr::null(),
                target_len: 0,
                answer: std::ptr::null(),
                answer_len: 0,
            }),
        }
    }

    /// Arms the slot for a request due at `due`, on socket `fd` (-1 when
    /// the watcher may not write), whose head is already out when
    /// `committed`. `method` and `target` must stay alive and unchanged
    /// until [`Watch::disarm`]. Called by the slot's own thread only.
    pub(crate) fn arm(
        &self,
        due: u64,
        fd: RawFd,
        committed: bool,
        method: &[u8],
        target: &[u8],
        answer: Option<&[u8]>,
    ) {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), IDLE);
        // SAFETY: the slot is IDLE, so the watcher does not read the tag
        // (it reads it only while FIRING), and only this thread writes it.
        unsafe {
            *self.tag.get() = Tag {
                method: method.as_ptr(),
                method_len: method.len(),
                target: target.as_ptr(),
                target_len: target.len(),
                answer: answer.map_or(std::ptr::null(), <[u8]>::as_ptr),
                answer_len: answer.map_or(0, <[u8]>::len),
            };
        }
        self.fd.store(fd, Ordering::Relaxed);
        self.due.store(due, Ordering::Relaxed);
        self.answered.store(false, Ordering::Relaxed);
        self.retired.store(false, Ordering::Relaxed);
        self.delivered.store(false, Ordering::Relaxed);
        // Only this thread writes it: no read-modify-write instruction needed.
        self.gen.store(
            self.gen.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        // Publishes the stores above to the watcher's scan. SeqCst with
        // the load of `until` below and the watcher's store of it and scan:
        // either the watcher's next scan sees this request, or this thread
        // sees when the watcher will look next.
        let state = if committed { HEAD } else { ARMED };
        self.state.store(state, Ordering::SeqCst);
        // A new request is due a whole timeout from now, never before the
        // watcher looks next. A request that goes on after a pause keeps
        // its first deadline, which may be earlier: then wake the watcher
        // (a system call on that path only).
        if due < self.nap.until.load(Ordering::SeqCst) {
            self.nap.poke();
        }
    }

    /// Waits while the watcher writes a 504 and returns the settled state.
    fn settled(&self) -> u8 {
        loop {
            let s = self.state.load(Ordering::Acquire);
            if s != FIRING {
                return s;
            }
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }

    /// Ends the request's watch. `true` when its deadline had fired (the
    /// handler may have an interruption pending to cancel).
    pub(crate) fn disarm(&self) -> bool {
        loop {
            let s = self.settled();
            // Only a fired slot can be interrupted meanwhile: only then is
            // the lock worth taking (see `interrupting`).
            let _g = (s == FIRED).then(|| lock(&self.interrupting));
            if self
                .state
                .compare_exchange(s, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return s == FIRED;
            }
        }
    }

    /// Claims the response head for the application: from now on the
    /// deadline only interrupts the request.
    pub(crate) fn claim_head(&self) -> Claim {
        loop {
            match self.settled() {
                ARMED => {
                    if self
                        .state
                        .compare_exchange(ARMED, HEAD, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Claim::Ours;
                    }
                }
                FIRED => {
                    return Claim::TimedOut {
                        answered: self.answered.load(Ordering::Acquire),
                    }
                }
                // IDLE (not armed) or HEAD: nothing to claim.
                _ => return Claim::Ours,
            }
        }
    }

    /// Claims the socket for a write before the head (`100 Continue`);
    /// `false` when the deadline passed first. [`Watch::release_busy`]
    /// gives it back.
    pub(crate) fn claim_busy(&self) -> bool {
        loop {
            match self.settled() {
                ARMED => {
                    if self
                        .state
                        .compare_exchange(ARMED, BUSY, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return true;
                    }
                }
                FIRED => return false,
                _ => return true,
            }
        }
    }

    /// Ends a [`Watch::claim_busy`].
    pub(crate) fn release_busy(&self) {
        let _ = self
            .state
            .compare_exchange(BUSY, ARMED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Waits (up to `limit`) until the watcher has acted on a deadline that
    /// has passed, so that the request's thread, back early from a wait of
    /// its own, does not answer before the watcher's 504 (it would win the
    /// claim with its own error answer).
    pub(crate) fn await_fired(&self, limit: Duration) {
        let end = fine_ns().saturating_add(nanos(limit));
        while self.state.load(Ordering::Acquire) != FIRED && fine_ns() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether the request armed as `gen` still runs past its deadline
    /// and has not been told so yet.
    pub fn still_overdue(&self, gen: u64) -> bool {
        self.gen.load(Ordering::Acquire) == gen
            && self.state.load(Ordering::Acquire) == FIRED
            && !self.delivered.load(Ordering::Acquire)
    }

    /// Whether the deadline of the request in progress has passed and the
    /// watcher has acted on it.
    pub(crate) fn has_fired(&self) -> bool {
        self.state.load(Ordering::Acquire) == FIRED
    }

    /// Whether the request armed as `gen` learnt of its deadline from a
    /// wait of the server's ([`Watch::deliver_here`]).
    pub fn delivered(&self, gen: u64) -> bool {
        self.gen.load(Ordering::Acquire) == gen && self.delivered.load(Ordering::Acquire)
    }

    /// Records, from the request's own thread, that a wait of the server's
    /// (a body read, a write to a slow reader) ended at the deadline and
    /// fails with [`PastDeadline`]: that failure is how the request learns
    /// of its deadline, so the handler raises nothing more in the thread
    /// ([`Watch::interrupt_if_overdue`] then finds nothing to do). Taken
    /// under the same lock as an interruption, so one that is under way
    /// finishes first, and the thread's caller cancels it
    /// ([`PastDeadline`]'s contract).
    pub(crate) fn deliver_here(&self) {
        let _g = lock(&self.interrupting);
        self.delivered.store(true, Ordering::Release);
    }

    /// Runs `interrupt` if the request armed as `gen` still runs past its
    /// deadline, and returns whether it ran. The request cannot end
    /// meanwhile: its thread waits for this before it disarms, and then
    /// cancels what `interrupt` did ([`crate::Handler::deadline_cleared`]).
    /// `interrupt` must not wait for anything the request's thread may
    /// hold while it disarms (the GIL: take it before calling this).
    pub fn interrupt_if_overdue(&self, gen: u64, interrupt: impl FnOnce()) -> bool {
        let _g = lock(&self.interrupting);
        if !self.still_overdue(gen) {
            return false;
        }
        interrupt();
        true
    }
}

/// The error of a wait of the server's that ended at the request's deadline
/// (the payload of the [`std::io::Error`] that reads of the body and writes
/// of the response return then), so that the application side raises its
/// deadline exception from the call itself. The thread's handler must then
/// cancel any interruption already pending for the thread: the request has
/// been told, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastDeadline;

impl std::fmt::Display for PastDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out past the request's deadline (--timeout)")
    }
}

impl std::error::Error for PastDeadline {}

impl PastDeadline {
    /// Whether `e` is a wait that ended at the request's deadline.
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<PastDeadline>())
    }
}

/// A request whose deadline passed, as handed to
/// [`crate::Handler::deadline_passed`].
#[derive(Debug)]
pub struct Overrun {
    /// The slot of the request's thread.
    pub watch: Arc<Watch>,
    /// Which arming of the slot this is about ([`Watch::still_overdue`]).
    pub gen: u64,
    /// "METHOD target" of the request.
    pub tag: String,
    /// The deadline (`--timeout`).
    pub timeout: Duration,
    /// A 504 went to the client.
    pub answered: bool,
}

/// Work for the reporter thread.
#[derive(Debug)]
enum ReportJob {
    /// A line of the watcher's, logged here: with `--log-to-python` a line
    /// needs the GIL, which the watcher never waits for.
    Line(String),
    /// A request to interrupt.
    Overrun(Overrun),
}

/// The watcher and reporter threads of one server.
#[derive(Debug)]
pub(crate) struct Deadlines {
    shared: Arc<Shared>,
}

type Report = Box<dyn Fn(&Overrun) + Send + Sync>;

struct Shared {
    watches: Mutex<Vec<Arc<Watch>>>,
    timeout: Duration,
    grace: Duration,
    server_header: bool,
    stop: AtomicBool,
    nap: Arc<Nap>,
    reports: Mutex<VecDeque<ReportJob>>,
    reports_ready: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .finish()
    }
}

impl Deadlines {
    /// Starts the watcher and the reporter; `report` runs on the reporter
    /// for each overrun.
    pub(crate) fn start(
        timeout: Duration,
        grace: Duration,
        server_header: bool,
        report: Report,
    ) -> std::io::Result<Deadlines> {
        let shared = Arc::new(Shared {
            watches: Mutex::new(Vec::new()),
            timeout,
            grace,
            server_header,
            stop: AtomicBool::new(false),
            nap: Arc::new(Nap {
                until: AtomicU64::new(u64::MAX),
                poked: Mutex::new(false),
                wake: Condvar::new(),
            }),
            reports: Mutex::new(VecDeque::new()),
            reports_ready: Condvar::new(),
        });
        let w = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ferrowsgi-deadline".into())
            .spawn(move || watch_loop(&w))?;
        let r = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ferrowsgi-report".into())
            .spawn(move || report_loop(&r, &report))?;
        Ok(Deadlines { shared })
    }

    /// A slot for the calling thread, which will run requests.
    pub(crate) fn register(&self) -> Arc<Watch> {
        let w = Arc::new(Watch::new(Arc::clone(&self.shared.nap)));
        lock(&self.shared.watches).push(Arc::clone(&w));
        w
    }

    /// Threads whose request passed its deadline and has not come back.
    pub(crate) fn overdue(&self) -> usize {
        lock(&self.shared.watches)
            .iter()
            .filter(|w| w.state.load(Ordering::Acquire) == FIRED)
            .count()
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.nap.poke();
        let _r = lock(&self.shared.reports);
        self.shared.reports_ready.notify_all();
    }
}

/// The 504 the watcher writes.
fn gateway_timeout(date: &mut DateCache, timeout: Duration, server_header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let date = date.get().to_vec();
    let mut extra: Vec<(&[u8], &[u8])> = vec![(b"Date", &date)];
    if server_header {
        extra.push((b"Server", b"ferrowsgi"));
    }
    ferrowsgi_proto::write_simple_error_response(
        &mut out,
        504,
        "Gateway Timeout",
        &format!(
            "the application did not answer within {} s",
            timeout.as_secs_f64()
        ),
        &extra,
    );
    out
}

/// Writes all of `buf` that a non-blocking socket takes now.
fn send_all_now(fd: RawFd, buf: &[u8]) -> bool {
    let mut at = 0;
    while at < buf.len() {
        match crate::sys::send_nowait(fd, &buf[at..]) {
            Ok(0) => return false,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn watch_loop(s: &Shared) {
    let mut date = DateCache::new();
    let timeout_ns = nanos(s.timeout);
    let grace_ns = nanos(s.grace);
    // A claim met a write in progress (BUSY): look again soon.
    const RETRY_NS: u64 = 5_000_000;
    while !s.stop.load(Ordering::SeqCst) {
        let now = fine_ns();
        // A request armed after this scan is due a whole timeout later.
        // Its deadline is taken on the coarse clock (`due_after`), so the
        // plan is too: a plan on the fine clock could be later than such a
        // deadline, and every request armed meanwhile would wake the
        // watcher for nothing.
        let mut next = coarse_ns().saturating_add(timeout_ns);
        let watches: Vec<Arc<Watch>> = lock(&s.watches).clone();
        for w in &watches {
            let state = w.state.load(Ordering::SeqCst);
            match state {
                ARMED | HEAD | BUSY => {
                    let due = w.due.load(Ordering::Relaxed);
                    if due > now {
                        next = next.min(due);
                        continue;
                    }
                    if state == BUSY
                        || w.state
                            .compare_exchange(state, FIRING, Ordering::AcqRel, Ordering::Acquire)
                            .is_err()
                    {
                        next = next.min(now + RETRY_NS);
                        continue;
                    }
                    fire(s, w, state == ARMED, &mut date, now);
                    next = next.min(now.saturating_add(grace_ns));
                }
                FIRED => {
                    if w.retired.load(Ordering::Relaxed) {
                        continue;
                    }
                    let at = w.fired_at.load(Ordering::Relaxed).saturating_add(grace_ns);
                    if at > now {
                        next = next.min(at);
                        continue;
                    }
                    w.retired.store(true, Ordering::Relaxed);
                    crate::health::mark_unhealthy(&format!(
                        "the thread of {} still runs {} s after its deadline \
                         (--timeout-grace), so it is lost",
                        lock(&w.fired_tag),
                        s.grace.as_secs_f64()
                    ));
                }
                _ => {}
            }
        }
        // Published before the wait: an arm for an earlier deadline that
        // comes after this store sees it and pokes; one that came before
        // it was seen by the scan (or by the next one, which `poked` makes
        // happen at once).
        s.nap.until.store(next, Ordering::SeqCst);
        let mut poked = lock(&s.nap.poked);
        loop {
            if *poked || s.stop.load(Ordering::SeqCst) {
                break;
            }
            let wait = Duration::from_nanos(next.saturating_sub(fine_ns()));
            if wait.is_zero() {
                break;
            }
            poked = s
                .nap
                .wake
                .wait_timeout(poked, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *poked = false;
        // Until the next sleep is planned, any arm may be due before it.
        s.nap.until.store(u64::MAX, Ordering::SeqCst);
    }
}

/// At the deadline of the request on `w`, which the watcher has claimed
/// (FIRING): answers 504 if `before_head`, then settles the slot as FIRED
/// and queues the interruption.
fn fire(s: &Shared, w: &Arc<Watch>, before_head: bool, date: &mut DateCache, now: u64) {
    // `ferrowsgi_deadlines_total`, when metrics are on.
    crate::metrics::on_deadline();
    // SAFETY: the slot is FIRING, claimed by this thread: its owner cannot
    // disarm, so the head the tag points into is alive and unchanged (see
    // `Watch::arm`).
    let t = unsafe { *w.tag.get() };
    // SAFETY: as for `t`: what the tag points into stays alive and
    // unchanged while the slot is FIRING.
    let tag = unsafe {
        let part = |p: *const u8, n: usize| {
            if p.is_null() {
                String::new()
            } else {
                String::from_utf8_lossy(std::slice::from_raw_parts(p, n)).into_owned()
            }
        };
        format!(
            "{} {}",
            part(t.method, t.method_len),
            part(t.target, t.target_len)
        )
    };
    lock(&w.fired_tag).clone_from(&tag);
    let fd = w.fd.load(Ordering::Relaxed);
    let mut answered = false;
    if before_head && fd >= 0 {
        answered = if t.answer.is_null() {
            let resp = gateway_timeout(date, s.timeout, s.server_header);
            send_all_now(fd, &resp)
        } else {
            // SAFETY: see `t` above; the answer lives in the connection's
            // codec, which the request's thread cannot drop or change while
            // it runs the request.
            send_all_now(fd, unsafe {
                std::slice::from_raw_parts(t.answer, t.answer_len)
            })
        };
        // The FIN follows the answer at once. The descriptor stays open
        // (its owner closes it), so nothing can reuse it meanwhile; any
        // later write of the request's thread fails with EPIPE.
        // SAFETY: `fd` is the request's open socket (see above).
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    }
    w.answered.store(answered, Ordering::Relaxed);
    w.fired_at.store(now, Ordering::Relaxed);
    let gen = w.gen.load(Ordering::Relaxed);
    // Publishes `answered` and `fired_at` with the state.
    w.state.store(FIRED, Ordering::Release);
    let what = if answered {
        "answered 504 Gateway Timeout"
    } else if before_head {
        "504 Gateway Timeout left to its thread (earlier answers unsent)"
    } else {
        "response already started; it will be cut off"
    };
    let line = format!(
        "Request deadline passed: {tag} after {} s (--timeout): {what}; interrupting its thread",
        s.timeout.as_secs_f64()
    );
    let mut q = lock(&s.reports);
    q.push_back(ReportJob::Line(line));
    q.push_back(ReportJob::Overrun(Overrun {
        watch: Arc::clone(w),
        gen,
        tag,
        timeout: s.timeout,
        answered,
    }));
    s.reports_ready.notify_one();
}

fn report_loop(s: &Shared, report: &Report) {
    loop {
        let next = {
            let mut q = lock(&s.reports);
            loop {
                if let Some(o) = q.pop_front() {
                    break Some(o);
                }
                if s.stop.load(Ordering::SeqCst) {
                    break None;
                }
                q = s.reports_ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let overrun = match next {
            None => return,
            Some(ReportJob::Line(line)) => {
                log::error(&line);
                continue;
            }
            Some(ReportJob::Overrun(o)) => o,
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| report(&overrun)));
        if r.is_err() {
            log::error("internal error while interrupting an overdue request (panic)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::time::Instant;

    /// Deadlines of `timeout` whose reports arrive on the returned channel.
    fn watcher(timeout: Duration) -> (Deadlines, mpsc::Receiver<(String, bool)>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let d = Deadlines::start(
            timeout,
            Duration::from_secs(3600),
            true,
            Box::new(move |o: &Overrun| {
                let _ = lock(&tx).send((o.tag.clone(), o.answered));
            }),
        )
        .unwrap();
        (d, rx)
    }

    fn pair() -> (UnixStream, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (ours, theirs)
    }

    #[test]
    fn the_watcher_answers_504_at_the_deadline_and_the_head_is_refused() {
        let (d, reports) = watcher(Duration::from_millis(100));
        let w = d.register();
        let (ours, mut theirs) = pair();
        let head = b"GET /slow HTTP/1.1".to_vec();
        let start = Instant::now();
        w.arm(
            due_after(Duration::from_millis(100)),
            ours.as_raw_fd(),
            false,
            &head[..3],
            &head[4..9],
            None,
        );
        // The watcher writes the answer and the FIN while this thread "runs".
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        let waited = start.elapsed();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.contains("\r\nServer: ferrowsgi\r\n"), "{text}");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert_eq!(
            w.claim_head(),
            Claim::TimedOut { answered: true },
            "the application's head comes too late"
        );
        let (tag, answered) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(tag, "GET /slow");
        assert!(answered);
        assert!(w.disarm(), "the disarm reports the fired deadline");
        assert_eq!(w.state.load(Ordering::SeqCst), IDLE);
        assert_eq!(d.overdue(), 0);
    }

    #[test]
    fn a_request_done_in_time_is_left_alone() {
        let (d, reports) = watcher(Duration::from_millis(50));
        let w = d.register();
        let (ours, theirs) = pair();
        for _ in 0..100 {
            w.arm(
                due_after(Duration::from_millis(50)),
                ours.as_raw_fd(),
                false,
                b"GET",
                b"/",
                None,
            );
            assert_eq!(w.claim_head(), Claim::Ours);
            assert!(!w.disarm());
        }
        std::thread::sleep(Duration::from_millis(150));
        assert!(reports.try_recv().is_err(), "nothing was overdue");
        theirs.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let read = (&theirs).read(&mut buf);
        assert!(read.is_err(), "nothing was written: {read:?}");
    }

    #[test]
    fn after_the_head_the_deadline_only_interrupts() {
        let (d, reports) = watcher(Duration::from_millis(50));
        let w = d.register();
        let (ours, theirs) = pair();
        w.arm(
            due_after(Duration::from_millis(50)),
            ours.as_raw_fd(),
            false,
            b"GET",
            b"/stream",
            None,
        );
        assert_eq!(w.claim_head(), Claim::Ours);
        let (tag, answered) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(tag, "GET /stream");
        assert!(!answered);
        assert_eq!(d.overdue(), 1);
        assert!(w.disarm());
        theirs.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!((&theirs).read(&mut buf).is_err(), "nothing was written");
    }

    #[test]
    fn a_resumed_request_with_an_earlier_deadline_wakes_the_watcher() {
        // The watcher plans to look a whole timeout (an hour) after its scan;
        // a request that keeps an earlier deadline is still answered on time.
        let (d, reports) = watcher(Duration::from_secs(3600));
        let w = d.register();
        std::thread::sleep(Duration::from_millis(50));
        let (ours, _theirs) = pair();
        w.arm(
            due_after(Duration::from_millis(100)),
            ours.as_raw_fd(),
            true,
            b"GET",
            b"/resumed",
            None,
        );
        let (tag, _) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(tag, "GET /resumed");
        assert!(w.disarm());
    }
}
