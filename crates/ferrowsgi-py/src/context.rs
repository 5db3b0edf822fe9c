//! A `contextvars.Context` for each request.
//!
//! Every request runs in its own copy of the thread's context, entered while
//! its code runs: when the application is called, while its iterable is
//! iterated (which may happen later, after other requests ran on the same
//! thread, or on another thread when a response paused for a slow reader),
//! and when `close()` is called. So context variables set by one request
//! (Flask's and werkzeug's locals, asgiref's, a tracing span) are never seen
//! by another, however their calls interleave.

use pyo3::ffi;
use pyo3::prelude::*;

/// One request's context.
#[derive(Debug)]
pub(crate) struct RequestContext(Py<PyAny>);

impl RequestContext {
    /// A copy of the calling thread's current context.
    pub(crate) fn new(py: Python<'_>) -> PyResult<RequestContext> {
        // SAFETY: called with the GIL held; the new reference is owned by
        // the returned object (or NULL with an exception set).
        let ctx = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? };
        Ok(RequestContext(ctx.unbind()))
    }

    /// Makes this the thread's current context until the guard drops.
    pub(crate) fn enter<'c>(&'c self, py: Python<'_>) -> PyResult<Entered<'c>> {
        // SAFETY: the pointer is a live Context (we hold a reference) and
        // the GIL is held.
        if unsafe { ffi::PyContext_Enter(self.0.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(Entered(self))
    }
}

/// Leaves the entered context when dropped (on the thread that entered it).
#[derive(Debug)]
pub(crate) struct Entered<'c>(&'c RequestContext);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // SAFETY: the context was entered on this thread by `enter`, which
        // is still holding the GIL through the caller's `Python` token.
        if unsafe { ffi::PyContext_Exit((self.0).0.as_ptr()) } != 0 {
            Python::attach(|py| drop(PyErr::take(py)));
        }
    }
}
