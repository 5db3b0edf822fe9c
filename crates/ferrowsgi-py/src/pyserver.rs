//! The `Server` class behind `ferrowsgi.serve()` and `ferrowsgi.background()`.

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::Duration;

use ferrowsgi_server::listen::BindAddr;
use ferrowsgi_server::{log, Config, StopHandle};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::app::PyHandler;

type RustServer = ferrowsgi_server::Server<PyHandler>;

/// A bound server for one WSGI application.
///
/// Binding happens in the constructor, so address errors surface at once
/// and `urls` tells the real ports; `serve()` runs until `stop()` is called
/// from another thread, or until Ctrl-C / SIGTERM when served from the main
/// thread.
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
#[derive(Debug)]
pub struct Server {
    inner: Mutex<Option<RustServer>>,
    stop: StopHandle,
    urls: Vec<String>,
    threads: usize,
    signal_error: std::sync::Arc<Mutex<Option<PyErr>>>,
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
    cfg.access_log = access_log;
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
    if let Some(n) = limit_request_body {
        cfg.max_body = n;
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
        let threads = cfg.threads;
        let handler = PyHandler::new(py, app, threads, cfg.debug)?;
        let signal_error = std::sync::Arc::clone(&handler.signal_error);
        let server = RustServer::bind(cfg, handler)
            .map_err(|(addr, e)| PyOSError::new_err(format!("cannot listen on {addr}: {e}")))?;
        Ok(Server {
            stop: server.stop_handle(),
            urls: server.urls(),
            inner: Mutex::new(Some(server)),
            threads,
            signal_error,
        })
    }

    /// Runs the server on this thread until it stops. Returns normally on
    /// Ctrl-C or SIGTERM; other errors are raised.
    pub(crate) fn run(&self, py: Python<'_>, banner: bool) -> PyResult<()> {
        let mut server = self
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
        let signals = install_signal_wakeup(py, &mut server)?;
        let result = py.detach(move || server.run());
        if let Some(restore) = signals {
            restore_signals(py, restore);
        }
        result.map_err(|e| PyOSError::new_err(format!("server failed: {e}")))?;
        let stopped_by = self
            .signal_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match stopped_by {
            Some(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => {
                log::info("Shutting down");
                Ok(())
            }
            Some(e) => Err(e),
            None => {
                log::info("Shutting down");
                Ok(())
            }
        }
    }
}

/// What to put back after serving from the main thread.
struct SignalRestore {
    old_wakeup: Py<PyAny>,
    old_term: Option<Py<PyAny>>,
    /// Closed only after the old wake-up fd is back in place.
    _pipe: SignalPipe,
}

/// A non-blocking pipe for `signal.set_wakeup_fd`.
struct SignalPipe {
    read_fd: RawFd,
    write_fd: RawFd,
}

impl SignalPipe {
    fn new() -> std::io::Result<SignalPipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two c_ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SignalPipe {
            read_fd: fds[0],
            write_fd: fds[1],
        })
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors were created by `new` and are owned here.
        unsafe {
            libc::close(self.read_fd);
            libc::close(self.write_fd);
        }
    }
}

/// On the main thread: route signals to the event loop through a wake-up
/// pipe, and make SIGTERM stop the server gracefully (as Ctrl-C does) unless
/// the application installed its own handler.
fn install_signal_wakeup(
    py: Python<'_>,
    server: &mut RustServer,
) -> PyResult<Option<SignalRestore>> {
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?;
    let current = threading.call_method0("current_thread")?;
    if !main.is(&current) {
        return Ok(None);
    }
    let signal = py.import("signal")?;
    let pipe = SignalPipe::new()
        .map_err(|e| PyOSError::new_err(format!("cannot create the signal pipe: {e}")))?;
    server
        .watch_signal_fd(pipe.read_fd)
        .map_err(|e| PyOSError::new_err(format!("cannot watch the signal pipe: {e}")))?;
    let fd = pipe.write_fd;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("warn_on_full_buffer", false)?;
    let old_wakeup = signal
        .call_method("set_wakeup_fd", (fd,), Some(&kwargs))?
        .unbind();
    let sigterm = signal.getattr("SIGTERM")?;
    let current_term = signal.call_method1("getsignal", (&sigterm,))?;
    let old_term = if current_term.eq(signal.getattr("SIG_DFL")?)? {
        signal.call_method1("signal", (&sigterm, signal.getattr("default_int_handler")?))?;
        Some(current_term.unbind())
    } else {
        None
    };
    Ok(Some(SignalRestore {
        old_wakeup,
        old_term,
        _pipe: pipe,
    }))
}

fn restore_signals(py: Python<'_>, r: SignalRestore) {
    let _ = (|| -> PyResult<()> {
        let signal = py.import("signal")?;
        signal.call_method1("set_wakeup_fd", (r.old_wakeup,))?;
        if let Some(old) = r.old_term {
            signal.call_method1("signal", (signal.getattr("SIGTERM")?, old))?;
        }
        Ok(())
    })();
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        app, bind, *, threads = 1, access_log = false, debug = false, server_header = true,
        log_level = "info", keep_alive = 5.0, read_timeout = 30.0, write_timeout = 30.0,
        limit_request_body = None
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
        )?;
        Server::create(py, app, cfg)
    }

    /// The bound addresses: "http://127.0.0.1:8000" or "unix:/path".
    #[getter]
    fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// Serves until `stop()`, Ctrl-C or SIGTERM.
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
