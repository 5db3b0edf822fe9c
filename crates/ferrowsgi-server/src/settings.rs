//! Settings from every source: the command line, `FERROWSGI_*` environment
//! variables and a configuration file, merged into one [`Cli`] with the
//! origin of each value.
//!
//! The mechanism is generic over [`Cli`]'s arguments: it walks
//! `Cli::command().get_arguments()`, so an option added to `Cli` can be set
//! from a file and the environment, and is printed by `--print-config`,
//! with no code here. A value from a file or the environment is turned into
//! the option's command-line form and checked by the option's own parser,
//! so every source accepts exactly what the command line accepts.
//!
//! Precedence, highest first: command line, environment, file, defaults.
//! A list option (`bind`, `env`) takes its whole list from the highest
//! source that sets it; lists from several sources are not merged.
//!
//! gunicorn's setting names are accepted too (in files and the
//! environment), through [`GUNICORN`]; a gunicorn setting with no
//! equivalent is an error naming it, or a warning where ignoring it changes
//! nothing the application can see.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::config::Cli;

/// A value as a configuration source wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true` / `false` (`True` / `False` in Python).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (every environment variable is one).
    Str(String),
    /// A list (TOML array; Python list or tuple).
    List(Vec<Value>),
    /// Python's `None`: the setting is left unset, as gunicorn's defaults
    /// of `None` mean.
    None,
}

impl Value {
    /// The name of the value's type, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::None => "None",
        }
    }

    /// Whether the value is one that turns a feature off (gunicorn's
    /// default for most settings we lack): ignoring it changes nothing.
    fn is_off(&self) -> bool {
        match self {
            Value::Bool(b) => !b,
            Value::Int(n) => *n == 0,
            Value::Str(s) => s.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::None => true,
            Value::Float(_) => false,
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it.
    Default,
    /// A configuration file, with the line where known.
    File {
        /// The file as it was named (or found).
        path: PathBuf,
        /// 1-based line of the setting.
        line: Option<usize>,
    },
    /// An environment variable.
    Env(String),
    /// The command line.
    CommandLine,
    /// A keyword argument of the Python API (`ferrowsgi.serve()`).
    Argument,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File {
                path,
                line: Some(n),
            } => write!(f, "{}:{n}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::CommandLine => f.write_str("command line"),
            Origin::Argument => f.write_str("keyword argument"),
        }
    }
}

/// One setting as a file or the environment gave it: the name as written,
/// the value and where it was.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name as written (`keep_alive`, `keep-alive`, gunicorn's
    /// `keepalive`, ...).
    pub name: String,
    /// The value.
    pub value: Value,
    /// Where it was.
    pub origin: Origin,
}

