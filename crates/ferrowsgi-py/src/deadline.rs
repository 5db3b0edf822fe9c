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
/// in it. Runs on the server's reporter thread and waits for the GIL.
///
/// The check that the request still runs and the raise happen together
/// under the slot's lock
/// ([`ferrowsgi_server::deadline::Watch::interrupt_if_overdue`]), taken
/// with the GIL held (the lock order: the GIL, then a lock), and nothing
/// under it can let the GIL go (one C call that allocates nothing). The
/// request's thread takes the same lock to end a request whose deadline
/// fired, and cancels a pending exception after, so the exception can
/// never land in its next request. The frames are read just before, with
/// C calls only; their source lines are looked up after the raise.
pub(crate) fn interrupt(overrun: &Overrun) {
    Python::attach(|py| {
        let w = &overrun.watch;
        let frames = if w.still_overdue(overrun.gen) {
            frames_of(py, w.ident)
        } else {
            Ok(Vec::new())
        };
        let mut raised = 0;
        let ran = w.interrupt_if_overdue(overrun.gen, || {
            // SAFETY: we hold the GIL; the exception type is a live object
            // kept by the type's static cell; the id names a thread of this
            // interpreter (or none, and nothing happens).
            raised = unsafe {
                ffi::PyThreadState_SetAsyncExc(
                    w.ident as c_long,
                    RequestTimeout::type_object_raw(py).cast::<ffi::PyObject>(),
                )
            };
        });
        if !ran && w.delivered(overrun.gen) {
            // A wait of the server's ended at the deadline and raised
            // RequestTimeout from the call itself, with its own traceback.
            log::info(&format!(
                "{}: RequestTimeout raised from the server's wait it was in",
                overrun.tag
            ));
            return;
        }
        if !ran {
            // Its thread came back first (for one, it held the GIL in C
            // code past the deadline, and ended the request before it let
            // the GIL go).
            log::warning(&format!(
                "{}: its thread came back before its stack could be taken; nothing raised",
                overrun.tag
            ));
            return;
        }
        let how = if raised > 0 {
            "RequestTimeout raised in it"
        } else {
            "its thread is not a Python thread; nothing raised"
        };
        log::error(&format!(
            "Stack of {} at its deadline ({} s; thread {}), {how}:\n{}",
            overrun.tag,
            overrun.timeout.as_secs_f64(),
            w.ident,
            format_frames(py, frames)
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

/// Cancels a [`RequestTimeout`] pending for the calling thread, which is
/// about to raise one itself from a wait that ended at its deadline.
pub(crate) fn cancel_own() {
    // SAFETY: pthread_self has no preconditions; it is the identifier
    // Python gives the thread (`threading.get_ident()`) on Linux.
    let ident = unsafe { libc::pthread_self() } as u64;
    cancel(ident);
}

/// One frame: file, line, function.
type Frame = (String, i64, String);

/// The Python frames of thread `ident`, outermost first, read with C calls
/// only (`sys._current_frames`, the frames' and code objects' attributes),
/// so that no Python code runs and the GIL stays ours.
fn frames_of(py: Python<'_>, ident: u64) -> PyResult<Vec<Frame>> {
    // SAFETY: we hold the GIL; the name is a NUL-terminated string; the
    // result is a borrowed reference to an entry of the sys module (or
    // NULL), which we take a new reference to at once.
    let current = unsafe {
        let f = ffi::PySys_GetObject(c"_current_frames".as_ptr());
        Bound::from_borrowed_ptr_or_opt(py, f)
    };
    let Some(current) = current else {
        return Ok(Vec::new());
    };
    let all = current.call0()?;
    let mut out = Vec::new();
    let mut frame = all.get_item(ident).ok();
    while let Some(f) = frame.filter(|f| !f.is_none()) {
        let code = f.getattr(intern!(py, "f_code"))?;
        out.push((
            code.getattr(intern!(py, "co_filename"))?.extract()?,
            f.getattr(intern!(py, "f_lineno"))?.extract().unwrap_or(0),
            code.getattr(intern!(py, "co_name"))?.extract()?,
        ));
        frame = Some(f.getattr(intern!(py, "f_back"))?);
    }
    out.reverse();
    Ok(out)
}

/// Formats frames as `traceback.format_stack` does, with their source
/// lines (read now, after the raise: this may run Python code).
fn format_frames(py: Python<'_>, frames: PyResult<Vec<Frame>>) -> String {
    let frames = match frames {
        Ok(f) if f.is_empty() => {
            return "  (no Python frame: the thread is outside Python code)\n".to_string()
        }
        Ok(f) => f,
        Err(e) => return format!("  (stack unavailable: {e})\n"),
    };
    let linecache = py.import(intern!(py, "linecache")).ok();
    let mut out = String::new();
    for (file, line, name) in frames {
        out.push_str(&format!("  File \"{file}\", line {line}, in {name}\n"));
        let source = linecache
            .as_ref()
            .and_then(|lc| lc.call_method1(intern!(py, "getline"), (&file, line)).ok())
            .and_then(|s| s.extract::<String>().ok())
            .unwrap_or_default();
        let source = source.trim();
        if !source.is_empty() {
            out.push_str(&format!("    {source}\n"));
        }
    }
    out
}
