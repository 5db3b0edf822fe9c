//! `wsgi.errors`: a text stream into the error log, tagged with the request.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyString;

/// The `wsgi.errors` stream of one request: `write`, `writelines`, `flush`.
/// Each line goes to the error log (stderr), prefixed with the request.
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
#[derive(Debug)]
pub struct ErrorStream {
    /// "METHOD target" of the request, as sent. Replaced when the stream is
    /// handed to the next request (see `app::RequestObjects`), keeping its
    /// allocation.
    tag: Mutex<Vec<u8>>,
}

impl ErrorStream {
    /// A stream with an empty tag, to be set by [`ErrorStream::set_tag`].
    pub(crate) fn new() -> Self {
        ErrorStream {
            tag: Mutex::new(Vec::new()),
        }
    }

    /// Tags the stream's lines with "`method` `target`".
    pub(crate) fn set_tag(&self, method: &[u8], target: &[u8]) {
        let mut tag = self.tag.lock().unwrap_or_else(|e| e.into_inner());
        tag.clear();
        tag.extend_from_slice(method);
        tag.push(b' ');
        tag.extend_from_slice(target);
    }

    /// The request tag, for log lines.
    pub(crate) fn tag(&self) -> String {
        let tag = self.tag.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&tag).into_owned()
    }
}

#[pymethods]
impl ErrorStream {
    /// Writes `s` (a str) to the error log.
    fn write(&self, s: &Bound<'_, PyAny>) -> PyResult<usize> {
        let s = s.cast::<PyString>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err("wsgi.errors.write() takes a str")
        })?;
        let text = s.to_cow()?;
        if !text.trim().is_empty() {
            ferrowsgi_server::log::log(
                ferrowsgi_server::log::Level::Error,
                &format!("[{}] {}", self.tag(), text.trim_end_matches('\n')),
            );
        }
        Ok(text.chars().count())
    }

    /// Writes each str of `lines`.
    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    /// Lines are written as they come; nothing to flush.
    fn flush(&self) {}
}
