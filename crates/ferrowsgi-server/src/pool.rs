//! The application threads: who runs the event loop, who runs requests,
//! and when they wake each other (leader/followers).
//!
//! With the GIL, one application thread at a time runs Python. A pool fed
//! by a separate I/O thread pays two thread switches per batch of requests
//! (the loop hands the batch over, the thread hands the connections back),
//! which the inline mode (`--threads 1`) does not. So there is no separate
//! I/O thread: the event loop is run by one of the application threads at a
//! time, the leader.
//!
//! - The leader polls, reads and parses, and queues the ready requests.
//!   Then it stops leading and runs them itself, with the GIL, one after
//!   the other, in arrival order ([`Pool::after_turn`]). A thread that
//!   finishes a job takes the next one itself, and when none is left it
//!   leads again ([`Pool::take`]). A request that computes is served with
//!   no wake-up and no thread switch at all, as inline.
//! - A job is taken only while its thread holds the GIL, so a taken job
//!   runs at once. A leader that finds another thread computing leaves the
//!   loop to it rather than take the CPU from it: requests that arrive
//!   meanwhile wait in their sockets and are read together when it is done.
//! - While a thread is busy, a watcher thread ([`Pool::watch`]) looks every
//!   [`STALL`] at the threads: one that has stayed in the same job since
//!   the last look and used less than half of that time on the CPU (its
//!   `pthread_getcpuclockid` clock) waits for something else (a database,
//!   a sleep, a lock). The pool is then *blocking*: every queued job gets a
//!   thread of its own, another thread takes the loop, a leader that queues
//!   jobs wakes threads for them and hands the loop on before it runs one,
//!   as a plain pool does, and a thread that finishes a job first runs a
//!   turn of the loop that does not wait, so that requests are served in
//!   the order they came. So a blocking application gets as many
//!   concurrent calls as there are threads, about 2 × [`STALL`] after its
//!   first call blocked. A look that finds no thread in a job (the busy
//!   one is between jobs, leading) and nothing else to do puts the next
//!   one off longer, up to [`STALL_MAX`]: quick requests under load would
//!   otherwise wake the watcher a thousand times a second for nothing. A
//!   call that blocks after such a look is seen up to [`STALL_MAX`] +
//!   [`STALL`] later.
//! - A long computation: when jobs wait and none was taken for [`LONG`],
//!   or nobody has read the sockets for that long and they have events
//!   waiting, another thread is woken anyway, and the interpreter's switch
//!   interval shares the GIL between the long request and the others, as
//!   between any two Python threads.
//! - Answers a thread leaves for its next turn of the loop and that wait a
//!   whole look are written by the watcher (in `server.rs`).
//!
//! Invariant, kept under the queue's lock: there is a leader, or a busy
//! thread (which leads when it runs out of jobs), or the pool stops. So
//! the sockets are never left unwatched with every thread asleep.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::sync::lock;
use crate::wait::Waiter;

/// How often the watcher looks at whether the busy threads are blocked.
pub(crate) const STALL: Duration = Duration::from_millis(1);

/// The longest the watcher waits between two looks while a thread is busy:
/// after looks that found no thread in a job, the wait doubles up to this.
pub(crate) const STALL_MAX: Duration = Duration::from_millis(4);

/// How long queued jobs (or the sockets) wait behind a thread that
/// computes before another thread is woken for them anyway: the
/// interpreter's switch interval then shares the GIL between the long
/// request and the others (each gets 5 ms turns), as it does between any
/// two Python threads, rather than everyone waiting for the whole long
/// request.
pub(crate) const LONG: Duration = Duration::from_millis(5);

/// The watcher sleeps until a thread is busy after this many looks (of
/// [`STALL`] to [`STALL_MAX`] each) found none.
const PARK_AFTER: u32 = 100;

/// How long an idle thread waits before it looks at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// The queue of jobs and the threads' states; see the module's comment.
#[derive(Debug)]
pub(crate) struct Pool<J> {
    queue: Mutex<Queue<J>>,
    /// Signalled for an idle thread when it has a job or the loop to take.
    ready: Condvar,
    /// Signalled for the watcher when a thread becomes busy.
    busy_again: Condvar,
    /// Set when the server stops: idle threads end.
    stopping: AtomicBool,
    /// The application threads, as the watcher sees them.
    threads: Mutex<Vec<Arc<Thread>>>,
}

