//! Interrupting a request past its deadline (`--timeout`): the exception
//! raised in its thread, and the stack logged with it.

use std::os::raw::c_long;

use ferrowsgi_server::deadline::Overrun;
use ferrowsgi_server::log;
use pyo3::prelude::*;
use pyo3::{ffi, intern, PyTypeInfo};

pyo3::create_exception!(
    ferrowsgi,
    RequestTimeout,
    pyo3::exceptions::PyBaseException,
    "Raised inside a request's thread when the request passed its deadline \
     (--timeout). It derives from BaseException, as KeyboardInterrupt does, \
     so that the `except Exception:` blocks common in applications do not \
     swallow it, while `finally` blocks and context managers still run. The \
     client has already had a 504 if no response had started."
);

/// Logs where the overdue request's thread is and raises [`RequestTimeout`]
/// in it. Runs on the server's reporter thread and waits for the GIL; the
/// request's thread holds the GIL when it ends a request, so once the GIL is
/// ours the check that the request still runs cannot change under us.
pub(crate) fn interrupt(overrun: &Overrun) {
    Python::attach(|py| {
        let w = &overrun.watch;
        if !w.still_overdue(overrun.gen) {
            // Its thread came back first (for one, it held the GIL in C
            // code past the deadline, and ended the request before it let
            // the GIL go).
            log::warning(&format!(
                "{}: its thread came back before its stack could be taken; nothing raised",
                overrun.tag
            ));
            return;
        }
        let stack = stack_of(py, w.ident);
        // SAFETY: we hold the GIL; the exception type is a live object kept
        // by the type's static cell; the id names a thread of this
        // interpreter (or none, and nothing happens).
        let raised = unsafe {
            ffi::PyThreadState_SetAsyncExc(
                w.ident as c_long,
                RequestTimeout::type_object_raw(py).cast::<ffi::PyObject>(),
            )
        };
        let how = if raised > 0 {
            "RequestTimeout raised in it"
        } else {
            "its thread is not a Python thread; nothing raised"
        };
        log::error(&format!(
            "Stack of {} at its deadline ({} s; thread {}), {how}:\n{stack}",
            overrun.tag,
            overrun.timeout.as_secs_f64(),
            w.ident
        ));
    });
}

/// Cancels a [`RequestTimeout`] still pending for thread `ident`, whose
/// request is over.
pub(crate) fn cancel(ident: u64) {
    Python::attach(|_py| {
        // SAFETY: we hold the GIL; a NULL exception clears the pending one.
        unsafe { ffi::PyThreadState_SetAsyncExc(ident as c_long, std::ptr::null_mut()) };
    });
}

/// The Python stack of thread `ident`, innermost call last.
fn stack_of(py: Python<'_>, ident: u64) -> String {
    let formatted = (|| -> PyResult<Option<String>> {
        let frames = py
            .import(intern!(py, "sys"))?
            .call_method0(intern!(py, "_current_frames"))?;
        let Some(frame) = frames
            .call_method1(intern!(py, "get"), (ident,))
            .ok()
            .filter(|f| !f.is_none())
        else {
            return Ok(None);
        };
        let lines = py
            .import(intern!(py, "traceback"))?
            .call_method1(intern!(py, "format_stack"), (frame,))?;
        let parts: Vec<String> = lines.extract()?;
        Ok(Some(parts.concat()))
    })();
    match formatted {
        Ok(Some(s)) => s,
        Ok(None) => "  (no Python frame: the thread is outside Python code)\n".to_string(),
        Err(e) => format!("  (stack unavailable: {e})\n"),
    }
}
