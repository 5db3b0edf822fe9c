//! Configuration and server hooks on the Python side: reading a `.py`
//! configuration module (through `ferrowsgi._config`) for the settings
//! loader, the objects hooks receive, and `pre_request`/`post_request` on
//! the request path.
//!
//! The request hooks cost nothing when absent: the handler looks them up
//! once when it is built, and a request pays one check of an `Option`.

use std::path::Path;

use ferrowsgi_proto::Version;
use ferrowsgi_server::exchange::ResponseHead;
use ferrowsgi_server::settings::{self, Entry, Loaded, Origin, Value};
use ferrowsgi_server::Exchange;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Latin-1 bytes as a str (PEP 3333 and gunicorn decode headers so).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// A Python value from a `.py` configuration as a settings [`Value`].
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::None);
    }
    if let Ok(b) = obj.extract::<bool>() {
        if obj.is_instance_of::<pyo3::types::PyBool>() {
            return Ok(Value::Bool(b));
        }
    }
    if let Ok(n) = obj.extract::<i64>() {
        return Ok(Value::Int(n));
    }
    if let Ok(f) = obj.extract::<f64>() {
        return Ok(Value::Float(f));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list
            .iter()
            .map(|i| to_value(&i))
            .collect::<PyResult<_>>()
            .map(Value::List);
    }
    Ok(Value::Str(obj.str()?.to_string()))
}

/// A settings [`Value`] as a Python object.
fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(n) => n.into_pyobject(py)?.into_any(),
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Str(s) => s.into_pyobject(py)?.into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for i in items {
                list.append(to_py(py, i)?)?;
            }
            list.into_any()
        }
        Value::None => py.None().into_bound(py),
    })
}

/// Reads the `.py` configuration at `path`: its settings for the loader;
/// its hooks are installed (`ferrowsgi._hooks.install`) and its warnings
/// added to `warnings`. The error is one line.
pub(crate) fn read_py_config(
    py: Python<'_>,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<Entry>, String> {
    let mut read = || -> PyResult<Result<Vec<Entry>, String>> {
        let module = py.import("ferrowsgi._config")?;
        let found = match module.call_method1("read_module", (path.display().to_string(),)) {
            Ok(found) => found,
            Err(e) if e.is_instance(py, &module.getattr("ConfigError")?) => {
                return Ok(Err(e.value(py).to_string()));
            }
            Err(e) => return Err(e),
        };
        let (items, hooks, found_warnings): (Bound<'_, PyList>, Bound<'_, PyDict>, Vec<String>) =
            found.extract()?;
        let mut entries = Vec::with_capacity(items.len());
        for item in items.iter() {
            let (name, value, line): (String, Bound<'_, PyAny>, Option<usize>) = item.extract()?;
            entries.push(Entry {
                name,
                value: to_value(&value)?,
                origin: Origin::File {
                    path: path.to_path_buf(),
                    line,
                },
            });
        }
        py.import("ferrowsgi._hooks")?
            .call_method1("install", (hooks,))?;
        warnings.extend(found_warnings);
        Ok(Ok(entries))
    };
    match read() {
        Ok(result) => result,
        Err(e) => Err(format!(
            "cannot read configuration file {}: {e}",
            path.display()
        )),
    }
}

/// The `cfg` object of hooks' `server` and `worker`: every effective
/// setting by our name and by gunicorn's.
fn cfg_namespace<'py>(py: Python<'py>, loaded: &Loaded) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    for row in &loaded.rows {
        dict.set_item(&row.name, to_py(py, &row.value)?)?;
    }
    for (gunicorn, ours) in settings::gunicorn_aliases() {
        if !dict.contains(gunicorn)? {
            if let Some(v) = dict.get_item(&ours)? {
                dict.set_item(gunicorn, v)?;
            }
        }
    }
    py.import("ferrowsgi._hookobjs")?
        .call_method1("settings_namespace", (dict,))
}

/// Makes the `server` object of the master's hooks and the `worker` object
/// of this process's (set as `ferrowsgi._hookobjs`'s current worker, which
/// the request hooks receive). Returns the server object.
pub(crate) fn make_hook_objects<'py>(
    py: Python<'py>,
    loaded: &Loaded,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = cfg_namespace(py, loaded)?;
    let objs = py.import("ferrowsgi._hookobjs")?;
    let server = objs.getattr("Server")?.call1((&cfg,))?;
    let worker = objs.getattr("Worker")?.call1((&cfg,))?;
    objs.call_method1("set_worker", (worker,))?;
    Ok(server)
}

/// Runs the hook `name` with `args` if one is installed. A hook that
/// raises (even with `SystemExit`) is logged with its traceback and
/// returns the error; it never unwinds into the master's loop.
pub(crate) fn call<'py>(
    py: Python<'py>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<()> {
    let hooks = py.import("ferrowsgi._hooks")?;
    let hook = hooks.call_method1("get", (name,))?;
    if hook.is_none() {
        return Ok(());
    }
    hook.call1(args).map(drop).inspect_err(|e| {
        // One log record with the traceback; the caller goes on (or, for
        // a hook that must succeed, says so in a line of its own).
        ferrowsgi_server::log::error(&format!(
            "Error in the {name} hook\n{}",
            crate::app::traceback_text(py, e).trim_end()
        ));
    })
}

