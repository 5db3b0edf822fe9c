//! The event loop and the application threads.
//!
//! An edge-triggered epoll loop (through `mio`) accepts, reads, parses
//! heads, buffers small bodies and writes buffered output, so slow clients
//! cost no application thread. A ready request runs:
//!
//! - with one thread (`threads = 1`), on the loop's thread itself, inside
//!   [`Handler::enter`] (no hand-off at all, and what a gunicorn sync
//!   worker offers in concurrency);
//! - with more, on the application threads, which take turns at running
//!   the loop (leader/followers): the thread that runs it queues the ready
//!   requests, then serves them itself, each connection with every request
//!   already pipelined behind it, and runs the loop again; another thread
//!   is woken only when a call blocks or computes for long. Who leads and
//!   who is woken when is decided in `pool.rs`.

use std::io;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrowsgi_proto::DateCache;
use mio::{Poll, Token, Waker};
use slab::Slab;

use crate::body_buf::BodyBuf;
use crate::clock::Stamp;
use crate::codec::Codec;
use crate::config::Config;
use crate::conn::{Conn, ConnState, Next, BODY_READ_CHUNK, READ_CHUNK};
use crate::deadline::{Deadlines, Watch};
use crate::exchange::Exchange;
use crate::handler::Handler;
use crate::health;
use crate::listen::{Listener, Stream};
use crate::peer::PeerInfo;
use crate::pool;
use crate::state::{Parked, Pending};
use crate::stop::StopHandle;
use crate::sync::lock;
use crate::sys::{self, Want};
use crate::syscall;
use crate::{health_path, log, metrics};

/// Token of the cross-thread waker.
const WAKER: Token = Token(usize::MAX - 1);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 16;
/// How often idle and stalled connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How long a closing connection keeps reading and discarding what the
/// client still sends, so the response is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Answers to pipelined requests wait in the output buffer, to go out in
/// one write, until the batch is served or this many bytes wait.
const BATCH_OUTPUT: usize = 64 * 1024;
/// At most this many connections' answers wait for the end of a wake-up.
const DEFER_MAX_CONNS: usize = 32;
/// An answer waits at most about this long for the end of a wake-up.
const DEFER_MAX_WAIT: Duration = Duration::from_micros(1000);
/// Buffers freed by idle connections in one sweep worth giving the memory
/// back to the system for (malloc_trim).
const RELEASED_TRIM: usize = 4 * 1024 * 1024;
/// A burst of at least this many connections is worth giving memory back
/// after.
const TRIM_AFTER_PEAK: usize = 64;
/// Sweeps in a row without a body buffered after which the process's spare
/// body block is given back (one to two seconds: see [`BodyBuf`]).
const SPARE_IDLE_SWEEPS: u32 = 2;
/// How long a stopping server waits for requests in progress, unless
/// told otherwise ([`StopHandle::set_grace`]).
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Connections a worker sharing its listeners with other workers accepts
/// per wake-up: the others, woken one at a time (`EPOLLEXCLUSIVE`), take
/// the rest, so that a burst of connections does not all land in the
/// worker that woke first.
const SHARED_ACCEPT_BATCH: usize = 4;
/// A server stopping to be replaced ([`StopHandle::stop_replaced`]) closes
/// a keep-alive connection once it has been idle this long, rather than at
/// once: a busy client's next request is usually already on its way, and
/// is answered (with `Connection: close`) instead of finding the
/// connection closed under it.
const REPLACED_IDLE: Duration = Duration::from_secs(1);
/// After this many connections accepted from a shared listener, a worker
/// registers it again, which puts it last in the listener's queue of
/// exclusive waiters: the kernel wakes the first idle waiter in that queue,
/// so without this the same worker would take every connection whenever
/// it is idle (docs/ARCHITECTURE.md, "Processes").
const SHARED_ROTATE_EVERY: usize = 4;
/// [`SHARED_ROTATE_EVERY`] for a listener whose protocol closes every
/// connection after one answer (SCGI, uwsgi). Such a connection leaves its
/// worker at once, so where it lands matters only while it is served, and a
/// worker that is busy then is not woken for the next (the kernel wakes an
/// idle waiter): the rotation only spreads connections that come one at a
/// time to idle workers, which runs of 64 do as well as runs of 4, for a
/// sixteenth of its system calls (two per rotation).
const SHARED_ROTATE_EVERY_ONE_REQUEST: usize = 64;
/// A shared listener reported ready again within this time of an accept
/// pass that stopped after one connection without looking for more: it
/// had more waiting, so the next passes look again (see
/// [`EventLoop::accept`]).
const ACCEPT_AGAIN_QUICK: Duration = Duration::from_micros(20);

/// Where a connection is.
#[derive(Debug)]
enum Slot {
    /// Owned by the loop.
    Here(Box<Conn>),
    /// Being served by an application thread; `readable` records a readiness
    /// edge that arrived meanwhile.
    Away {
        /// A read event arrived while away.
        readable: bool,
        /// That event said the client shut its side.
        read_closed: bool,
        /// A write event arrived while away.
        writable: bool,
        /// Set (by the loop) when any of the above is recorded, so that the
        /// application thread that gives the connection back knows the loop
        /// must be woken for it (see [`give_back`]). `None` in a slot that
        /// only holds the place while its connection moves.
        seen: Option<Arc<AtomicBool>>,
    },
    /// Output flushed and write side shut; reading and discarding until the
    /// client closes or the linger time passes.
    Lingering(Box<Conn>),
}

impl Slot {
    /// The slot of `conn`, about to be handed to an application thread,
    /// with no event seen yet.
    fn away(conn: &mut Conn) -> Slot {
        let seen = conn
            .away_seen
            .get_or_insert_with(|| Arc::new(AtomicBool::new(false)));
        // Published to the application thread by the queue's lock.
        seen.store(false, Ordering::Relaxed);
        Slot::Away {
            readable: false,
            read_closed: false,
            writable: false,
            seen: Some(Arc::clone(seen)),
        }
    }

    /// A slot holding the place of a connection that moves to another state.
    fn moving() -> Slot {
        Slot::Away {
            readable: false,
            read_closed: false,
            writable: false,
            seen: None,
        }
    }
}

/// Work for an application thread.
#[derive(Debug)]
// A request is queued by value: boxing it would allocate once per request.
#[allow(clippy::large_enum_variant)]
enum Job {
    /// Serve a ready request (and whatever is pipelined behind it).
    Serve {
        key: usize,
        conn: Box<Conn>,
        req: Pending,
        /// When it was queued, if metrics are on (for the queue time).
        queued_at: Option<Instant>,
    },
    /// Go on with a paused response whose output has drained.
    Resume { key: usize, conn: Box<Conn> },
    /// End a paused response whose connection is gone: the handler's state
    /// is dropped where the handler's context is held.
    Discard(Box<Parked>),
}

/// State shared between the loop and the application threads.
#[derive(Debug)]
struct Pool {
    /// The jobs, and when the loop and the threads wake each other.
    jobs: pool::Pool<Job>,
    returned: Mutex<Returned>,
    /// The event loop is in (or about to enter) epoll_wait and needs a
    /// wake-up to see returned connections.
    loop_sleeping: AtomicBool,
    /// The server's stop flag ([`StopHandle`]): while stopping, every
    /// connection given back wakes the loop, which closes it.
    stop: Arc<AtomicBool>,
}

/// What the application threads hand back to the event loop.
#[derive(Debug, Default)]
struct Returned {
    /// Connections the loop keeps on with, by key.
    conns: Vec<(usize, Box<Conn>)>,
    /// Keys of connections their thread answered and closed itself (see
    /// [`give_back`]): the loop only frees their slots.
    closed: Vec<usize>,
}

