//! Releasing the GIL around the server's blocking waits.

use std::time::Instant;

use ferrowsgi_server::metrics;
use pyo3::ffi;

/// Runs `f` with the GIL released, if this thread holds it.
///
/// `f` must not touch Python objects: it is a socket or queue wait.
pub(crate) fn without_gil(f: &mut dyn FnMut()) {
    // SAFETY: PyGILState_Check only reads the thread's state.
    if unsafe { ffi::PyGILState_Check() } == 0 {
        f();
        return;
    }
    struct Restore(*mut ffi::PyThreadState);
    impl Drop for Restore {
        fn drop(&mut self) {
            // With metrics on, the wait for the GIL is timed (two reads of
            // the vDSO clock, no system call); off, nothing but the check.
            let timing = metrics::current().map(|m| (m, Instant::now()));
            // SAFETY: the state was saved by PyEval_SaveThread on this thread
            // just below and is restored exactly once, even if `f` panics.
            unsafe { ffi::PyEval_RestoreThread(self.0) };
            if let Some((m, t)) = timing {
                m.on_gil_wait(t.elapsed());
            }
        }
    }
    // SAFETY: this thread holds the GIL (checked above); `f` touches no
    // Python object while it is released.
    let _restore = Restore(unsafe { ffi::PyEval_SaveThread() });
    f();
}
