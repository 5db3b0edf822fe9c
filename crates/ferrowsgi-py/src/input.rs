//! `wsgi.input`, and the slot through which the Python objects of one
//! request reach its [`Exchange`].

use std::ffi::c_int;
use std::io;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::{Mutex, TryLockError};

use ferrowsgi_server::exchange::BodyOverLimit;
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

pyo3::create_exception!(
    ferrowsgi._ferrowsgi,
    RequestBodyTooLarge,
    PyOSError,
    "Raised by a read of `wsgi.input` once the request body goes over \
     `--limit-request-body`. It is an OSError, so `except OSError` catches it. \
     Whatever the application then does, the client gets 413 Content Too Large \
     and the connection closes, unless the response had already started."
);

/// Maps an I/O error of the exchange to the Python exception an
/// application expects.
pub(crate) fn io_error(e: io::Error) -> PyErr {
    if BodyOverLimit::is(&e) {
        return RequestBodyTooLarge::new_err(e.to_string());
    }
    if ferrowsgi_server::deadline::PastDeadline::is(&e) {
        // The wait itself tells the request of its deadline: an
        // interruption the reporter raised meanwhile would land a second
        // time, anywhere in the application's handling of this one.
        crate::deadline::cancel_own();
        return crate::deadline::RequestTimeout::new_err(e.to_string());
    }
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

/// Largest `read()` allocated whole while the body is still arriving: a
/// larger one (a claimed length the client may never send, or a `read()`
/// with no size of a chunked body) starts at this size and grows as the
/// bytes come.
const DIRECT_READ_MAX: usize = 16 * 1024 * 1024;

extern "C" {
    /// CPython's resize of a bytes object that nothing else has seen yet
    /// (Include/cpython/bytesobject.h): a `realloc` in place where it can.
    /// On failure it frees the object, sets `*bytes` to NULL and raises
    /// MemoryError.
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> c_int;
}

/// A new bytes object of `n` bytes (`n` > 0) whose contents are not
/// initialised, for the caller to fill before anyone else sees it.
fn new_bytes(py: Python<'_>, n: usize) -> PyResult<Bound<'_, PyAny>> {
    let Ok(len) = ffi::Py_ssize_t::try_from(n) else {
        return Err(PyValueError::new_err("read size too large"));
    };
    // SAFETY: a null source asks CPython for an uninitialised bytes object
    // of `len` bytes; the call needs the GIL, which `py` proves we hold.
    let raw = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), len) };
    // SAFETY: `raw` is a new (owned) reference or null with an exception
    // set, which `from_owned_ptr_or_err` turns into the error.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

/// Resizes `obj`, made by [`new_bytes`] and not shared yet, to `n` bytes;
/// its first bytes (up to the smaller size) are kept.
fn resize_bytes<'py>(
    py: Python<'py>,
    obj: Bound<'py, PyAny>,
    n: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let Ok(len) = ffi::Py_ssize_t::try_from(n) else {
        return Err(PyValueError::new_err("read size too large"));
    };
    let mut raw = obj.into_ptr();
    // SAFETY: `raw` is the only reference to a bytes object that nothing
    // else has seen (made by `new_bytes`, owned here), which is what
    // _PyBytes_Resize requires; the GIL is held (`py`).
    unsafe { _PyBytes_Resize(&mut raw, len) };
    // SAFETY: `raw` is now the resized object (owned) or null with
    // MemoryError set.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

/// Reads up to `want` body bytes (fewer only at the end of the body)
/// straight into a new bytes object, which is not zeroed first: the
/// buffered bytes, then `pread(2)` from the spool file or `read(2)` from
/// the socket (or the chunked decoder) fill it. A read of a body still
/// arriving that is larger than [`DIRECT_READ_MAX`] starts there and grows
/// as the bytes come, so a claimed length is never allocated whole.
fn body_bytes<'py>(
    py: Python<'py>,
    ex: &mut Exchange<'_>,
    want: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    if want == 0 {
        return Ok(PyBytes::new(py, b""));
    }
    let mut cap = if want <= DIRECT_READ_MAX {
        want
    } else {
        let held = ex.body_buffered().len() as u64 + ex.spooled_left();
        let held = usize::try_from(held).unwrap_or(usize::MAX);
        if want <= held {
            want
        } else {
            DIRECT_READ_MAX.max(held)
        }
    };
    let mut obj = new_bytes(py, cap)?;
    let mut got = 0;
    loop {
        // SAFETY: `obj` is a bytes object of exactly `cap` bytes that
        // nothing else has seen yet, so its buffer is ours to fill; the
        // slice is dropped before `obj` is resized or returned.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                ffi::PyBytes_AsString(obj.as_ptr()).cast::<MaybeUninit<u8>>(),
                cap,
            )
        };
        got += ex.read_body(&mut buf[got..]).map_err(io_error)?;
        if got < cap || cap == want {
            break;
        }
        cap = want.min(cap.saturating_mul(2));
        obj = resize_bytes(py, obj, cap)?;
    }
    if got < cap {
        // The body ended first: the object shrinks (in place) to it.
        obj = resize_bytes(py, obj, got)?;
    }
    // SAFETY: `new_bytes` and `resize_bytes` return bytes objects, whose
    // first `got` bytes `read_body` initialised.
    Ok(unsafe { obj.cast_into_unchecked::<PyBytes>() })
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
            // What is left is known for a Content-Length body, and for a
            // chunked one decoded to its end; otherwise it is the size
            // asked for (or everything).
            let left = ex
                .body_left()
                .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
            let want = match (size, left) {
                (Some(s), Some(l)) => s.min(l),
                (Some(s), None) => s,
                (None, Some(l)) => l,
                (None, None) => usize::MAX,
            };
            body_bytes(py, ex, want)
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
