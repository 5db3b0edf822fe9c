//! How the server waits on an application thread.

/// Runs blocking waits on behalf of the server.
///
/// The Python binding releases the GIL around `f`, so other Python threads
/// run while this one waits for a socket or a queue. The default runs `f` as
/// it is.
pub trait Waiter {
    /// Runs the blocking wait `f`, with whatever per-thread context the
    /// handler holds released for its duration.
    fn wait(&self, f: &mut dyn FnMut()) {
        f()
    }
}
