//! Request metrics, kept in memory that the master and every worker share.
//!
//! The region is one `mmap(MAP_SHARED | MAP_ANONYMOUS)` mapping made by the
//! master before it forks ([`enable`]), so a worker and its master see the
//! same pages without a file or a system call. It holds one [`WorkerSlot`]
//! per worker: a new worker claims the first free slot ([`claim_slot`],
//! one compare-and-swap of the slot's pid), writes only that slot, with
//! relaxed atomic additions (no lock, no system call), and the master only
//! reads the slots, to serve the Prometheus text
//! ([`crate::metrics_export`]).
//!
//! Counters stay monotonic over restarts: when the master has reaped a
//! worker ([`worker_exited`]), it folds the dead worker's counters into a
//! retired total of its own and frees the slot for a later worker, which
//! starts from zero. The pid cannot be reused in between: it stays taken
//! until it is reaped, and the master frees the slot right after. Gauges
//! (requests in flight, connections open) of a dead worker are dropped,
//! since what they counted is gone with it.
//!
//! With metrics off (no `--metrics-bind`), no region exists and the request
//! path pays one load of a null pointer ([`current`]).

use crate::clock::nanos;
use std::io;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Request methods counted apart; any other method counts as `other`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// Status classes; a status outside 100–599 counts as `other`.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Upper bounds of the duration histograms' buckets, in nanoseconds (the
/// `+Inf` bucket follows them). From 50 µs, about what a hello request
/// takes here, to 60 s, past any sane request deadline; roughly 1-2.5-5
/// steps, as Prometheus's client libraries space theirs.
pub const BOUNDS_NS: [u64; 19] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// Buckets of a histogram: one per bound and `+Inf`.
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// Why the master replaced a worker (`ferrowsgi_worker_restarts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCause {
    /// The worker exited by itself (a status other than a recycle's).
    Exit,
    /// A signal killed the worker.
    Signal,
    /// The worker served `--max-requests`.
    MaxRequests,
    /// The worker grew past `--max-rss`.
    MaxRss,
    /// A request outlived its deadline and its grace.
    Deadline,
}

impl RestartCause {
    /// Every cause, in the order of [`RestartCause::label`]'s index.
    pub const ALL: [RestartCause; 5] = [
        RestartCause::Exit,
        RestartCause::Signal,
        RestartCause::MaxRequests,
        RestartCause::MaxRss,
        RestartCause::Deadline,
    ];

    /// The `cause` label's value.
    pub fn label(self) -> &'static str {
        match self {
            RestartCause::Exit => "exit",
            RestartCause::Signal => "signal",
            RestartCause::MaxRequests => "max-requests",
            RestartCause::MaxRss => "max-rss",
            RestartCause::Deadline => "deadline",
        }
    }

    fn index(self) -> usize {
        match self {
            RestartCause::Exit => 0,
            RestartCause::Signal => 1,
            RestartCause::MaxRequests => 2,
            RestartCause::MaxRss => 3,
            RestartCause::Deadline => 4,
        }
    }
}

/// The index of a method in [`METHODS`].
pub fn method_index(method: &[u8]) -> usize {
    match method {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"PATCH" => 5,
        b"OPTIONS" => 6,
        _ => 7,
    }
}

/// The index of a status's class in [`CLASSES`].
pub fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

/// The bucket a duration of `ns` nanoseconds falls in.
fn bucket_of(ns: u64) -> usize {
    BOUNDS_NS
        .iter()
        .position(|&b| ns <= b)
        .unwrap_or(BOUNDS_NS.len())
}

/// A duration histogram in shared memory: a count per bucket (not yet
/// cumulative; the export adds them up) and the sum of the durations.
#[derive(Debug)]
#[repr(C)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ns = nanos(d);
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.sum_ns.store(0, Relaxed);
    }
}

