//! The `Server` class behind `ferrowsgi.serve()` and `ferrowsgi.background()`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ferrowsgi_server::listen::Bind;
use ferrowsgi_server::settings::{self, Entry, Origin, Value};
use ferrowsgi_server::{log, Config, StopHandle};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::app::PyHandler;
use crate::hooks;

type RustServer = ferrowsgi_server::Server<PyHandler>;

/// A bound server for one WSGI application.
///
/// Binding happens in the constructor, so address errors surface at once
/// and `urls` tells the real ports; `serve()` runs on the calling thread
/// until `stop()` is called from another one.
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
#[derive(Debug)]
pub struct Server {
    inner: Mutex<Option<RustServer>>,
    stop: StopHandle,
    urls: Vec<String>,
    threads: usize,
}

/// The settings an embedded server applies; any other one set (in the
/// configuration file, say) concerns the command line's processes and is
/// ignored with a warning.
const EMBEDDED: &[&str] = &[
    "config",
    "bind",
    "ajp_secret",
    "ajp_packet_size",
    "threads",
    "log_level",
    "access_log",
    "access_logfile",
    "access_logformat",
    "error_logfile",
    "log_format",
    "log_to_python",
    "no_server_header",
    "debug",
    "keep_alive",
    "read_timeout",
    "write_timeout",
    "backlog",
    "keep_alive_requests",
    "max_pipelined",
    "worker_connections",
    "limit_request_line",
    "limit_request_fields",
    "limit_request_field_size",
    "limit_request_body",
    "loopback_congestion",
    "stream_bodies",
    "timeout",
    "timeout_grace",
    "health_path",
    "worker_class",
];

/// Durations the API takes in (fractional) seconds, where the command
/// line takes whole ones.
const SECONDS: &[&str] = &[
    "keep_alive",
    "read_timeout",
    "write_timeout",
    "timeout",
    "timeout_grace",
];

/// Builds the server's [`Config`] from the keyword arguments `options`
/// (settings by their names in the settings table, ferrowsgi's or
/// gunicorn's, plus `server_header`) over the configuration file `config`,
/// through the table the command line uses. `default_bind` is used when
/// neither sets `bind`. Warnings are logged.
pub(crate) fn make_config(
    py: Python<'_>,
    bind: Option<Vec<String>>,
    default_bind: Option<Vec<String>>,
    config: Option<PathBuf>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Config> {
    let arg = |name: &str, value: Value| Entry {
        name: name.to_string(),
        value,
        origin: Origin::Argument,
    };
    let mut entries = Vec::new();
    if let Some(bind) = bind {
        if bind.is_empty() {
            return Err(PyValueError::new_err("no address to bind"));
        }
        entries.push(arg(
            "bind",
            Value::List(bind.into_iter().map(Value::Str).collect()),
        ));
    }
    // Exact durations, applied over what the table parsed (whole seconds).
    let mut exact: Vec<(String, Duration)> = Vec::new();
    for (key, value) in options.into_iter().flatten() {
        let name: String = key.extract()?;
        if name == "server_header" {
            let on: bool = value.extract().map_err(|_| {
                PyValueError::new_err("keyword argument server_header: expected True or False")
            })?;
            entries.push(arg("no_server_header", Value::Bool(!on)));
            continue;
        }
        if SECONDS.contains(&name.as_str()) && !value.is_none() {
            if let Ok(secs) = value.extract::<f64>() {
                let d = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| d.as_secs() <= i64::MAX as u64 / 2);
                let Some(d) = d else {
                    return Err(PyValueError::new_err(format!(
                        "keyword argument {name}: expected a non-negative number of seconds, got {secs}"
                    )));
                };
                let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                entries.push(arg(&name, Value::Int(whole as i64)));
                exact.push((name, d));
                continue;
            }
        }
        entries.push(arg(&name, hooks::to_value(&value)?));
    }
    let mut py_warnings = Vec::new();
    let mut read_py = |path: &Path| hooks::read_py_config(py, path, &mut py_warnings);
    let loaded = settings::load_api(&entries, config.as_deref(), &mut read_py)
        .map_err(PyValueError::new_err)?;
    let mut cfg = loaded.cli.to_config().map_err(PyValueError::new_err)?;
    if let Some(binds) = default_bind {
        let bind_given = loaded
            .rows
            .iter()
            .any(|r| r.name == "bind" && r.origin != Origin::Default);
        if !bind_given {
            cfg.binds = binds
                .iter()
                .map(|b| Bind::parse(b))
                .collect::<Result<_, _>>()
                .map_err(PyValueError::new_err)?;
        }
    }
    for (name, d) in exact {
        match name.as_str() {
            "keep_alive" => cfg.keep_alive = d,
            "read_timeout" => cfg.read_timeout = d,
            "write_timeout" => cfg.write_timeout = d,
            "timeout" => cfg.timeout = d,
            _ => cfg.timeout_grace = d,
        }
    }
    // Embedded: a lost thread stops this server, never the caller's process.
    cfg.exit_when_unhealthy = false;
    log::set_level(cfg.log_level);
    log::set_error_log(&cfg.error_log, cfg.log_format).map_err(PyOSError::new_err)?;
    if cfg.log_to_python {
        crate::pylog::install(py)?;
    }
    for w in py_warnings.iter().chain(&loaded.warnings) {
        log::warning(w);
    }
    for row in &loaded.rows {
        if row.origin != Origin::Default && !EMBEDDED.contains(&row.name.as_str()) {
            log::warning(&format!(
                "{}: setting '{}' is for the command line's processes; an embedded server ignores it",
                row.origin, row.name
            ));
        }
    }
    Ok(cfg)
}