/// An application thread as the watcher sees it: whether it runs a job,
/// and its CPU clock.
#[derive(Debug)]
pub(crate) struct Thread {
    /// Odd while the thread runs a job: one more at each start and end.
    /// Written by its thread only.
    jobs: AtomicU64,
    clock: Option<libc::clockid_t>,
}

impl Thread {
    /// The thread starts a job.
    pub(crate) fn begin(&self) {
        // Only this thread writes: no read-modify-write is needed.
        let n = self.jobs.load(Ordering::Relaxed);
        self.jobs.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// The thread is done with its job.
    pub(crate) fn end(&self) {
        self.begin();
    }

    /// The thread's CPU time so far, in nanoseconds.
    fn cpu_ns(&self) -> Option<u64> {
        let id = self.clock?;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write; the clock of a thread
        // that has ended makes the call fail, which is reported as None.
        if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
            return None;
        }
        Some((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
    }
}

#[derive(Debug)]
struct Queue<J> {
    jobs: VecDeque<J>,
    /// Threads serving jobs, or woken to.
    busy: usize,
    /// Threads waiting for a job.
    waiting: usize,
    /// Wake-ups for jobs sent to waiting threads and not yet taken.
    woken: usize,
    /// Jobs taken so far (the watcher's look for a queue that does not
    /// move).
    taken: u64,
    /// A thread runs the event loop.
    leader: bool,
    /// A waiting thread was woken to take the loop.
    lead_woken: bool,
    /// When the last leader left the loop.
    left_at: Instant,
    /// The busy threads were blocked at the watcher's last look.
    blocking: bool,
    /// The watcher sleeps until a thread is busy.
    watcher_idle: bool,
}

/// What a thread that holds the GIL does next ([`Pool::take`]).
#[derive(Debug)]
pub(crate) enum Take<J> {
    /// Run this job.
    Job(J),
    /// Run the event loop: the thread is the leader now.
    Lead,
    /// Wait ([`Pool::wait_for_job`]).
    Wait,
}

/// Why a waiting thread woke ([`Pool::wait_for_job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// A job is queued: take it.
    Job,
    /// The thread is the leader now: run the loop.
    Lead,
    /// The pool stops.
    Stop,
}

/// What a leader does after a turn of the loop ([`Pool::after_turn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterTurn {
    /// Go on running the loop.
    Lead,
    /// Jobs are queued: take the GIL and run them (the thread is counted
    /// busy, and is no longer the leader).
    Jobs,
    /// Another thread computes and will take the loop when it is done:
    /// wait (no longer the leader).
    Follow,
}

impl<J> Pool<J> {
    /// An empty pool, with no leader yet: the first thread to look leads.
    pub(crate) fn new() -> Self {
        Pool {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                busy: 0,
                waiting: 0,
                woken: 0,
                taken: 0,
                leader: false,
                lead_woken: false,
                left_at: Instant::now(),
                blocking: false,
                watcher_idle: false,
            }),
            ready: Condvar::new(),
            busy_again: Condvar::new(),
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Queues `job`, on the leader's thread. Nobody is woken here: the
    /// leader decides at the end of its turn ([`Pool::after_turn`]).
    pub(crate) fn push(&self, job: J) {
        lock(&self.queue).jobs.push_back(job);
    }

    /// Counts one more busy thread; the watcher, if it sleeps, is told.
    fn count_busy(&self, q: &mut Queue<J>) {
        q.busy += 1;
        if q.watcher_idle {
            q.watcher_idle = false;
            self.busy_again.notify_one();
        }
    }

    /// On a thread that holds the handler's context (the GIL): the next
    /// job, which then runs at once; or the loop, if nobody leads; or
    /// nothing. `busy` is the thread's own record of being counted busy;
    /// `looked`: the thread has just run the loop.
    pub(crate) fn take(&self, busy: &mut bool, looked: bool) -> Take<J> {
        let mut q = lock(&self.queue);
        if !looked
            && q.blocking
            && !q.leader
            && !q.jobs.is_empty()
            && !self.stopping.load(Ordering::SeqCst)
        {
            // Threads are blocked and nobody reads the sockets: one look
            // at them first (a turn that does not wait), so that requests
            // are queued, and served, in the order they came rather than
            // after everything queued at the last look.
            if *busy {
                q.busy -= 1;
                *busy = false;
            }
            q.leader = true;
            q.lead_woken = false;
            return Take::Lead;
        }
        if let Some(job) = q.jobs.pop_front() {
            q.taken += 1;
            if !*busy {
                self.count_busy(&mut q);
                *busy = true;
            }
            return Take::Job(job);
        }
        if *busy {
            q.busy -= 1;
            *busy = false;
        }
        if !q.leader && !self.stopping.load(Ordering::SeqCst) {
            q.leader = true;
            // A thread woken to lead finds the loop taken and waits again.
            q.lead_woken = false;
            return Take::Lead;
        }
        Take::Wait
    }