/// One worker's counters and gauges. Only that worker writes them (its
/// threads with relaxed atomic additions); the master reads them.
///
/// Every field is an atomic integer, for which all-zero bytes are a valid
/// zero: the fresh anonymous mapping is a region of zeroed slots. Aligned
/// to two cache lines so that two workers never write the same line.
#[derive(Debug)]
#[repr(C, align(128))]
pub struct WorkerSlot {
    /// The worker's process id; 0 while the slot is free.
    pid: AtomicU32,
    /// Requests answered, by method and status class.
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    /// Requests refused while being read (4xx and the like), by class.
    rejected: [AtomicU64; CLASSES.len()],
    /// From the request being ready to its response being complete.
    latency: Histogram,
    /// From the request being queued to an application thread taking it.
    queue: Histogram,
    /// Time spent waiting to take the GIL back after a blocking wait.
    gil_wait_ns: AtomicU64,
    /// GIL acquisitions after a blocking wait.
    gil_waits: AtomicU64,
    /// Request bytes received (heads and the bodies the server read).
    bytes_in: AtomicU64,
    /// Response bytes sent (heads and bodies).
    bytes_out: AtomicU64,
    /// Connections accepted.
    connections_total: AtomicU64,
    /// Requests that reached their deadline.
    deadlines: AtomicU64,
    /// Application calls (or resumptions of a paused response) running.
    in_flight: AtomicI64,
    /// Requests waiting in the queue for an application thread.
    queued: AtomicI64,
    /// Connections open.
    connections: AtomicI64,
}

impl WorkerSlot {
    /// Counts one answered request: its method, status, time since it was
    /// ready, and the bytes it took in and sent.
    pub fn on_request(
        &self,
        method: &[u8],
        status: u16,
        took: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.requests[method_index(method)][class_index(status)].fetch_add(1, Relaxed);
        self.latency.observe(took);
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
    }

    /// Counts a request refused while it was read, never given to the
    /// application (a malformed head, a body over the limit, a timeout).
    pub fn on_rejected(&self, status: u16) {
        self.rejected[class_index(status)].fetch_add(1, Relaxed);
    }

    /// Records how long a request waited before an application thread took
    /// it (zero when it was never queued).
    pub fn on_dequeued(&self, waited: Duration) {
        self.queue.observe(waited);
    }

    /// Records one wait to take the GIL back.
    pub fn on_gil_wait(&self, waited: Duration) {
        self.gil_wait_ns.fetch_add(nanos(waited), Relaxed);
        self.gil_waits.fetch_add(1, Relaxed);
    }

    /// Counts a request that reached its deadline.
    pub fn on_deadline(&self) {
        self.deadlines.fetch_add(1, Relaxed);
    }

    /// A connection was accepted (`true`) or closed (`false`).
    pub fn on_connection(&self, open: bool) {
        if open {
            self.connections_total.fetch_add(1, Relaxed);
            self.connections.fetch_add(1, Relaxed);
        } else {
            self.connections.fetch_sub(1, Relaxed);
        }
    }

    /// An application call begins (`true`) or ends (`false`).
    pub fn on_call(&self, begins: bool) {
        let d = if begins { 1 } else { -1 };
        self.in_flight.fetch_add(d, Relaxed);
    }

    /// A request entered (`true`) or left (`false`) the queue for the
    /// application threads.
    pub fn on_queue(&self, enters: bool) {
        let d = if enters { 1 } else { -1 };
        self.queued.fetch_add(d, Relaxed);
    }

    /// The worker's process id (0 for a free slot).
    pub fn pid(&self) -> u32 {
        self.pid.load(Relaxed)
    }

    /// Requests the worker answered since it took the slot.
    pub fn requests_served(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|c| c.load(Relaxed))
            .sum()
    }

    /// The gauges: requests in flight, requests queued, connections open.
    pub fn gauges(&self) -> (i64, i64, i64) {
        (
            self.in_flight.load(Relaxed),
            self.queued.load(Relaxed),
            self.connections.load(Relaxed),
        )
    }

    /// Zeroes every counter and frees the slot.
    fn reset(&self) {
        self.pid.store(0, Relaxed);
        for c in self.requests.iter().flatten().chain(&self.rejected) {
            c.store(0, Relaxed);
        }
        self.latency.reset();
        self.queue.reset();
        for c in [
            &self.gil_wait_ns,
            &self.gil_waits,
            &self.bytes_in,
            &self.bytes_out,
            &self.connections_total,
            &self.deadlines,
        ] {
            c.store(0, Relaxed);
        }
        for g in [&self.in_flight, &self.queued, &self.connections] {
            g.store(0, Relaxed);
        }
    }
}

