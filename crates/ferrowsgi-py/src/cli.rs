//! The `ferrowsgi` command: settings are gathered in Rust (command line,
//! environment, configuration file; a `.py` file is run in Python), the
//! listeners are bound, and a master process forks the workers, each of
//! which imports the application through `ferrowsgi._loader` (or inherits
//! it from the master with `--preload`) and serves.

use std::io;
use std::path::Path;

use ferrowsgi_server::metrics::{self, RestartCause};
use ferrowsgi_server::metrics_export::MetricsExporter;
use ferrowsgi_server::process::sd_notify::Notifier;
use ferrowsgi_server::process::{system, Binding, Master, Outcome, Settings, WorkerCtx};
use ferrowsgi_server::settings::{self, Origin};
use ferrowsgi_server::{log, reload, Cli, Config, Listener};
use pyo3::prelude::*;

use crate::app::PyHandler;
use crate::hooks;

fn fail(msg: &str, code: i32) -> i32 {
    eprintln!("ferrowsgi: error: {msg}");
    code
}

/// The environment as settings see it (variables that are not Unicode
/// cannot be settings; they are left alone).
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Loads the settings from every source; `Err` carries the text to print
/// and the exit status (0 for `--help` and `--version`).
fn load(py: Python<'_>, argv: &[String]) -> Result<settings::Loaded, (String, i32)> {
    let env = environment();
    let mut py_warnings = Vec::new();
    let mut read_py = |path: &Path| hooks::read_py_config(py, path, &mut py_warnings);
    let mut loaded = settings::load(argv, &env, &mut read_py)?;
    loaded.warnings.splice(0..0, py_warnings);
    Ok(loaded)
}

/// The server's configuration and the process settings of `loaded`; the
/// error is one line.
fn configure(loaded: &settings::Loaded) -> Result<(Config, Settings), String> {
    let mut cfg = loaded.cli.to_config()?;
    let settings = Settings::from_cli(&loaded.cli)?;
    // Inherited sockets replace the default address (an address given
    // anywhere is bound as well).
    let bind_is_default = loaded
        .rows
        .iter()
        .any(|r| r.name == "bind" && r.origin == Origin::Default);
    let inherited = !loaded.cli.fds.is_empty() || ferrowsgi_server::process::has_listen_fds();
    if bind_is_default && inherited {
        cfg.binds.clear();
    }
    Ok((cfg, settings))
}

/// Adopts the inherited listeners (`--fd`, systemd's `LISTEN_FDS`,
/// `--bind SCHEME://fd:N`), binds the other addresses of `cfg`, and
/// gives the unix sockets bound here their mode and owner. The error is
/// one line.
fn listeners(
    loaded: &settings::Loaded,
    cfg: &Config,
    settings: &Settings,
) -> Result<Vec<Listener>, String> {
    let cli = &loaded.cli;
    let mut out = system::inherited_listeners(&cli.fds, &cfg.binds, cfg.proxy_protocol)?;
    let owner = settings.identity.as_ref().map(|id| id.owner());
    for bind in &cfg.binds {
        let addr = &bind.addr;
        if matches!(addr, ferrowsgi_server::BindAddr::Fd(_)) {
            continue;
        }
        let l = Listener::bind_with(
            addr,
            cfg.backlog,
            cfg.loopback_congestion.as_deref(),
            cli.reuse_port,
        )
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        l.set_unix_mode(cli.unix_socket_mode, owner)
            .map_err(|e| format!("cannot set the mode of {addr}: {e}"))?;
        let mut l = l.with_scheme(bind.scheme);
        l.set_proxy_protocol(bind.proxy || cfg.proxy_protocol);
        out.push(l);
    }
    Ok(out)
}

