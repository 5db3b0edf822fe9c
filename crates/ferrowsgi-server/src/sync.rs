//! Locking helpers shared by the event loop and the application threads.

use std::sync::{Mutex, MutexGuard};

/// Takes a lock of the pool's queues or of held output (`hold.rs`). A
/// panic while holding one cannot leave its state inconsistent (each
/// operation is a single push, pop or buffer update), so a poisoned lock is
/// used as it is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