/// The shared mapping: `slots` worker slots. Never unmapped, so a slot is
/// `&'static`.
#[derive(Debug)]
pub struct Region {
    slots: &'static [WorkerSlot],
}

impl Region {
    /// Maps a zeroed region of `capacity` slots shared with the children
    /// this process will fork. Pages are given memory only when touched,
    /// so a large capacity costs address space, not memory.
    fn map(capacity: usize) -> io::Result<Region> {
        let capacity = capacity.max(1);
        let len = capacity * std::mem::size_of::<WorkerSlot>();
        // SAFETY: an anonymous mapping with no address hint touches no
        // existing memory; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping is `len` bytes, page-aligned (so aligned for
        // `WorkerSlot`), zero-filled by the kernel (all-zero bytes are valid
        // atomics, hence valid slots), and never unmapped, so it lives for
        // the rest of the process ('static). Every access goes through
        // atomics, so sharing it with other processes is sound.
        let slots = unsafe { std::slice::from_raw_parts(ptr.cast::<WorkerSlot>(), capacity) };
        Ok(Region { slots })
    }

    /// Every slot.
    pub fn slots(&self) -> &'static [WorkerSlot] {
        self.slots
    }
}

/// The process's region, once [`enable`]d.
static REGION: OnceLock<Region> = OnceLock::new();
/// This worker's slot, once [`claim_slot`] took it; null otherwise.
static CURRENT: AtomicPtr<WorkerSlot> = AtomicPtr::new(std::ptr::null_mut());

/// Creates the shared region with room for `capacity` workers (the master
/// calls this once, before its first fork). A second call returns the
/// region already made.
pub fn enable(capacity: usize) -> io::Result<&'static Region> {
    if let Some(r) = REGION.get() {
        return Ok(r);
    }
    let region = Region::map(capacity)?;
    // A lost race leaves a mapping unused; only the master calls this, once.
    Ok(REGION.get_or_init(|| region))
}

/// The region, if metrics are on.
pub fn region() -> Option<&'static Region> {
    REGION.get()
}

/// Makes the first free slot this process's own (in a worker, once it is
/// forked; in a single process, before serving) and returns its index.
/// `None` when metrics are off, or every slot is taken (the worker then
/// runs without metrics).
pub fn claim_slot() -> Option<usize> {
    let pid = std::process::id();
    let slots = REGION.get()?.slots;
    let (index, slot) = slots
        .iter()
        .enumerate()
        .find(|(_, s)| s.pid.compare_exchange(0, pid, Relaxed, Relaxed).is_ok())?;
    CURRENT.store(std::ptr::from_ref(slot).cast_mut(), Relaxed);
    Some(index)
}

impl RestartCause {
    /// The restart cause of a worker that left for `cause`, or `None` when
    /// the master stopped it (shutdown, reload, one worker fewer). A worker
    /// that made itself unhealthy did so because a request outlived its
    /// deadline and grace.
    pub fn of_exit(cause: crate::process::ExitCause) -> Option<RestartCause> {
        use crate::process::ExitCause;
        match cause {
            ExitCause::Stopped => None,
            ExitCause::Exit(_) | ExitCause::BootFailed => Some(RestartCause::Exit),
            ExitCause::Signal(_) => Some(RestartCause::Signal),
            ExitCause::MaxRequests => Some(RestartCause::MaxRequests),
            ExitCause::MaxRss => Some(RestartCause::MaxRss),
            ExitCause::Unhealthy => Some(RestartCause::Deadline),
        }
    }
}

/// The master's own counts (retired workers' counters, restarts); only
/// the master's thread takes the lock, never on a request path.
static MASTER: Mutex<MasterCounts> = Mutex::new(MasterCounts::new());