impl Pool {
    /// Queues `job` (see [`pool::Pool::push`]).
    fn push(&self, job: Job) {
        self.jobs.push(job);
    }
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server<H: Handler> {
    cfg: Arc<Config>,
    handler: Arc<H>,
    listeners: Vec<Listener>,
    poll: Poll,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    grace_ms: Arc<AtomicU64>,
    pause: Arc<AtomicBool>,
    replaced: Arc<AtomicBool>,
    /// The listeners are shared with other processes' loops (workers).
    shared: bool,
}

impl<H: Handler> Server<H> {
    /// Binds every address of `cfg`. The error names the address that
    /// failed.
    pub fn bind(cfg: Config, handler: H) -> Result<Server<H>, (String, io::Error)> {
        let mut listeners = Vec::new();
        for bind in &cfg.binds {
            let mut l = Listener::bind(&bind.addr, cfg.backlog, cfg.loopback_congestion.as_deref())
                .map_err(|e| (bind.to_string(), e))?
                .with_scheme(bind.scheme);
            l.set_proxy_protocol(bind.proxy || cfg.proxy_protocol);
            listeners.push(l);
        }
        Server::from_listeners(cfg, handler, listeners, false)
    }

    /// A server over listeners bound already (by a master, or inherited).
    /// `shared`: other processes wait on the same listening sockets (the
    /// workers of one master). Each is then registered with
    /// `EPOLLEXCLUSIVE`, so that a new connection wakes one waiting worker
    /// rather than all of them, and level-triggered, so that a worker may
    /// accept a few connections per wake-up and leave the rest to the
    /// others (docs/ARCHITECTURE.md, "Processes"). `cfg.binds` is not
    /// used.
    pub fn from_listeners(
        cfg: Config,
        handler: H,
        mut listeners: Vec<Listener>,
        shared: bool,
    ) -> Result<Server<H>, (String, io::Error)> {
        let poll = Poll::new().map_err(|e| ("epoll".to_string(), e))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(|e| ("waker".to_string(), e))?;
        for (i, l) in listeners.iter_mut().enumerate() {
            let token = Token(LISTENER_BASE - i);
            let done = if shared {
                register_exclusive(&poll, l.raw_fd(), token)
            } else {
                l.register(poll.registry(), token)
            };
            done.map_err(|e| (l.url(), e))?;
        }
        Ok(Server {
            cfg: Arc::new(cfg),
            handler: Arc::new(handler),
            listeners,
            poll,
            waker: Arc::new(waker),
            stop: Arc::new(AtomicBool::new(false)),
            grace_ms: Arc::new(AtomicU64::new(STOP_GRACE.as_millis() as u64)),
            pause: Arc::new(AtomicBool::new(false)),
            replaced: Arc::new(AtomicBool::new(false)),
            shared,
        })
    }

    /// The bound addresses as URLs (`http://127.0.0.1:8000`, `unix:/path`).
    pub fn urls(&self) -> Vec<String> {
        self.listeners.iter().map(Listener::url).collect()
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: Arc::clone(&self.stop),
            waker: Arc::clone(&self.waker),
            grace_ms: Arc::clone(&self.grace_ms),
            pause: Arc::clone(&self.pause),
            replaced: Arc::clone(&self.replaced),
        }
    }

    /// Runs until a [`StopHandle`] stops it.
    pub fn run(self) -> io::Result<()> {
        sys::tune_allocator();
        let inline = self.cfg.threads <= 1;
        health::running(self.stop_handle(), inline, self.cfg.exit_when_unhealthy);
        let exit = self.cfg.exit_when_unhealthy;
        let result = self.run_threads();
        health::stopped();
        if health::is_unhealthy() {
            if exit {
                health::exit_now();
            }
            return Err(io::Error::other(
                "stopped: a request's thread did not come back after its deadline",
            ));
        }
        result
    }

    /// Starts the deadline watcher when `--timeout` asks for one.
    fn deadlines(&self) -> io::Result<Option<Arc<Deadlines>>> {
        if self.cfg.timeout.is_zero() {
            return Ok(None);
        }
        let h = Arc::clone(&self.handler);
        let d = Deadlines::start(
            self.cfg.timeout,
            self.cfg.timeout_grace,
            self.cfg.server_header,
            Box::new(move |o| h.deadline_passed(o)),
        )?;
        Ok(Some(Arc::new(d)))
    }

    fn run_threads(self) -> io::Result<()> {
        let handler = Arc::clone(&self.handler);
        let deadlines = self.deadlines()?;
        if self.cfg.threads <= 1 {
            handler.enter(move || EventLoop::new(self, None, deadlines).run())
        } else {
            let pool = Arc::new(Pool {
                jobs: pool::Pool::new(),
                returned: Mutex::new(Returned::default()),
                loop_sleeping: AtomicBool::new(false),
                stop: Arc::clone(&self.stop),
            });
            let threads = self.cfg.threads;
            let epoll_fd = self.poll.as_raw_fd();
            let handler = Arc::clone(&self.handler);
            let cfg = Arc::clone(&self.cfg);
            let waker = Arc::clone(&self.waker);
            let baton = Arc::new(Baton {
                event_loop: Mutex::new(Some(EventLoop::new(
                    self,
                    Some(Arc::clone(&pool)),
                    deadlines.clone(),
                ))),
                result: Mutex::new(None),
                finished: Condvar::new(),
            });
            let watcher_pool = Arc::clone(&pool);
            let watcher = std::thread::Builder::new()
                .name("ferrowsgi-pool".into())
                .spawn(move || {
                    let mut waited = false;
                    // The epoll descriptor is readable while it has events
                    // to report: a look with poll() takes none of them.
                    let waiting = || sys::wait_fd(epoll_fd, Want::Read, Duration::ZERO);
                    watcher_pool.jobs.watch(
                        &mut || {
                            waited = write_held(&watcher_pool, waited);
                            waited
                        },
                        &|| waiting().unwrap_or(true),
                    )
                })?;
            let mut workers: Vec<JoinHandle<()>> = Vec::new();
            for i in 0..threads {
                let ctx = Worker {
                    pool: Arc::clone(&pool),
                    baton: Arc::clone(&baton),
                    handler: Arc::clone(&handler),
                    cfg: Arc::clone(&cfg),
                    waker: Arc::clone(&waker),
                    deadlines: deadlines.clone(),
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("ferrowsgi-app-{i}"))
                    .spawn(move || ctx.run());
                match spawned {
                    Ok(h) => workers.push(h),
                    Err(e) => {
                        // The loop was never run: nothing of it is in use.
                        pool.jobs.stop();
                        lock(&baton.event_loop).take();
                        let _ = watcher.join();
                        return Err(e);
                    }
                }
            }
            let result = {
                let mut r = lock(&baton.result);
                loop {
                    if let Some(result) = r.take() {
                        break result;
                    }
                    r = baton.finished.wait(r).unwrap_or_else(|e| e.into_inner());
                }
            };
            pool.jobs.stop();
            let _ = watcher.join();
            for w in workers {
                // A thread lost past its deadline never comes back.
                if !health::is_unhealthy() || w.is_finished() {
                    let _ = w.join();
                }
            }
            result
        }
    }
}

/// The event loop as the application threads pass it between them
/// (`pool.rs`): the thread that leads holds it for its turns.
struct Baton<H: Handler> {
    event_loop: Mutex<Option<EventLoop<H>>>,
    /// What the loop ended with, once it has.
    result: Mutex<Option<io::Result<()>>>,
    /// Signalled when `result` is set.
    finished: Condvar,
}

