//! `start_response` and the `write()` callable it returns (PEP 3333).

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};

use ferrowsgi_proto::{eq_lowercase, is_token, is_valid_field_value, parse_status};
use ferrowsgi_server::exchange::ResponseHead;
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::input::{io_error, Slot};

/// Whether `name` is a response header an application may not set (PEP 3333
/// "hop-by-hop"), ignoring case: Connection, Keep-Alive,
/// Proxy-Authenticate, Proxy-Authorization, Proxy-Connection, TE, Trailer,
/// Trailers, Transfer-Encoding and Upgrade. (`Connection: close` is let
/// through by the caller: it asks the server to close after the response.)
/// The length picks the names to compare with, so a usual name
/// (`Content-Type`, `Content-Length`: no hop-by-hop name is as long) is
/// compared with none.
fn is_hop_by_hop(name: &[u8]) -> bool {
    let candidates: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        8 => &[b"trailers"],
        10 => &[b"connection", b"keep-alive"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        19 => &[b"proxy-authorization"],
        _ => return false,
    };
    candidates.iter().any(|h| eq_lowercase(name, h))
}

/// What `start_response` was given, validated and serialised.
#[derive(Debug, Default, Clone)]
pub(crate) struct Head {
    /// Whether start_response has been called.
    pub called: bool,
    /// The status line and header fields.
    pub response: ResponseHead,
}

/// Encodes a str as latin-1, as PEP 3333 requires of status and headers.
/// Text whose characters are all below 256 (nearly all of it) is borrowed,
/// not copied.
fn latin1<'a>(s: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    let s = s
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str")))?;
    if let Some(bytes) = one_byte_text(s) {
        return Ok(Cow::Borrowed(bytes));
    }
    let text = s.to_cow()?;
    if text.is_ascii() {
        return Ok(match text {
            Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
            Cow::Owned(t) => Cow::Owned(t.into_bytes()),
        });
    }
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                PyValueError::new_err(format!("{what} has a character outside latin-1: {c:?}"))
            })
        })
        .collect::<PyResult<Vec<u8>>>()
        .map(Cow::Owned)
}

/// The characters of `s` as latin-1 bytes, read in place, if the string
/// stores one byte per character; `None` for any other string (the caller
/// converts it the slow way).
///
/// CPython keeps every ready str in the narrowest of three layouts that
/// holds its largest character: one byte per character (`PyUnicode_1BYTE_KIND`)
/// exactly when all of them are below 256, and then each byte is the
/// character's code, which is its latin-1 encoding. Reading that buffer
/// takes no call into the interpreter and no scan for non-ASCII text,
/// where the UTF-8 view took about a hundred instructions per string, five
/// strings in a usual `start_response`.
fn one_byte_text<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    let p = s.as_ptr();
    // SAFETY: `p` is a live str (the cast checked its type) that `s`
    // borrows for 'a, and a str's characters never change. A string made
    // by the pre-3.12 legacy API may not be ready yet: its layout is then
    // not one of the three (it is never seen by `PyUnicode_KIND`, which is
    // asked only of a ready string). For a ready string of the one-byte
    // kind, `PyUnicode_DATA` points at `PyUnicode_GET_LENGTH` bytes.
    unsafe {
        if !is_ready(p) || ffi::PyUnicode_KIND(p) != ffi::PyUnicode_1BYTE_KIND {
            return None;
        }
        let len = usize::try_from(ffi::PyUnicode_GET_LENGTH(p)).ok()?;
        let data = ffi::PyUnicode_DATA(p).cast::<u8>();
        Some(std::slice::from_raw_parts(data, len))
    }
}

/// Whether the str `p` is ready (always so from Python 3.12 on).
///
/// # Safety
/// `p` must point at a live str.
#[allow(deprecated)] // Deprecated in 3.14, where it always answers 1.
unsafe fn is_ready(p: *mut ffi::PyObject) -> bool {
    // SAFETY: the caller's promise; this only reads the string's state.
    unsafe { ffi::PyUnicode_IS_READY(p) != 0 }
}

