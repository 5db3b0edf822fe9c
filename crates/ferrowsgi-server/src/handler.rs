//! The interface between the server and an application.

use std::any::Any;

use crate::deadline::Overrun;
use crate::exchange::Exchange;
pub use crate::wait::Waiter;

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

    /// A request passed its deadline (`--timeout`) while its thread still
    /// runs it; the client has had its 504 if no response had started.
    /// Called on the server's reporter thread, which does nothing else, so
    /// it may wait (the binding waits for the GIL here): the handler
    /// interrupts the request's thread (`overrun.watch.ident`) and logs
    /// where it was. The interruption goes through
    /// [`crate::deadline::Watch::interrupt_if_overdue`], so that it cannot
    /// land once the request is over (in the thread's next request).
    fn deadline_passed(&self, overrun: &Overrun) {
        let _ = overrun;
    }

    /// The handler of a request whose deadline passed has returned on
    /// this thread (`ident`): an interruption still pending for it must be
    /// cancelled before the thread runs anything else.
    fn deadline_cleared(&self, ident: u64) {
        let _ = ident;
    }
}
