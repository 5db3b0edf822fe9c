//! The PyO3 binding of ferrowsgi, and the only crate that touches the GIL.
//!
//! It implements the server's [`ferrowsgi_server::Handler`] for a WSGI
//! application: it builds the environ, implements `start_response`,
//! `write()`, `wsgi.input`, `wsgi.errors` and `wsgi.file_wrapper`, iterates
//! the response and always calls `close()`. The module `_ferrowsgi` also
//! exposes the `Server` class behind `ferrowsgi.serve()` and the command
//! line entry point `main(argv)`.
#![deny(missing_docs, missing_debug_implementations)]

use pyo3::prelude::*;

mod app;
mod cli;
mod context;
mod deadline;
mod environ;
mod errors;
mod file_wrapper;
mod gil;
mod hooks;
mod input;
mod pylog;
mod pyserver;
mod start_response;

/// The extension module `ferrowsgi._ferrowsgi`.
#[pymodule(gil_used = false)]
fn _ferrowsgi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The hook names live in one table (the settings layer's), which the
    // Python side reads from here.
    m.add(
        "HOOK_NAMES",
        pyo3::types::PyTuple::new(m.py(), ferrowsgi_server::settings::HOOKS)?,
    )?;
    m.add(
        "UNSUPPORTED_HOOK_NAMES",
        pyo3::types::PyTuple::new(m.py(), ferrowsgi_server::settings::UNSUPPORTED_HOOKS)?,
    )?;
    m.add_class::<pyserver::Server>()?;
    m.add_class::<file_wrapper::FileWrapper>()?;
    m.add_class::<input::InputStream>()?;
    m.add_class::<errors::ErrorStream>()?;
    m.add_class::<start_response::StartResponse>()?;
    m.add_class::<start_response::Write>()?;
    m.add(
        "RequestBodyTooLarge",
        m.py().get_type::<input::RequestBodyTooLarge>(),
    )?;
    m.add_function(wrap_pyfunction!(cli::main, m)?)?;
    m.add_function(wrap_pyfunction!(start_response::check_response_head, m)?)?;
    m.add_function(wrap_pyfunction!(pylog::reopen_logs, m)?)?;
    m.add(
        "RequestTimeout",
        m.py().get_type::<deadline::RequestTimeout>(),
    )?;
    Ok(())
}
