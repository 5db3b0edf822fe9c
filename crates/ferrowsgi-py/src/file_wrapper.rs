//! `wsgi.file_wrapper`: a file handed back as the response. Over a real file
//! the server sends it with sendfile(2); otherwise it is read in blocks.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Default block size when the wrapper is iterated.
const DEFAULT_BLKSIZE: usize = 8192;

/// Wraps a file-like object as a response iterable.
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
#[derive(Debug)]
pub struct FileWrapper {
    /// The wrapped object.
    pub(crate) filelike: Py<PyAny>,
    /// Bytes per block when iterated.
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = DEFAULT_BLKSIZE))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    /// The wrapped object.
    #[getter]
    fn filelike(&self, py: Python<'_>) -> Py<PyAny> {
        self.filelike.clone_ref(py)
    }

    /// Bytes per block when iterated.
    #[getter]
    fn blksize(&self) -> usize {
        self.blksize
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        let empty = match block.cast::<PyBytes>() {
            Ok(b) => b.as_bytes().is_empty(),
            Err(_) => block.len().map(|n| n == 0).unwrap_or(false),
        };
        Ok(if empty { None } else { Some(block) })
    }

    /// Closes the wrapped object, if it can be closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
