//! `wsgi.input`, and the slot through which the Python objects of one
//! request reach its [`Exchange`].

use std::io;
use std::ptr::NonNull;
use std::sync::{Mutex, TryLockError};

use ferrowsgi_server::Exchange;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::start_response::StartResponse;

/// Raw pointer to the exchange of the request being served.
struct ExchangePtr(NonNull<Exchange<'static>>);

// SAFETY: the pointer is only dereferenced through `Slot::with`, which holds
// the slot's mutex for the whole access, so at most one thread uses the
// exchange at a time; the pointer is removed before the exchange dies.
unsafe impl Send for ExchangePtr {}

/// Where `wsgi.input`, `start_response` and `write()` find the request's
/// [`Exchange`]. It is filled for exactly the duration of the handler call
/// and emptied (by [`SlotGuard`]) before the exchange goes away, so an
/// environ kept past its request fails cleanly instead of touching freed
/// memory.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    ptr: Mutex<Option<ExchangePtr>>,
}

impl std::fmt::Debug for ExchangePtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangePtr")
    }
}

impl Slot {
    /// Points the slot at `ex` until the returned guard drops.
    pub(crate) fn fill<'s>(&'s self, ex: &mut Exchange<'_>) -> SlotGuard<'s> {
        let ptr = NonNull::from(ex).cast::<Exchange<'static>>();
        *self.ptr.lock().unwrap_or_else(|e| e.into_inner()) = Some(ExchangePtr(ptr));
        SlotGuard(self)
    }

    /// Runs `f` on the exchange. Fails if the request is over, or if another
    /// thread is using the exchange right now (the caller holds the GIL, so
    /// waiting here could deadlock with a thread that released it).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Exchange<'_>) -> PyResult<R>) -> PyResult<R> {
        let guard = match self.ptr.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(PyRuntimeError::new_err(
                    "the request is in use by another thread",
                ))
            }
        };
        match guard.as_ref() {
            // SAFETY: the pointer was made from a live `&mut Exchange` in
            // `fill` and is removed by `SlotGuard` before that borrow ends;
            // the mutex guard held across `f` makes this the only access.
            Some(p) => f(unsafe { &mut *p.0.as_ptr() }),
            None => Err(PyValueError::new_err(
                "the request is over: wsgi.input, start_response and write() \
                 cannot be used after the application returned",
            )),
        }
    }
}

/// Empties the slot when the handler is done with the exchange.
#[derive(Debug)]
pub(crate) struct SlotGuard<'s>(&'s Slot);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.ptr.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Maps an I/O error of the exchange to the Python exception an
/// application expects.
pub(crate) fn io_error(e: io::Error) -> PyErr {
    match e.kind() {
        io::ErrorKind::TimedOut => PyTimeoutError::new_err(e.to_string()),
        _ => PyOSError::new_err(e.to_string()),
    }
}

/// Converts a size argument (`None` or negative means "all").
fn limit(size: Option<isize>) -> Option<usize> {
    match size {
        Some(n) if n >= 0 => Some(n as usize),
        _ => None,
    }
}

/// Largest `read()` filled straight from the socket while the body is
/// still arriving: a larger one (a claimed length the client may never
/// send) grows a buffer as the bytes come instead of being allocated whole.
const DIRECT_READ_MAX: usize = 16 * 1024 * 1024;

