//! The WSGI application as a [`Handler`]: call it, check what it returns,
//! send the response, and always call `close()`.

use std::any::Any;
use std::os::fd::RawFd;
use std::sync::Mutex;

use ferrowsgi_server::exchange::ResponseHead;
use ferrowsgi_server::{log, Exchange, Handler, Waiter};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString, PyTuple};

use crate::context::RequestContext;
use crate::environ::EnvTemplate;
use crate::errors::ErrorStream;
use crate::file_wrapper::FileWrapper;
use crate::hooks::{After, RequestHooks};
use crate::input::{InputStream, RequestBodyTooLarge, Slot};
use crate::start_response::{Head, StartResponse, Write};

/// A Python WSGI application, served by the Rust server.
#[derive(Debug)]
pub(crate) struct PyHandler {
    app: Py<PyAny>,
    env: EnvTemplate,
    debug: bool,
    /// Request objects that nothing refers to any more, for the next
    /// requests (at most `spare_max`).
    spare: Mutex<Vec<RequestObjects>>,
    spare_max: usize,
    /// `pre_request`/`post_request`, if either is installed: looked up
    /// once, so that without them a request pays one check.
    hooks: Option<Box<RequestHooks>>,
}

/// The Python objects a request gives the application besides its environ:
/// `start_response`, the `write()` callable it returns, `wsgi.input` and
/// `wsgi.errors`. Making and freeing them cost about a tenth of a hello
/// request's user-space instructions, so when a request is over and nothing
/// else holds any of them (the application kept neither the environ nor
/// one of them), they serve the next request instead.
#[derive(Debug)]
struct RequestObjects {
    sr: Py<StartResponse>,
    /// `start_response` as the application gets it, bound to `sr`
    /// ([`crate::start_response::callable`]).
    call: Py<PyAny>,
    write: Py<Write>,
    input: Py<InputStream>,
    errors: Py<ErrorStream>,
}

impl RequestObjects {
    fn new(py: Python<'_>) -> PyResult<RequestObjects> {
        let sr = Py::new(py, StartResponse::new())?;
        let write = Py::new(py, Write::new(sr.clone_ref(py)))?;
        sr.get().keep_write(write.clone_ref(py));
        let input = Py::new(py, InputStream::new(sr.clone_ref(py)))?;
        let errors = Py::new(py, ErrorStream::new())?;
        let call = crate::start_response::callable(py, &sr)?;
        Ok(RequestObjects {
            sr,
            call,
            write,
            input,
            errors,
        })
    }

    /// Whether these are the only references: one to each object, plus
    /// `start_response`'s to `write` and theirs, the input's and the bound
    /// function's to it.
    fn unshared(&self, _py: Python<'_>) -> bool {
        refcnt(&self.input) == 1
            && refcnt(&self.errors) == 1
            && refcnt(&self.call) == 1
            && refcnt(&self.write) == 2
            && refcnt(&self.sr) == 4
    }
}

impl Drop for RequestObjects {
    fn drop(&mut self) {
        // Break the cycle between start_response and its write(); the
        // application may still hold either, and both keep working.
        self.sr.get().forget_write();
    }
}

/// The reference count of `obj`.
fn refcnt<T>(obj: &Py<T>) -> isize {
    // SAFETY: `obj` is a live object (we hold a reference to it), and its
    // count is only read; the caller holds the GIL (a `Python` token).
    unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) }
}

/// How the exchange went, for the cleanup that follows.
enum Sent {
    /// The response went out (or the client left; nothing more to do).
    Done,
    /// The application failed; the error is to be logged and answered.
    AppError(PyErr),
    /// The client reads slower than the response is made: the socket is
    /// full, and the rest is sent when the event loop has written what is
    /// buffered (no application thread waits for a slow reader).
    Paused(Rest),
}

/// What is left of a paused response.
enum Rest {
    /// The application's iterator, to be asked for its next block.
    Iter(Py<PyIterator>),
    /// A `wsgi.file_wrapper` file, to be sent from `pos` (the descriptor
    /// stays open: the wrapper is kept alive with the paused response).
    File { fd: RawFd, pos: u64 },
}

