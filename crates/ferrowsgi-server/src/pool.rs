//! The application threads' queue, and when the event loop and the threads
//! wake each other.
//!
//! With the GIL, one application thread at a time runs Python. A pool that
//! wakes a thread per request and lets the event loop wake up for every
//! request that arrives pays two thread switches and a few futex calls per
//! request, and threads woken while another one holds the GIL queue up on
//! it (each waits the interpreter's switch interval, then forces a switch in
//! the middle of someone else's request). So:
//!
//! - A thread takes a job only while it holds the GIL ([`Pool::take`]), so
//!   a taken job runs at once and jobs run in arrival order. A thread that
//!   finishes a job takes the next one itself, with no wake-up.
//! - A job is pushed with a wake-up only when no thread is busy. While a
//!   thread is busy and using the CPU, waking another one could only make
//!   them queue on the GIL.
//! - While a thread is busy, the event loop does not wait for socket events
//!   (which would wake it, and switch the CPU away from Python, for each
//!   request that arrives) but for the pool to be idle ([`Pool::wait_idle`]):
//!   the requests that came meanwhile are then read, parsed and queued in
//!   one go, as the inline mode does between two calls.
//! - A long request: if jobs wait and none was taken for [`LONG`], another
//!   thread is woken anyway, and the interpreter's switch interval shares
//!   the GIL between the long request and the queued ones.
//! - Blocking applications: while a thread is busy, the loop looks every
//!   [`STALL`] at the threads' CPU clocks. Busy threads that used less than
//!   half of the time since the last look are waiting for something else than the
//!   CPU (a database, a sleep, a lock): another thread is woken for the
//!   queued work, and the loop goes back to waiting for sockets. So a
//!   blocking application gets as many concurrent calls as there are
//!   threads, at most about 2 × [`STALL`] after the queue started to wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;
use crate::wait::Waiter;

/// How often the loop looks at whether the busy threads are blocked.
pub(crate) const STALL: Duration = Duration::from_millis(1);

/// How long queued jobs wait behind a thread that computes, taking none,
/// before another thread is woken for them anyway: the interpreter's
/// switch interval then shares the GIL between the long request and the
/// queued ones (each gets 5 ms turns), as it does between any two Python
/// threads, rather than the queue waiting for the whole long request.
pub(crate) const LONG: Duration = Duration::from_millis(5);

/// How long an idle thread waits before it looks at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// The queue of jobs and the threads' states; see the module's comment.
#[derive(Debug)]
pub(crate) struct Pool<J> {
    queue: Mutex<Queue<J>>,
    /// Signalled for an idle thread when a job is queued.
    ready: Condvar,
    /// Signalled for the event loop when the last busy thread goes idle.
    idle: Condvar,
    /// Set when the server stops: idle threads end.
    stopping: AtomicBool,
    /// The application threads' CPU clocks.
    clocks: Mutex<Vec<libc::clockid_t>>,
}

#[derive(Debug)]
struct Queue<J> {
    jobs: VecDeque<J>,
    /// Threads serving jobs, or woken to.
    busy: usize,
    /// Threads waiting for a job.
    waiting: usize,
    /// Wake-ups sent to waiting threads and not yet taken.
    woken: usize,
    /// Jobs taken so far (the loop's look for a queue that does not move).
    taken: u64,
    /// The event loop waits in [`Pool::wait_idle`].
    loop_waits: bool,
}