/// The request hooks a handler runs, looked up once.
#[derive(Debug)]
pub(crate) struct RequestHooks {
    pre: Option<Py<PyAny>>,
    post: Option<Py<PyAny>>,
    worker: Py<PyAny>,
    request_cls: Py<PyAny>,
    response_cls: Py<PyAny>,
}

/// What `post_request` needs once the response is over.
#[derive(Debug)]
pub(crate) struct After {
    post: Py<PyAny>,
    worker: Py<PyAny>,
    response_cls: Py<PyAny>,
    req: Py<PyAny>,
    environ: Py<PyAny>,
}

impl RequestHooks {
    /// The installed `pre_request` and `post_request`, or `None` when
    /// neither is.
    pub(crate) fn installed(py: Python<'_>) -> PyResult<Option<Box<RequestHooks>>> {
        let hooks = py.import("ferrowsgi._hooks")?;
        let get = |name: &str| -> PyResult<Option<Py<PyAny>>> {
            let h = hooks.call_method1("get", (name,))?;
            Ok((!h.is_none()).then(|| h.unbind()))
        };
        let (pre, post) = (get("pre_request")?, get("post_request")?);
        if pre.is_none() && post.is_none() {
            return Ok(None);
        }
        let objs = py.import("ferrowsgi._hookobjs")?;
        Ok(Some(Box::new(RequestHooks {
            pre,
            post,
            worker: objs.call_method0("current_worker")?.unbind(),
            request_cls: objs.getattr("Request")?.unbind(),
            response_cls: objs.getattr("Response")?.unbind(),
        })))
    }

    /// Before the application: makes the `req` object, counts the request
    /// on the worker and runs `pre_request`. Returns what `post_request`
    /// needs (if set) and the error of `pre_request` (if it raised).
    pub(crate) fn begin(
        &self,
        py: Python<'_>,
        ex: &Exchange<'_>,
        environ: &Bound<'_, PyAny>,
    ) -> (Option<After>, Option<PyErr>) {
        let req = match self.request(py, ex) {
            Ok(req) => req,
            Err(e) => return (None, Some(e)),
        };
        let worker = self.worker.bind(py);
        if let Ok(nr) = worker
            .getattr(intern!(py, "nr"))
            .and_then(|n| n.extract::<u64>())
        {
            let _ = worker.setattr(intern!(py, "nr"), nr + 1);
        }
        let after = self.post.as_ref().map(|post| After {
            post: post.clone_ref(py),
            worker: self.worker.clone_ref(py),
            response_cls: self.response_cls.clone_ref(py),
            req: req.clone_ref(py),
            environ: environ.clone().unbind(),
        });
        let failed = match &self.pre {
            Some(pre) => pre.bind(py).call1((worker, req)).err(),
            None => None,
        };
        (after, failed)
    }

    fn request(&self, py: Python<'_>, ex: &Exchange<'_>) -> PyResult<Py<PyAny>> {
        let head = ex.head();
        let version = match head.version() {
            Version::Http10 => (1, 0),
            Version::Http11 => (1, 1),
        };
        let headers = PyList::empty(py);
        for (name, value) in head.headers() {
            headers.append((latin1(name).to_ascii_uppercase(), latin1(value)))?;
        }
        let peer = ex.peer();
        Ok(self
            .request_cls
            .bind(py)
            .call1((
                latin1(head.method()),
                latin1(head.target()),
                latin1(head.path()),
                latin1(head.query()),
                version,
                headers,
                "http",
                peer.remote_addr.as_str(),
            ))?
            .unbind())
    }
}

impl After {
    /// Runs `post_request(worker, req, environ, resp)` with the response's
    /// `status` (0 if none went out) and the head the application gave
    /// (`called` whether it called start_response). A hook that raises is
    /// logged.
    pub(crate) fn run(self, py: Python<'_>, status: u16, head: &ResponseHead, called: bool) {
        let (line, fields) = head.parts();
        let (status_text, headers) = if called && head.status == status {
            let headers: Vec<(String, String)> =
                fields.iter().map(|(n, v)| (latin1(n), latin1(v))).collect();
            (latin1(line), headers)
        } else {
            let text = match status {
                400 => "400 Bad Request".to_string(),
                500 => "500 Internal Server Error".to_string(),
                n => n.to_string(),
            };
            (text, Vec::new())
        };
        let outcome = self
            .response_cls
            .bind(py)
            .call1((status_text, headers))
            .and_then(|resp| {
                self.post.bind(py).call1((
                    self.worker.bind(py),
                    self.req.bind(py),
                    self.environ.bind(py),
                    resp,
                ))
            });
        if let Err(e) = outcome {
            crate::app::report(py, "in the post_request hook", &e);
        }
    }
}