/// Imports the application that `cli` names: APP, joined in one
/// `ferrowsgi.Mount` with those of `--mount` and with `--root-path` when
/// either is given (`ferrowsgi._loader.load_mounted`). The inner error is
/// the one-line message of an application that cannot be loaded (naming
/// its prefix for a mounted one). Other Python errors propagate.
fn load_app(py: Python<'_>, cli: &Cli) -> PyResult<Result<Py<PyAny>, String>> {
    let mounts = match cli.mounts() {
        Ok(m) => m,
        Err(msg) => return Ok(Err(msg)),
    };
    let root_path = cli.root_path.as_deref().unwrap_or("");
    let loader = py.import("ferrowsgi._loader")?;
    match loader.call_method1("load_mounted", (cli.app.as_str(), mounts, root_path)) {
        Ok(app) if app.is_callable() => Ok(Ok(app.unbind())),
        Ok(_) => Ok(Err("the application must be callable".to_string())),
        Err(e) if e.is_instance(py, &loader.getattr("AppLoadError")?) => {
            // Under --reload, fixing the code that failed is a change too.
            watch_app_files(py, Some(&e));
            Ok(Err(e.value(py).to_string()))
        }
        Err(e) => Err(e),
    }
}

/// Under `--reload`, watches the files of every module imported so far
/// and those that the import failure `error` points at.
fn watch_app_files(py: Python<'_>, error: Option<&PyErr>) {
    if !reload::is_on() {
        return;
    }
    let files = py
        .import("ferrowsgi._reload")
        .and_then(|m| m.call_method1("files_to_watch", (error.map(|e| e.value(py)),)))
        .and_then(|files| files.extract::<Vec<String>>());
    match files {
        Ok(files) => {
            let n = reload::watch_files(&files);
            log::debug(&format!("--reload watches {n} files"));
        }
        Err(e) => log::warning(&format!(
            "--reload cannot list the application's files: {e}"
        )),
    }
}

/// How often a worker under `--reload` looks for modules imported since
/// it started (one `len(sys.modules)` under the GIL when there are none).
const RESCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Under `--reload`, a worker's thread that watches the files of modules
/// first imported while serving (an import inside a view, say), which the
/// list made at start-up does not have.
struct ModuleScanner {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ModuleScanner {
    /// Starts the thread, in a worker (never in the master, which forks
    /// without threads); `None` without `--reload`.
    fn start() -> Option<ModuleScanner> {
        if !reload::is_on() {
            return None;
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ferrowsgi-reload".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(RESCAN_EVERY) {
                    let files = Python::attach(|py| {
                        py.import("ferrowsgi._reload")
                            .and_then(|m| m.call_method0("new_files"))
                            .and_then(|f| f.extract::<Vec<String>>())
                    });
                    match files {
                        Ok(files) if !files.is_empty() => {
                            let n = reload::watch_files(&files);
                            log::debug(&format!(
                                "--reload watches {n} more files (modules imported while serving)"
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            log::warning(&format!(
                                "--reload cannot list the modules imported while serving: {e}"
                            ));
                            return;
                        }
                    }
                }
            })
            .ok()?;
        Some(ModuleScanner { stop, thread })
    }