/// The event loop's state: owned by the thread that runs it (inline), or
/// passed between the application threads in a [`Baton`].
struct EventLoop<H: Handler> {
    server: Server<H>,
    conns: Slab<Slot>,
    pool: Option<Arc<Pool>>,
    date: DateCache,
    away: usize,
    accepting: bool,
    /// Accepting paused at the connection limit.
    paused_full: bool,
    /// Accepting paused after an accept error (out of descriptors).
    paused_error: bool,
    /// Most connections open at once since memory was last given back.
    peak_conns: usize,
    /// [`BodyBuf::buffered`] at the last sweep, and the sweeps since it
    /// last moved.
    bodies_seen: u64,
    bodies_idle: u32,
    /// Connections accepted from shared listeners since the last rotation.
    accepted_shared: usize,
    /// The last pass over a shared listener found it empty after one
    /// connection: the next pass stops after its first connection rather
    /// than pay an `accept4` that finds nothing (see [`EventLoop::accept`]).
    accept_one: bool,
    /// When a pass last stopped after one connection without looking for
    /// more.
    stopped_after_one: Option<Instant>,
    /// The shared listeners are out of this loop's epoll set while
    /// accepting is paused (limit reached, accept errors): see
    /// [`EventLoop::unwatch_listeners`].
    listeners_unwatched: bool,
    /// Connections that used up their turn (`max_pipelined`) with requests
    /// still buffered: driven again after the current events.
    again: Vec<usize>,
    /// Connections whose complete answers wait for the end of the wake-up.
    deferred: Vec<usize>,
    /// When the first of `deferred` was added.
    deferred_since: Instant,
    /// Paused responses to go on with at the end of this wake-up.
    later: Vec<usize>,
    /// With application threads: listeners reported ready in this
    /// wake-up, accepted from once its other events are handled (see
    /// [`EventLoop::turn_with`]).
    ready_listeners: Vec<usize>,
    /// More events of this wake-up wait after the one being handled.
    more_ready: bool,
    /// The request deadlines (`--timeout`), if on.
    deadlines: Option<Arc<Deadlines>>,
    /// This thread's deadline slot, when the application runs inline.
    watch: Option<Arc<Watch>>,
    /// The events of the last poll (kept for their allocation).
    events: Vec<libc::epoll_event>,
    /// When the timeouts were last enforced.
    last_sweep: Stamp,
    /// When the stop began, once it has.
    stop_deadline: Option<Instant>,
}

impl<H: Handler> EventLoop<H> {
    fn new(server: Server<H>, pool: Option<Arc<Pool>>, deadlines: Option<Arc<Deadlines>>) -> Self {
        // Inline, this thread runs the application: its slot is made here.
        let watch = match (&pool, &deadlines) {
            (None, Some(d)) => Some(d.register()),
            _ => None,
        };
        EventLoop {
            server,
            conns: Slab::with_capacity(1024),
            pool,
            date: DateCache::new(),
            away: 0,
            accepting: true,
            paused_full: false,
            paused_error: false,
            peak_conns: 0,
            bodies_seen: 0,
            bodies_idle: 0,
            accepted_shared: 0,
            accept_one: false,
            stopped_after_one: None,
            listeners_unwatched: false,
            again: Vec::new(),
            deferred: Vec::new(),
            deferred_since: Instant::now(),
            later: Vec::new(),
            ready_listeners: Vec::new(),
            more_ready: false,
            deadlines,
            watch,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            last_sweep: Stamp::now(),
            stop_deadline: None,
        }
    }

    /// Runs the loop on this thread until the server stops (inline).
    fn run(mut self) -> io::Result<()> {
        while self.turn()? {}
        Ok(())
    }

    /// One turn of the loop: waits for events (or for nothing, when work
    /// is left over), handles them, and enforces the stop and the
    /// timeouts. `false` once the server has stopped.
    fn turn(&mut self) -> io::Result<bool> {
        let mut events = std::mem::take(&mut self.events);
        let r = self.turn_with(&mut events);
        self.events = events;
        r
    }

    fn turn_with(&mut self, events: &mut [libc::epoll_event]) -> io::Result<bool> {
        let mut timeout = Some(SWEEP_EVERY);
        if !self.again.is_empty() {
            // Buffered requests wait: look for events without sleeping.
            timeout = Some(Duration::ZERO);
        }
        if let Some(pool) = &self.pool {
            // Announce the sleep, then look once more: a thread that hands
            // a connection back either sees the announcement and wakes us,
            // or its connection is seen here (both sides use SeqCst), so no
            // wake-up is lost and none is wasted while the loop is busy.
            pool.loop_sleeping.store(true, Ordering::SeqCst);
            if !lock(&pool.returned).conns.is_empty() || pool.jobs.queued() {
                timeout = Some(Duration::ZERO);
            }
        }
        // The handler's context (the GIL) is let go only for the wait.
        // The wait is made on mio's epoll descriptor directly (see
        // `crate::syscall`); mio registers every source, and its events
        // carry the token in their data, which is read back here.
        let mut polled = Ok(0);
        let epfd = self.server.poll.as_raw_fd();
        let ev = &mut *events;
        let ms = wait_ms(timeout);
        self.server
            .handler
            .wait(&mut || polled = syscall::epoll_wait(epfd, ev, ms));
        if let Some(pool) = &self.pool {
            pool.loop_sleeping.store(false, Ordering::SeqCst);
            self.take_returned();
        }
        let ready = match polled {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        let mut left = ready;
        for event in events.iter().take(ready) {
            left -= 1;
            self.more_ready = left > 0;
            let event = Ready(*event);
            let token = event.token();
            if token == WAKER {
                self.take_returned();
            } else if token.0 > LISTENER_BASE - self.server.listeners.len()
                && token.0 <= LISTENER_BASE
            {
                if self.accepting {
                    if self.pool.is_some() {
                        // Connections taken back from the threads may have
                        // been closed just now, and this wake-up may still
                        // hold an event of theirs: a connection accepted
                        // now could take a freed key and be given that
                        // event. Accepting once every event is handled
                        // leaves such an event an empty slot.
                        self.ready_listeners.push(LISTENER_BASE - token.0);
                    } else {
                        self.accept(LISTENER_BASE - token.0);
                    }
                }
            } else {
                let key = token.0;
                match self.conns.get_mut(key) {
                    Some(Slot::Away {
                        readable,
                        read_closed,
                        writable,
                        seen,
                    }) => {
                        *readable |= event.is_readable() || event.is_read_closed();
                        *read_closed |= event.is_read_closed();
                        *writable |= event.is_writable();
                        if let Some(seen) = seen {
                            seen.store(true, Ordering::SeqCst);
                        }
                    }
                    Some(Slot::Lingering(_)) => self.linger(key),
                    Some(Slot::Here(conn)) => {
                        // The client's FIN may come with its last bytes
                        // in one edge: then read on to the EOF.
                        conn.io.read_closed |= event.is_read_closed();
                        if event.is_writable() {
                            conn.write_blocked = false;
                        }
                        let read = event.is_readable() || event.is_read_closed();
                        self.drive(key, read);
                    }
                    None => {}
                }
            }
        }
        self.more_ready = false;
        let mut ready_listeners = std::mem::take(&mut self.ready_listeners);
        for index in ready_listeners.drain(..) {
            if self.accepting {
                self.accept(index);
            }
        }
        self.ready_listeners = ready_listeners;
        for key in std::mem::take(&mut self.again) {
            if matches!(self.conns.get(key), Some(Slot::Here(_))) {
                self.drive(key, true);
            }
        }
        // Responses that yielded to the others of this wake-up go on
        // now, then every complete answer held back goes out.
        for key in std::mem::take(&mut self.later) {
            if matches!(self.conns.get(key), Some(Slot::Here(_))) {
                self.drive(key, false);
            }
        }
        self.flush_deferred();
        if self.accepting && self.server.pause.load(Ordering::Relaxed) {
            // Accepting was on until now, so the connection of any
            // wake-up this loop took has been accepted: the loop sleeps
            // only with the queue seen empty, so that connection was
            // first in it when the events of this turn were handled.
            // A retiring worker takes nothing more (what the accept
            // batch left went with wake-ups to the other workers).
            self.leave_listeners(false);
            log::info("No longer accepting connections (being replaced)");
        }
        if self.server.stop.load(Ordering::SeqCst) {
            if self.stop_deadline.is_none() {
                if self.accepting {
                    // Replaced (HUP, TTOU, recycling: `SIGUSR2`), the
                    // worker leaves the listener to workers that stay,
                    // and takes what may be owed to it. At a stop of
                    // the whole server it takes the connections the
                    // master counted as queued before the stop
                    // (process::drain); any other stop takes nothing
                    // more (the other workers' sweep finds it).
                    let take = self.server.replaced.load(Ordering::SeqCst)
                        && self.server.grace_ms.load(Ordering::SeqCst) > 0;
                    self.leave_listeners(take);
                }
                // Out of the epoll set already: closing a descriptor
                // that another process still holds (a master, other
                // workers) would not have taken it out.
                self.server.listeners.clear();
                log::info("Shutting down: finishing requests in progress");
                self.stop_deadline = Some(Instant::now());
            }
            let grace = Duration::from_millis(self.server.grace_ms.load(Ordering::SeqCst));
            // Requests in progress finish and their responses are
            // written; idle connections close as soon as they are idle.
            self.close_idle();
            if self.conns.is_empty() || self.stop_deadline.is_some_and(|d| d.elapsed() >= grace) {
                return Ok(false);
            }
            // Retired as unhealthy: the connections of the threads
            // lost past their deadlines never come back.
            if health::is_unhealthy()
                && self
                    .deadlines
                    .as_ref()
                    .is_some_and(|d| self.conns.len() <= d.overdue())
            {
                return Ok(false);
            }
        }
        if self.accepting && self.paused_full && self.conns.len() < self.server.cfg.max_connections
        {
            self.resume_accept();
        }
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.last_sweep = Stamp::now();
            self.sweep();
            if self.accepting && self.paused_error {
                self.resume_accept();
            } else if self.accepting && self.server.shared && !self.paused_full {
                // A connection whose exclusive wake-up went to a
                // worker that then could not take it (killed, or gone
                // at the limit) waits until someone looks: one accept
                // per listener here bounds that wait to the sweep's
                // period, at no cost per request.
                for i in 0..self.server.listeners.len() {
                    self.accept(i);
                }
            }
        }
        Ok(true)
    }