/// A paused response, kept with its connection by the server. Dropping it
/// before it is resumed to the end (the client went away or stopped
/// reading) still calls the iterable's `close()`.
struct Paused {
    rest: Option<Rest>,
    /// The application's iterable, for `close()`.
    result: Option<Py<PyAny>>,
    sr: Py<StartResponse>,
    errors: Py<ErrorStream>,
    /// The request's context, entered again to go on (and to close).
    ctx: Option<RequestContext>,
    /// `post_request`, run when the response is over.
    after: Option<After>,
}

impl Drop for Paused {
    fn drop(&mut self) {
        let Some(result) = self.result.take() else {
            return;
        };
        let tag = self.errors.get().tag();
        log::info(&format!(
            "{tag}: response abandoned: the client stopped reading or went away"
        ));
        Python::attach(|py| {
            let entered = self.ctx.as_ref().and_then(|c| c.enter(py).ok());
            close_result(py, result.bind(py), self.errors.get());
            if let Some(after) = self.after.take() {
                let head = self.sr.get().head();
                after.run(py, 0, &head.response, head.called);
            }
            drop(entered);
        });
    }
}

impl PyHandler {
    pub(crate) fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        threads: usize,
        debug: bool,
    ) -> PyResult<Self> {
        Ok(PyHandler {
            app,
            env: EnvTemplate::new(py, threads)?,
            debug,
            spare: Mutex::new(Vec::new()),
            spare_max: threads.clamp(1, 64),
            hooks: RequestHooks::installed(py)?,
        })
    }

    /// The request objects for the request in `ex`: spare ones if there
    /// are, new ones otherwise.
    fn request_objects(&self, py: Python<'_>, ex: &Exchange<'_>) -> PyResult<RequestObjects> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let objects = match spare {
            Some(objects) => objects,
            None => RequestObjects::new(py)?,
        };
        let head = ex.head();
        objects.errors.get().set_tag(head.method(), head.target());
        Ok(objects)
    }

    /// Keeps `objects` for a later request if nothing else refers to them.
    fn recycle(&self, py: Python<'_>, objects: RequestObjects) {
        if !objects.unshared(py) {
            return;
        }
        objects.sr.get().reset();
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < self.spare_max {
            spare.push(objects);
        }
    }

    /// Calls the application and sends what it returns.
    fn run(&self, py: Python<'_>, ex: &mut Exchange<'_>) {
        let ctx = match RequestContext::new(py) {
            Ok(ctx) => ctx,
            Err(e) => {
                report(py, &ex_tag_of(ex), &e);
                respond_500(py, ex, &e, self.debug);
                return;
            }
        };
        let entered = match ctx.enter(py) {
            Ok(entered) => entered,
            Err(e) => {
                report(py, &ex_tag_of(ex), &e);
                respond_500(py, ex, &e, self.debug);
                return;
            }
        };
        let built = (|| -> PyResult<_> {
            let objects = self.request_objects(py, ex)?;
            let environ = self.env.build(
                py,
                ex,
                objects.input.bind(py).clone(),
                objects.errors.bind(py).clone(),
            )?;
            Ok((environ, objects))
        })();
        let (environ, objects) = match built {
            Ok(v) => v,
            Err(e) => {
                report(py, &ex_tag_of(ex), &e);
                respond_500(py, ex, &e, self.debug);
                return;
            }
        };
        let mut after = None;
        if let Some(hooks) = &self.hooks {
            let (a, failed) = hooks.begin(py, ex, environ.as_any());
            after = a;
            if let Some(e) = failed {
                report(py, &format!("{} (in pre_request)", ex_tag_of(ex)), &e);
                respond_500(py, ex, &e, self.debug);
                if let Some(after) = after {
                    after.run(py, ex.status(), &ResponseHead::default(), false);
                }
                return;
            }
        }
        let sr = objects.sr.bind(py);
        let slot = &sr.get().slot;
        let guard = slot.fill(ex);
        let call = objects.call.bind(py);
        let (sent, result) = match self.app.bind(py).call1((environ, call)) {
            Err(e) => (Sent::AppError(e), None),
            Ok(result) => (send_result(py, slot, sr.get(), &result), Some(result)),
        };
        drop(guard);
        let sent = self.conclude(
            py,
            ex,
            sent,
            result,
            objects.sr.clone_ref(py),
            objects.errors.clone_ref(py),
        );
        if sent.is_none() {
            if let Some(after) = after.take() {
                let head = sr.get().head();
                after.run(py, ex.status(), &head.response, head.called);
            }
        }
        drop(entered);
        if sent.is_none() {
            self.recycle(py, objects);
        }
        if let Some(mut paused) = sent {
            paused.ctx = Some(ctx);
            paused.after = after;
            // Only an unfinished response pauses, so this cannot fail; if
            // it did, dropping the state would still call close().
            let _ = ex.pause(paused);
        }
    }

    /// Goes on with a paused response.
    fn resume_run(&self, py: Python<'_>, ex: &mut Exchange<'_>, state: Box<dyn Any + Send>) {
        let Ok(mut paused) = state.downcast::<Paused>() else {
            ex.abort();
            return;
        };
        let ctx = paused.ctx.take();
        let mut after = paused.after.take();
        let entered = match ctx.as_ref().map(|c| c.enter(py)).transpose() {
            Ok(entered) => entered,
            Err(e) => {
                report(py, &ex_tag_of(ex), &e);
                ex.abort();
                return;
            }
        };
        // Taken out, the paused state's Drop no longer calls close():
        // `conclude` does, once.
        let result = paused.result.take().map(|r| r.into_bound(py));
        let rest = paused.rest.take();
        let sr = paused.sr.clone_ref(py).into_bound(py);
        let errors = paused.errors.clone_ref(py);
        drop(paused);
        let slot = &sr.get().slot;
        let guard = slot.fill(ex);
        let sent = match rest {
            Some(Rest::Iter(it)) => {
                let mut it = it.into_bound(py);
                send_iter(slot, sr.get(), &mut it).unwrap_or_else(Sent::AppError)
            }
            Some(Rest::File { fd, pos }) => slot
                .with(|ex| Ok(file_step(ex, fd, pos)))
                .unwrap_or(Sent::Done),
            None => Sent::Done,
        };
        drop(guard);
        let sent = self.conclude(py, ex, sent, result, sr.clone().unbind(), errors);
        if sent.is_none() {
            if let Some(after) = after.take() {
                let head = sr.get().head();
                after.run(py, ex.status(), &head.response, head.called);
            }
        }
        drop(entered);
        if let Some(mut paused) = sent {
            paused.ctx = ctx;
            paused.after = after;
            let _ = ex.pause(paused);
        }
    }

    /// After the application's iterable was sent (or failed, or paused):
    /// returns the state to pause with, or calls `close()` and answers an
    /// error.
    fn conclude(
        &self,
        py: Python<'_>,
        ex: &mut Exchange<'_>,
        sent: Sent,
        result: Option<Bound<'_, PyAny>>,
        sr: Py<StartResponse>,
        errors: Py<ErrorStream>,
    ) -> Option<Box<Paused>> {
        let sent = match sent {
            Sent::Paused(rest) => {
                return Some(Box::new(Paused {
                    rest: Some(rest),
                    result: result.map(Bound::unbind),
                    sr,
                    errors,
                    ctx: None,
                    after: None,
                }));
            }
            other => other,
        };
        let errors = errors.get();
        if let Some(result) = result {
            close_result(py, &result, errors);
        }
        if let Sent::AppError(err) = sent {
            let tag = errors.tag();
            if err.is_instance_of::<crate::deadline::RequestTimeout>(py) {
                // Its stack was logged at the deadline; the client has had
                // a 504 if nothing had started (see deadline.rs).
                log::info(&format!(
                    "{tag}: the request's thread stopped at RequestTimeout after its deadline"
                ));
                if ex.is_committed() {
                    ex.abort();
                } else {
                    respond_500(py, ex, &err, false);
                }
                return None;
            }
            if ex.is_body_over_limit() {
                // The client's error, not the application's: the exchange
                // answers 413 in place of a response not yet started, or
                // the started one is cut off. Only another exception raised
                // on the way out is the application's own.
                if !err.is_instance_of::<RequestBodyTooLarge>(py) {
                    report(py, &tag, &err);
                }
                if ex.is_committed() {
                    log::info(&format!(
                        "{tag}: request body over the limit after the response started; \
                         response cut off"
                    ));
                    ex.abort();
                } else {
                    let _ = ex.answer_body_over_limit();
                }
                return None;
            }
            if ex.is_body_invalid() && !ex.is_committed() {
                // RFC 9110 §15.5.1: bad framing is the client's error, even
                // when it surfaced inside the application's read.
                log::info(&format!(
                    "{tag} rejected: 400 Bad Request: invalid request body"
                ));
                let mut head = ResponseHead::new(400, b"400 Bad Request");
                head.push_header(b"Content-Type", b"text/plain; charset=utf-8");
                head.push_header(b"Connection", b"close");
                let _ = ex.respond(&head, &[b"invalid request body\n"]);
                return None;
            }
            report(py, &tag, &err);
            if ex.is_committed() {
                ex.abort();
            } else {
                respond_500(py, ex, &err, self.debug);
            }
        }
        None
    }
}