/// In the master, once it reaped worker `pid`: keeps the worker's counters
/// in the retired totals, frees its slot, and counts a restart when `cause`
/// says it is being replaced (`None` at shutdown, on a reload or when the
/// worker count shrinks).
pub fn worker_exited(pid: u32, cause: Option<RestartCause>) {
    let mut m = MASTER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(slot) = region().and_then(|r| r.slots.iter().find(|s| pid != 0 && s.pid() == pid)) {
        m.retired.retire(slot);
    }
    if let Some(c) = cause {
        m.restarts[c.index()] += 1;
    }
}

/// A copy of the master's own counts.
pub fn master_counts() -> MasterCounts {
    MASTER.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// This process's slot, or `None` when metrics are off: the only check
/// the request path makes.
#[inline]
pub fn current() -> Option<&'static WorkerSlot> {
    let p = CURRENT.load(Relaxed);
    // SAFETY: CURRENT is null or points into the region, which is never
    // unmapped, so the reference is valid for the rest of the process.
    unsafe { p.cast_const().as_ref() }
}

/// Counts a request that reached its deadline, if metrics are on.
pub fn on_deadline() {
    if let Some(m) = current() {
        m.on_deadline();
    }
}

/// Counter values summed over slots: the retired workers' totals, and the
/// sums that the export adds the live workers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Requests by method and status class.
    pub requests: [[u64; CLASSES.len()]; METHODS.len()],
    /// Requests refused while being read, by status class.
    pub rejected: [u64; CLASSES.len()],
    /// Latency bucket counts (not cumulative).
    pub latency: [u64; BUCKETS],
    /// Latency sum in nanoseconds.
    pub latency_sum_ns: u64,
    /// Queue-time bucket counts (not cumulative).
    pub queue: [u64; BUCKETS],
    /// Queue-time sum in nanoseconds.
    pub queue_sum_ns: u64,
    /// GIL wait time in nanoseconds.
    pub gil_wait_ns: u64,
    /// GIL waits.
    pub gil_waits: u64,
    /// Request bytes.
    pub bytes_in: u64,
    /// Response bytes.
    pub bytes_out: u64,
    /// Connections accepted.
    pub connections_total: u64,
    /// Deadlines reached.
    pub deadlines: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals::new()
    }
}

impl Totals {
    /// All zero.
    pub const fn new() -> Totals {
        Totals {
            requests: [[0; CLASSES.len()]; METHODS.len()],
            rejected: [0; CLASSES.len()],
            latency: [0; BUCKETS],
            latency_sum_ns: 0,
            queue: [0; BUCKETS],
            queue_sum_ns: 0,
            gil_wait_ns: 0,
            gil_waits: 0,
            bytes_in: 0,
            bytes_out: 0,
            connections_total: 0,
            deadlines: 0,
        }
    }

    /// Adds a slot's counters (not its gauges).
    pub fn add(&mut self, s: &WorkerSlot) {
        for (row, srow) in self.requests.iter_mut().zip(&s.requests) {
            for (c, sc) in row.iter_mut().zip(srow) {
                *c += sc.load(Relaxed);
            }
        }
        for (c, sc) in self.rejected.iter_mut().zip(&s.rejected) {
            *c += sc.load(Relaxed);
        }
        for (c, sc) in self.latency.iter_mut().zip(&s.latency.buckets) {
            *c += sc.load(Relaxed);
        }
        self.latency_sum_ns += s.latency.sum_ns.load(Relaxed);
        for (c, sc) in self.queue.iter_mut().zip(&s.queue.buckets) {
            *c += sc.load(Relaxed);
        }
        self.queue_sum_ns += s.queue.sum_ns.load(Relaxed);
        self.gil_wait_ns += s.gil_wait_ns.load(Relaxed);
        self.gil_waits += s.gil_waits.load(Relaxed);
        self.bytes_in += s.bytes_in.load(Relaxed);
        self.bytes_out += s.bytes_out.load(Relaxed);
        self.connections_total += s.connections_total.load(Relaxed);
        self.deadlines += s.deadlines.load(Relaxed);
    }