    /// Stops the thread (at once: it waits on the channel) and joins it,
    /// before the interpreter can be finalized under it.
    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Turns metrics on (the shared region, made before any fork) and binds
/// the endpoint that the master serves. The error is one line.
fn start_metrics(addr: std::net::SocketAddr) -> Result<MetricsExporter, String> {
    metrics::enable(1024).map_err(|e| format!("cannot map the metrics region: {e}"))?;
    let exporter = MetricsExporter::bind(addr)
        .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    if let Ok(a) = exporter.local_addr() {
        log::info(&format!("Metrics at: http://{a}/metrics"));
    }
    Ok(exporter)
}

/// Collects once and freezes what survives (see `_loader.freeze_heap`).
fn freeze_heap(py: Python<'_>) -> PyResult<()> {
    let frozen: usize = py
        .import("ferrowsgi._loader")?
        .call_method0("freeze_heap")?
        .extract()?;
    log::debug(&format!(
        "{frozen} objects left out of garbage collection (--no-gc-freeze keeps them in)"
    ));
    Ok(())
}

/// What the master needs from Python: forking the interpreter, a worker's
/// life, re-reading the settings, the master's hooks.
struct PyBinding {
    argv: Vec<String>,
    loaded: settings::Loaded,
    cfg: Config,
    /// The application, when the master imported it (`--preload`).
    app: Option<Py<PyAny>>,
    /// The `server` argument of hooks.
    server_obj: Py<PyAny>,
    /// The `worker` objects made for `pre_fork`, by age: the forked worker
    /// goes on with its own (so what the hook set on it is there in
    /// `post_fork`), and the master hands it to `child_exit`, as gunicorn's
    /// arbiter keeps one object per worker.
    workers: std::collections::HashMap<u64, Py<PyAny>>,
}

impl PyBinding {
    /// Imports the application (unless preloaded) and builds the handler,
    /// running the worker's hooks; the error is one line.
    fn boot(&self, py: Python<'_>, worker_obj: &Bound<'_, PyAny>) -> Result<PyHandler, String> {
        let server_obj = self.server_obj.bind(py);
        if hooks::call(py, "post_fork", (server_obj, worker_obj)).is_err() {
            return Err("the post_fork hook failed (see above)".to_string());
        }
        let app = match &self.app {
            Some(app) => app.clone_ref(py),
            None => {
                let app = load_app(py, &self.loaded.cli)
                    .map_err(|e| format!("error while loading the application: {e}"))??;
                watch_app_files(py, None);
                if self.cfg.log_to_python {
                    crate::pylog::install(py)
                        .map_err(|e| format!("cannot hand the logs to Python: {e}"))?;
                }
                if !self.loaded.cli.no_gc_freeze {
                    freeze_heap(py).map_err(|e| format!("cannot freeze the heap: {e}"))?;
                }
                app
            }
        };
        if let Some(access) = &self.cfg.access_log {
            access.open()?;
        }
        let handler = PyHandler::new(py, app, self.cfg.threads, self.cfg.debug)
            .map_err(|e| format!("cannot start the worker: {e}"))?;
        let _ = hooks::call(py, "post_worker_init", (worker_obj,));
        let _ = worker_obj.setattr("booted", true);
        Ok(handler)
    }
}

impl Binding for PyBinding {
    fn fork(&mut self) -> io::Result<libc::pid_t> {
        Python::attach(|_py| {
            // SAFETY: the GIL is held, as PyOS_BeforeFork and the
            // PyOS_AfterFork_* functions require; they run the
            // interpreter's own fork bookkeeping (os.register_at_fork
            // callbacks, the import lock, the threading module's state).
            // The master runs no other thread, so the child's copy of
            // every lock is consistent.
            unsafe {
                pyo3::ffi::PyOS_BeforeFork();
                let pid = libc::fork();
                if pid == 0 {
                    pyo3::ffi::PyOS_AfterFork_Child();
                } else {
                    pyo3::ffi::PyOS_AfterFork_Parent();
                }
                if pid < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(pid)
                }
            }
        })
    }