/// PEP 3333: `close()` is called once, whatever happened. Lists and tuples
/// have none (and asking would build an exception). `errors` names the
/// request if `close()` fails.
fn close_result(py: Python<'_>, result: &Bound<'_, PyAny>, errors: &ErrorStream) {
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return;
    }
    if let Ok(close) = result.getattr(intern!(py, "close")) {
        if let Err(e) = close.call0() {
            report(py, &format!("{} (in close())", errors.tag()), &e);
        }
    }
}

/// Sends the application's iterable through the exchange.
fn send_result(py: Python<'_>, slot: &Slot, sr: &StartResponse, result: &Bound<'_, PyAny>) -> Sent {
    let outcome = (|| -> PyResult<Sent> {
        if let Ok(fw) = result.cast_exact::<FileWrapper>() {
            if let Some(sent) = try_sendfile(py, slot, sr, fw.get())? {
                return Ok(sent);
            }
        }
        if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
            return send_sequence(slot, sr, result);
        }
        // PEP 3333: an iterable whose len() is 1 has a known length too.
        if has_len(result) && result.len().is_ok_and(|n| n == 1) {
            return send_sequence(slot, sr, result);
        }
        let mut it = result.try_iter()?;
        if is_sequence_iter(&it) {
            // Iterating a list or tuple runs no application code, so every
            // block is already there: a complete response, in one write and
            // with a Content-Length (Django's HttpResponse iterates so).
            let mut blocks = Vec::with_capacity(1);
            for item in it.by_ref() {
                blocks.push(as_block(&item?)?.clone());
            }
            return send_blocks(slot, sr, &blocks);
        }
        // Before asking for the first block, let the other requests of this
        // wake-up be served (see Exchange::should_yield).
        if slot.with(|ex| Ok(ex.should_yield()))? {
            return Ok(Sent::Paused(Rest::Iter(it.unbind())));
        }
        send_iter(slot, sr, &mut it)
    })();
    outcome.unwrap_or_else(Sent::AppError)
}