/// Validates the arguments of `start_response` into a [`Head`], built in
/// `response` (an earlier head whose buffer is reused).
fn validate(
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    mut response: ResponseHead,
) -> PyResult<Head> {
    let status_line = latin1(status, "the status")?;
    // parse_status has checked the whole line: three digits, a space, and
    // a reason that is a valid field value.
    let code = parse_status(&status_line).ok_or_else(|| {
        PyValueError::new_err(format!(
            "invalid status {:?}: expected \"NNN Reason\"",
            String::from_utf8_lossy(&status_line)
        ))
    })?;
    // PEP 3333: "response_headers ... must be a Python list".
    let Ok(headers) = headers.cast::<PyList>() else {
        return Err(PyTypeError::new_err(format!(
            "the headers must be a list of (name, value) tuples, not {}",
            headers.get_type().name()?
        )));
    };
    response.restart(code, &status_line);
    for item in headers.iter() {
        let pair = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err("each header must be a (name, value) tuple of two str")
        })?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "each header must be a (name, value) tuple of two str",
            ));
        }
        let name_obj = pair.get_borrowed_item(0)?;
        let value_obj = pair.get_borrowed_item(1)?;
        let name = latin1(&name_obj, "a header name")?;
        let value = latin1(&value_obj, "a header value")?;
        if !is_token(&name) {
            return Err(PyValueError::new_err(format!(
                "invalid header name {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        if !is_valid_field_value(&value) {
            return Err(PyValueError::new_err(format!(
                "invalid value for header {:?} (control characters such as CR or LF are \
                 not allowed)",
                String::from_utf8_lossy(&name)
            )));
        }
        if is_hop_by_hop(&name)
            && !(eq_lowercase(&name, b"connection") && value.eq_ignore_ascii_case(b"close"))
        {
            return Err(PyValueError::new_err(format!(
                "hop-by-hop header {:?} is not allowed from a WSGI application",
                String::from_utf8_lossy(&name)
            )));
        }
        if name.len() == 14
            && eq_lowercase(&name, b"content-length")
            && (value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit))
        {
            return Err(PyValueError::new_err(format!(
                "invalid Content-Length {:?}",
                String::from_utf8_lossy(&value)
            )));
        }
        response.push_header(&name, &value);
    }
    Ok(Head {
        called: true,
        response,
    })
}

/// `check_response_head(status, headers)`: the checks of `start_response`,
/// for a gateway that writes the response itself (`ferrowsgi cgi`). Raises
/// the error `start_response` would raise, so both apply the same rules
/// with the same messages.
#[pyfunction]
pub(crate) fn check_response_head(
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
) -> PyResult<()> {
    validate(status, headers, ResponseHead::default()).map(|_| ())
}

/// The `start_response` callable of one request.
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
#[derive(Debug)]
pub struct StartResponse {
    head: Mutex<Head>,
    /// Where this request's exchange is reached from Python.
    pub(crate) slot: Slot,
    /// The `write()` callable to return, made with this object and kept
    /// with it while both serve requests (a reference cycle, which
    /// [`StartResponse::forget_write`] breaks); a new one is made when
    /// there is none.
    write: Mutex<Option<Py<Write>>>,
}

impl StartResponse {
    pub(crate) fn new() -> Self {
        StartResponse {
            head: Mutex::new(Head::default()),
            slot: Slot::default(),
            write: Mutex::new(None),
        }
    }

    /// Makes `write` the callable that `start_response` returns.
    pub(crate) fn keep_write(&self, write: Py<Write>) {
        *self.write.lock().unwrap_or_else(|e| e.into_inner()) = Some(write);
    }

    /// Drops the kept `write()` callable (which refers back to this object).
    pub(crate) fn forget_write(&self) {
        let write = self.write.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(write);
    }

    /// The head as given so far.
    pub(crate) fn head(&self) -> MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the object as new for another request (the head's buffer is
    /// kept). The slot is empty already: its guard emptied it.
    pub(crate) fn reset(&self) {
        let mut head = self.head();
        head.called = false;
        head.response.clear();
    }
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)`.
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Write>> {
        StartResponse::call(slf, status, headers, exc_info)
    }
}

impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)`, however
    /// it was called.
    fn call(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Write>> {
        let this = slf.get();
        let exc_info = exc_info.filter(|e| !e.is_none());
        if let Some(info) = exc_info {
            let committed = this.slot.with(|ex| Ok(ex.is_committed()))?;
            if committed {
                // PEP 3333: headers are out, so the error cannot be reported
                // in a new response; re-raise it into the application.
                let value = info.get_item(1)?;
                return Err(PyErr::from_value(value));
            }
        }
        // One lock for the check, the validation and the new head: the
        // validation runs no Python code, so nothing can wait for it.
        {
            let mut head = this.head();
            if exc_info.is_none() && head.called {
                return Err(PyAssertionError::new_err(
                    "start_response() called a second time without exc_info",
                ));
            }
            // A first call builds in the buffer of the head this object had
            // for an earlier request; a second one (with exc_info) must leave
            // the first head whole if it fails.
            let spare = if head.called {
                ResponseHead::default()
            } else {
                std::mem::take(&mut head.response)
            };
            *head = validate(status, headers, spare)?;
        }
        let py = slf.py();
        let kept = this.write.lock().unwrap_or_else(|e| e.into_inner());
        match kept.as_ref() {
            Some(write) => Ok(write.clone_ref(py)),
            None => {
                drop(kept);
                Py::new(py, Write::new(slf.clone().unbind()))
            }
        }
    }
}

/// The `start_response` an application is given: a builtin function bound
/// to `sr` (its `__self__`), called with the vectorcall protocol.
///
/// A call to an instance of a class (`StartResponse.__call__`) goes through
/// the type's `tp_call`: the interpreter packs the arguments into a tuple,
/// which the binding then unpacks by name and frees. A builtin function
/// declared `METH_FASTCALL` gets them as the array the call already has;
/// that spares about 400 instructions per request, every request making
/// this call once.
pub(crate) fn callable(py: Python<'_>, sr: &Py<StartResponse>) -> PyResult<Py<PyAny>> {
    // SAFETY: the definition is a static that lives as long as the program
    // and is never written (CPython only reads it, the `*mut` is its API's
    // spelling). PyCFunction_NewEx takes its own reference to `sr` and
    // returns a new reference, or NULL with an exception set.
    unsafe {
        let def = std::ptr::addr_of!(START_RESPONSE.0).cast_mut();
        let f = ffi::PyCFunction_NewEx(def, sr.as_ptr(), std::ptr::null_mut());
        Ok(Bound::from_owned_ptr_or_err(py, f)?.unbind())
    }
}

/// A method definition that may sit in a static.
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definition holds pointers to static strings and a function;
// nothing writes to it after it is made, so sharing it between threads is
// sharing read-only data.
unsafe impl Sync for MethodDef {}

static START_RESPONSE: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"start_response".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: start_response_fastcall,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"start_response(status, headers, exc_info=None)\n--\n\nPEP 3333's start_response."
        .as_ptr(),
});