    /// Folds the counters of a reaped worker's slot into these totals and
    /// frees the slot for its replacement, which starts from zero. The
    /// master calls this after `waitpid` returned the worker and before it
    /// forks another into the slot, so no process writes the slot
    /// meanwhile.
    pub fn retire(&mut self, slot: &WorkerSlot) {
        self.add(slot);
        slot.reset();
    }
}

/// What the master keeps beside the shared region: the retired workers'
/// counters and the restarts by cause.
#[derive(Debug, Clone, Default)]
pub struct MasterCounts {
    /// Counters of workers that are gone.
    pub retired: Totals,
    /// Worker restarts, by [`RestartCause`].
    pub restarts: [u64; RestartCause::ALL.len()],
}

impl MasterCounts {
    /// All zero.
    pub const fn new() -> MasterCounts {
        MasterCounts {
            retired: Totals::new(),
            restarts: [0; RestartCause::ALL.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_classes() {
        assert_eq!(METHODS[method_index(b"GET")], "GET");
        assert_eq!(METHODS[method_index(b"OPTIONS")], "OPTIONS");
        assert_eq!(METHODS[method_index(b"get")], "other");
        assert_eq!(METHODS[method_index(b"PROPFIND")], "other");
        assert_eq!(CLASSES[class_index(100)], "1xx");
        assert_eq!(CLASSES[class_index(204)], "2xx");
        assert_eq!(CLASSES[class_index(404)], "4xx");
        assert_eq!(CLASSES[class_index(599)], "5xx");
        assert_eq!(CLASSES[class_index(600)], "other");
        assert_eq!(CLASSES[class_index(0)], "other");
    }

    #[test]
    fn a_slot_fits_in_a_kib() {
        assert!(std::mem::size_of::<WorkerSlot>() <= 1024);
        assert_eq!(std::mem::align_of::<WorkerSlot>(), 128);
    }

    #[test]
    fn buckets_take_their_upper_bound() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(50_000), 0);
        assert_eq!(bucket_of(50_001), 1);
        assert_eq!(bucket_of(60_000_000_000), BOUNDS_NS.len() - 1);
        assert_eq!(bucket_of(u64::MAX), BOUNDS_NS.len());
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_forked_child_writes_where_the_parent_reads() {
        let region = enable(4).unwrap();
        // SAFETY: the child only does atomic operations on the shared
        // mapping and _exit(2)s; no lock or allocation is used after the
        // fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let Some(index) = claim_slot() else {
                // SAFETY: as below.
                unsafe { libc::_exit(1) };
            };
            let slot = &region.slots()[index];
            for _ in 0..37 {
                slot.on_request(b"GET", 200, Duration::from_micros(30), 10, 20);
            }
            slot.on_request(b"POST", 404, Duration::from_millis(3), 1, 2);
            // SAFETY: ends the child at once, running no destructor or
            // atexit handler of the test harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(status, 0);
        let pid = pid as u32;
        let slot = region.slots().iter().find(|s| s.pid() == pid).unwrap();
        assert_eq!(slot.requests_served(), 38);
        let before = master_counts();
        worker_exited(pid, Some(RestartCause::Signal));
        assert_eq!(slot.pid(), 0, "the slot is free again");
        assert_eq!(slot.requests_served(), 0);
        let after = master_counts();
        let mut r = after.retired.clone();
        for (row, b) in r.requests.iter_mut().zip(&before.retired.requests) {
            for (c, bc) in row.iter_mut().zip(b) {
                *c -= bc;
            }
        }
        r.latency[0] -= before.retired.latency[0];
        r.latency[bucket_of(3_000_000)] -= before.retired.latency[bucket_of(3_000_000)];
        r.bytes_in -= before.retired.bytes_in;
        r.bytes_out -= before.retired.bytes_out;
        assert_eq!(r.requests[0][1], 37);
        assert_eq!(r.requests[2][3], 1);
        assert_eq!(r.latency[0], 37);
        assert_eq!(r.latency[bucket_of(3_000_000)], 1);
        assert_eq!(r.bytes_in, 371);
        assert_eq!(r.bytes_out, 742);
        assert_eq!(after.restarts[1], before.restarts[1] + 1);
    }
}
