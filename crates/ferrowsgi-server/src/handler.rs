//! The interface between the server and an application.

use std::any::Any;

use crate::exchange::Exchange;

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

/// An application the server calls once per request.
///
/// The server calls [`Handler::enter`] once on each thread that will run
/// requests, and [`Handler::handle`] inside it; blocking waits go through
/// [`Waiter::wait`].
pub trait Handler: Waiter + Send + Sync + 'static {
    /// Runs `f` with the handler's per-thread context held (the binding
    /// attaches the thread to the interpreter and holds the GIL).
    fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Serves one request: reads its body and writes its response through
    /// `ex`. Whatever happens, the handler leaves `ex` finished or aborted;
    /// a handler that returns without either gets its response finished by
    /// the server.
    fn handle(&self, ex: &mut Exchange<'_>);

    /// Goes on with a response the handler paused ([`Exchange::pause`])
    /// once the client has taken the buffered output; `state` is what the
    /// handler paused with. The same rules as for [`Handler::handle`] hold,
    /// and the handler may pause again. A handler that never pauses needs
    /// no override: the default ends the response.
    fn resume(&self, ex: &mut Exchange<'_>, state: Box<dyn Any + Send>) {
        drop(state);
        let _ = ex.finish();
    }
}