    /// Whether jobs are queued: the loop's turn then looks at the sockets
    /// without waiting.
    pub(crate) fn queued(&self) -> bool {
        !lock(&self.queue).jobs.is_empty()
    }

    /// Whether a thread that finishes a job now is the one that takes the
    /// loop next: nobody leads, and no call blocks.
    pub(crate) fn leads_next(&self) -> bool {
        let q = lock(&self.queue);
        !q.leader && !q.blocking
    }

    /// The leader's decision after a turn of the loop; see [`AfterTurn`].
    /// In a blocking pool, a leader that goes to run a job first wakes a
    /// thread for every other queued job and one to take the loop.
    pub(crate) fn after_turn(&self) -> AfterTurn {
        let mut q = lock(&self.queue);
        if self.stopping.load(Ordering::SeqCst) {
            return AfterTurn::Lead;
        }
        if q.busy > 0 && !q.blocking {
            // Its thread takes the queued jobs and the loop when done.
            self.leave(&mut q);
            return AfterTurn::Follow;
        }
        if q.jobs.is_empty() {
            return AfterTurn::Lead;
        }
        self.leave(&mut q);
        self.count_busy(&mut q);
        if q.blocking {
            let others = q.jobs.len() - 1;
            self.wake_for_jobs(&mut q, others);
            self.wake_leader(&mut q);
        }
        AfterTurn::Jobs
    }

    /// The leader leaves the loop.
    fn leave(&self, q: &mut Queue<J>) {
        q.leader = false;
        q.left_at = Instant::now();
    }

    /// Wakes up to `n` waiting threads, each counted busy for a queued job.
    fn wake_for_jobs(&self, q: &mut Queue<J>, n: usize) {
        let free = q
            .waiting
            .saturating_sub(q.woken + usize::from(q.lead_woken));
        let wanted = q.jobs.len().saturating_sub(q.woken).min(n);
        for _ in 0..free.min(wanted) {
            q.woken += 1;
            self.count_busy(q);
            self.ready.notify_one();
        }
    }

    /// Wakes a waiting thread to take the loop, if nobody leads or is
    /// woken to.
    fn wake_leader(&self, q: &mut Queue<J>) {
        if !q.leader && !q.lead_woken && q.waiting > q.woken {
            q.lead_woken = true;
            self.ready.notify_one();
        }
    }

    /// Waits, with the handler's context released, until there is a job,
    /// the loop to take, or the pool stops; see [`Woke`]. A thread woken
    /// for a job is counted busy (`busy` is set).
    pub(crate) fn wait_for_job<W: Waiter + ?Sized>(&self, waiter: &W, busy: &mut bool) -> Woke {
        let mut woke = Woke::Stop;
        // Lock order: the GIL may be held while taking the queue lock, never
        // the other way round, so the lock is taken inside the wait (GIL
        // released) and let go before the wait returns and retakes the GIL.
        waiter.wait(&mut || {
            let mut q = lock(&self.queue);
            let mut counted = false;
            loop {
                if !q.jobs.is_empty() {
                    if !counted {
                        self.count_busy(&mut q);
                    }
                    woke = Woke::Job;
                    return;
                }
                if counted {
                    // Woken for a job another thread took meanwhile.
                    q.busy -= 1;
                    counted = false;
                }
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if !q.leader && (q.lead_woken || q.busy == 0) {
                    q.lead_woken = false;
                    q.leader = true;
                    woke = Woke::Lead;
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
                    // A wake-up for a job, which counted a thread busy
                    // already: this one takes it, notified or not (a
                    // notification may reach a thread that timed out at
                    // the same moment and is not waiting any more, and is
                    // then taken by the next to look).
                    q.woken -= 1;
                    counted = true;
                }
            }
        });
        *busy = woke == Woke::Job;
        woke
    }