/// What becomes of a gunicorn setting name.
#[derive(Debug, Clone, Copy)]
pub enum Gunicorn {
    /// Sets our option of this argument id. If `Cli` has no such option
    /// (yet), the setting is ignored with a warning naming it.
    To(&'static str),
    /// `worker_class`: `sync` and `gthread` mean our threads; the rest is
    /// refused.
    WorkerClass,
    /// No equivalent, and ignoring it would change behaviour: an error
    /// (unless its value turns it off). The text says why.
    Unsupported(&'static str),
    /// No equivalent, and ignoring it is harmless: a warning (none when
    /// its value turns it off). The text says why.
    Ignored(&'static str),
}

/// gunicorn's settings (those of its configuration module and of
/// `--print-config`) and what each becomes here. Names that equal one of
/// our argument ids need no entry, but those owned by options that may not
/// exist in every build are listed so that they warn instead of being
/// unknown.
pub const GUNICORN: &[(&str, Gunicorn)] = &[
    // Config file and application.
    ("wsgi_app", Gunicorn::To("app")),
    // Server socket and worker processes.
    ("bind", Gunicorn::To("bind")),
    ("backlog", Gunicorn::To("backlog")),
    ("workers", Gunicorn::To("workers")),
    ("worker_class", Gunicorn::WorkerClass),
    ("threads", Gunicorn::To("threads")),
    ("worker_connections", Gunicorn::To("worker_connections")),
    ("max_requests", Gunicorn::To("max_requests")),
    ("max_requests_jitter", Gunicorn::To("max_requests_jitter")),
    ("timeout", Gunicorn::To("timeout")),
    ("graceful_timeout", Gunicorn::To("graceful_timeout")),
    ("keepalive", Gunicorn::To("keep_alive")),
    // Security limits.
    ("limit_request_line", Gunicorn::To("limit_request_line")),
    ("limit_request_fields", Gunicorn::To("limit_request_fields")),
    (
        "limit_request_field_size",
        Gunicorn::To("limit_request_field_size"),
    ),
    // Debugging.
    ("reload", Gunicorn::To("reload")),
    ("reload_extra_files", Gunicorn::To("reload_extra_file")),
    (
        "reload_engine",
        Gunicorn::Ignored("--reload always watches with inotify"),
    ),
    ("spew", Gunicorn::Unsupported("there is no line tracer")),
    // Logging.
    ("accesslog", Gunicorn::To("access_logfile")),
    ("access_log_format", Gunicorn::To("access_logformat")),
    ("errorlog", Gunicorn::To("error_logfile")),
    ("loglevel", Gunicorn::To("log_level")),
    (
        "capture_output",
        Gunicorn::Ignored("the application's output goes to the server's stderr"),
    ),
    (
        "logger_class",
        Gunicorn::Unsupported("use --log-to-python and Python's logging instead"),
    ),
    (
        "logconfig",
        Gunicorn::Unsupported("use --log-to-python and configure logging in the application"),
    ),
    (
        "logconfig_dict",
        Gunicorn::Unsupported("use --log-to-python and configure logging in the application"),
    ),
    (
        "logconfig_json",
        Gunicorn::Unsupported("use --log-to-python and configure logging in the application"),
    ),
    ("syslog", Gunicorn::Unsupported("there is no syslog output")),
    (
        "syslog_addr",
        Gunicorn::Ignored("there is no syslog output"),
    ),
    (
        "syslog_prefix",
        Gunicorn::Ignored("there is no syslog output"),
    ),
    (
        "syslog_facility",
        Gunicorn::Ignored("there is no syslog output"),
    ),
    (
        "disable_redirect_access_to_syslog",
        Gunicorn::Ignored("there is no syslog output"),
    ),
    (
        "enable_stdio_inheritance",
        Gunicorn::Ignored("standard streams are always inherited"),
    ),
    (
        "statsd_host",
        Gunicorn::Unsupported("use --metrics-bind for Prometheus metrics"),
    ),
    (
        "dogstatsd_tags",
        Gunicorn::Unsupported("use --metrics-bind for Prometheus metrics"),
    ),
    (
        "statsd_prefix",
        Gunicorn::Unsupported("use --metrics-bind for Prometheus metrics"),
    ),
    // Process naming.
    ("proc_name", Gunicorn::To("name")),
    (
        "default_proc_name",
        Gunicorn::Ignored("the process name is --name, or the program's"),
    ),
    // TLS: terminated by a front-end server.
    (
        "keyfile",
        Gunicorn::Unsupported("TLS is not served; terminate it in a front-end server"),
    ),
    (
        "certfile",
        Gunicorn::Unsupported("TLS is not served; terminate it in a front-end server"),
    ),
    (
        "ca_certs",
        Gunicorn::Unsupported("TLS is not served; terminate it in a front-end server"),
    ),
    (
        "ciphers",
        Gunicorn::Unsupported("TLS is not served; terminate it in a front-end server"),
    ),
    ("ssl_version", Gunicorn::Ignored("TLS is not served")),
    ("cert_reqs", Gunicorn::Ignored("TLS is not served")),
    (
        "suppress_ragged_eofs",
        Gunicorn::Ignored("TLS is not served"),
    ),
    (
        "do_handshake_on_connect",
        Gunicorn::Ignored("TLS is not served"),
    ),
    // Server mechanics.
    ("preload_app", Gunicorn::To("preload")),
    (
        "sendfile",
        Gunicorn::Ignored("wsgi.file_wrapper responses always use sendfile(2)"),
    ),
    ("reuse_port", Gunicorn::To("reuse_port")),
    ("chdir", Gunicorn::To("chdir")),
    (
        "daemon",
        Gunicorn::Unsupported("run it under a process manager (systemd, supervisord)"),
    ),
    ("raw_env", Gunicorn::To("env")),
    ("pidfile", Gunicorn::To("pid")),
    (
        "worker_tmp_dir",
        Gunicorn::Ignored("workers keep no heartbeat files"),
    ),
    ("user", Gunicorn::To("user")),
    ("group", Gunicorn::To("group")),
    ("umask", Gunicorn::To("umask")),
    (
        "initgroups",
        Gunicorn::Ignored("the workers always take the supplementary groups of -u/--user"),
    ),
    (
        "tmp_upload_dir",
        Gunicorn::Ignored("large bodies are spooled to the system's temporary directory"),
    ),
    (
        "secure_scheme_headers",
        Gunicorn::Ignored(
            "X-Forwarded-Proto and Forwarded's proto= set the scheme; see --forwarded-allow-ips",
        ),
    ),
    ("forwarded_allow_ips", Gunicorn::To("forwarded_allow_ips")),
    (
        "forwarder_headers",
        Gunicorn::Ignored("the forwarding headers read are fixed (docs/DEPLOY.md)"),
    ),
    ("pythonpath", Gunicorn::To("pythonpath")),
    ("paste", Gunicorn::Unsupported("PasteDeploy is not read")),
    (
        "raw_paste_global_conf",
        Gunicorn::Unsupported("PasteDeploy is not read"),
    ),
    ("proxy_protocol", Gunicorn::To("proxy_protocol")),
    (
        "proxy_allow_ips",
        Gunicorn::Ignored(
            "a listener with --proxy-protocol requires the PROXY header from every peer",
        ),
    ),
    (
        "permit_obsolete_folding",
        Gunicorn::Ignored("requests are parsed by RFC 9112 alone"),
    ),
    (
        "strip_header_spaces",
        Gunicorn::Ignored("requests are parsed by RFC 9112 alone"),
    ),
    (
        "permit_unconventional_http_method",
        Gunicorn::Ignored("requests are parsed by RFC 9112 alone"),
    ),
    (
        "permit_unconventional_http_version",
        Gunicorn::Ignored("requests are parsed by RFC 9112 alone"),
    ),
    (
        "casefold_http_method",
        Gunicorn::Ignored("requests are parsed by RFC 9112 alone"),
    ),
    (
        "header_map",
        Gunicorn::Ignored("requests are parsed by RFC 9112 alone"),
    ),
];

/// gunicorn's server hooks, which only a `.py` configuration defines.
pub const HOOKS: &[&str] = &[
    "on_starting",
    "when_ready",
    "post_fork",
    "post_worker_init",
    "worker_exit",
    "on_exit",
    "pre_request",
    "post_request",
    "on_reload",
    "child_exit",
    "worker_int",
    "nworkers_changed",
    "pre_fork",
    "worker_abort",
];

/// gunicorn's other hooks, which have no call site here: defining one is
/// a warning. `pre_exec` runs before gunicorn re-executes its binary on
/// `USR2`, and ferrowsgi never re-executes itself; `ssl_context` builds a
/// TLS context, and ferrowsgi serves plain HTTP.
pub const UNSUPPORTED_HOOKS: &[&str] = &["pre_exec", "ssl_context"];

/// How a configuration names a Python module on the import path rather
/// than a file (gunicorn's `-c python:pkg.module`).
pub const PY_MODULE_PREFIX: &str = "python:";

/// Arguments that only the command line gives: the file's own name and
/// one-shot actions.
const COMMAND_LINE_ONLY: &[&str] = &["help", "version", "config", "print_config", "check_config"];

/// `FERROWSGI_*` variables that are not settings: the configuration file's
/// name, and those the server passes to its own processes.
const ENV_NOT_SETTINGS: &[&str] = &["FERROWSGI_CONFIG"];
/// Prefix of variables the server sets for its own child processes.
const ENV_INTERNAL_PREFIX: &str = "FERROWSGI_INTERNAL_";

/// How an option takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A flag that sets true.
    Flag,
    /// A flag that sets false.
    FlagOff,
    /// One value.
    One,
    /// A list (repeated option).
    List,
    /// Counted flag (`-vv`).
    Count,
}

/// One of [`Cli`]'s arguments, as this module needs it.
#[derive(Debug, Clone)]
struct Spec {
    id: String,
    long: Option<String>,
    kind: Kind,
    positional: bool,
    defaults: Vec<String>,
    /// Normalized names a source may use: the id, the long name and the
    /// aliases.
    names: Vec<String>,
}

/// Lower case with `-` turned into `_`: `keep-alive`, `KEEP_ALIVE` and
/// `keep_alive` are one name.
fn norm(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

fn specs() -> Vec<Spec> {
    let cmd = Cli::command();
    cmd.get_arguments()
        .map(|a| {
            let kind = match a.get_action() {
                ArgAction::SetTrue => Kind::Flag,
                ArgAction::SetFalse => Kind::FlagOff,
                ArgAction::Append => Kind::List,
                ArgAction::Count => Kind::Count,
                _ => Kind::One,
            };
            let mut names = vec![norm(a.get_id().as_str())];
            if let Some(l) = a.get_long() {
                names.push(norm(l));
            }
            for alias in a.get_all_aliases().unwrap_or_default() {
                names.push(norm(alias));
            }
            Spec {
                id: a.get_id().as_str().to_string(),
                long: a.get_long().map(str::to_string),
                kind,
                positional: a.is_positional(),
                defaults: a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
                names,
            }
        })
        .collect()
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known name closest to `name`, if close enough to be a misspelling.
pub(crate) fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).clamp(1, 3);
    known
        .map(|k| (distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Settings from every source, merged.
#[derive(Debug)]
pub struct Loaded {
    /// The merged command line.
    pub cli: Cli,
    /// Every setting in `Cli`'s order.
    pub rows: Vec<Row>,
    /// Settings ignored, one line each, to be logged as warnings.
    pub warnings: Vec<String>,
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
}

/// One effective setting.
#[derive(Debug, Clone)]
pub struct Row {
    /// Our name (the argument id, as in ferrowsgi.toml).
    pub name: String,
    /// The value as `--print-config` shows it (TOML).
    pub shown: String,
    /// The value, typed (`None` for an option left unset).
    pub value: Value,
    /// Where it came from.
    pub origin: Origin,
}

/// gunicorn's names of our options that exist in this build, as
/// `(gunicorn name, our name)` pairs: for the `cfg` object hooks see.
pub fn gunicorn_aliases() -> Vec<(&'static str, String)> {
    let specs = specs();
    GUNICORN
        .iter()
        .filter_map(|(g, m)| match m {
            Gunicorn::To(name) => specs
                .iter()
                .find(|s| s.names.iter().any(|n| n == name))
                .map(|s| (*g, s.id.clone())),
            _ => None,
        })
        .collect()
}

/// What a name in a file or the environment stands for.
enum Resolved<'s> {
    Arg(&'s Spec),
    WorkerClass,
    /// Nothing to set; the warning (if any) says why.
    Skip(Option<String>),
}

/// How a loader reads a `.py` configuration module: the binding runs it in
/// Python and returns its settings (the hooks it installs itself). The
/// error is one line.
pub type PyReader<'a> = &'a mut dyn FnMut(&Path) -> Result<Vec<Entry>, String>;

/// Parses the command line alone (clap's matches), with `--help` and
/// `--version` as `Err((text, 0))` and mistakes as one line with status 2.
fn parse_command_line(argv: &[String]) -> Result<clap::ArgMatches, (String, i32)> {
    Cli::command()
        .try_get_matches_from(argv)
        .map_err(clap_error)
}

fn clap_error(e: clap::Error) -> (String, i32) {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => (e.to_string(), 0),
        _ => (
            format!("ferrowsgi: error: {} (see --help)\n", clap_line(&e)),
            2,
        ),
    }
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn err2(msg: String) -> (String, i32) {
    (format!("ferrowsgi: error: {msg}\n"), 2)
}

/// Loads the settings: the command line `argv` (program name first), the
/// environment `env` (all variables; only `FERROWSGI_*` ones are read), and
/// the configuration file: `-c FILE`, else `FERROWSGI_CONFIG`, else
/// ./ferrowsgi.toml, else ./pyproject.toml's `[tool.ferrowsgi]` (relative
/// to the current directory). A `.py` file is read through `read_py`.
///
/// On `--help`/`--version` the text comes back as `Err((text, 0))`; a
/// mistake in any source is one line naming the setting and its source,
/// with status 2.
pub fn load(
    argv: &[String],
    env: &[(String, String)],
    read_py: PyReader<'_>,
) -> Result<Loaded, (String, i32)> {
    let matches = parse_command_line(argv)?;
    let mut warnings = Vec::new();
    if env.iter().any(|(k, _)| k == "GUNICORN_CMD_ARGS") {
        warnings.push(
            "GUNICORN_CMD_ARGS is not read; use FERROWSGI_* variables or a configuration file"
                .to_string(),
        );
    }

    // The file: which one, then its entries.
    let explicit = matches.get_one::<PathBuf>("config").cloned().or_else(|| {
        env.iter()
            .find(|(k, _)| k == "FERROWSGI_CONFIG")
            .map(|(_, v)| PathBuf::from(v))
    });
    let (config_file, file_entries) = match explicit {
        Some(path) => {
            let entries = read_file(&path, read_py).map_err(err2)?;
            (Some(path), entries)
        }
        None => discover(&mut warnings).map_err(err2)?,
    };
    let env_entries = env_entries(env);
    merge(
        argv,
        &matches,
        &[],
        &env_entries,
        &file_entries,
        config_file,
        warnings,
    )
}

/// Loads the settings of a server embedded with the Python API: the
/// keyword arguments `options` (each with [`Origin::Argument`]) over the
/// configuration file `config` (read as `-c` reads it; no other file is
/// looked for, and the environment is not read) over the defaults. The
/// same table checks every value, so a keyword argument takes exactly
/// what the command line's option takes; a mistake is one line naming it.
pub fn load_api(
    options: &[Entry],
    config: Option<&Path>,
    read_py: PyReader<'_>,
) -> Result<Loaded, String> {
    let strip = |(text, _): (String, i32)| {
        text.trim_end()
            .trim_start_matches("ferrowsgi: error: ")
            .to_string()
    };
    let argv = ["ferrowsgi".to_string()];
    let matches = parse_command_line(&argv).map_err(strip)?;
    let file_entries = match config {
        Some(path) => read_file(path, read_py)?,
        None => Vec::new(),
    };
    merge(
        &argv,
        &matches,
        options,
        &[],
        &file_entries,
        config.map(Path::to_path_buf),
        Vec::new(),
    )
    .map_err(strip)
}

/// Merges the sources, highest first: the command line (`matches` of
/// `argv`), the API's keyword arguments `api` (never both), the
/// environment's entries, the file's, the defaults.
fn merge(
    argv: &[String],
    matches: &clap::ArgMatches,
    api: &[Entry],
    env_entries: &[Entry],
    file_entries: &[Entry],
    config_file: Option<PathBuf>,
    mut warnings: Vec<String>,
) -> Result<Loaded, (String, i32)> {
    let specs = specs();
    // Each source's values, by argument id.
    let file_layer = layer(&specs, file_entries, &mut warnings).map_err(err2)?;
    let env_layer = layer(&specs, env_entries, &mut warnings).map_err(err2)?;
    let api_layer = layer(&specs, api, &mut warnings).map_err(err2)?;

    let mut final_argv: Vec<OsString> = vec![argv
        .first()
        .cloned()
        .unwrap_or_else(|| "ferrowsgi".to_string())
        .into()];
    let mut positional: Vec<OsString> = Vec::new();
    let mut rows = Vec::new();
    let mut origins: HashMap<String, Origin> = HashMap::new();
    for spec in &specs {
        if COMMAND_LINE_ONLY.contains(&spec.id.as_str()) && spec.id != "config" {
            if spec.kind == Kind::Flag && matches.get_flag(&spec.id) {
                if let Some(long) = &spec.long {
                    final_argv.push(format!("--{long}").into());
                }
            }
            continue;
        }
        let (values, origin) = if matches.value_source(&spec.id) == Some(ValueSource::CommandLine) {
            (command_line_values(matches, spec), Origin::CommandLine)
        } else if let Some((v, o)) = api_layer.get(&spec.id) {
            (v.clone(), o.clone())
        } else if let Some((v, o)) = env_layer.get(&spec.id) {
            (v.clone(), o.clone())
        } else if let Some((v, o)) = file_layer.get(&spec.id) {
            (v.clone(), o.clone())
        } else {
            (Vec::new(), Origin::Default)
        };
        if spec.id == "config" {
            if let Some(f) = &config_file {
                let text = f.display().to_string();
                rows.push(Row {
                    name: spec.id.clone(),
                    shown: show_str(&text),
                    value: Value::Str(text),
                    origin,
                });
            }
            continue;
        }
        if origin != Origin::Default {
            emit(spec, &values, &mut final_argv, &mut positional);
        }
        // A flag's values say whether it is given ("true"); clap's
        // default for a flag is its value, so a defaulted flag is "not
        // given" here.
        let not_given = vec!["false".to_string()];
        let effective = match (&origin, spec.kind) {
            (Origin::Default, Kind::Flag | Kind::FlagOff) => &not_given,
            (Origin::Default, _) => &spec.defaults,
            _ => &values,
        };
        origins.insert(spec.id.clone(), origin.clone());
        rows.push(Row {
            name: spec.id.clone(),
            shown: show(spec, effective),
            value: typed(spec, effective),
            origin,
        });
    }
    if !positional.is_empty() {
        final_argv.push("--".into());
        final_argv.extend(positional);
    }
    let cli = Cli::command()
        .try_get_matches_from(&final_argv)
        .and_then(|m| Cli::from_arg_matches(&m))
        .map_err(|e| {
            // A conflict between options names them by their long form:
            // say where each came from when it was not the command line.
            let mut msg = clap_line(&e);
            let mut from = Vec::new();
            for spec in &specs {
                let Some(long) = &spec.long else { continue };
                let flag = format!("'--{long}");
                match origins.get(&spec.id) {
                    Some(o) if *o != Origin::CommandLine && msg.contains(&flag) => {
                        from.push(format!("--{long} from {o}"));
                    }
                    _ => {}
                }
            }
            if !from.is_empty() {
                msg = format!("{msg} ({})", from.join("; "));
            }
            err2(msg)
        })?;
    Ok(Loaded {
        cli,
        rows,
        warnings,
        config_file,
    })
}

/// The values the command line gave `spec`, as strings. A flag's is
/// whether it was given.
fn command_line_values(m: &clap::ArgMatches, spec: &Spec) -> Vec<String> {
    match spec.kind {
        Kind::Flag | Kind::FlagOff => {
            vec![(m.get_flag(&spec.id) == (spec.kind == Kind::Flag)).to_string()]
        }
        Kind::Count => vec![m.get_count(&spec.id).to_string()],
        Kind::One | Kind::List => m
            .get_raw(&spec.id)
            .map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    }
}

/// Appends `spec`'s command-line form with `values` to `argv`.
fn emit(spec: &Spec, values: &[String], argv: &mut Vec<OsString>, positional: &mut Vec<OsString>) {
    if spec.positional {
        positional.extend(values.iter().map(OsString::from));
        return;
    }
    // Every option of Cli has a long name; one without is not settable
    // from a file (there would be no way to spell it).
    let Some(long) = &spec.long else { return };
    match spec.kind {
        Kind::Flag | Kind::FlagOff => {
            let on = values.first().is_some_and(|v| v == "true");
            if on {
                argv.push(format!("--{long}").into());
            }
        }
        Kind::Count => {
            let n: usize = values.first().and_then(|v| v.parse().ok()).unwrap_or(0);
            for _ in 0..n {
                argv.push(format!("--{long}").into());
            }
        }
        Kind::One | Kind::List => {
            for v in values {
                argv.push(format!("--{long}={v}").into());
            }
        }
    }
}

/// A string as a TOML string literal.
fn show_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value as `--print-config` shows it: TOML, so that the output can be
/// pasted into ferrowsgi.toml.
fn show(spec: &Spec, values: &[String]) -> String {
    let scalar = |v: &str| {
        if v.parse::<i64>().is_ok() || (v.parse::<f64>().is_ok() && v.contains('.')) {
            v.to_string()
        } else {
            show_str(v)
        }
    };
    match spec.kind {
        Kind::Flag | Kind::FlagOff => {
            let given = values.first().is_some_and(|v| v == "true");
            (given == (spec.kind == Kind::Flag)).to_string()
        }
        Kind::Count => values.first().cloned().unwrap_or_else(|| "0".into()),
        Kind::List => {
            let items: Vec<String> = values.iter().map(|v| scalar(v)).collect();
            format!("[{}]", items.join(", "))
        }
        Kind::One => match values.first() {
            Some(v) => scalar(v),
            None => "(unset)".to_string(),
        },
    }
}

/// A command-line value as a typed one: what a configuration file would
/// have written.
fn typed(spec: &Spec, values: &[String]) -> Value {
    let scalar = |v: &str| {
        if let Ok(n) = v.parse::<i64>() {
            Value::Int(n)
        } else if let (true, Ok(f)) = (v.contains('.'), v.parse::<f64>()) {
            Value::Float(f)
        } else {
            Value::Str(v.to_string())
        }
    };
    match spec.kind {
        Kind::Flag | Kind::FlagOff => {
            let given = values.first().is_some_and(|v| v == "true");
            Value::Bool(given == (spec.kind == Kind::Flag))
        }
        Kind::Count => values.first().map_or(Value::Int(0), |v| scalar(v)),
        Kind::List => Value::List(values.iter().map(|v| scalar(v)).collect()),
        Kind::One => values.first().map_or(Value::None, |v| scalar(v)),
    }
}

/// Settings whose value `--print-config` does not show.
const SECRETS: &[&str] = &["ajp_secret"];

/// `--print-config`'s text: one `name = value  # origin` line per setting.
pub fn print_config(loaded: &Loaded) -> String {
    let width = loaded
        .rows
        .iter()
        .map(|r| r.name.len() + r.shown.len() + 3)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for r in &loaded.rows {
        // A secret is shown as set or not, never itself: the output ends up
        // in terminals, tickets and logs.
        let line = if SECRETS.contains(&r.name.as_str()) && r.origin != Origin::Default {
            format!("{} = \"(hidden)\"", r.name)
        } else {
            format!("{} = {}", r.name, r.shown)
        };
        out.push_str(&format!("{line:<width$}  # {}\n", r.origin));
    }
    out
}

/// Finds the configuration file when none is named: ./ferrowsgi.toml, else
/// ./pyproject.toml's `[tool.ferrowsgi]`.
fn discover(warnings: &mut Vec<String>) -> Result<(Option<PathBuf>, Vec<Entry>), String> {
    let own = PathBuf::from("ferrowsgi.toml");
    let pyproject = PathBuf::from("pyproject.toml");
    let from_pyproject = if pyproject.is_file() {
        let text = read_text(&pyproject)?;
        let entries = toml_entries(&pyproject, &text, true)?;
        entries.map(|e| (pyproject.clone(), e))
    } else {
        None
    };
    if own.is_file() {
        if from_pyproject.is_some() {
            warnings.push(
                "ferrowsgi.toml is read; [tool.ferrowsgi] in pyproject.toml is not (only one \
                 configuration file is read)"
                    .to_string(),
            );
        }
        let text = read_text(&own)?;
        let entries = toml_entries(&own, &text, false)?.unwrap_or_default();
        return Ok((Some(own), entries));
    }
    Ok(match from_pyproject {
        Some((path, entries)) => (Some(path), entries),
        None => (None, Vec::new()),
    })
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration file {}: {e}", path.display()))
}

/// Reads a named configuration file by its extension.
fn read_file(path: &Path, read_py: PyReader<'_>) -> Result<Vec<Entry>, String> {
    // gunicorn's `-c python:pkg.module`: a module on the import path,
    // which the Python side finds and runs like a `.py` file.
    if path
        .to_str()
        .is_some_and(|p| p.starts_with(PY_MODULE_PREFIX))
    {
        return read_py(path);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        // The reader reports a missing or unreadable file itself.
        "py" => read_py(path),
        "toml" => {
            let text = read_text(path)?;
            let is_pyproject = path.file_name().is_some_and(|n| n == "pyproject.toml");
            let entries = toml_entries(path, &text, is_pyproject)?;
            match entries {
                Some(e) => Ok(e),
                None => Err(format!("{} has no [tool.ferrowsgi] table", path.display())),
            }
        }
        _ => Err(format!(
            "configuration file {} must be a .toml or a .py file",
            path.display()
        )),
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The settings of a TOML file: its top-level keys, or those of
/// `[tool.ferrowsgi]` in a pyproject.toml (`None` if it has no such table).
fn toml_entries(path: &Path, text: &str, pyproject: bool) -> Result<Option<Vec<Entry>>, String> {
    use toml::de::{DeTable, DeValue};
    let at = |offset: usize| Origin::File {
        path: path.to_path_buf(),
        line: Some(line_of(text, offset)),
    };
    let doc = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| format!(":{}", line_of(text, s.start)));
        format!(
            "{}{}: invalid TOML: {}",
            path.display(),
            line.unwrap_or_default(),
            e.message().lines().next().unwrap_or("syntax error")
        )
    })?;
    let doc = doc.into_inner();
    let table = if pyproject {
        let tool = doc.iter().find(|(k, _)| k.get_ref().as_ref() == "tool");
        let Some((_, tool)) = tool else {
            return Ok(None);
        };
        let DeValue::Table(tool) = tool.get_ref() else {
            return Ok(None);
        };
        let ours = tool
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == "ferrowsgi");
        let Some((k, ours)) = ours else {
            return Ok(None);
        };
        match ours.get_ref() {
            DeValue::Table(t) => t.clone(),
            _ => {
                return Err(format!(
                    "{}: tool.ferrowsgi must be a table",
                    at(k.span().start)
                ))
            }
        }
    } else {
        doc
    };
    fn convert(v: &DeValue<'_>) -> Result<Value, &'static str> {
        Ok(match v {
            DeValue::String(s) => Value::Str(s.to_string()),
            DeValue::Integer(i) => Value::Int(
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                    .map_err(|_| "an integer out of range")?,
            ),
            DeValue::Float(f) => Value::Float(
                f.as_str()
                    .replace('_', "")
                    .parse()
                    .map_err(|_| "a number out of range")?,
            ),
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(_) => return Err("a date"),
            DeValue::Table(_) => return Err("a table"),
            DeValue::Array(items) => Value::List(
                items
                    .iter()
                    .map(|i| convert(i.get_ref()))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
    let mut entries = Vec::new();
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let origin = at(key.span().start);
        let value = convert(value.get_ref()).map_err(|kind| {
            format!("{origin}: setting '{name}' cannot be {kind} (settings are top-level keys with plain values)")
        })?;
        entries.push(Entry {
            name,
            value,
            origin,
        });
    }
    Ok(Some(entries))
}

/// The `FERROWSGI_*` variables as entries (values are strings).
fn env_entries(env: &[(String, String)]) -> Vec<Entry> {
    env.iter()
        .filter(|(k, _)| {
            k.starts_with("FERROWSGI_")
                && !ENV_NOT_SETTINGS.contains(&k.as_str())
                && !k.starts_with(ENV_INTERNAL_PREFIX)
        })
        .map(|(k, v)| Entry {
            name: k["FERROWSGI_".len()..].to_string(),
            value: Value::Str(v.clone()),
            origin: Origin::Env(k.clone()),
        })
        .collect()
}

/// How `origin` names a setting in a message: the variable for the
/// environment, `'name' (file:line)` for a file.
fn naming(name: &str, origin: &Origin) -> String {
    match origin {
        Origin::Env(var) => var.clone(),
        Origin::Argument => format!("keyword argument {name}"),
        _ => format!("{origin}: setting '{name}'"),
    }
}

/// Looks `name` up among our options, then gunicorn's settings.
fn resolve<'s>(specs: &'s [Spec], entry: &Entry) -> Result<Resolved<'s>, String> {
    let n = norm(&entry.name);
    let who = naming(&entry.name, &entry.origin);
    if COMMAND_LINE_ONLY.contains(&n.as_str()) {
        return Err(format!(
            "{who}: {} can only be given on the command line",
            entry.name
        ));
    }
    if let Some(spec) = specs.iter().find(|s| s.names.contains(&n)) {
        return Ok(Resolved::Arg(spec));
    }
    if let Some((_, g)) = GUNICORN.iter().find(|(g, _)| *g == n) {
        let off = entry.value.is_off();
        return match *g {
            Gunicorn::To(id) => match specs.iter().find(|s| s.names.iter().any(|n| n == id)) {
                Some(spec) => Ok(Resolved::Arg(spec)),
                None if off => Ok(Resolved::Skip(None)),
                None => Ok(Resolved::Skip(Some(format!(
                    "{who} is ignored: this build of ferrowsgi has no --{} option",
                    id.replace('_', "-")
                )))),
            },
            Gunicorn::WorkerClass => Ok(Resolved::WorkerClass),
            Gunicorn::Unsupported(why) if !off => {
                Err(format!("{who}: gunicorn's {n} is not supported: {why}"))
            }
            Gunicorn::Ignored(why) if !off => {
                Ok(Resolved::Skip(Some(format!("{who} is ignored: {why}"))))
            }
            _ => Ok(Resolved::Skip(None)),
        };
    }
    if HOOKS.contains(&n.as_str()) || UNSUPPORTED_HOOKS.contains(&n.as_str()) {
        return Err(format!(
            "{who}: server hooks are defined in a .py configuration file"
        ));
    }
    let known = specs
        .iter()
        .filter(|s| !COMMAND_LINE_ONLY.contains(&s.id.as_str()))
        .flat_map(|s| s.names.iter().map(String::as_str))
        .chain(GUNICORN.iter().map(|(g, _)| *g));
    let hint = match (closest(&n, known), &entry.origin) {
        (Some(k), Origin::Env(_)) => format!(" (did you mean FERROWSGI_{}?)", k.to_uppercase()),
        (Some(k), _) => format!(" (did you mean '{k}'?)"),
        (None, _) => String::new(),
    };
    Err(format!("{who}: unknown setting{hint}"))
}

/// Options whose values are octal modes: an integer from a file (TOML's
/// `0o22`, Python's `0o22`, gunicorn's `umask = 18`) is the mode itself,
/// so it is passed on in octal notation for the option's parser.
const OCTAL: &[&str] = &["umask", "unix_socket_mode"];

/// Parses a boolean written in an environment variable.
fn env_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// A scalar as the command line would write it.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// `entry`'s value as `spec`'s command-line values, type-checked.
fn to_values(spec: &Spec, entry: &Entry) -> Result<Vec<String>, String> {
    let who = naming(&entry.name, &entry.origin);
    let from_env = matches!(entry.origin, Origin::Env(_));
    let v = &entry.value;
    match spec.kind {
        Kind::Flag | Kind::FlagOff => {
            let b = match v {
                Value::Bool(b) => Some(*b),
                Value::Str(s) if from_env => env_bool(s),
                _ => None,
            };
            // The flag is given for true (false for a flag that turns
            // something off).
            match b {
                Some(b) => Ok(vec![(b == (spec.kind == Kind::Flag)).to_string()]),
                None => Err(format!(
                    "{who}: expected true or false, got {}",
                    describe(v)
                )),
            }
        }
        Kind::Count => match v {
            Value::Int(n) if *n >= 0 => Ok(vec![n.to_string()]),
            Value::Str(s) if from_env && s.parse::<u8>().is_ok() => Ok(vec![s.clone()]),
            _ => Err(format!("{who}: expected a count, got {}", describe(v))),
        },
        Kind::One => match v {
            Value::Int(n) if *n >= 0 && OCTAL.contains(&spec.id.as_str()) => {
                Ok(vec![format!("0o{n:o}")])
            }
            _ => scalar_text(v)
                .map(|s| vec![s])
                .ok_or_else(|| format!("{who}: expected a single value, got {}", describe(v))),
        },
        Kind::List => match v {
            // The environment writes a list as comma-separated values.
            Value::Str(s) if from_env => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()),
            Value::List(items) => items
                .iter()
                .map(|i| {
                    scalar_text(i).ok_or_else(|| {
                        format!(
                            "{who}: list items must be strings or numbers, got {}",
                            describe(i)
                        )
                    })
                })
                .collect(),
            other => scalar_text(other)
                .map(|s| vec![s])
                .ok_or_else(|| format!("{who}: expected a list, got {}", describe(other))),
        },
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("{:?}", s),
        Value::Bool(b) => format!("{b}"),
        Value::Int(n) => format!("{n}"),
        Value::Float(f) => format!("{f}"),
        other => other.kind().to_string(),
    }
}

/// Checks each value with the option's own parser, so that a bad one is
/// reported with its source rather than as a command-line mistake.
fn check_values(spec: &Spec, values: &[String], who: &str) -> Result<(), String> {
    if spec.kind == Kind::Flag || spec.kind == Kind::FlagOff || spec.kind == Kind::Count {
        return Ok(());
    }
    let Some(long) = &spec.long else {
        return Ok(());
    };
    for v in values {
        let argv: Vec<OsString> = vec!["ferrowsgi".into(), format!("--{long}={v}").into()];
        if let Err(e) = Cli::command().try_get_matches_from(argv) {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) {
                return Err(format!("{who}: {}", clap_line(&e)));
            }
        }
    }
    Ok(())
}

/// One source's entries resolved to argument ids, with type and value
/// checks; two names for one option in the same source conflict.
fn layer(
    specs: &[Spec],
    entries: &[Entry],
    warnings: &mut Vec<String>,
) -> Result<HashMap<String, (Vec<String>, Origin)>, String> {
    let mut out: HashMap<String, (Vec<String>, Origin)> = HashMap::new();
    let mut by: HashMap<String, (String, Origin)> = HashMap::new();
    for entry in entries {
        if entry.value == Value::None {
            continue;
        }
        let who = naming(&entry.name, &entry.origin);
        let (spec, values) = match resolve(specs, entry)? {
            Resolved::Skip(warning) => {
                warnings.extend(warning);
                continue;
            }
            Resolved::WorkerClass => {
                let Some(class) = scalar_text(&entry.value) else {
                    return Err(format!(
                        "{who}: expected a string, got {}",
                        describe(&entry.value)
                    ));
                };
                crate::config::parse_worker_class(&class).map_err(|e| format!("{who}: {e}"))?;
                match specs.iter().find(|s| s.id == "worker_class") {
                    Some(spec) => (spec, vec![class]),
                    None => continue,
                }
            }
            Resolved::Arg(spec) => (spec, to_values(spec, entry)?),
        };
        check_values(spec, &values, &who)?;
        if let Some((first, o)) = by.get(&spec.id) {
            return Err(format!(
                "{who} conflicts with '{first}' ({o}): both set {}",
                spec.id
            ));
        }
        by.insert(spec.id.clone(), (entry.name.clone(), entry.origin.clone()));
        out.insert(spec.id.clone(), (values, entry.origin.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn no_py(_: &Path) -> Result<Vec<Entry>, String> {
        Err("no python here".into())
    }

    fn file(name: &str, value: Value, line: usize) -> Entry {
        Entry {
            name: name.into(),
            value,
            origin: Origin::File {
                path: "conf.py".into(),
                line: Some(line),
            },
        }
    }

    fn load_with(
        argv: &[&str],
        env: &[(&str, &str)],
        py: Vec<Entry>,
    ) -> Result<Loaded, (String, i32)> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut argv = args(argv);
        if py.is_empty() {
            return load(&argv, &env, &mut no_py);
        }
        argv.insert(1, "-c".into());
        argv.insert(2, "/nonexistent/conf.py".into());
        let mut reader = move |_: &Path| Ok(py.clone());
        load(&argv, &env, &mut reader)
    }

    fn origin_of<'a>(l: &'a Loaded, name: &str) -> &'a Origin {
        &l.rows.iter().find(|r| r.name == name).unwrap().origin
    }

    #[test]
    fn distance_and_suggestion() {
        assert_eq!(distance("keepalive", "keep_alive"), 1);
        assert_eq!(
            closest("thraeds", ["threads", "bind"].into_iter()),
            Some("threads")
        );
        assert_eq!(closest("zzz", ["threads", "bind"].into_iter()), None);
    }

    #[test]
    fn env_overrides_default_and_command_line_overrides_env() {
        let l = load_with(
            &["ferrowsgi", "m:app"],
            &[("FERROWSGI_THREADS", "3")],
            vec![],
        )
        .unwrap();
        assert_eq!(l.cli.threads, 3);
        assert_eq!(
            origin_of(&l, "threads"),
            &Origin::Env("FERROWSGI_THREADS".into())
        );
        let l = load_with(
            &["ferrowsgi", "--threads", "5", "m:app"],
            &[("FERROWSGI_THREADS", "3")],
            vec![],
        )
        .unwrap();
        assert_eq!(l.cli.threads, 5);
        assert_eq!(origin_of(&l, "threads"), &Origin::CommandLine);
        assert_eq!(origin_of(&l, "backlog"), &Origin::Default);
    }

    #[test]
    fn unknown_env_variable_suggests() {
        let (msg, code) = load_with(
            &["ferrowsgi", "m:app"],
            &[("FERROWSGI_THRADS", "3")],
            vec![],
        )
        .unwrap_err();
        assert_eq!(code, 2);
        assert!(msg.contains("FERROWSGI_THRADS"), "{msg}");
        assert!(msg.contains("FERROWSGI_THREADS"), "{msg}");
        assert_eq!(msg.trim_end().lines().count(), 1);
    }

    #[test]
    fn file_values_are_typed_and_checked() {
        let l = load_with(
            &["ferrowsgi"],
            &[],
            vec![
                file("wsgi_app", Value::Str("m:app".into()), 1),
                file(
                    "bind",
                    Value::List(vec![Value::Str("127.0.0.1:9".into())]),
                    2,
                ),
                file("keepalive", Value::Int(7), 3),
                file("debug", Value::Bool(true), 4),
                file("worker_class", Value::Str("gthread".into()), 5),
                file("accesslog", Value::None, 6),
            ],
        )
        .unwrap();
        assert_eq!(l.cli.app, "m:app");
        assert_eq!(l.cli.bind, vec!["127.0.0.1:9".to_string()]);
        assert_eq!(l.cli.keep_alive, 7);
        assert!(l.cli.debug);
        let (msg, _) = load_with(
            &["ferrowsgi", "m:app"],
            &[],
            vec![file("threads", Value::Str("many".into()), 9)],
        )
        .unwrap_err();
        assert!(
            msg.contains("conf.py:9") && msg.contains("threads"),
            "{msg}"
        );
        let (msg, _) = load_with(
            &["ferrowsgi", "m:app"],
            &[],
            vec![file("debug", Value::Int(3), 2)],
        )
        .unwrap_err();
        assert!(msg.contains("expected true or false"), "{msg}");
        let (msg, _) = load_with(
            &["ferrowsgi", "m:app"],
            &[],
            vec![file("worker_class", Value::Str("gevent".into()), 2)],
        )
        .unwrap_err();
        assert!(msg.contains("gevent"), "{msg}");
        let (msg, _) = load_with(
            &["ferrowsgi", "m:app"],
            &[],
            vec![file("daemon", Value::Bool(true), 2)],
        )
        .unwrap_err();
        assert!(
            msg.contains("daemon") && msg.contains("not supported"),
            "{msg}"
        );
    }

    #[test]
    fn two_names_for_one_option_conflict() {
        let (msg, _) = load_with(
            &["ferrowsgi", "m:app"],
            &[],
            vec![
                file("keepalive", Value::Int(2), 1),
                file("keep_alive", Value::Int(3), 2),
            ],
        )
        .unwrap_err();
        assert!(msg.contains("conflicts"), "{msg}");
        assert!(
            msg.contains("conf.py:2") && msg.contains("conf.py:1"),
            "{msg}"
        );
    }

    #[test]
    fn env_flags_and_lists() {
        let l = load_with(
            &["ferrowsgi", "m:app"],
            &[
                ("FERROWSGI_DEBUG", "yes"),
                ("FERROWSGI_BIND", "127.0.0.1:1, 127.0.0.1:2"),
            ],
            vec![],
        )
        .unwrap();
        assert!(l.cli.debug);
        assert_eq!(l.cli.bind.len(), 2);
        let (msg, _) = load_with(
            &["ferrowsgi", "m:app"],
            &[("FERROWSGI_DEBUG", "perhaps")],
            vec![],
        )
        .unwrap_err();
        assert!(msg.contains("FERROWSGI_DEBUG"), "{msg}");
    }

    #[test]
    fn print_config_hides_secrets() {
        let l = load_with(
            &["ferrowsgi", "-b", "ajp://127.0.0.1:8009", "m:app"],
            &[("FERROWSGI_AJP_SECRET", "k3y-value")],
            vec![],
        )
        .unwrap();
        let text = print_config(&l);
        assert!(!text.contains("k3y-value"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("ajp_secret = \"(hidden)\" ")
                    && l.ends_with("# environment variable FERROWSGI_AJP_SECRET")),
            "{text}"
        );
        assert_eq!(
            l.cli.ajp_secret.as_deref(),
            Some("k3y-value"),
            "the secret itself still reaches the configuration"
        );
    }

    #[test]
    fn print_config_names_sources() {
        let l = load_with(
            &["ferrowsgi", "--backlog", "10", "m:app"],
            &[("FERROWSGI_THREADS", "2")],
            vec![file("keepalive", Value::Int(9), 4)],
        )
        .unwrap();
        let text = print_config(&l);
        assert!(
            text.lines()
                .any(|l| l.starts_with("backlog = 10 ") && l.ends_with("# command line")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("threads = 2 ")
                && l.ends_with("# environment variable FERROWSGI_THREADS")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("keep_alive = 9 ") && l.ends_with("# conf.py:4")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("bind = [\"127.0.0.1:8000\"] ") && l.ends_with("# default")),
            "{text}"
        );
    }

    #[test]
    fn keyword_arguments_over_the_file_over_the_defaults() {
        let kw = |name: &str, value: Value| Entry {
            name: name.into(),
            value,
            origin: Origin::Argument,
        };
        let py = vec![
            file("threads", Value::Int(4), 1),
            file("accesslog", Value::Str("-".into()), 2),
            file("workers", Value::Int(3), 3),
        ];
        let mut reader = move |_: &Path| Ok(py.clone());
        let loaded = load_api(
            &[
                kw("threads", Value::Int(2)),
                kw("log_format", Value::Str("json".into())),
            ],
            Some(Path::new("python:deploy.conf")),
            &mut reader,
        )
        .unwrap();
        assert_eq!(loaded.cli.threads, 2);
        assert_eq!(loaded.cli.access_logfile.as_deref(), Some("-"));
        assert_eq!(loaded.cli.log_format, crate::log::Format::Json);
        let origin = |name: &str| {
            loaded
                .rows
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.origin.clone())
                .unwrap()
        };
        assert_eq!(origin("threads"), Origin::Argument);
        assert!(matches!(origin("workers"), Origin::File { .. }));
        assert_eq!(origin("keep_alive"), Origin::Default);

        // A mistake is one line naming the keyword, without the command's prefix.
        let err = load_api(&[kw("thraeds", Value::Int(2))], None, &mut no_py).unwrap_err();
        assert!(err.starts_with("keyword argument thraeds"), "{err}");
        assert!(err.contains("threads") && !err.contains('\n'), "{err}");
        let err = load_api(&[kw("threads", Value::Int(0))], None, &mut no_py).unwrap_err();
        assert!(err.contains("keyword argument threads"), "{err}");
    }
}