/// Whether `obj`'s type implements `len()`. Asked of the type's length
/// slots rather than by looking `__len__` up by name, which builds (and
/// throws away) an AttributeError for every iterable without one: a
/// generator, a Django or Flask response.
fn has_len(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object, so its type object is live too; the
    // slot tables of a ready type are only read here, never written.
    unsafe {
        let tp = pyo3::ffi::Py_TYPE(obj.as_ptr());
        let seq = (*tp).tp_as_sequence;
        let map = (*tp).tp_as_mapping;
        (!seq.is_null() && (*seq).sq_length.is_some())
            || (!map.is_null() && (*map).mp_length.is_some())
    }
}

fn not_started() -> PyErr {
    PyErr::new::<pyo3::exceptions::PyAssertionError, _>(
        "the application sent a response body before calling start_response()",
    )
}

fn as_block<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        let kind = if item.is_instance_of::<PyString>() {
            "str"
        } else {
            "a non-bytes object"
        };
        PyTypeError::new_err(format!(
            "the application returned {kind} in its response body; WSGI bodies are bytes"
        ))
    })
}

/// A list or tuple: all blocks are there, so they go out in one write with a
/// Content-Length (unless write() already started a stream).
fn send_sequence(slot: &Slot, sr: &StartResponse, seq: &Bound<'_, PyAny>) -> PyResult<Sent> {
    if let Ok(list) = seq.cast_exact::<PyList>() {
        if list.len() == 1 {
            // The common `[body]`: no iterator object, no vector.
            let item = list.get_item(0)?;
            return send_blocks(slot, sr, std::slice::from_ref(as_block(&item)?));
        }
    }
    let mut blocks: Vec<Bound<'_, PyBytes>> = Vec::with_capacity(1);
    if let Ok(list) = seq.cast_exact::<PyList>() {
        for item in list.iter() {
            blocks.push(as_block(&item)?.clone());
        }
    } else {
        for item in seq.try_iter()? {
            let item = item?;
            blocks.push(as_block(&item)?.clone());
        }
    }
    send_blocks(slot, sr, &blocks)
}