impl<J> Pool<J> {
    /// An empty pool.
    pub(crate) fn new() -> Self {
        Pool {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                busy: 0,
                waiting: 0,
                woken: 0,
                taken: 0,
                loop_waits: false,
            }),
            ready: Condvar::new(),
            idle: Condvar::new(),
            stopping: AtomicBool::new(false),
            clocks: Mutex::new(Vec::new()),
        }
    }

    /// Queues `job`. A waiting thread is woken only when no thread is busy
    /// (a busy thread takes the job when it is done; see [`Watch`] for
    /// threads that block).
    pub(crate) fn push(&self, job: J) {
        let mut q = lock(&self.queue);
        q.jobs.push_back(job);
        let wake = q.busy == 0 && q.waiting > q.woken;
        if wake {
            q.woken += 1;
            // Counted busy from now on: the loop waits for it to finish
            // rather than waking more threads.
            q.busy += 1;
        }
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Takes the next job, on a thread that holds the handler's context
    /// (the GIL), so the job runs at once. `busy` is the thread's own
    /// record of being counted busy; a thread that finds nothing goes idle
    /// and, if it was the last busy one, wakes the loop waiting for that.
    pub(crate) fn take(&self, busy: &mut bool) -> Option<J> {
        let mut q = lock(&self.queue);
        match q.jobs.pop_front() {
            Some(job) => {
                q.taken += 1;
                if !*busy {
                    q.busy += 1;
                    *busy = true;
                }
                Some(job)
            }
            None => {
                if *busy {
                    q.busy -= 1;
                    *busy = false;
                }
                let wake_loop = q.busy == 0 && q.loop_waits;
                drop(q);
                if wake_loop {
                    self.idle.notify_one();
                }
                None
            }
        }
    }

    /// Waits, with the handler's context released, until there is a job or
    /// the pool stops. `true`: a job may be there, and the thread is
    /// counted busy (`busy` is set). `false`: the pool stops.
    pub(crate) fn wait_for_job<W: Waiter + ?Sized>(&self, waiter: &W, busy: &mut bool) -> bool {
        let mut got = false;
        // Lock order: the GIL may be held while taking the queue lock, never
        // the other way round, so the lock is taken inside the wait (GIL
        // released) and let go before the wait returns and retakes the GIL.
        waiter.wait(&mut || {
            let mut q = lock(&self.queue);
            let mut counted = false;
            loop {
                if !q.jobs.is_empty() {
                    if !counted {
                        q.busy += 1;
                    }
                    got = true;
                    return;
                }
                if counted {
                    // Woken for a job another thread took meanwhile.
                    q.busy -= 1;
                    counted = false;
                    if q.busy == 0 && q.loop_waits {
                        self.idle.notify_one();
                    }
                }
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                q.waiting += 1;
                q = self
                    .ready
                    .wait_timeout(q, IDLE_WAIT)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
                q.waiting -= 1;
                if q.woken > 0 {
                    // A wake-up from `push` or the loop's watch, which
                    // counted a thread busy already: this one takes it,
                    // notified or not (a notification may reach a thread
                    // that timed out at the same moment and is not waiting
                    // any more, and is then taken by the next to look).
                    q.woken -= 1;
                    counted = true;
                }
            }
        });
        *busy = got;
        got
    }

    /// The event loop waits, up to `limit`, until no thread is busy and no
    /// job is queued. `true` when that happened.
    pub(crate) fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut q = lock(&self.queue);
        while q.busy > 0 || !q.jobs.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q.loop_waits = true;
            q = self
                .idle
                .wait_timeout(q, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            q.loop_waits = false;
        }
        true
    }

    /// Records the calling thread's CPU clock, for the loop's stall check.
    pub(crate) fn register_thread(&self) {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self() is the calling thread, alive for the call;
        // `id` is a valid place for the result.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        if rc == 0 {
            lock(&self.clocks).push(id);
        }
    }

    /// CPU time used by the application threads so far, in nanoseconds.
    fn cpu_ns(&self) -> u64 {
        let clocks = lock(&self.clocks);
        let mut total = 0u64;
        for &id in clocks.iter() {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid timespec to write; a clock of a thread
            // that has ended makes the call fail, which is skipped.
            if unsafe { libc::clock_gettime(id, &mut ts) } == 0 {
                total = total
                    .saturating_add(ts.tv_sec as u64 * 1_000_000_000)
                    .saturating_add(ts.tv_nsec as u64);
            }
        }
        total
    }

    /// Wakes a waiting thread for a queued job, if both are there.
    fn wake_one(&self) {
        let mut q = lock(&self.queue);
        if !q.jobs.is_empty() && q.waiting > q.woken {
            q.woken += 1;
            q.busy += 1;
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Stops the pool: threads end once the queue is empty.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _q = lock(&self.queue);
        self.ready.notify_all();
    }
}

/// What the event loop does before its next wait (see [`Watch::step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for socket events, at most this long (`None`: no limit from the
    /// pool).
    Poll(Option<Duration>),
    /// A thread is busy and using the CPU: wait for the pool to be idle,
    /// then look at the sockets without sleeping.
    WaitIdle,
}

/// The event loop's view of the pool between two looks.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// When the current sample started, and the threads' CPU time then
    /// (`None`: not read yet).
    sample: Option<(Instant, Option<u64>)>,
    /// The last sample found the busy threads blocked.
    blocked: bool,
    /// When the count of taken jobs last changed, and that count.
    moved: Option<(Instant, u64)>,
}

impl Watch {
    /// Decides how the loop waits next, and wakes one more thread when the
    /// busy ones are blocked with jobs queued.
    pub(crate) fn step<J>(&mut self, pool: &Pool<J>) -> Step {
        let q = lock(&pool.queue);
        if q.busy == 0 && q.jobs.is_empty() {
            self.sample = None;
            self.moved = None;
            self.blocked = false;
            return Step::Poll(None);
        }
        let queued = !q.jobs.is_empty();
        let can_wake = q.waiting > q.woken;
        let taken = q.taken;
        if self.blocked && q.jobs.len() > q.woken && can_wake {
            // The busy threads were blocked at the last look: a new job gets
            // a thread of its own at once, as in a plain pool.
            drop(q);
            pool.wake_one();
            return self.wait_kind(None);
        }
        drop(q);
        if self.blocked && (!queued || !can_wake) {
            // Threads wait for something else than the CPU, and nothing is
            // queued or no thread is left to wake: sockets only, until a
            // job comes (and gets a thread) or a thread is free again.
            self.sample = None;
            return Step::Poll(None);
        }
        let now = Instant::now();
        match self.moved {
            Some((at, n)) if n == taken => {
                if queued && can_wake && now.duration_since(at) >= LONG {
                    // A long request computes while the queue waits.
                    pool.wake_one();
                    self.moved = Some((now, taken));
                }
            }
            _ => self.moved = Some((now, taken)),
        }
        let Some((since, cpu0)) = self.sample else {
            // The pool just became busy: its threads are taken to compute
            // until a look at their CPU clocks says otherwise. The clocks
            // are read only once the queue has waited (a thread serving a
            // quick batch costs no system call for this).
            self.sample = Some((now, None));
            return self.wait_kind(None);
        };
        let waited = now.duration_since(since);
        if waited < STALL {
            return self.wait_kind(Some(STALL - waited));
        }
        let cpu = pool.cpu_ns();
        self.sample = Some((now, Some(cpu)));
        let Some(cpu0) = cpu0 else {
            return self.wait_kind(None);
        };
        let used = cpu.saturating_sub(cpu0);
        self.blocked = u128::from(used) * 2 < waited.as_nanos();
        if self.blocked && queued && can_wake {
            pool.wake_one();
        }
        self.wait_kind(None)
    }

    /// While the busy threads are blocked the loop serves the sockets (and
    /// looks again within `left` or [`STALL`]); otherwise it waits for the
    /// pool.
    fn wait_kind(&self, left: Option<Duration>) -> Step {
        if self.blocked {
            Step::Poll(Some(left.unwrap_or(STALL)))
        } else {
            Step::WaitIdle
        }
    }
}