    /// The watcher thread's loop; see the module's comment. `each_look`
    /// runs at every look, with no lock held, and says whether it left
    /// something for the next look (which then comes after [`STALL`]);
    /// `events_waiting` says whether the loop has events it has not taken
    /// (without taking them). Returns when the pool stops.
    pub(crate) fn watch(
        &self,
        each_look: &mut dyn FnMut() -> bool,
        events_waiting: &dyn Fn() -> bool,
    ) {
        let mut looks = Vec::new();
        let mut moved: Option<(Instant, u64)> = None;
        let mut idle_looks = 0u32;
        let mut pause = STALL;
        let mut q = lock(&self.queue);
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            if q.busy == 0 {
                q.blocking = false;
                looks.clear();
                moved = None;
                idle_looks += 1;
                if idle_looks >= PARK_AFTER {
                    // Nothing to watch until a thread is busy again. Under
                    // load the pool is idle between most batches: the
                    // watcher sleeps only once it has been idle a while, so
                    // that the threads do not wake it for every batch.
                    q.watcher_idle = true;
                    q = wait(&self.busy_again, q, IDLE_WAIT);
                    continue;
                }
                drop(q);
                std::thread::sleep(pause);
                pause = next_pause(pause, each_look());
                q = lock(&self.queue);
                continue;
            }
            idle_looks = 0;
            drop(q);
            std::thread::sleep(pause);
            let held = each_look();
            let blocked = self.any_blocked(&mut looks);
            // A thread in a job is looked at again soon, to see whether it
            // moved; with none, nothing can be found blocked before a job
            // starts, and the next look can wait longer.
            let in_job = looks.iter().any(Option::is_some);
            let now = Instant::now();
            q = lock(&self.queue);
            pause = next_pause(pause, in_job || held || blocked || !q.jobs.is_empty());
            q.blocking = blocked;
            let taken = q.taken;
            let stuck = match moved {
                Some((at, n)) if n == taken => now.duration_since(at) >= LONG,
                _ => {
                    moved = Some((now, taken));
                    false
                }
            };
            if q.blocking {
                // Every queued job gets a thread at once, and someone
                // watches the sockets.
                let n = q.jobs.len();
                self.wake_for_jobs(&mut q, n);
                self.wake_leader(&mut q);
            } else {
                if stuck && !q.jobs.is_empty() {
                    // A long request computes while the queue waits.
                    self.wake_for_jobs(&mut q, 1);
                    moved = Some((now, taken));
                }
                if now.duration_since(q.left_at) >= LONG && !q.leader && events_waiting() {
                    // Nobody has read the sockets for a while, and they
                    // have something to read.
                    self.wake_leader(&mut q);
                }
            }
        }
    }

    /// Records the calling thread, for the watcher's look; the thread
    /// marks its jobs on the record it gets.
    pub(crate) fn register_thread(&self) -> Arc<Thread> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self() is the calling thread, alive for the call;
        // `id` is a valid place for the result.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        let thread = Arc::new(Thread {
            jobs: AtomicU64::new(0),
            clock: (rc == 0).then_some(id),
        });
        lock(&self.threads).push(Arc::clone(&thread));
        thread
    }

    /// Whether a thread has run one job since the last look and used
    /// less than half of that time on the CPU: it waits for something
    /// else (a database, a sleep, a lock). `looks` is the watcher's
    /// record of the last look, one entry per thread.
    fn any_blocked(&self, looks: &mut Vec<Option<(u64, u64, Instant)>>) -> bool {
        let threads = lock(&self.threads);
        looks.resize(threads.len(), None);
        let now = Instant::now();
        let mut blocked = false;
        for (t, look) in threads.iter().zip(looks.iter_mut()) {
            let jobs = t.jobs.load(Ordering::Relaxed);
            // Only a thread in a job has its clock read.
            let Some(cpu) = (jobs % 2 == 1).then(|| t.cpu_ns()).flatten() else {
                *look = None;
                continue;
            };
            if let Some((jobs0, cpu0, at)) = *look {
                if jobs0 == jobs {
                    let used = cpu.saturating_sub(cpu0);
                    blocked |= u128::from(used) * 2 < now.duration_since(at).as_nanos();
                }
            }
            *look = Some((jobs, cpu, now));
        }
        blocked
    }

    /// Stops the pool: threads end once the queue is empty.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _q = lock(&self.queue);
        self.ready.notify_all();
        self.busy_again.notify_all();
    }
}

/// The watcher's wait before its next look: [`STALL`] when the last look
/// found something to look at again `soon`, else twice the last wait, up
/// to [`STALL_MAX`].
fn next_pause(last: Duration, soon: bool) -> Duration {
    if soon {
        STALL
    } else {
        (last * 2).min(STALL_MAX)
    }
}

/// Waits on `cv` for at most `limit`, going on after a poisoned lock.
fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>, limit: Duration) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, limit)
        .map(|(g, _)| g)
        .unwrap_or_else(|e| e.into_inner().0)
}