/// Whether `it` is the builtin iterator of a list or a tuple, whose items
/// are all there and whose `next()` runs no application code.
fn is_sequence_iter(it: &Bound<'_, PyIterator>) -> bool {
    let tp = it.get_type().as_type_ptr();
    // Only the addresses of the interpreter's static type objects are
    // taken; nothing is read or written through them.
    tp == std::ptr::addr_of_mut!(pyo3::ffi::PyListIter_Type)
        || tp == std::ptr::addr_of_mut!(pyo3::ffi::PyTupleIter_Type)
}

/// Sends blocks that are all known: as a complete response, or after
/// write() started a stream, one after the other.
fn send_blocks(slot: &Slot, sr: &StartResponse, blocks: &[Bound<'_, PyBytes>]) -> PyResult<Sent> {
    slot.with(|ex| {
        if ex.is_committed() {
            for b in blocks {
                if ex.send(b.as_bytes()).is_err() {
                    return Ok(Sent::Done);
                }
            }
            let _ = ex.finish();
        } else {
            // respond() never waits (what the socket does not take now is
            // left for the event loop), so the head may stay borrowed.
            let head = sr.head();
            if !head.called {
                return Err(not_started());
            }
            let _ = match blocks {
                [one] => ex.respond(&head.response, &[one.as_bytes()]),
                many => {
                    let slices: Vec<&[u8]> = many.iter().map(|b| b.as_bytes()).collect();
                    ex.respond(&head.response, &slices)
                }
            };
        }
        Ok(Sent::Done)
    })
}

/// Any other iterable: each block goes out before the next is asked for.
/// When the socket is full, the iteration pauses and the event loop sends
/// the block meanwhile.
fn send_iter(slot: &Slot, sr: &StartResponse, it: &mut Bound<'_, PyIterator>) -> PyResult<Sent> {
    for item in it.by_ref() {
        let item = item?;
        let block = as_block(&item)?;
        if block.as_bytes().is_empty() {
            continue;
        }
        let sent = slot.with(|ex| {
            if !ex.is_committed() {
                // start_stream never waits (the head goes into the buffer),
                // so the head stays borrowed rather than copied, as in
                // send_blocks: a Flask or Django response is an iterator.
                let head = sr.head();
                if !head.called {
                    return Err(not_started());
                }
                if ex.start_stream(&head.response).is_err() {
                    return Ok(None);
                }
            }
            Ok(ex.send_nowait(block.as_bytes()).ok())
        })?;
        match sent {
            Some(true) => {}
            Some(false) => return Ok(Sent::Paused(Rest::Iter(it.clone().unbind()))),
            None => {
                // A response replaced by 413 (a body over the limit) is
                // logged by the exchange.
                let replaced = slot.with(|ex| Ok(ex.is_body_over_limit()));
                if !replaced.unwrap_or(false) {
                    log::info(&format!(
                        "{}: client went away during the response",
                        ex_tag(slot)
                    ));
                }
                return Ok(Sent::Done);
            }
        }
    }
    slot.with(|ex| {
        if ex.is_committed() {
            let _ = ex.finish();
        } else {
            let head = sr.head();
            if !head.called {
                return Err(not_started());
            }
            let _ = ex.respond(&head.response, &[]);
        }
        Ok(Sent::Done)
    })
}

/// A `wsgi.file_wrapper` over a regular file: sendfile(2) from the file's
/// current position. Returns `None` to fall back to iteration.
fn try_sendfile(
    py: Python<'_>,
    slot: &Slot,
    sr: &StartResponse,
    fw: &FileWrapper,
) -> PyResult<Option<Sent>> {
    let f = fw.filelike.bind(py);
    let Ok(fileno) = f.call_method0(intern!(py, "fileno")) else {
        return Ok(None);
    };
    let Ok(fd) = fileno.extract::<RawFd>() else {
        return Ok(None);
    };
    // SAFETY: fstat writes only into the zeroed buffer we own; a bad fd is
    // reported as an error, not undefined behaviour.
    let (is_file, size) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Ok(None);
        }
        (
            (st.st_mode & libc::S_IFMT) == libc::S_IFREG,
            st.st_size as u64,
        )
    };
    if !is_file {
        return Ok(None);
    }
    let pos: u64 = match f.call_method0(intern!(py, "tell")) {
        Ok(p) => p.extract().unwrap_or(0),
        Err(_) => 0,
    };
    let mut head: Head = sr.head().clone();
    if !head.called {
        return Err(not_started());
    }
    if head.response.content_length().is_none() {
        let n = size.saturating_sub(pos);
        head.response
            .push_header(b"Content-Length", n.to_string().as_bytes());
    }
    slot.with(|ex| {
        if !ex.is_committed() && ex.start_stream(&head.response).is_err() {
            return Ok(Some(Sent::Done));
        }
        Ok(Some(file_step(ex, fd, pos)))
    })
}

