//! Asking a running server to stop, pause or hand over, from any thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::Waker;

/// Asks a running server to stop, from any thread.
#[derive(Debug, Clone)]
pub struct StopHandle {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) waker: Arc<Waker>,
    /// Milliseconds a stop leaves requests in progress.
    pub(crate) grace_ms: Arc<AtomicU64>,
    /// No new connections, but no stop either.
    pub(crate) pause: Arc<AtomicBool>,
    /// The stop replaces this server by another one (see
    /// [`StopHandle::stop_replaced`]).
    pub(crate) replaced: Arc<AtomicBool>,
}

impl StopHandle {
    /// Requests a graceful stop: no new connections, idle connections
    /// closed at once, requests in progress finish (their responses say
    /// `Connection: close`), then [`Server::run`] returns.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Requests a graceful stop of a server that others replace (a worker
    /// being recycled or reloaded): the same as [`StopHandle::stop`],
    /// except that an idle keep-alive connection is closed only once it
    /// has been idle for a moment (1 s), so that a client that sends on it
    /// right now gets its answer, with `Connection: close`, and goes to the
    /// replacement for the next one.
    pub fn stop_replaced(&self) {
        self.replaced.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// Requests a stop that leaves requests in progress no time: the loop
    /// closes every connection and returns.
    pub fn stop_now(&self) {
        self.grace_ms.store(0, Ordering::SeqCst);
        self.stop();
    }

    /// Stops accepting new connections (for good), while the connections
    /// open go on being served: a worker about to be replaced leaves the
    /// new ones to the other workers and its replacement.
    pub fn pause_accept(&self) {
        self.pause.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// How long a graceful stop waits for requests in progress (30 s
    /// unless set).
    pub fn set_grace(&self, grace: Duration) {
        self.grace_ms
            .store(grace.as_millis() as u64, Ordering::SeqCst);
    }
}