/// Reads `n` body bytes (fewer only at the end of the body) straight into a
/// new bytes object, which is not zeroed first: `pread(2)` from the spool
/// file or `read(2)` from the socket fills it.
fn body_bytes<'py>(
    py: Python<'py>,
    ex: &mut Exchange<'_>,
    n: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let Ok(len) = ffi::Py_ssize_t::try_from(n) else {
        return Err(PyValueError::new_err("read size too large"));
    };
    // SAFETY: a null source asks CPython for an uninitialised bytes object
    // of `len` bytes; the call needs the GIL, which `py` proves we hold.
    let raw = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), len) };
    // SAFETY: `raw` is a new (owned) reference or null with an exception
    // set, which `from_owned_ptr_or_err` turns into the error.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, raw)? };
    // SAFETY: `obj` is a bytes object of exactly `n` bytes that nothing
    // else has seen yet, so its buffer is ours to fill; the slice ends
    // before `obj` can be shared (it is returned after the last use).
    let buf = unsafe {
        std::slice::from_raw_parts_mut(
            ffi::PyBytes_AsString(obj.as_ptr()).cast::<std::mem::MaybeUninit<u8>>(),
            n,
        )
    };
    let got = ex.read_body(buf).map_err(io_error)?;
    if got == n {
        // SAFETY: PyBytes_FromStringAndSize returned a bytes object.
        return Ok(unsafe { obj.cast_into_unchecked::<PyBytes>() });
    }
    // The body ended early (a spool file shorter than recorded): return
    // what came.
    // SAFETY: `read_body` initialised the first `got` bytes of `buf`.
    let head = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), got) };
    Ok(PyBytes::new(py, head))
}

/// The request body as a binary stream: `read`, `readline`, `readlines` and
/// iteration. It never reads past the body, decodes chunked bodies, and
/// sends `100 Continue` on the first read when the client asked for it.
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
#[derive(Debug)]
pub struct InputStream {
    /// The request's `start_response`, which holds the exchange slot.
    sr: Py<StartResponse>,
}

impl InputStream {
    pub(crate) fn new(sr: Py<StartResponse>) -> Self {
        InputStream { sr }
    }

    fn slot(&self) -> &Slot {
        // `Py::get` borrows a frozen pyclass's contents, which live as long
        // as the object that `self.sr` keeps alive.
        &self.sr.get().slot
    }

    fn read_impl<'py>(
        &self,
        py: Python<'py>,
        size: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.slot().with(|ex| {
            // A body of known length goes straight into the bytes object,
            // from the buffer, the spool file or the socket.
            if let Some(left) = ex.body_left() {
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                let n = size.map_or(left, |s| s.min(left));
                let held = ex.body_buffered().len() as u64 + ex.spooled_left();
                if n <= DIRECT_READ_MAX || n as u64 <= held {
                    return body_bytes(py, ex, n);
                }
            }
            loop {
                let have = ex.body_buffered().len();
                if size.is_some_and(|n| have >= n) {
                    break;
                }
                if !ex.fill_body().map_err(io_error)? {
                    break;
                }
            }
            let buf = ex.body_buffered();
            let n = size.map_or(buf.len(), |s| s.min(buf.len()));
            let out = PyBytes::new(py, &buf[..n]);
            ex.consume_body(n);
            Ok(out)
        })
    }

    fn readline_impl<'py>(
        &self,
        py: Python<'py>,
        size: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.slot().with(|ex| {
            let mut scanned = 0;
            let n = loop {
                let buf = ex.body_buffered();
                let window = size.map_or(buf.len(), |s| s.min(buf.len()));
                if let Some(i) = buf[scanned..window].iter().position(|&b| b == b'\n') {
                    break scanned + i + 1;
                }
                if size.is_some_and(|s| buf.len() >= s) {
                    break window;
                }
                scanned = window;
                if !ex.fill_body().map_err(io_error)? {
                    break ex.body_buffered().len();
                }
            };
            let out = PyBytes::new(py, &ex.body_buffered()[..n]);
            ex.consume_body(n);
            Ok(out)
        })
    }
}

#[pymethods]
impl InputStream {
    /// Reads at most `size` bytes (all that is left with -1 or None).
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.read_impl(py, limit(size))
    }

    /// Reads one line, including its newline, of at most `size` bytes.
    #[pyo3(signature = (size = -1))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.readline_impl(py, limit(size))
    }

    /// Reads lines until the end of the body, or until about `hint` bytes.
    #[pyo3(signature = (hint = -1))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = self.readline_impl(py, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            lines.append(line)?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline_impl(py, None)?;
        Ok(if line.as_bytes().is_empty() {
            None
        } else {
            Some(line)
        })
    }
}