/// Sends what the socket takes of the file from `pos`; pauses when it is
/// full, finishes the response at the end.
fn file_step(ex: &mut Exchange<'_>, fd: RawFd, pos: u64) -> Sent {
    match ex.send_file_nowait(fd, pos, None) {
        Ok((_, true)) => {
            let _ = ex.finish();
            Sent::Done
        }
        Ok((n, false)) => Sent::Paused(Rest::File { fd, pos: pos + n }),
        Err(e) => {
            log::info(&format!("{}: file response cut short: {e}", ex_tag_of(ex)));
            Sent::Done
        }
    }
}

/// Logs an application error with its traceback.
pub(crate) fn report(py: Python<'_>, tag: &str, err: &PyErr) {
    log::error(&format!(
        "Error handling request {tag}\n{}",
        traceback_text(py, err)
    ));
}

/// The formatted traceback of `err` (its message if it cannot be formatted).
pub(crate) fn traceback_text(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let tb = py.import(intern!(py, "traceback"))?;
        let lines = tb.call_method1(
            intern!(py, "format_exception"),
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let parts: Vec<String> = lines.extract()?;
        Ok(parts.concat())
    })();
    formatted.unwrap_or_else(|_| format!("{err}"))
}

/// Answers 500 before anything was sent; the body carries the traceback
/// only in debug mode.
fn respond_500(py: Python<'_>, ex: &mut Exchange<'_>, err: &PyErr, debug: bool) {
    let body = if debug {
        format!("Internal Server Error\n\n{}", traceback_text(py, err))
    } else {
        "Internal Server Error\n".to_string()
    };
    let mut head = ResponseHead::new(500, b"500 Internal Server Error");
    head.push_header(b"Content-Type", b"text/plain; charset=utf-8");
    head.push_header(b"Connection", b"close");
    let _ = ex.respond(&head, &[body.as_bytes()]);
}

impl Waiter for PyHandler {
    fn wait(&self, f: &mut dyn FnMut()) {
        crate::gil::without_gil(f);
    }
}

impl Handler for PyHandler {
    fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        Python::attach(|_py| f())
    }

    fn handle(&self, ex: &mut Exchange<'_>) {
        Python::attach(|py| self.run(py, ex));
    }

    fn resume(&self, ex: &mut Exchange<'_>, state: Box<dyn Any + Send>) {
        Python::attach(|py| self.resume_run(py, ex, state));
    }

    fn deadline_passed(&self, overrun: &ferrowsgi_server::deadline::Overrun) {
        crate::deadline::interrupt(overrun);
    }

    fn deadline_cleared(&self, ident: u64) {
        crate::deadline::cancel(ident);
    }
}

/// "METHOD target" of the request in `ex`, for log lines.
fn ex_tag_of(ex: &Exchange<'_>) -> String {
    format!(
        "{} {}",
        String::from_utf8_lossy(ex.head().method()),
        String::from_utf8_lossy(ex.head().target())
    )
}

/// [`ex_tag_of`] through the slot (empty if the request is over).
fn ex_tag(slot: &Slot) -> String {
    slot.with(|ex| Ok(ex_tag_of(ex))).unwrap_or_default()
}