    fn run_worker(&mut self, ctx: WorkerCtx) -> i32 {
        // The worker's own slot of the shared metrics (when they are on).
        metrics::claim_slot();
        let age = ctx.age;
        let booted = Python::attach(|py| -> PyResult<(Result<PyHandler, String>, Py<PyAny>)> {
            let objs = py.import("ferrowsgi._hookobjs")?;
            // The other workers' objects are the master's business.
            let own = self.workers.remove(&age);
            self.workers.clear();
            let worker_obj = match own {
                Some(w) => {
                    let w = w.into_bound(py);
                    let os = py.import("os")?;
                    w.setattr("pid", os.call_method0("getpid")?)?;
                    w.setattr("ppid", os.call_method0("getppid")?)?;
                    w
                }
                None => {
                    let cfg = self.server_obj.bind(py).getattr("cfg")?;
                    objs.getattr("Worker")?.call1((cfg, age))?
                }
            };
            objs.call_method1("set_worker", (&worker_obj,))?;
            Ok((self.boot(py, &worker_obj), worker_obj.unbind()))
        });
        let (handler, worker_obj) = match booted {
            Ok((Ok(h), w)) => (h, w),
            Ok((Err(msg), _)) => return ctx.boot_failed(&msg),
            Err(e) => return ctx.boot_failed(&format!("cannot start the worker: {e}")),
        };
        let cfg = self.cfg.clone();
        let int_worker = Python::attach(|py| worker_obj.clone_ref(py));
        ferrowsgi_server::process::on_interrupt(Box::new(move || {
            Python::attach(|py| {
                let _ = hooks::call(py, "worker_int", (int_worker.bind(py),));
            });
        }));
        // gunicorn runs worker_abort in a worker its arbiter aborts past
        // --timeout; here the worker is never killed for a slow request,
        // and the matching moment is its retirement as unhealthy (a
        // request thread lost past --timeout-grace), before it leaves.
        let abort_worker = Python::attach(|py| worker_obj.clone_ref(py));
        ferrowsgi_server::health::on_abort(Box::new(move || {
            Python::attach(|py| {
                let worker = abort_worker.bind(py);
                let _ = worker.setattr("alive", false);
                let _ = hooks::call(py, "worker_abort", (worker,));
            });
        }));
        let scanner = ModuleScanner::start();
        let result = Python::attach(|py| py.detach(|| ctx.serve(cfg, handler)));
        if let Some(scanner) = scanner {
            scanner.stop();
        }
        Python::attach(|py| {
            let worker = worker_obj.bind(py);
            let _ = worker.setattr("alive", false);
            let _ = hooks::call(py, "worker_exit", (self.server_obj.bind(py), worker));
        });
        match result {
            Ok(()) => 0,
            Err(e) => {
                log::error(&format!("worker failed: {e}"));
                1
            }
        }
    }

    fn reload(&mut self) -> Result<Settings, String> {
        let (loaded, cfg, settings) = Python::attach(|py| {
            let loaded = load(py, &self.argv).map_err(|(text, _)| {
                text.trim_end()
                    .trim_start_matches("ferrowsgi: error: ")
                    .to_string()
            })?;
            let (cfg, settings) = configure(&loaded)?;
            for w in &loaded.warnings {
                log::warning(w);
            }
            Ok::<_, String>((loaded, cfg, settings))
        })?;
        if cfg.binds != self.cfg.binds {
            log::warning(
                "the listeners stay as they were bound at start (a reload keeps every listening socket)",
            );
        }
        log::set_level(cfg.log_level);
        self.cfg = Config {
            binds: self.cfg.binds.clone(),
            access_log: self.cfg.access_log.clone(),
            ..cfg
        };
        self.loaded = loaded;
        Ok(settings)
    }

    fn hook(&mut self, name: &str) {
        Python::attach(|py| {
            let _ = hooks::call(py, name, (self.server_obj.bind(py),));
        });
    }

    fn pre_fork(&mut self, age: u64) {
        Python::attach(|py| {
            let server = self.server_obj.bind(py);
            let made = py.import("ferrowsgi._hookobjs").and_then(|objs| {
                let w = objs
                    .getattr("Worker")?
                    .call1((server.getattr("cfg")?, age))?;
                // Not forked yet: no pid of its own (gunicorn's is unset too).
                w.setattr("pid", py.None())?;
                w.setattr("ppid", std::process::id())?;
                Ok(w)
            });
            match made {
                Ok(worker) => {
                    let _ = hooks::call(py, "pre_fork", (server, &worker));
                    self.workers.insert(age, worker.unbind());
                }
                Err(e) => {
                    log::warning(&format!("cannot make the worker object of hooks: {e}"));
                }
            }
        });
    }

    fn spawned(&mut self, pid: libc::pid_t, age: u64) {
        if let Some(worker) = self.workers.get(&age) {
            Python::attach(|py| {
                let _ = worker.bind(py).setattr("pid", pid);
            });
        }
    }