impl Server {
    /// Binds `cfg` for `app`.
    pub(crate) fn create(py: Python<'_>, app: Py<PyAny>, cfg: Config) -> PyResult<Server> {
        if !app.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "the application must be callable",
            ));
        }
        log::set_level(cfg.log_level);
        if let Some(access) = &cfg.access_log {
            access.open().map_err(PyOSError::new_err)?;
        }
        let threads = cfg.threads;
        let handler = PyHandler::new(py, app, threads, cfg.debug)?;
        let server = RustServer::bind(cfg, handler)
            .map_err(|(addr, e)| PyOSError::new_err(format!("cannot listen on {addr}: {e}")))?;
        Ok(Server {
            stop: server.stop_handle(),
            urls: server.urls(),
            inner: Mutex::new(Some(server)),
            threads,
        })
    }

    /// Runs the server on this thread until [`StopHandle::stop`]. Signals
    /// are the business of the caller (`ferrowsgi._runner`), which serves
    /// from a second thread so that the application never sees a
    /// `KeyboardInterrupt`.
    pub(crate) fn run(&self, py: Python<'_>, banner: bool) -> PyResult<()> {
        let server = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this server has already been served"))?;
        if banner {
            for url in &self.urls {
                log::info(&format!("Listening at: {url}"));
            }
            log::info(&format!("Using {} thread(s)", self.threads));
        }
        let result = py.detach(move || server.run());
        result.map_err(|e| PyOSError::new_err(format!("server failed: {e}")))?;
        log::info("Shutting down");
        Ok(())
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (app, bind = None, *, config = None, default_bind = None, **options))]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        bind: Option<Vec<String>>,
        config: Option<PathBuf>,
        default_bind: Option<Vec<String>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let cfg = make_config(py, bind, default_bind, config, options)?;
        Server::create(py, app, cfg)
    }

    /// The bound addresses: "http://127.0.0.1:8000" or "unix:/path".
    #[getter]
    fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// Serves on this thread until `stop()` is called from another.
    #[pyo3(signature = (*, banner = true))]
    fn serve(&self, py: Python<'_>, banner: bool) -> PyResult<()> {
        self.run(py, banner)
    }

    /// Asks the server to stop: no new connections, requests in progress
    /// finish, then `serve()` returns. Safe from any thread.
    fn stop(&self) {
        self.stop.stop();
    }
}
