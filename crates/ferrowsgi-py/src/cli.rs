//! The `ferrowsgi` command: settings are gathered in Rust (command line,
//! environment, configuration file; a `.py` file is run in Python), the
//! application is imported through `ferrowsgi._loader`, and the server runs
//! on the main thread.

use std::path::Path;

use ferrowsgi_server::log;
use ferrowsgi_server::settings;
use pyo3::prelude::*;

use crate::hooks;
use crate::pyserver::Server;

fn fail(msg: &str, code: i32) -> i32 {
    eprintln!("ferrowsgi: error: {msg}");
    code
}

/// Runs the command line `argv` (program name first) and returns the exit
/// status.
fn run(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    // Variables that are not Unicode cannot be settings; they are left alone.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut py_warnings = Vec::new();
    let mut read_py = |path: &Path| hooks::read_py_config(py, path, &mut py_warnings);
    let mut loaded = match settings::load(&argv, &env, &mut read_py) {
        Ok(loaded) => loaded,
        Err((text, 0)) => {
            print!("{text}");
            return Ok(0);
        }
        Err((text, code)) => {
            eprint!("{text}");
            return Ok(code);
        }
    };
    loaded.warnings.splice(0..0, py_warnings);
    if loaded.cli.print_config {
        for w in &loaded.warnings {
            log::warning(w);
        }
        print!("{}", settings::print_config(&loaded));
        return Ok(0);
    }
    let cli = &loaded.cli;
    if cli.app.is_empty() {
        return Ok(fail(
            "no application: name it as APP, or as app (gunicorn's wsgi_app) in the \
             configuration (see --help)",
            2,
        ));
    }
    let cfg = match cli.to_config() {
        Ok(c) => c,
        Err(msg) => return Ok(fail(&msg, 2)),
    };
    if let Some(dir) = &cli.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            return Ok(fail(
                &format!("cannot change to directory {}: {e}", dir.display()),
                2,
            ));
        }
    }
    log::set_level(cfg.log_level);
    if let Err(msg) = log::set_error_log(&cfg.error_log, cfg.log_format) {
        return Ok(fail(&msg, 2));
    }
    if cfg.log_to_python {
        crate::pylog::install(py)?;
    }
    // Settings ignored, now that the error log goes where it was told to.
    for w in &loaded.warnings {
        log::warning(w);
    }
    let result = serve(py, &loaded, cfg);
    // Records logged after this (at exit) go to the server's own
    // destinations: the interpreter is about to end.
    crate::pylog::uninstall();
    result
}

/// Imports the application and serves it until a signal stops it.
fn serve(
    py: Python<'_>,
    loaded: &settings::Loaded,
    cfg: ferrowsgi_server::Config,
) -> PyResult<i32> {
    let cli = &loaded.cli;
    let version = py.version_info();
    log::info(&format!(
        "Starting ferrowsgi {} (CPython {}.{}.{})",
        env!("CARGO_PKG_VERSION"),
        version.major,
        version.minor,
        version.patch
    ));
    // Import the application from the current directory, as gunicorn does.
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| ".".to_string());
    let sys = py.import("sys")?;
    sys.getattr("path")?.call_method1("insert", (0, cwd))?;
    for dir in cli.pythonpath.iter().flat_map(|p| p.split(',')) {
        if !dir.trim().is_empty() {
            sys.getattr("path")?
                .call_method1("insert", (0, dir.trim()))?;
        }
    }
    // gunicorn's raw_env: set before the application is imported.
    let environ = py.import("os")?.getattr("environ")?;
    for pair in &cli.env {
        if let Some((key, value)) = pair.split_once('=') {
            environ.set_item(key, value)?;
        }
    }
    if let Some(name) = &cli.name {
        set_process_name(name);
    }
    let server_obj = hooks::make_hook_objects(py, loaded)?;
    if !cli.check_config && hooks::call(py, "on_starting", (&server_obj,)).is_err() {
        return Ok(fail("the on_starting hook failed (see above)", 1));
    }
    let loader = py.import("ferrowsgi._loader")?;
    let app = match loader.call_method1("load_app", (&cli.app,)) {
        Ok(app) => app,
        Err(e) => {
            let is_load_error = e.is_instance(py, &loader.getattr("AppLoadError")?);
            if is_load_error {
                return Ok(fail(&e.value(py).to_string(), 1));
            }
            return Err(e);
        }
    };
    if cli.check_config {
        log::info(&format!(
            "Configuration and application {} are valid",
            cli.app
        ));
        return Ok(0);
    }
    log::info(&format!("Application: {}", cli.app));
    let server = match Server::create(py, app.unbind(), cfg) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e.value(py).to_string(), 1)),
    };
    if !cli.no_gc_freeze {
        let frozen: usize = loader.call_method0("freeze_heap")?.extract()?;
        log::debug(&format!(
            "{frozen} objects left out of garbage collection (--no-gc-freeze keeps them in)"
        ));
    }
    // One process is both master and worker: the master's hook and the
    // worker's run in turn (post_fork has no fork to follow).
    let worker_obj = py
        .import("ferrowsgi._hookobjs")?
        .call_method0("current_worker")?;
    let _ = hooks::call(py, "when_ready", (&server_obj,));
    let _ = hooks::call(py, "post_worker_init", (&worker_obj,));
    worker_obj.setattr("booted", true)?;
    let runner = py.import("ferrowsgi._runner")?;
    let served = runner.call_method1("run_until_signal", (Bound::new(py, server)?,));
    worker_obj.setattr("alive", false)?;
    let _ = hooks::call(py, "worker_exit", (&server_obj, &worker_obj));
    let _ = hooks::call(py, "on_exit", (&server_obj,));
    served?;
    Ok(0)
}

/// Sets the kernel's name of the process (`comm`: what ps and top show),
/// cut to the 15 bytes it holds.
fn set_process_name(name: &str) {
    let mut buf = [0u8; 16];
    let bytes = name.as_bytes();
    let n = bytes.len().min(15);
    buf[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes from the pointer; `buf` is 16 bytes with a NUL at index 15 or
    // earlier, and lives across the call.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        log::warning(&format!(
            "cannot set the process name: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// Runs [`run`], turning a Ctrl-C that arrives before serving starts (while
/// the application is imported, say) into a quiet exit with status 130.
#[pyfunction]
pub fn main(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    match run(py, argv) {
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => Ok(130),
        other => other,
    }
}
