//! The `Server` class behind `ferrowsgi.serve()` and `ferrowsgi.background()`.

use std::sync::Mutex;
use std::time::Duration;

use ferrowsgi_server::config::StreamBodies;
use ferrowsgi_server::listen::BindAddr;
use ferrowsgi_server::{log, Config, StopHandle};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::app::PyHandler;

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

/// Builds the server's [`Config`] from keyword options.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_config(
    bind: Vec<String>,
    threads: usize,
    access_log: bool,
    debug: bool,
    server_header: bool,
    log_level: &str,
    keep_alive: f64,
    read_timeout: f64,
    write_timeout: f64,
    limit_request_body: Option<u64>,
    loopback_congestion: &str,
    stream_bodies: &str,
    timeout: f64,
    timeout_grace: f64,
) -> PyResult<Config> {
    let mut cfg = Config::default();
    if bind.is_empty() {
        return Err(PyValueError::new_err("no address to bind"));
    }
    for b in &bind {
        cfg.binds
            .push(BindAddr::parse(b).map_err(PyValueError::new_err)?);
    }
    if !(1..=1024).contains(&threads) {
        return Err(PyValueError::new_err("threads must be between 1 and 1024"));
    }
    cfg.threads = threads;
    if access_log {
        cfg.access_log = Some(
            log::AccessLog::new(log::Target::Stdout, "combined", false)
                .map_err(PyValueError::new_err)?,
        );
    }
    cfg.debug = debug;
    cfg.server_header = server_header;
    cfg.log_level = log::Level::parse(log_level)
        .ok_or_else(|| PyValueError::new_err(format!("invalid log level {log_level:?}")))?;
    let secs = |v: f64, what: &str| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(PyValueError::new_err(format!(
                "{what} must be a non-negative number"
            )))
        }
    };
    cfg.keep_alive = secs(keep_alive, "keep_alive")?;
    cfg.read_timeout = secs(read_timeout, "read_timeout")?;
    cfg.write_timeout = secs(write_timeout, "write_timeout")?;
    cfg.timeout = secs(timeout, "timeout")?;
    cfg.timeout_grace = secs(timeout_grace, "timeout_grace")?;
    if let Some(n) = limit_request_body {
        cfg.max_body = n;
    }
    cfg.set_loopback_congestion(loopback_congestion)
        .map_err(PyValueError::new_err)?;
    cfg.stream_bodies = StreamBodies::parse(stream_bodies).map_err(PyValueError::new_err)?;
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
    #[pyo3(signature = (
        app, bind, *, threads = 1, access_log = false, debug = false, server_header = true,
        log_level = "info", keep_alive = 5.0, read_timeout = 30.0, write_timeout = 30.0,
        limit_request_body = None, loopback_congestion = "reno", stream_bodies = "local",
        timeout = 30.0, timeout_grace = 10.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        bind: Vec<String>,
        threads: usize,
        access_log: bool,
        debug: bool,
        server_header: bool,
        log_level: &str,
        keep_alive: f64,
        read_timeout: f64,
        write_timeout: f64,
        limit_request_body: Option<u64>,
        loopback_congestion: &str,
        stream_bodies: &str,
        timeout: f64,
        timeout_grace: f64,
    ) -> PyResult<Self> {
        let cfg = make_config(
            bind,
            threads,
            access_log,
            debug,
            server_header,
            log_level,
            keep_alive,
            read_timeout,
            write_timeout,
            limit_request_body,
            loopback_congestion,
            stream_bodies,
            timeout,
            timeout_grace,
        )?;
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