    /// Accepts every pending connection of listener `index`, up to the
    /// connection limit. Connections left in the backlog (limit reached, or
    /// out of file descriptors) are picked up later: at the limit as soon as
    /// a connection closes, after an error at the next sweep.
    ///
    /// A shared listener is level-triggered, so a pass may stop before the
    /// queue is empty: the next poll reports what is left. When the last
    /// pass found the queue empty right after its one connection (a front
    /// end, or clients, whose connections arrive one at a time), the next
    /// pass stops after its first connection instead of trying a second
    /// `accept4` that would most likely find nothing; when the listener is
    /// then reported ready again at once, it had more waiting, and passes
    /// go on looking again. The system call saved (one per connection at
    /// light load) becomes at most one poll when the guess was wrong.
    fn accept(&mut self, index: usize) {
        let shared = self.server.shared;
        let mut batch = if shared {
            SHARED_ACCEPT_BATCH
        } else {
            usize::MAX
        };
        if let Some(t) = self.stopped_after_one.take() {
            if t.elapsed() < ACCEPT_AGAIN_QUICK {
                self.accept_one = false;
            }
        }
        let mut taken = 0usize;
        loop {
            // A request served inline during this loop (TCP_DEFER_ACCEPT has
            // it ready) may outlast a stop signal: what came into the backlog
            // meanwhile is left there, to be refused with the listener.
            if self.server.stop.load(Ordering::SeqCst) {
                return;
            }
            if batch == 0 {
                // Level-triggered (shared listeners): the next poll
                // reports what is left, unless another worker took it.
                self.accept_one = false;
                self.rotate(index);
                return;
            }
            batch -= 1;
            if self.conns.len() >= self.server.cfg.max_connections {
                if !self.paused_full {
                    log::warning(&format!(
                        "{} connections open (--worker-connections): new ones wait in the backlog",
                        self.conns.len()
                    ));
                }
                self.paused_full = true;
                self.unwatch_listeners();
                return;
            }
            let Some(listener) = self.server.listeners.get(index) else {
                return;
            };
            let proxy = listener.proxy_protocol();
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accepted_shared += usize::from(self.server.shared);
                    let codec =
                        listener.codec(self.server.cfg.max_connections, &self.server.cfg.ajp);
                    let key = self.admit(stream, peer, codec, proxy);
                    // TCP_DEFER_ACCEPT: the request is usually there already,
                    // and a connection answered and closed right now is
                    // never registered with the poller.
                    self.drive(key, true);
                    self.watch(key);
                    taken += 1;
                    if shared && self.accept_one {
                        self.stopped_after_one = Some(Instant::now());
                        self.rotate(index);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if shared && taken > 0 {
                        self.accept_one = taken == 1;
                    }
                    self.rotate(index);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: the listener stays; the
                    // connections wait in the backlog until the sweep retries.
                    if !self.paused_error {
                        log::warning(&format!("accept failed: {e}; retrying shortly"));
                    }
                    self.paused_error = true;
                    self.unwatch_listeners();
                    return;
                }
            }
        }
    }

    /// Moves this worker to the end of shared listener `index`'s queue of
    /// waiters once it has taken its turn of connections (see
    /// [`SHARED_ROTATE_EVERY`]). A worker alone on its listeners has no
    /// one to make room for, and keeps its place (`process::census`).
    fn rotate(&mut self, index: usize) {
        let Some(l) = self.server.listeners.get(index) else {
            return;
        };
        let every = if l.one_request_per_connection() {
            SHARED_ROTATE_EVERY_ONE_REQUEST
        } else {
            SHARED_ROTATE_EVERY
        };
        if !self.server.shared
            || self.accepted_shared < every
            || self.listeners_unwatched
            || crate::process::census::alone()
        {
            return;
        }
        self.accepted_shared = 0;
        let fd = l.raw_fd();
        deregister_fd(&self.server.poll, fd);
        if let Err(e) = register_exclusive(&self.server.poll, fd, Token(LISTENER_BASE - index)) {
            log::error(&format!("cannot watch the listener again: {e}; stopping"));
            self.server.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Registers a connection the loop keeps with the poller, once (edge
    /// triggered, so an edge that came before is reported at once). A
    /// connection that cannot be watched is dropped.
    fn watch(&mut self, key: usize) {
        let watched = match self.conns.get_mut(key) {
            Some(Slot::Here(conn) | Slot::Lingering(conn)) => {
                register_once(conn, &self.server.poll, key)
            }
            _ => true,
        };
        if !watched {
            self.remove(key);
        }
    }

    /// Resumes accepting after a pause (see [`EventLoop::accept`]).
    fn resume_accept(&mut self) {
        self.paused_full = false;
        self.paused_error = false;
        if self.listeners_unwatched {
            self.listeners_unwatched = false;
            // Registering again polls the listener's readiness, so what
            // queued meanwhile is reported like a fresh arrival.
            for (i, l) in self.server.listeners.iter().enumerate() {
                if let Err(e) =
                    register_exclusive(&self.server.poll, l.raw_fd(), Token(LISTENER_BASE - i))
                {
                    log::error(&format!("cannot watch the listener again: {e}; stopping"));
                    self.server.stop.store(true, Ordering::SeqCst);
                }
            }
        }
        for i in 0..self.server.listeners.len() {
            self.accept(i);
        }
    }

    /// Takes the shared listeners out of this loop's epoll set while
    /// accepting is paused (limit reached, accept errors). Registered
    /// level-triggered and exclusive, a listener this loop does not accept
    /// from would take the kernel's one wake-up for each new connection
    /// away from the workers that can accept it, and report itself ready
    /// at every poll.
    fn unwatch_listeners(&mut self) {
        if !self.server.shared || self.listeners_unwatched {
            return;
        }
        self.listeners_unwatched = true;
        for l in &self.server.listeners {
            deregister_fd(&self.server.poll, l.raw_fd());
        }
    }

    /// Stops accepting for good (a pause or a stop). The listeners leave
    /// this loop's epoll set first; then, if `take_queued` and other
    /// processes share them, the connections already queued are accepted
    /// and served here. The kernel wakes one exclusive waiter per new
    /// connection: a connection whose wake-up came here before the
    /// listener left would otherwise wait, unannounced, until the next
    /// arrival woke another worker (a stop: `accept` takes nothing once
    /// the stop flag is up). Once out of the set no wake-up comes
    /// here, so after this pass nothing queued is this worker's to take
    /// (docs/ARCHITECTURE.md, "Processes").
    fn leave_listeners(&mut self, take_queued: bool) {
        self.accepting = false;
        for l in &self.server.listeners {
            deregister_fd(&self.server.poll, l.raw_fd());
        }
        self.listeners_unwatched = true;
        // Connections counted by the master at a whole-server stop, taken
        // one by one off the count that every worker shares.
        let owed = !take_queued && crate::process::drain::any_owed();
        if !(take_queued || owed) || !self.server.shared {
            return;
        }
        // The accept queue is first in, first out, and holds at most the
        // backlog: the first `backlog + 1` accepted include every connection
        // queued when the listener left. They are all accepted before any
        // is served, so that clients answered meanwhile do not keep the
        // pass going with their next connections (those woke the workers
        // that stay).
        let cap = self.server.cfg.backlog as usize + 1;
        let mut taken = Vec::new();
        for i in 0..self.server.listeners.len() {
            let mut left = cap;
            while left > 0 && self.conns.len() < self.server.cfg.max_connections {
                if owed && !crate::process::drain::take(i) {
                    break;
                }
                let Some(listener) = self.server.listeners.get(i) else {
                    break;
                };
                let proxy = listener.proxy_protocol();
                match listener.accept() {
                    Ok((stream, peer)) => {
                        left -= 1;
                        let codec =
                            listener.codec(self.server.cfg.max_connections, &self.server.cfg.ajp);
                        taken.push(self.admit(stream, peer, codec, proxy));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Empty (WouldBlock), or an error (out of descriptors):
                    // what is left goes to the other workers, whose sweep
                    // looks at the listener.
                    Err(_) => break,
                }
            }
        }
        for key in taken {
            self.drive(key, true);
            self.watch(key);
        }
    }

    /// Adds an accepted connection, speaking `codec`'s protocol, to the
    /// loop; returns its key. `proxy`: it starts with a PROXY protocol
    /// header.
    fn admit(&mut self, stream: Stream, peer: PeerInfo, codec: Codec, proxy: bool) -> usize {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Box::new(Conn::new(stream, peer));
        conn.codec = codec;
        conn.proxy_pending = proxy;
        // Complete answers wait for the end of the loop's turn, inline or
        // (given back unwritten by a thread about to lead, `give_back`) in
        // the leader's next turn.
        conn.defer_output = true;
        conn.server_stop = Some(Arc::clone(&self.server.stop));
        entry.insert(Slot::Here(conn));
        if let Some(m) = metrics::current() {
            m.on_connection(true);
        }
        self.peak_conns = self.peak_conns.max(self.conns.len());
        key
    }

    /// Moves a connection forward: writes pending output, reads, and serves
    /// or dispatches every ready request.
    fn drive(&mut self, key: usize, try_read: bool) {
        let cfg = Arc::clone(&self.server.cfg);
        let read_cap = cfg.limits.max_head_size + READ_CHUNK;
        let mut turn = 0usize;
        // Input was read and the connection's `since` is still to be set.
        let mut stamp_due = false;
        match self.conns.get_mut(key) {
            // A read edge is remembered until the socket is read: with
            // edge-triggered readiness, an edge that arrives while a paused
            // response or a full socket keeps us from reading comes once.
            Some(Slot::Here(conn)) => conn.read_due |= try_read,
            _ => return,
        }
        loop {
            let Some(Slot::Here(conn)) = self.conns.get_mut(key) else {
                return;
            };
            // Answers to pipelined requests collect in the buffer and go out
            // in one write once the batch is served (or the buffer is big).
            let batching = conn.parked.is_none()
                && conn.state == ConnState::Open
                && !conn.input().is_empty()
                && conn.io.wbuf.len() - conn.io.wpos < BATCH_OUTPUT;
            // Inline, complete answers wait for the end of the wake-up (see
            // `defer_flush`).
            // Not past the batch cap, though: a client that pipelines large
            // responses and reads slowly must not make them pile up.
            let hold = conn.defer_output
                && conn.state == ConnState::Open
                && conn.parked.is_none()
                && conn.io.wbuf.len() - conn.io.wpos < BATCH_OUTPUT;
            if conn.has_output() && !batching && !hold {
                // The last output of a closing connection leaves with its
                // FIN; `start_linger` below closes it in this same turn.
                match conn.flush_or_close() {
                    Ok(true) => {
                        conn.since = Stamp::now();
                        conn.write_blocked = false;
                    }
                    Ok(false) => return,
                    Err(_) => return self.remove(key),
                }
            }
            if conn.parked.is_some() {
                if conn.write_blocked {
                    // The socket is full: a writability edge brings us back.
                    return;
                }
                // A paused response's output is out: go on with it.
                if let Some(pool) = &self.pool {
                    if !register_once(conn, &self.server.poll, key) {
                        return self.remove(key);
                    }
                    let away = Slot::away(conn);
                    let Slot::Here(conn) = std::mem::replace(&mut self.conns[key], away) else {
                        return;
                    };
                    self.away += 1;
                    pool.push(Job::Resume { key, conn });
                    return;
                }
                if !conn.resume_due {
                    // Inline: the other connections ready in this wake-up
                    // are served first, so the answers go out together.
                    conn.resume_due = true;
                    self.later.push(key);
                    return;
                }
                conn.resume_due = false;
                resume(
                    &*self.server.handler,
                    conn,
                    &cfg,
                    &mut self.date,
                    self.watch.as_deref(),
                );
                conn.since = Stamp::now();
                continue;
            }
            if conn.state == ConnState::CloseAfterFlush {
                return self.start_linger(key);
            }
            if conn.read_due && !conn.io.peer_eof {
                conn.read_due = false;
                let cap = if conn.pending.is_some() {
                    2 * BODY_READ_CHUNK
                } else {
                    read_cap
                };
                match conn.fill(cap) {
                    // The connection's clock restarts with what was read;
                    // it is stamped below, where the request's outcome is
                    // known (a request served here stamps it when done).
                    Ok(_) => stamp_due = !conn.input().is_empty() || conn.pending.is_some(),
                    Err(_) => return self.remove(key),
                }
            }
            match conn.next_request(&cfg) {
                Next::Ready(req) => {
                    if let Some(pool) = &self.pool {
                        if std::mem::take(&mut stamp_due) {
                            conn.since = Stamp::now();
                        }
                        // The client's last request (a gateway's, or one
                        // with `Connection: close`) is usually answered and
                        // closed by its thread (`give_back`), so the
                        // connection is not watched meanwhile, as inline:
                        // one `epoll_ctl` fewer. One that comes back is
                        // watched then (`take_returned`).
                        if !conn.peer_done && !register_once(conn, &self.server.poll, key) {
                            return self.remove(key);
                        }
                        let away = Slot::away(conn);
                        let Slot::Here(conn) = std::mem::replace(&mut self.conns[key], away) else {
                            return;
                        };
                        self.away += 1;
                        let queued_at = metrics::current().map(|m| {
                            m.on_queue(true);
                            Instant::now()
                        });
                        pool.push(Job::Serve {
                            key,
                            conn,
                            req,
                            queued_at,
                        });
                        return;
                    }
                    conn.others_ready = self.more_ready || !self.deferred.is_empty();
                    serve(
                        &*self.server.handler,
                        conn,
                        req,
                        &cfg,
                        &mut self.date,
                        self.watch.as_deref(),
                        None,
                    );
                    stamp_due = false;
                    conn.since = Stamp::now();
                    conn.read_due |= conn.maybe_more;
                    turn += 1;
                    if turn >= cfg.max_pipelined
                        && conn.parked.is_none()
                        && (!conn.input().is_empty() || conn.maybe_more)
                    {
                        // Other connections get their turn before the rest
                        // of this one's pipeline (and before more of it is
                        // read); the answers so far go out now.
                        if conn.flush().is_err() {
                            return self.remove(key);
                        }
                        self.again.push(key);
                        return;
                    }
                }
                Next::Close => {
                    if std::mem::take(&mut stamp_due) {
                        conn.since = Stamp::now();
                    }
                    conn.state = ConnState::CloseAfterFlush;
                }
                Next::Wait => {
                    if std::mem::take(&mut stamp_due) {
                        conn.since = Stamp::now();
                    }
                    if conn.maybe_more {
                        conn.read_due = true;
                        continue;
                    }
                    if conn.has_output() {
                        if hold {
                            return self.defer_flush(key);
                        }
                        if conn.flush().is_err() {
                            self.remove(key);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Puts a connection's complete answers on the list written at the end
    /// of this wake-up. Answering every ready connection first and then
    /// writing all the answers wakes each client once per burst instead of
    /// once per answer (on loopback the wake-up of the reader is paid in
    /// the writer's send, so this saves the server CPU too). The list is
    /// written early when it grows long or old, so the first answer of a
    /// long burst does not wait for the last.
    fn defer_flush(&mut self, key: usize) {
        let Some(Slot::Here(conn)) = self.conns.get_mut(key) else {
            return;
        };
        // A list started just now is not old: its age is read only when it
        // was started earlier (one clock read per answer fewer).
        let mut started = false;
        if !conn.deferred {
            conn.deferred = true;
            if self.deferred.is_empty() {
                self.deferred_since = Instant::now();
                started = true;
            }
            self.deferred.push(key);
        }
        if self.deferred.len() >= DEFER_MAX_CONNS
            || (!started && self.deferred_since.elapsed() >= DEFER_MAX_WAIT)
        {
            self.flush_deferred();
        }
    }

    /// Writes the answers [`EventLoop::defer_flush`] held back.
    fn flush_deferred(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let now = Stamp::now();
        // The list's allocation is kept for the next wake-up.
        let mut keys = std::mem::take(&mut self.deferred);
        for &key in &keys {
            let Some(Slot::Here(conn)) = self.conns.get_mut(key) else {
                continue;
            };
            conn.deferred = false;
            match conn.flush() {
                Ok(true) => {
                    conn.since = now;
                    conn.write_blocked = false;
                }
                // The writability edge finishes it.
                Ok(false) => {}
                Err(_) => self.remove(key),
            }
        }
        keys.clear();
        if self.deferred.is_empty() {
            self.deferred = keys;
        }
    }

    /// Takes back connections the application threads finished with.
    fn take_returned(&mut self) {
        let Some(pool) = &self.pool else { return };
        let Returned {
            conns: mut back,
            closed,
        } = std::mem::take(&mut *lock(&pool.returned));
        for key in closed {
            self.away = self.away.saturating_sub(1);
            self.remove(key);
        }
        // Answers held back by the threads (`give_back`) go out first, one
        // right after the other: a client is woken once for the burst, not
        // once for each answer between reads of the others.
        for (_, conn) in back.iter_mut() {
            if conn.state == ConnState::Open && conn.has_output() {
                let _ = conn.flush();
            }
        }
        for (key, conn) in back {
            self.away = self.away.saturating_sub(1);
            let (readable, read_closed, writable) = match self.conns.get(key) {
                Some(Slot::Away {
                    readable,
                    read_closed,
                    writable,
                    ..
                }) => (*readable, *read_closed, *writable),
                _ => (false, false, false),
            };
            let more = conn.maybe_more;
            let mut conn = conn;
            conn.io.read_closed |= read_closed;
            // An edge seen while away may predate the last EAGAIN; then the
            // resumed response meets a full socket again and waits for the
            // next edge, which that EAGAIN guarantees.
            conn.write_blocked &= !writable;
            if let Some(slot) = self.conns.get_mut(key) {
                *slot = Slot::Here(conn);
                self.drive(key, readable || more);
                // One that went away unwatched (its client's last request)
                // and stays is watched now: registering reports what came
                // meanwhile.
                self.watch(key);
            }
        }
    }

    /// Output is flushed and the connection is to close. When the client may
    /// still be sending (a request was rejected, or bytes sit unread), shut
    /// the write side and keep discarding input for a moment, so that the
    /// client reads our response before any reset; otherwise close at once.
    fn start_linger(&mut self, key: usize) {
        let Some(Slot::Here(conn)) = self.conns.get(key) else {
            return;
        };
        if conn.closes_quietly() {
            self.remove(key);
            return;
        }
        let Slot::Here(mut conn) = std::mem::replace(&mut self.conns[key], Slot::moving()) else {
            return;
        };
        conn.shut_write();
        conn.since = Stamp::now();
        self.conns[key] = Slot::Lingering(conn);
        self.linger(key);
    }

    fn linger(&mut self, key: usize) {
        let Some(Slot::Lingering(conn)) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            conn.io.rbuf.clear();
            conn.io.rpos = 0;
            match conn.read_once() {
                Ok(0) => return self.remove(key),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.remove(key),
            }
        }
    }

    /// Drops a connection. Closing the socket also removes it from epoll
    /// (it is never duplicated), so no deregistration call is made. A paused
    /// response on it is ended on an application thread when there is a pool
    /// (its cleanup may run application code).
    fn remove(&mut self, key: usize) {
        let Some(slot) = self.conns.try_remove(key) else {
            return;
        };
        if let Some(m) = metrics::current() {
            m.on_connection(false);
            if let Slot::Here(c) | Slot::Lingering(c) = &slot {
                if let Some(parked) = &c.parked {
                    parked.count_abandoned(m);
                }
            }
        }
        if let (Some(pool), Slot::Here(mut conn) | Slot::Lingering(mut conn)) = (&self.pool, slot) {
            if let Some(parked) = conn.parked.take() {
                drop(conn);
                pool.push(Job::Discard(parked));
            }
        }
    }

    /// At shutdown: marks every connection as on its last request and
    /// closes those that are idle.
    fn close_idle(&mut self) {
        let replaced = self.server.replaced.load(Ordering::Relaxed);
        let idle: Vec<usize> = self
            .conns
            .iter_mut()
            .filter_map(|(k, s)| match s {
                Slot::Here(c) => {
                    c.stopping = true;
                    let idle = c.input().is_empty()
                        && c.pending.is_none()
                        && c.parked.is_none()
                        && !c.has_output()
                        && (!replaced || c.since.elapsed() >= REPLACED_IDLE);
                    idle.then_some(k)
                }
                _ => None,
            })
            .collect();
        for k in idle {
            self.remove(k);
        }
    }

    /// Enforces the timeouts: idle keep-alive, slow heads and bodies (408
    /// when a response still makes sense), slow readers and lingering.
    fn sweep(&mut self) {
        let cfg = Arc::clone(&self.server.cfg);
        let now = Stamp::now();
        let mut expired: Vec<(usize, Expiry)> = Vec::new();
        let mut released = 0;
        for (key, slot) in self.conns.iter_mut() {
            match slot {
                Slot::Here(c) => {
                    let waited = now.since(c.since);
                    if c.has_output() || c.parked.is_some() {
                        if waited > cfg.write_timeout {
                            expired.push((key, Expiry::Reset));
                        }
                    } else if c.input().is_empty() && c.pending.is_none() && c.drain.is_none() {
                        let stopping = self.server.stop.load(Ordering::Relaxed)
                            && (!self.server.replaced.load(Ordering::Relaxed)
                                || waited >= REPLACED_IDLE);
                        if waited > cfg.keep_alive || stopping {
                            expired.push((key, Expiry::Quiet));
                        } else if waited >= SWEEP_EVERY {
                            released += c.release_buffers();
                        }
                    } else if waited > cfg.read_timeout
                        || c.head_since
                            .is_some_and(|t| now.since(t) > cfg.read_timeout)
                    {
                        let answer = if c.proxy_pending {
                            // A load balancer, not an HTTP client: no 408.
                            log::info(&format!(
                                "{} closed: no complete PROXY header in time",
                                c.peer.remote_addr
                            ));
                            Expiry::Quiet
                        } else if c.drain.is_none() {
                            Expiry::Answer408
                        } else {
                            Expiry::Quiet
                        };
                        expired.push((key, answer));
                    }
                }
                Slot::Lingering(c) => {
                    if now.since(c.since) > LINGER {
                        expired.push((key, Expiry::Quiet));
                    }
                }
                Slot::Away { .. } => {}
            }
        }
        for (key, expiry) in expired {
            match expiry {
                Expiry::Answer408 => {
                    if let Some(Slot::Here(c)) = self.conns.get_mut(key) {
                        c.reject(
                            408,
                            "Request Timeout",
                            "the request took too long to arrive",
                        );
                        c.since = now;
                    }
                    self.drive(key, false);
                }
                Expiry::Reset => {
                    if let Some(Slot::Here(c)) = self.conns.get(key) {
                        c.give_up_writing(cfg.write_timeout);
                    }
                    self.remove(key);
                }
                Expiry::Quiet => {
                    log::debug("closing a connection after a timeout");
                    self.remove(key);
                }
            }
        }
        // The process's spare body block, once no body has been buffered
        // for a while (a worker that took one large upload keeps nothing
        // of it; its pages go back to the kernel without a walk of the
        // heap). A block taken by a body still in progress is not the
        // spare; it becomes one when that body is over, and goes at the
        // next sweep if still no other body came.
        let bodies = BodyBuf::buffered();
        if bodies != self.bodies_seen {
            self.bodies_seen = bodies;
            self.bodies_idle = 0;
        } else {
            self.bodies_idle = self.bodies_idle.saturating_add(1);
            if self.bodies_idle >= SPARE_IDLE_SWEEPS {
                BodyBuf::release_spare();
            }
        }
        // After a burst (slow readers hold their responses' buffers) most
        // of the memory is free again but still mapped: give it back once
        // the connections are down to a quarter of the peak.
        // The same once idle connections have let go of enough buffers.
        if (self.peak_conns >= TRIM_AFTER_PEAK && self.conns.len() * 4 <= self.peak_conns)
            || released >= RELEASED_TRIM
        {
            sys::release_free_memory();
            self.peak_conns = self.conns.len();
        }
    }
}

/// What a timeout does to a connection (see `EventLoop::sweep`).
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// Close quietly (idle keep-alive, lingering, a discarded body).
    Quiet,
    /// Answer 408, then close: the client was still sending its request.
    Answer408,
    /// Reset: the client left its response unread for the write timeout.
    Reset,
}

/// Room for events per wait: more ready ones are reported by the next.
const EVENTS: usize = 1024;

/// The poll timeout in milliseconds, rounded up (as mio does), so that a
/// wait of less than a millisecond does not become a busy poll.
fn wait_ms(timeout: Option<Duration>) -> libc::c_int {
    timeout.map_or(-1, |t| {
        let ms = t.saturating_add(Duration::from_nanos(999_999)).as_millis();
        libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
    })
}

/// One event of a wait, read the way mio reads its own (mio registers
/// every descriptor, edge-triggered, with `EPOLLRDHUP` for reads).
#[derive(Clone, Copy)]
struct Ready(libc::epoll_event);

impl Ready {
    fn flags(self) -> libc::c_int {
        self.0.events as libc::c_int
    }

    fn token(self) -> Token {
        Token(self.0.u64 as usize)
    }

    fn is_readable(self) -> bool {
        self.flags() & (libc::EPOLLIN | libc::EPOLLPRI) != 0
    }

    fn is_writable(self) -> bool {
        self.flags() & libc::EPOLLOUT != 0
    }

    /// The peer's FIN (or a hang-up): nothing more will be read after
    /// what is buffered.
    fn is_read_closed(self) -> bool {
        let f = self.flags();
        f & libc::EPOLLHUP != 0 || (f & libc::EPOLLIN != 0 && f & libc::EPOLLRDHUP != 0)
    }
}

/// Registers a connection with the poller unless it already is: when the
/// loop keeps it, and before it goes to an application thread (where the
/// loop cannot reach it). `false` when that failed.
fn register_once(conn: &mut Conn, poll: &Poll, key: usize) -> bool {
    if conn.registered {
        return true;
    }
    conn.registered = true;
    match conn.io.stream.register(poll.registry(), Token(key)) {
        Ok(()) => true,
        Err(e) => {
            log::warning(&format!("cannot watch a connection: {e}; closing it"));
            false
        }
    }
}

/// Registers a shared listener with `EPOLLEXCLUSIVE`, level-triggered
/// (mio registers edge-triggered and has no exclusive flag, so the call is
/// made on its epoll descriptor directly; mio reads the token back from
/// the event's data like any other).
fn register_exclusive(poll: &Poll, fd: std::os::fd::RawFd, token: Token) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
        u64: token.0 as u64,
    };
    // SAFETY: both descriptors are open; ev is a valid epoll_event.
    let rc = unsafe { libc::epoll_ctl(poll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes `fd` from the loop's epoll set (errors ignored: a descriptor
/// not in the set has nothing to remove).
fn deregister_fd(poll: &Poll, fd: std::os::fd::RawFd) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: both descriptors are open; ev is ignored by EPOLL_CTL_DEL
    // but must be non-null on old kernels.
    unsafe {
        libc::epoll_ctl(poll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev);
    }
}

/// Runs one request through the handler on this thread, or answers it
/// here if it asks for `--health-path`. `queued_at` is when it entered the
/// application threads' queue.
fn serve<H: Handler>(
    handler: &H,
    conn: &mut Conn,
    req: Pending,
    cfg: &Config,
    date: &mut DateCache,
    watch: Option<&Watch>,
    queued_at: Option<Instant>,
) {
    // With no health path set, this is the only cost: one comparison.
    let health = cfg
        .health_path
        .as_deref()
        .is_some_and(|p| req.head.path() == p);
    let mut ex = Exchange::new(conn, req, cfg, handler, date, watch);
    if let Some(m) = metrics::current() {
        let now = Instant::now();
        m.on_dequeued(queued_at.map_or(Duration::ZERO, |t| now.duration_since(t)));
        ex.count_from(queued_at.unwrap_or(now));
    }
    if health {
        health_path::answer(&mut ex);
        return ex.complete();
    }
    run_handler(handler, &mut ex, |h, ex| h.handle(ex));
    if ex.is_paused() {
        ex.park();
    } else {
        ex.complete();
    }
    crate::process::worker::request_done();
}

/// Goes on with the response parked on `conn`, on this thread.
fn resume<H: Handler>(
    handler: &H,
    conn: &mut Conn,
    cfg: &Config,
    date: &mut DateCache,
    watch: Option<&Watch>,
) {
    let Some(parked) = conn.parked.take() else {
        return;
    };
    let (mut ex, state) = Exchange::resumed(conn, *parked, cfg, handler, date, watch);
    run_handler(handler, &mut ex, move |h, ex| h.resume(ex, state));
    if ex.is_paused() {
        ex.park();
    } else {
        ex.complete();
    }
}

/// Calls the handler on `ex`, which the caller then parks (if the handler
/// paused it) or completes. A panic in the handler is caught, logged, and
/// closes only this connection.
///
/// The exchange is borrowed, and moved only to be parked: passed by value
/// (about 500 bytes), it was copied once per request.
fn run_handler<H: Handler>(
    handler: &H,
    ex: &mut Exchange<'_>,
    f: impl FnOnce(&H, &mut Exchange<'_>),
) {
    let m = metrics::current();
    if let Some(m) = m {
        m.on_call(true);
    }
    ex.arm();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(handler, &mut *ex)));
    if let Some(m) = m {
        m.on_call(false);
    }
    // Still holding what the handler held (the binding: the GIL), so an
    // interruption of this request cannot slip into the next one.
    if ex.disarm() {
        // SAFETY: pthread_self has no preconditions.
        handler.deadline_cleared(unsafe { libc::pthread_self() } as u64);
    }
    if outcome.is_err() {
        log::error("internal error while serving a request (panic); closing the connection");
        ex.unpause();
        ex.close_after();
        if ex.is_committed() {
            ex.abort();
        }
    }
}

/// Gives `conn` back to the event loop with the batch's answers written
/// (in one write, the last one with the FIN); what the socket does not
/// take now, the loop writes (a failure shows there too).
///
/// A connection whose answers are all out, that closes quietly and that
/// the poller never watched (its client's last request: a gateway's, one
/// request to a connection) is closed here, as the inline loop closes it
/// right after its answer: its FIN leaves on the last write with no
/// `shutdown` first ([`Conn::flush_or_close`]), and the loop is handed
/// only its key, to free the slot at its next look.
///
/// Answers wait for the loop, unwritten, when this thread is about to take
/// the loop itself (nobody leads and no call blocks: `pool.rs`): the next
/// turn then writes every answer of the batch together, as the inline mode
/// does at the end of a wake-up, which wakes each client once per burst
/// (see [`EventLoop::defer_flush`]). At most [`DEFER_MAX_CONNS`] wait so.
///
/// The loop is woken only when it sleeps and has something to do for the
/// connection now. A connection that waits for its client's next request
/// (the common case: the client reads this answer first) is not worth a
/// wake-up: the loop takes it back after its next poll, and the poll that
/// reports the next request is such a poll. An event the loop saw while
/// the connection was away sets `seen`; it is read under the same lock that
/// the loop takes to look for returned connections before it sleeps, so
/// either this thread sees the flag and wakes the loop, or the loop sees
/// the connection before it sleeps.
fn give_back(pool: &Pool, waker: &Waker, key: usize, mut conn: Box<Conn>) {
    let held = conn.state == ConnState::Open
        && conn.parked.is_none()
        && !pool.stop.load(Ordering::Relaxed)
        && pool.jobs.leads_next()
        && lock(&pool.returned).conns.len() < DEFER_MAX_CONNS;
    if !held {
        // A connection the poller never watched is closed here when the
        // loop's `drive` would close it: the last output leaves with the
        // FIN, and one that closes quietly is closed. A watched one goes
        // back to the loop, whose events for it may be in its hands
        // already (they are for its slot only while the loop holds it),
        // so its FIN is sent now, not held for the loop's close.
        let unwatched = !conn.registered;
        let written = if unwatched {
            conn.flush_or_close()
        } else {
            conn.flush_or_finish()
        };
        if unwatched
            && matches!(written, Ok(true))
            && conn.state == ConnState::CloseAfterFlush
            && conn.parked.is_none()
            && conn.closes_quietly()
        {
            drop(conn);
            lock(&pool.returned).closed.push(key);
            // Only a stopping loop waits for the slot to be freed.
            if pool.stop.load(Ordering::SeqCst) && pool.loop_sleeping.load(Ordering::SeqCst) {
                let _ = waker.wake();
            }
            return;
        }
    }
    conn.since = Stamp::now();
    let mut urgent = !conn.waits_quietly() || pool.stop.load(Ordering::SeqCst);
    {
        let mut back = lock(&pool.returned);
        urgent |= conn
            .away_seen
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        back.conns.push((key, conn));
    }
    if urgent && pool.loop_sleeping.load(Ordering::SeqCst) {
        let _ = waker.wake();
    }
}

/// The watcher's bound on answers held back by `give_back`: answers that
/// have waited a whole look (about 1 ms; `waited` says the list was not
/// empty at the last look) for their thread to take the loop are written
/// here, as the inline mode writes its held answers after 1 ms
/// (`DEFER_MAX_WAIT`). The thread that held them may have gone on with a
/// queued request that blocks or computes for long. The connections stay
/// on the list for the loop. Returns whether answers are held now.
fn write_held(pool: &Pool, waited: bool) -> bool {
    let mut back = lock(&pool.returned);
    if waited {
        for (_, conn) in back.conns.iter_mut() {
            if conn.state == ConnState::Open && conn.has_output() {
                let _ = conn.flush();
            }
        }
    }
    back.conns.iter().any(|(_, c)| c.has_output())
}

/// What an application thread works with.
struct Worker<H: Handler> {
    pool: Arc<Pool>,
    baton: Arc<Baton<H>>,
    handler: Arc<H>,
    cfg: Arc<Config>,
    waker: Arc<Waker>,
    deadlines: Option<Arc<Deadlines>>,
}

impl<H: Handler> Worker<H> {
    /// An application thread: runs the event loop when it is the leader,
    /// and the requests the loop queued (taking connections with a ready
    /// request, serving it and whatever is pipelined behind it, and giving
    /// the connection back). It takes its next job while it still holds
    /// the handler's context (the GIL), so a job it takes runs at once, in
    /// arrival order, and a thread that finishes a job goes on with the
    /// next, or with the loop, with no wake-up (`pool.rs`).
    fn run(self) {
        let h = Arc::clone(&self.handler);
        let me = self.pool.jobs.register_thread();
        h.enter(move || {
            let mut date = DateCache::new();
            let watch = self.deadlines.as_ref().map(|d| d.register());
            let watch = watch.as_deref();
            let mut busy = false;
            let mut looked = false;
            loop {
                let job = match self.pool.jobs.take(&mut busy, looked) {
                    pool::Take::Job(job) => job,
                    pool::Take::Lead => {
                        busy = self.lead();
                        looked = true;
                        if busy || self.follow(&mut busy) {
                            continue;
                        }
                        return;
                    }
                    pool::Take::Wait => {
                        looked = true;
                        if self.follow(&mut busy) {
                            continue;
                        }
                        return;
                    }
                };
                looked = false;
                me.begin();
                self.run_job(job, &mut date, watch);
                me.end();
            }
        });
    }

    /// Waits until there is a job to take (`true`, counted busy), leading
    /// the loop meanwhile when asked to; `false` when the server stops.
    fn follow(&self, busy: &mut bool) -> bool {
        loop {
            match self.pool.jobs.wait_for_job(&*self.handler, busy) {
                pool::Woke::Job => return true,
                pool::Woke::Stop => return false,
                pool::Woke::Lead => {
                    if self.lead() {
                        *busy = true;
                        return true;
                    }
                }
            }
        }
    }

    /// Runs the event loop on this thread until the pool says to leave it.
    /// The thread holds the handler's context (the GIL), as the inline
    /// loop does, and lets it go while it waits for events; what the loop
    /// drops of the handler's (the binding's per-connection objects) is
    /// dropped with it held. `true`: it left counted busy, for queued
    /// jobs.
    fn lead(&self) -> bool {
        let mut guard = lock(&self.baton.event_loop);
        let Some(ev) = guard.as_mut() else {
            return false;
        };
        loop {
            match ev.turn() {
                Ok(true) => {}
                done => {
                    // The loop's connections and listeners close here.
                    guard.take();
                    drop(guard);
                    *lock(&self.baton.result) = Some(done.map(|_| ()));
                    self.pool.jobs.stop();
                    self.baton.finished.notify_all();
                    return false;
                }
            }
            match self.pool.jobs.after_turn() {
                pool::AfterTurn::Lead => {}
                pool::AfterTurn::Jobs => return true,
                pool::AfterTurn::Follow => return false,
            }
        }
    }

    /// Serves one job, then gives its connection back.
    fn run_job(&self, job: Job, date: &mut DateCache, watch: Option<&Watch>) {
        let (handler, cfg) = (&*self.handler, &*self.cfg);
        let (key, mut conn, mut req) = match job {
            Job::Serve {
                key,
                conn,
                req,
                queued_at,
            } => {
                if let Some(m) = metrics::current() {
                    m.on_queue(false);
                }
                (key, conn, Some((req, queued_at)))
            }
            Job::Resume { key, mut conn } => {
                resume(handler, &mut conn, cfg, date, watch);
                (key, conn, None)
            }
            Job::Discard(parked) => {
                drop(parked);
                return;
            }
        };
        let mut turn = 0usize;
        loop {
            if let Some((r, queued_at)) = req.take() {
                serve(handler, &mut conn, r, cfg, date, watch, queued_at);
                turn += 1;
            }
            // Past its turn, the connection goes back to the loop and
            // its next request to the end of the queue.
            if turn < cfg.max_pipelined
                && conn.parked.is_none()
                && conn.state == ConnState::Open
                && conn.io.wbuf.len() - conn.io.wpos < BATCH_OUTPUT
            {
                if let Next::Ready(next) = conn.next_request(cfg) {
                    req = Some((next, None));
                    continue;
                }
            }
            break;
        }
        give_back(&self.pool, &self.waker, key, conn);
    }
}