    fn worker_exited(
        &mut self,
        pid: libc::pid_t,
        age: u64,
        cause: ferrowsgi_server::process::ExitCause,
    ) {
        metrics::worker_exited(pid as u32, RestartCause::of_exit(cause));
        let known = self.workers.remove(&age);
        Python::attach(|py| {
            let server = self.server_obj.bind(py);
            let worker = match known {
                Some(w) => Ok(w.into_bound(py)),
                None => py
                    .import("ferrowsgi._hookobjs")
                    .and_then(|objs| objs.getattr("Worker")?.call1((server.getattr("cfg")?, age))),
            }
            .and_then(|w| {
                w.setattr("pid", pid)?;
                w.setattr("ppid", std::process::id())?;
                w.setattr("alive", false)?;
                Ok(w)
            });
            if let Ok(worker) = worker {
                let _ = hooks::call(py, "child_exit", (server, worker));
            }
        });
    }

    fn workers_changed(&mut self, new: usize, old: usize) {
        Python::attach(|py| {
            let _ = hooks::call(py, "nworkers_changed", (self.server_obj.bind(py), new, old));
        });
    }
}

/// Runs the command line `argv` (program name first) and returns the exit
/// status.
fn run(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    if let Some(rest) = cgi_arguments(&argv) {
        // `ferrowsgi cgi APP`: one request from a CGI environment, served
        // in Python (ferrowsgi/_cgi.py); no server settings apply.
        return py
            .import("ferrowsgi._cgi")?
            .call_method1("main", (rest,))?
            .extract();
    }
    let loaded = match load(py, &argv) {
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
    if loaded.cli.print_config {
        for w in &loaded.warnings {
            log::warning(w);
        }
        print!("{}", settings::print_config(&loaded));
        return Ok(0);
    }
    let cli = &loaded.cli;
    if cli.app.is_empty() && cli.mount.is_empty() {
        return Ok(fail(
            "no application: name it as APP, or as app (gunicorn's wsgi_app) in the \
             configuration, or mount one with --mount (see --help)",
            2,
        ));
    }
    if let Err(msg) = cli.mounts() {
        return Ok(fail(&msg, 2));
    }
    let (cfg, settings) = match configure(&loaded) {
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
    if let Some(mask) = cli.umask {
        system::set_umask(mask);
    }
    log::set_level(cfg.log_level);
    if let Err(msg) = log::set_error_log(&cfg.error_log, cfg.log_format) {
        return Ok(fail(&msg, 2));
    }
    if cfg.log_to_python && loaded.cli.preload {
        // The master's lines too: the application it loads sets up the
        // logging. Without --preload, nothing in the master would (its
        // lines would reach Python's last-resort handler, which drops
        // INFO), so they stay on the error log and each worker hands its
        // own over once it has imported the application.
        crate::pylog::install(py)?;
    }
    // Settings ignored, now that the error log goes where it was told to.
    for w in &loaded.warnings {
        log::warning(w);
    }
    let result = serve(py, argv, loaded, cfg, settings);
    // Records logged after this (at exit) go to the server's own
    // destinations: the interpreter is about to end.
    crate::pylog::uninstall();
    result
}

/// The arguments after `cgi` when `argv` runs the `cgi` subcommand. A
/// script whose first line is `#!/path/to/ferrowsgi cgi APP` gets `cgi APP`
/// as one argument (the kernel passes the rest of that line whole), then
/// the script's path and, for a query without `=`, the query's words (RFC
/// 3875's indexed queries): that argument is split on whitespace and what
/// follows it is left out.
fn cgi_arguments(argv: &[String]) -> Option<Vec<String>> {
    let first = argv.get(1)?;
    if first == "cgi" {
        return Some(argv[2..].to_vec());
    }
    let rest = first.strip_prefix("cgi")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Binds, then runs the master (or, in a worker, returns its status).
fn serve(
    py: Python<'_>,
    argv: Vec<String>,
    loaded: settings::Loaded,
    cfg: Config,
    settings: Settings,
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
    let server_obj = hooks::make_hook_objects(py, &loaded)?;
    if cli.check_config {
        return match load_app(py, cli)? {
            Ok(_) => {
                log::info(&format!(
                    "Configuration and application {} are valid",
                    served(cli)
                ));
                Ok(0)
            }
            Err(msg) => Ok(fail(&msg, 1)),
        };
    }
    // The master's signal handlers from here on: a signal during the
    // binding or a preload is acted on before any worker is forked.
    let mut master = match Master::new(settings.clone()) {
        Ok(m) => m,
        Err(e) => return Ok(fail(&format!("cannot set up the master process: {e}"), 1)),
    };
    if hooks::call(py, "on_starting", (&server_obj,)).is_err() {
        return Ok(fail("the on_starting hook failed (see above)", 1));
    }
    let listeners = match listeners(&loaded, &cfg, &settings) {
        Ok(l) => l,
        Err(msg) => return Ok(fail(&msg, 1)),
    };
    if listeners.is_empty() {
        return Ok(fail("no address to listen on", 2));
    }
    if let (Some(_), Some(path)) = (&cfg.access_log, &cli.access_logfile) {
        // Tried here, so that a wrong path is the command's error; the
        // workers open it (they write it, and reopen it on USR1).
        if path != "-" {
            if let Err(e) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                return Ok(fail(&format!("cannot open log file {path}: {e}"), 1));
            }
        }
    }
    if let Some(addr) = cli.metrics_bind {
        match start_metrics(addr) {
            Ok(exporter) => master.add_source(Box::new(exporter)),
            Err(msg) => return Ok(fail(&msg, 1)),
        }
    }
    if cli.reload && cli.preload {
        // The workers would be forked from the master's copy of the old
        // code at every reload.
        return Ok(fail(
            "--reload does not work with --preload (the workers would get the master's old code); use one of them",
            2,
        ));
    }
    if cli.reload {
        match reload::Watcher::new(cli.reload_extra_file.clone()) {
            Ok(watcher) => master.add_source(Box::new(watcher)),
            Err(msg) => return Ok(fail(&msg, 2)),
        }
    }
    let app = if cli.preload {
        match load_app(py, cli)? {
            Ok(app) => {
                if !cli.no_gc_freeze {
                    freeze_heap(py)?;
                }
                Some(app)
            }
            Err(msg) => return Ok(fail(&msg, 1)),
        }
    } else {
        None
    };
    // After a preload, which may have set up the logging that
    // --log-to-python hands these lines to.
    for l in &listeners {
        log::info(&format!("Listening at: {}", l.url()));
    }
    log::info(&format!("Application: {}", served(cli)));
    log::info(&format!("Using {} thread(s)", cfg.threads));
    log::info(&format!("Using {} worker(s)", settings.workers));
    master.add_listeners(listeners);
    master.set_notifier(Notifier::from_env());
    // The variables were removed from the C environment; Python's copy,
    // which the application and its subprocesses see, follows.
    for var in [
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        environ.call_method1("pop", (var, py.None()))?;
    }
    let mut binding = PyBinding {
        argv,
        loaded,
        cfg,
        app,
        server_obj: server_obj.unbind(),
        workers: std::collections::HashMap::new(),
    };
    let outcome = py.detach(|| master.run(&mut binding));
    match outcome {
        Outcome::Master(code) | Outcome::Worker(code) => Ok(code),
    }
}

/// The application as the start-up log names it: APP, then each mounted
/// one as `PREFIX=APP`, then the root path.
fn served(cli: &Cli) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !cli.app.is_empty() {
        parts.push(cli.app.clone());
    }
    parts.extend(cli.mount.iter().cloned());
    let mut text = parts.join(", ");
    if let Some(root) = cli.root_path.as_deref().filter(|r| !r.is_empty()) {
        text.push_str(&format!(" (under root path {root})"));
    }
    text
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
