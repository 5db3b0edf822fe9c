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

/// How many header names each thread remembers as checked.
const KNOWN_NAMES: usize = 8;

/// Header-name str objects this thread has already found to be valid
/// tokens that an application may send (not hop-by-hop), most recent
/// first.
///
/// An application usually passes the same name objects on every request
/// (the literals of its code, or a framework's constants), and checking a
/// name — its latin-1 bytes, the token syntax, the hop-by-hop list — cost
/// about a hundred instructions per header. A name found here is known
/// good by its identity alone. Each entry holds a strong reference, so the
/// object cannot be freed and its address reused by another string while
/// it is here; a str's characters never change. Only exact str objects
/// stored one byte per character are kept (a subclass could answer
/// differently to the checks' callers). Entries pushed out are released
/// with the GIL held (`validate` runs with it); those left when the thread
/// ends are not released (at most [`KNOWN_NAMES`] small strings per
/// thread), since no interpreter may be there to release them.
struct KnownNames {
    names: [*mut ffi::PyObject; KNOWN_NAMES],
}

thread_local! {
    static KNOWN: std::cell::RefCell<KnownNames> =
        const { std::cell::RefCell::new(KnownNames::empty()) };
}

impl KnownNames {
    /// A cache with no names.
    const fn empty() -> KnownNames {
        KnownNames {
            names: [std::ptr::null_mut(); KNOWN_NAMES],
        }
    }

    /// Releases every entry.
    fn release(&mut self, _py: Python<'_>) {
        for p in &mut self.names {
            let name = std::mem::replace(p, std::ptr::null_mut());
            if !name.is_null() {
                // SAFETY: the GIL is held (`_py`) and `name` is the
                // reference the entry owned.
                unsafe { ffi::Py_DECREF(name) };
            }
        }
    }

    /// Whether `name` is one of the names checked before.
    fn contains(&self, name: *mut ffi::PyObject) -> bool {
        self.names.contains(&name)
    }

    /// Remembers `name` (checked: a valid token, not hop-by-hop), pushing
    /// out the oldest entry.
    fn remember(&mut self, _py: Python<'_>, name: &Bound<'_, PyAny>) {
        let p = name.as_ptr();
        if p.is_null() || self.contains(p) {
            return;
        }
        let oldest = self.names[KNOWN_NAMES - 1];
        self.names.copy_within(..KNOWN_NAMES - 1, 1);
        // SAFETY: the GIL is held (`_py`); `p` is a live object, and the
        // reference taken here is the one the entry owns until it is pushed
        // out. `oldest`, when not null, is such an owned reference.
        unsafe {
            ffi::Py_INCREF(p);
            self.names[0] = p;
            if !oldest.is_null() {
                ffi::Py_DECREF(oldest);
            }
        }
    }
}

/// The bytes of a header name, and whether it is known good already
/// ([`KnownNames`]); a name that is not is converted as [`latin1`] does.
fn name_bytes<'a>(
    known: &KnownNames,
    name: &'a Bound<'_, PyAny>,
) -> PyResult<(Cow<'a, [u8]>, bool)> {
    if known.contains(name.as_ptr()) {
        // SAFETY: only exact one-byte str objects are kept (`remember` is
        // called for those alone), and an object in the cache is the same
        // live object it was when checked.
        let s = unsafe { name.cast_unchecked::<PyString>() };
        if let Some(bytes) = one_byte_text(s) {
            return Ok((Cow::Borrowed(bytes), true));
        }
    }
    latin1(name, "a header name").map(|b| (b, false))
}

/// Whether `name` may be remembered in [`KnownNames`]: an exact str whose
/// characters are stored one byte each.
fn rememberable(name: &Bound<'_, PyAny>) -> bool {
    name.is_exact_instance_of::<PyString>()
        && name
            .cast::<PyString>()
            .is_ok_and(|s| one_byte_text(s).is_some())
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
    let check_all = |known: &mut KnownNames, response: &mut ResponseHead| {
        headers
            .iter()
            .try_for_each(|item| check_header(known, &item, response))
    };
    let cached = KNOWN.try_with(|known| {
        // Nothing in the checks runs Python code, so the cache is never
        // in use already; if it were, the headers are checked without it.
        known
            .try_borrow_mut()
            .ok()
            .map(|mut known| check_all(&mut known, &mut response))
    });
    match cached {
        Ok(Some(checked)) => checked?,
        // The thread is ending (its cache is gone) or the cache is in use:
        // a cache of this call's own, released at once.
        _ => {
            let mut own = KnownNames::empty();
            let checked = check_all(&mut own, &mut response);
            own.release(headers.py());
            checked?;
        }
    }
    Ok(Head {
        called: true,
        response,
    })
}

/// Checks one `(name, value)` item of the headers and adds it to
/// `response`.
fn check_header(
    known: &mut KnownNames,
    item: &Bound<'_, PyAny>,
    response: &mut ResponseHead,
) -> PyResult<()> {
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
    let (name, checked) = name_bytes(known, &name_obj)?;
    let value = latin1(&value_obj, "a header value")?;
    if checked {
        // A name checked before: a token, and not hop-by-hop.
        if !is_valid_field_value(&value) {
            return Err(invalid_value(&name));
        }
        if name.len() == 14 && eq_lowercase(&name, b"content-length") && !is_content_length(&value)
        {
            return Err(invalid_content_length(&value));
        }
        response.push_header(&name, &value);
        return Ok(());
    }
    if !is_token(&name) {
        return Err(PyValueError::new_err(format!(
            "invalid header name {:?}",
            String::from_utf8_lossy(&name)
        )));
    }
    if !is_valid_field_value(&value) {
        return Err(invalid_value(&name));
    }
    let hop_by_hop = is_hop_by_hop(&name);
    if hop_by_hop && !(eq_lowercase(&name, b"connection") && value.eq_ignore_ascii_case(b"close")) {
        return Err(PyValueError::new_err(format!(
            "hop-by-hop header {:?} is not allowed from a WSGI application",
            String::from_utf8_lossy(&name)
        )));
    }
    if name.len() == 14 && eq_lowercase(&name, b"content-length") && !is_content_length(&value) {
        return Err(invalid_content_length(&value));
    }
    response.push_header(&name, &value);
    // `Connection` (the one hop-by-hop name let through, with `close`)
    // is never remembered: its value decides each time.
    if !hop_by_hop && rememberable(&name_obj) {
        known.remember(item.py(), &name_obj);
    }
    Ok(())
}

/// Whether `value` is a Content-Length an application may give: 1 to 19
/// digits.
fn is_content_length(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit)
}

/// The error for a header value with a control character.
fn invalid_value(name: &[u8]) -> PyErr {
    PyValueError::new_err(format!(
        "invalid value for header {:?} (control characters such as CR or LF are \
         not allowed)",
        String::from_utf8_lossy(name)
    ))
}

/// The error for a Content-Length that is not 1 to 19 digits.
fn invalid_content_length(value: &[u8]) -> PyErr {
    PyValueError::new_err(format!(
        "invalid Content-Length {:?}",
        String::from_utf8_lossy(value)
    ))
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
