//! How many workers share the listening sockets, published by the master
//! for the workers' accept loops.
//!
//! A worker moves itself to the end of a shared listener's queue of
//! exclusive waiters every few connections (`EventLoop::rotate`), so that
//! the kernel's wake-ups, which go to the first idle waiter, are spread
//! over the workers. That costs two `epoll_ctl` calls per rotation, half a
//! system call per connection for clients that open one per request, and
//! buys nothing for a worker that is alone on its listeners (`-w 1`, the
//! default). The master therefore keeps the number of its live workers in
//! a word of shared memory mapped before the first fork ([`setup`]),
//! raised before each fork and lowered after each reap, and a worker
//! rotates only while the word says it has company ([`alone`]). A worker
//! being replaced and its replacement both count, so the word is above one
//! during a reload.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use super::shared::{SharedRegion, ZeroedAtomics};

/// The count of live workers.
struct Census(AtomicU32);

// SAFETY: one atomic, valid at zero.
unsafe impl ZeroedAtomics for Census {}

/// The shared word, once [`setup`] has made it (never outside a master's
/// processes: a server that is not a worker of a master never shares its
/// listeners).
static REGION: SharedRegion<Census> = SharedRegion::new();

/// Makes the shared word (in the master, before any fork); later calls do
/// nothing.
pub(crate) fn setup() -> io::Result<()> {
    REGION.setup()
}

fn word() -> Option<&'static AtomicU32> {
    REGION.get().map(|c| &c.0)
}

/// Publishes that `n` worker processes are alive (or about to be forked).
pub(crate) fn set_workers(n: usize) {
    if let Some(w) = word() {
        w.store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
    }
}

/// Whether this process is the only worker on the shared listeners. Without
/// the word (it could not be mapped) the answer is no: rotating is then
/// merely useless, while not rotating among several workers would leave
/// one of them with every connection that arrives while all are idle.
pub(crate) fn alone() -> bool {
    word().is_some_and(|w| w.load(Ordering::Relaxed) <= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_worker_is_alone_and_a_second_one_ends_that() {
        setup().unwrap();
        set_workers(1);
        assert!(alone());
        set_workers(2);
        assert!(!alone());
        set_workers(0);
        assert!(alone());
    }
}
