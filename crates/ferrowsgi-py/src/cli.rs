//! The `ferrowsgi` command: arguments are parsed in Rust, the application is
//! imported through `ferrowsgi._loader`, and the server runs on the main
//! thread.

use ferrowsgi_server::config::parse_args;
use ferrowsgi_server::log;
use pyo3::prelude::*;

use crate::pyserver::Server;

fn fail(msg: &str, code: i32) -> i32 {
    eprintln!("ferrowsgi: error: {msg}");
    code
}

/// Runs the command line `argv` (program name first) and returns the exit
/// status.
fn run(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    let cli = match parse_args(&argv) {
        Ok(cli) => cli,
        Err((text, 0)) => {
            print!("{text}");
            return Ok(0);
        }
        Err((text, code)) => {
            eprint!("{text}");
            return Ok(code);
        }
    };
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
    let result = serve(py, &cli, cfg);
    // Records logged after this (at exit) go to the server's own
    // destinations: the interpreter is about to end.
    crate::pylog::uninstall();
    result
}

/// Imports the application and serves it until a signal stops it.
fn serve(
    py: Python<'_>,
    cli: &ferrowsgi_server::Cli,
    cfg: ferrowsgi_server::Config,
) -> PyResult<i32> {
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
    let runner = py.import("ferrowsgi._runner")?;
    runner.call_method1("run_until_signal", (Bound::new(py, server)?,))?;
    Ok(0)
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