/// The `METH_FASTCALL | METH_KEYWORDS` entry point of [`callable`].
///
/// # Safety
/// Called by CPython only, with the GIL held: `slf` is the `StartResponse`
/// the function was made with, `args` holds `nargs` positional arguments
/// followed by one value for each name in the `kwnames` tuple (NULL when
/// there are no keywords), all borrowed for the call.
unsafe extern "C" fn start_response_fastcall(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython holds the GIL while it calls a builtin function.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the caller's promise, passed on.
        unsafe { fastcall(py, slf, args, nargs, kwnames) }
    }));
    let result = outcome.unwrap_or_else(|_| {
        Err(pyo3::panic::PanicException::new_err(
            "internal error in start_response (panic)",
        ))
    });
    match result {
        Ok(write) => write.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// The argument names, in their positional order.
const PARAMS: [&str; 3] = ["status", "headers", "exc_info"];

/// Sorts the arguments of a fast call into `(status, headers, exc_info)`,
/// with the errors Python gives for a wrong call, and makes the call.
///
/// # Safety
/// As [`start_response_fastcall`].
unsafe fn fastcall(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<Write>> {
    // SAFETY (whole body): the pointers are live borrowed references for
    // the call (the caller's promise); each is turned into an owned one
    // (`from_borrowed_ptr` adds a reference) before use.
    unsafe {
        let slf = Bound::from_borrowed_ptr(py, slf).cast_into::<StartResponse>()?;
        let npos = usize::try_from(nargs).unwrap_or(0);
        let kw = if kwnames.is_null() {
            None
        } else {
            Some(Bound::from_borrowed_ptr(py, kwnames).cast_into::<PyTuple>()?)
        };
        let nkw = kw.as_ref().map_or(0, |k| k.len());
        if npos > PARAMS.len() {
            return Err(PyTypeError::new_err(format!(
                "start_response() takes from 2 to 3 positional arguments but {npos} were given"
            )));
        }
        let mut slots: [Option<Bound<'_, PyAny>>; 3] = [None, None, None];
        for (i, slot) in slots.iter_mut().enumerate().take(npos) {
            *slot = Some(Bound::from_borrowed_ptr(py, *args.add(i)));
        }
        if let Some(kw) = &kw {
            for j in 0..nkw {
                let name = kw.get_borrowed_item(j)?;
                let name = name.cast::<PyString>()?;
                let name = name.to_cow()?;
                let Some(i) = PARAMS.iter().position(|p| *p == name) else {
                    return Err(PyTypeError::new_err(format!(
                        "start_response() got an unexpected keyword argument '{name}'"
                    )));
                };
                if slots[i].is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "start_response() got multiple values for argument '{name}'"
                    )));
                }
                slots[i] = Some(Bound::from_borrowed_ptr(py, *args.add(npos + j)));
            }
        }
        let [status, headers, exc_info] = slots;
        let missing = |name: &str| {
            PyTypeError::new_err(format!(
                "start_response() missing required argument '{name}'"
            ))
        };
        let status = status.ok_or_else(|| missing("status"))?;
        let headers = headers.ok_or_else(|| missing("headers"))?;
        StartResponse::call(&slf, &status, &headers, exc_info.as_ref())
    }
}

/// The `write(data)` callable returned by `start_response`: sends `data`
/// at once (the head first, if it has not gone out).
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
#[derive(Debug)]
pub struct Write {
    start_response: Py<StartResponse>,
}

impl Write {
    /// The `write()` callable of `start_response`'s request.
    pub(crate) fn new(start_response: Py<StartResponse>) -> Self {
        Write { start_response }
    }
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        let sr = self.start_response.bind(py).get();
        sr.slot.with(|ex| {
            if !ex.is_committed() {
                let head = sr.head().response.clone();
                ex.start_stream(&head).map_err(io_error)?;
            }
            ex.send(bytes.as_bytes()).map_err(io_error)
        })
    }
}
