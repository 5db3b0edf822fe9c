//! `--log-to-python`: the server's two logs handed to Python's `logging`
//! (loggers `ferrowsgi.error` and `ferrowsgi.access`), so the handlers,
//! filters and formats the application configures apply to them.
//!
//! Each record needs the GIL. The threads that log (the event loop and the
//! application threads) hold it already, except while they wait on a
//! socket; a line logged from a thread that does not hold it takes it for
//! the one call and gives it back.

use std::sync::Arc;

use ferrowsgi_server::log::{self, ExternalSink, Field, Level};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The sink registered with the server's log module.
struct PySink {
    error: Py<PyAny>,
    access: Py<PyAny>,
}

/// Runs `f` holding the GIL, taking it for the call if this thread does
/// not hold it (whether or not the thread was ever attached).
fn with_gil(f: impl FnOnce(Python<'_>)) {
    // SAFETY: Py_IsInitialized and PyGILState_Check only read state. The
    // sink is removed (`uninstall`) before the interpreter finalises.
    if unsafe { ffi::Py_IsInitialized() } == 0 {
        return;
    }
    // SAFETY: as above.
    if unsafe { ffi::PyGILState_Check() } == 1 {
        // SAFETY: this thread holds the GIL (checked just above). The
        // server's waits release it with PyEval_SaveThread behind pyo3's
        // back, so pyo3's own count cannot tell; this check can.
        f(unsafe { Python::assume_attached() });
        return;
    }
    // SAFETY: this thread does not hold the GIL. PyGILState_Ensure takes it
    // (restoring the thread's own state when it has one, as inside one of
    // the server's waits) and the matching Release below gives it back in
    // the state it found.
    let state = unsafe { ffi::PyGILState_Ensure() };
    // SAFETY: the GIL is held until the Release below.
    f(unsafe { Python::assume_attached() });
    // SAFETY: paired with the Ensure above, on the same thread.
    unsafe { ffi::PyGILState_Release(state) };
}

impl ExternalSink for PySink {
    fn error(&self, level: Level, msg: &str) {
        with_gil(|py| {
            if let Err(e) = self
                .error
                .bind(py)
                .call_method1("log", (level.number(), msg))
            {
                e.print(py);
            }
        });
    }

    fn access(&self, line: &str, fields: &[(&'static str, Field<'_>)]) {
        with_gil(|py| {
            let result = (|| -> PyResult<()> {
                let logger = self.access.bind(py);
                // The extra dict is built only when a record will be made.
                if !logger
                    .call_method1("isEnabledFor", (Level::Info.number(),))?
                    .is_truthy()?
                {
                    return Ok(());
                }
                let extra = PyDict::new(py);
                for (key, value) in fields {
                    match value {
                        Field::Str(s) => extra.set_item(key, s.as_ref())?,
                        Field::Int(n) => extra.set_item(key, n)?,
                        Field::Null => extra.set_item(key, py.None())?,
                    }
                }
                let kwargs = PyDict::new(py);
                kwargs.set_item("extra", extra)?;
                logger.call_method("log", (Level::Info.number(), line), Some(&kwargs))?;
                Ok(())
            })();
            if let Err(e) = result {
                e.print(py);
            }
        });
    }
}

/// Sends both logs to Python's `logging` from now on.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let logging = py.import("logging")?;
    let sink = PySink {
        error: logging
            .call_method1("getLogger", ("ferrowsgi.error",))?
            .unbind(),
        access: logging
            .call_method1("getLogger", ("ferrowsgi.access",))?
            .unbind(),
    };
    log::set_external(Some(Arc::new(sink)));
    Ok(())
}

/// Back to the server's own destinations (before the interpreter ends).
pub(crate) fn uninstall() {
    log::set_external(None);
}

/// Reopens the log files (`SIGUSR1`); the error names the file.
#[pyfunction]
pub fn reopen_logs(py: Python<'_>) -> PyResult<()> {
    py.detach(log::reopen)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
}
