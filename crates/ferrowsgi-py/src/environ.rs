//! Building the WSGI environ: a template dict of the constant keys copied
//! per request, interned key strings, and cached values for common methods
//! and protocols.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use ferrowsgi_proto::forwarded::{header_kind, ForwardedHeaders, Forwarding, TrustedProxies};
use ferrowsgi_proto::gateway::same_bytes;
use ferrowsgi_proto::{eq_lowercase, percent_decode, RequestHead, Version};
use ferrowsgi_server::{Exchange, PeerInfo};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{ffi, PyTypeInfo};

use crate::errors::ErrorStream;
use crate::file_wrapper::FileWrapper;
use crate::input::InputStream;

/// Header names seen in most requests, with their environ keys made once.
const COMMON_HEADERS: &[(&str, &str)] = &[
    ("host", "HTTP_HOST"),
    ("user-agent", "HTTP_USER_AGENT"),
    ("accept", "HTTP_ACCEPT"),
    ("accept-encoding", "HTTP_ACCEPT_ENCODING"),
    ("accept-language", "HTTP_ACCEPT_LANGUAGE"),
    ("connection", "HTTP_CONNECTION"),
    ("cookie", "HTTP_COOKIE"),
    ("referer", "HTTP_REFERER"),
    ("cache-control", "HTTP_CACHE_CONTROL"),
    ("origin", "HTTP_ORIGIN"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    ("x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"),
    ("x-real-ip", "HTTP_X_REAL_IP"),
    ("x-request-id", "HTTP_X_REQUEST_ID"),
    ("if-none-match", "HTTP_IF_NONE_MATCH"),
    ("if-modified-since", "HTTP_IF_MODIFIED_SINCE"),
    (
        "upgrade-insecure-requests",
        "HTTP_UPGRADE_INSECURE_REQUESTS",
    ),
    ("sec-fetch-mode", "HTTP_SEC_FETCH_MODE"),
    ("sec-fetch-site", "HTTP_SEC_FETCH_SITE"),
    ("sec-fetch-dest", "HTTP_SEC_FETCH_DEST"),
    ("expect", "HTTP_EXPECT"),
    ("transfer-encoding", "HTTP_TRANSFER_ENCODING"),
    ("pragma", "HTTP_PRAGMA"),
    ("dnt", "HTTP_DNT"),
];

/// Server variables front ends send with every request (nginx's
/// `fastcgi_params`, `scgi_params` and `uwsgi_params`, Apache's
/// mod_proxy_fcgi/scgi/uwsgi), whose environ keys are made once: a gateway
/// request sets fifteen to twenty-five of them, and making each key anew
/// cost an allocation and a hash per variable per request.
const COMMON_VARS: &[&str] = &[
    "REQUEST_METHOD",
    "REQUEST_URI",
    "QUERY_STRING",
    "DOCUMENT_URI",
    "DOCUMENT_ROOT",
    "SERVER_PROTOCOL",
    "REQUEST_SCHEME",
    "HTTPS",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_ADDR",
    "SERVER_PORT",
    "SERVER_NAME",
    "GATEWAY_INTERFACE",
    "SCGI",
    "SCRIPT_FILENAME",
    "CONTEXT_PREFIX",
    "CONTEXT_DOCUMENT_ROOT",
    "SERVER_ADMIN",
    "SERVER_SIGNATURE",
    "REDIRECT_STATUS",
    "REMOTE_USER",
    "AUTH_TYPE",
    "PATH",
    "SERVER_SOFTWARE",
    "SCRIPT_NAME",
    "PATH_INFO",
    "REMOTE_HOST",
];

/// What [`EnvTemplate::set_gateway_vars`] does with a server variable
/// beyond setting it, found with its key in one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Set as it is.
    Plain,
    /// Never taken from outside (`SERVER_SOFTWARE`).
    Skip,
    ScriptName,
    PathInfo,
    RequestMethod,
    RequestUri,
    QueryString,
    ServerProtocol,
    RemoteAddr,
    RemotePort,
    ServerName,
    ServerPort,
    RemoteHost,
    Https,
    RequestScheme,
}

/// A server variable's name, its interned environ key, its role and its
/// place in [`COMMON_VARS`] (where [`GatewayKept`] keeps its last value).
type KnownVar = (&'static [u8], Py<PyString>, Role, usize);

/// The longest value of a server variable whose str is kept for the next
/// request ([`GatewayKept`]): the kept bytes stay bounded.
const KEPT_VALUE_MAX: usize = 64;

// Every place of [`COMMON_VARS`] is a bit of a u64 in [`GatewayKept`].
const _: () = assert!(COMMON_VARS.len() <= 64);

/// Requests between two rebuilds of [`GatewayKept::base`] at most, so that a
/// front end whose values alternate does not have it made every time.
const BASE_REBUILD_EVERY: u32 = 32;

/// What gateway requests leave for the next ones. A front end sends most
/// of its variables with the same value on every request (`DOCUMENT_ROOT`,
/// `REQUEST_SCHEME`, `SCGI`, `SERVER_NAME`, `SERVER_PORT`, often
/// `REMOTE_ADDR`), and a connection carries one request, so each was made a
/// str and put into the environ anew per request. Now the last str made for
/// each of [`COMMON_VARS`] is kept with its bytes, and a dict holds the
/// template with the values that repeated: a request's environ is a copy of
/// it, a variable whose value is the one in it sets nothing, and a key in it
/// that the request did not send is removed, so the environ holds exactly
/// what the request sent, as when each was set.
#[derive(Debug)]
struct GatewayKept {
    /// By place in [`COMMON_VARS`]: the last value's bytes and its str.
    values: Vec<(Vec<u8>, Option<Py<PyString>>)>,
    /// The template with some of the kept strs set.
    base: Option<Py<PyDict>>,
    /// The places whose key `base` holds (bits by place).
    base_keys: u64,
    /// The places whose key `base` holds with the str `values` keeps now
    /// (a value that changed since leaves its key stale in `base`).
    base_valid: u64,
    /// Requests since `base` was made.
    since: u32,
    /// Whether `base` holds `REMOTE_HOST` with the str of its
    /// `REMOTE_ADDR` (what a request that sends the same `REMOTE_ADDR` and
    /// no `REMOTE_HOST` sets, so it then sets nothing).
    base_host: bool,
    /// What `base` holds from the request head it was made after, which
    /// most requests repeat: `REQUEST_METHOD` (one of the interned common
    /// methods, compared by identity), `SERVER_PROTOCOL` (the interned
    /// version), and the Host's bytes, whose str it holds as `HTTP_HOST`.
    /// A request that differs sets its own; one without a Host removes it.
    base_method: Option<Py<PyString>>,
    base_protocol: Option<Py<PyString>>,
    base_http_host: Option<Box<[u8]>>,
    /// The request being built differs from `base` in one of those three
    /// (a reason to make `base` anew, as for a server variable).
    head_missed: bool,
}

/// The place of `name` in [`COMMON_VARS`] (which holds it; its last place
/// otherwise, which no bit of a request's variables then matches wrongly,
/// the list having fewer than 64).
fn place_of(name: &str) -> usize {
    COMMON_VARS
        .iter()
        .position(|n| *n == name)
        .unwrap_or(COMMON_VARS.len())
}

/// Whether a server variable's str may be kept for later requests and its
/// key held by [`GatewayKept::base`]: not the variables the environ takes
/// from the request's own head or sets from elsewhere (the method, target,
/// query and protocol, the script name and path), nor the client's port,
/// which differs with every connection.
fn keepable(role: Role) -> bool {
    matches!(
        role,
        Role::Plain
            | Role::RemoteAddr
            | Role::ServerName
            | Role::ServerPort
            | Role::RemoteHost
            | Role::Https
            | Role::RequestScheme
    )
}

/// The role of a server variable named `name`.
fn role(name: &str) -> Role {
    match name {
        "SERVER_SOFTWARE" => Role::Skip,
        "SCRIPT_NAME" => Role::ScriptName,
        "PATH_INFO" => Role::PathInfo,
        "REQUEST_METHOD" => Role::RequestMethod,
        "REQUEST_URI" => Role::RequestUri,
        "QUERY_STRING" => Role::QueryString,
        "SERVER_PROTOCOL" => Role::ServerProtocol,
        "REMOTE_ADDR" => Role::RemoteAddr,
        "REMOTE_PORT" => Role::RemotePort,
        "SERVER_NAME" => Role::ServerName,
        "SERVER_PORT" => Role::ServerPort,
        "REMOTE_HOST" => Role::RemoteHost,
        "HTTPS" => Role::Https,
        "REQUEST_SCHEME" => Role::RequestScheme,
        _ => Role::Plain,
    }
}

/// Methods whose str is made once.
const COMMON_METHODS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"];

macro_rules! keys {
    ($($field:ident = $text:literal),* $(,)?) => {
        /// Interned environ keys.
        #[derive(Debug)]
        struct Keys { $($field: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Keys {
                Keys { $($field: PyString::intern(py, $text).unbind(),)* }
            }
        }
    };
}

keys! {
    request_method = "REQUEST_METHOD",
    path_info = "PATH_INFO",
    query_string = "QUERY_STRING",
    raw_uri = "RAW_URI",
    request_uri = "REQUEST_URI",
    server_protocol = "SERVER_PROTOCOL",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    remote_host = "REMOTE_HOST",
    content_type = "CONTENT_TYPE",
    content_length = "CONTENT_LENGTH",
    http_host = "HTTP_HOST",
    script_name = "SCRIPT_NAME",
    url_scheme = "wsgi.url_scheme",
    wsgi_input = "wsgi.input",
    wsgi_errors = "wsgi.errors",
}

/// Everything made once per server to build environs cheaply.
#[derive(Debug)]
pub(crate) struct EnvTemplate {
    template: Py<PyDict>,
    keys: Keys,
    headers: Vec<(&'static [u8], Py<PyString>)>,
    /// The keys of [`COMMON_VARS`] and their roles, by the length of their
    /// name (most of a front end's names share a length with none or a
    /// few others).
    vars: Vec<Vec<KnownVar>>,
    methods: Vec<(&'static [u8], Py<PyString>)>,
    /// The keys of [`COMMON_VARS`] by place.
    var_keys: Vec<Py<PyString>>,
    /// The places of `REMOTE_ADDR` and `REMOTE_HOST` in [`COMMON_VARS`].
    remote_addr_place: usize,
    remote_host_place: usize,
    /// Taken with `try_lock` for the whole of a gateway request's environ,
    /// so a request never waits for it (one that finds it taken copies the
    /// template and makes its strs, as before).
    gateway_kept: std::sync::Mutex<GatewayKept>,
    http10: Py<PyString>,
    http11: Py<PyString>,
    https: Py<PyString>,
}

/// Makes a str from bytes taken as latin-1 (PEP 3333's "native strings").
pub(crate) fn latin1_str<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = isize::try_from(b.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("too long"))?;
    // SAFETY: the pointer and length describe the live slice `b`; the
    // decoder copies it and returns a new reference or NULL with an error set.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(b.as_ptr().cast(), len, std::ptr::null());
        Bound::from_owned_ptr_or_err(py, ptr).map(|o| o.cast_into_unchecked())
    }
}

impl EnvTemplate {
    /// Builds the template for a server with `threads` application threads.
    pub(crate) fn new(py: Python<'_>, threads: usize) -> PyResult<EnvTemplate> {
        let t = PyDict::new(py);
        t.set_item("SCRIPT_NAME", "")?;
        t.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        t.set_item("wsgi.url_scheme", "http")?;
        t.set_item("wsgi.multithread", threads > 1)?;
        t.set_item("wsgi.multiprocess", false)?;
        t.set_item("wsgi.run_once", false)?;
        t.set_item("wsgi.input_terminated", true)?;
        t.set_item("wsgi.file_wrapper", FileWrapper::type_object(py))?;
        t.set_item(
            "SERVER_SOFTWARE",
            concat!("ferrowsgi/", env!("CARGO_PKG_VERSION")),
        )?;
        // Every key set on every request has a slot in the template (its
        // value replaced per request), so the copy is made at a size where
        // filling it, headers included, never grows the dict: growing it
        // twice (16 to 32 to 64 slots) cost about 2,000 instructions per
        // request, a sixth of a hello request's user-space total.
        let keys = Keys::new(py);
        // Most requests have no query: theirs is the template's empty one,
        // and only a query sets the key.
        t.set_item(&keys.query_string, PyString::new(py, ""))?;
        for key in [
            &keys.request_method,
            &keys.path_info,
            &keys.raw_uri,
            &keys.request_uri,
            &keys.server_protocol,
            &keys.server_name,
            &keys.server_port,
            &keys.remote_addr,
            &keys.remote_host,
            &keys.remote_port,
            &keys.wsgi_input,
            &keys.wsgi_errors,
        ] {
            t.set_item(key, py.None())?;
        }
        Ok(EnvTemplate {
            template: t.unbind(),
            keys,
            vars: {
                let longest = COMMON_VARS.iter().map(|n| n.len()).max().unwrap_or(0);
                let mut by_len: Vec<Vec<_>> = (0..=longest).map(|_| Vec::new()).collect();
                for (i, n) in COMMON_VARS.iter().enumerate() {
                    let key = PyString::intern(py, n).unbind();
                    by_len[n.len()].push((n.as_bytes(), key, role(n), i));
                }
                by_len
            },
            headers: COMMON_HEADERS
                .iter()
                .map(|(n, k)| (n.as_bytes(), PyString::intern(py, k).unbind()))
                .collect(),
            methods: COMMON_METHODS
                .iter()
                .map(|m| (m.as_bytes(), PyString::intern(py, m).unbind()))
                .collect(),
            var_keys: COMMON_VARS
                .iter()
                .map(|n| PyString::intern(py, n).unbind())
                .collect(),
            remote_addr_place: place_of("REMOTE_ADDR"),
            remote_host_place: place_of("REMOTE_HOST"),
            gateway_kept: std::sync::Mutex::new(GatewayKept {
                values: COMMON_VARS.iter().map(|_| (Vec::new(), None)).collect(),
                base: None,
                base_keys: 0,
                base_valid: 0,
                since: 0,
                base_host: false,
                base_method: None,
                base_protocol: None,
                base_http_host: None,
                head_missed: false,
            }),
            http10: PyString::intern(py, "HTTP/1.0").unbind(),
            http11: PyString::intern(py, "HTTP/1.1").unbind(),
            https: PyString::intern(py, "https").unbind(),
        })
    }

    /// The environ key for a header name, or `None` for a name that must be
    /// dropped (one with '_', which could pose as a '-' header).
    fn header_key<'py>(&self, py: Python<'py>, name: &[u8]) -> Option<Bound<'py, PyString>> {
        // The common names have no '_', so the scan for one is needed only
        // for the others.
        for (n, k) in &self.headers {
            if eq_lowercase(name, n) {
                return Some(k.bind(py).clone());
            }
        }
        if name.contains(&b'_') {
            return None;
        }
        let mut key = Vec::with_capacity(5 + name.len());
        key.extend_from_slice(b"HTTP_");
        key.extend(name.iter().map(|&c| {
            if c == b'-' {
                b'_'
            } else {
                c.to_ascii_uppercase()
            }
        }));
        latin1_str(py, &key).ok()
    }

    /// Sets the connection's addresses (the server's too, unless the
    /// connection came over a unix socket) in `env`.
    fn set_peer(
        &self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        p: &PeerStrings,
        peer: &PeerInfo,
    ) -> PyResult<()> {
        let k = &self.keys;
        if peer.https {
            // The client reached the front end over TLS (PROXY v2's SSL TLV).
            env.set_item(&k.url_scheme, self.https.bind(py))?;
        }
        if !peer.is_unix {
            env.set_item(&k.server_name, p.server_name.bind(py))?;
            env.set_item(&k.server_port, p.server_port.bind(py))?;
        }
        env.set_item(&k.remote_addr, p.remote_addr.bind(py))?;
        env.set_item(&k.remote_host, p.remote_addr.bind(py))?;
        env.set_item(&k.remote_port, p.remote_port.bind(py))
    }

    /// Builds the environ of the request in `ex`.
    pub(crate) fn build<'py>(
        &self,
        py: Python<'py>,
        ex: &Exchange<'_>,
        input: Bound<'py, InputStream>,
        errors: Bound<'py, ErrorStream>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let k = &self.keys;
        let head = ex.head();
        let peer = ex.peer();
        let gateway = head.is_gateway();
        // A gateway request's addresses are the front end's server
        // variables; the connection's (the front end's own) are only a
        // fallback for one it did not send, made then
        // ([`EnvTemplate::set_gateway_vars`]). Its connection carries one
        // request, so nothing is kept for later requests either.
        // A connection's first request makes its address strings for itself
        // alone; they are kept for the connection (and, from its second
        // request, a template with them set) only once it carries a second
        // one. A connection that serves one request and then waits, or
        // closes, holds no Python objects of its own and did not pay for
        // the cache (about 200 bytes of Python memory per idle connection,
        // which the allocator keeps once touched).
        let first = if gateway || ex.served_before() > 0 {
            None
        } else {
            Some(PeerStrings::new(py, peer))
        };
        let strings = if gateway {
            None
        } else if first.is_some() {
            first.as_ref()
        } else {
            peer.ext
                .get_or_init(|| Box::new(PeerStrings::new(py, peer)))
                .downcast_ref::<PeerStrings>()
        };
        let base = strings.and_then(|p| p.base.get());
        let mut kept = if gateway {
            self.gateway_kept.try_lock().ok()
        } else {
            None
        };
        let env = match (base, kept.as_deref().and_then(|k| k.base.as_ref())) {
            (Some(base), _) => base.dict.bind(py).copy()?,
            (None, Some(gateway_base)) => gateway_base.bind(py).copy()?,
            (None, None) => self.template.bind(py).copy()?,
        };
        let method = head.method();
        let method_str = match self.methods.iter().find(|(m, _)| *m == method) {
            Some((_, s)) => s.bind(py).clone(),
            None => latin1_str(py, method)?,
        };
        let protocol = match head.version() {
            Version::Http10 => &self.http10,
            Version::Http11 => &self.http11,
        };
        // The gateway base in use (the environ is a copy of it), and what it
        // holds of the request head it was made after.
        let gateway_base = kept.as_deref().filter(|k| k.base.is_some());
        let held = |of: fn(&GatewayKept) -> Option<&Py<PyString>>, s: &Bound<'_, PyString>| {
            gateway_base.and_then(of).is_some_and(|h| h.is(s))
        };
        let method_held = held(|k| k.base_method.as_ref(), &method_str);
        if !(method_held || base.is_some_and(|b| b.method.is(&method_str))) {
            env.set_item(&k.request_method, &method_str)?;
        }
        let protocol_held = held(|k| k.base_protocol.as_ref(), protocol.bind(py));
        if !(protocol_held || base.is_some_and(|b| b.protocol.is(protocol))) {
            env.set_item(&k.server_protocol, protocol)?;
        }
        let raw = latin1_str(py, head.target())?;
        // A gateway's PATH_INFO is often the target itself.
        let raw_for_path = gateway.then(|| raw.clone());
        if !gateway {
            let path = head.path();
            let path_info = if path == b"*" {
                PyString::new(py, "")
            } else {
                let decoded = percent_decode(path);
                if *decoded == *head.target() {
                    // The usual target, a path without a query or a '%':
                    // PATH_INFO is the same text as RAW_URI, and shares its
                    // str rather than making and freeing another one.
                    raw.clone()
                } else {
                    latin1_str(py, &decoded)?
                }
            };
            env.set_item(&k.path_info, path_info)?;
        }
        if !head.query().is_empty() {
            env.set_item(&k.query_string, latin1_str(py, head.query())?)?;
        }
        env.set_item(&k.raw_uri, &raw)?;
        env.set_item(&k.request_uri, raw)?;
        if peer.is_unix && !gateway {
            // No address to report: take the name the client used (an
            // empty Host names nothing, RFC 9112 §3.2).
            let host = head
                .host()
                .filter(|h| !h.is_empty())
                .unwrap_or(b"localhost");
            let (name, port) = split_host_port(host);
            env.set_item(&k.server_name, latin1_str(py, name)?)?;
            env.set_item(&k.server_port, latin1_str(py, port.unwrap_or(b"80"))?)?;
        }
        if let Some(p) = strings {
            if base.is_none() {
                self.set_peer(py, &env, p, peer)?;
                if first.is_none() && p.requests.fetch_add(1, Ordering::Relaxed) == 0 {
                    // The connection's second request: from the next one
                    // on, copy a dict that has its addresses already.
                    let dict = self.template.bind(py).copy()?;
                    self.set_peer(py, &dict, p, peer)?;
                    dict.set_item(&k.request_method, &method_str)?;
                    dict.set_item(&k.server_protocol, protocol)?;
                    let host = host_field(head);
                    if let Some(h) = host {
                        dict.set_item(&k.http_host, latin1_str(py, h)?)?;
                    }
                    let _ = p.base.set(ConnBase {
                        dict: dict.unbind(),
                        method: method_str.unbind(),
                        protocol: protocol.clone_ref(py),
                        host: host.map(Box::from),
                    });
                }
            }
        } else if !gateway {
            // Never happens (the cache has one type); but no placeholder may
            // reach the application.
            let empty = PyString::new(py, "");
            for key in [&k.remote_addr, &k.remote_host, &k.remote_port] {
                env.set_item(key, &empty)?;
            }
            if !peer.is_unix {
                env.set_item(&k.server_name, &empty)?;
                env.set_item(&k.server_port, &empty)?;
            }
        }
        if let Some(ct) = head.content_type() {
            env.set_item(&k.content_type, latin1_str(py, ct)?)?;
        }
        if let Some(cl) = head.content_length_raw() {
            env.set_item(&k.content_length, latin1_str(py, cl)?)?;
        }
        // Forwarding headers are gathered from a trusted peer and removed
        // from anyone else's environ (docs/DEPLOY.md, "Trusting proxies");
        // the trust check runs only for a request that has one.
        let mut trusted: Option<bool> = None;
        let mut forwarded: Option<ForwardedHeaders<'_>> = None;
        // The Host the connection's template holds, and whether this
        // request has a Host line (HTTP/1.x allows one at most: the parser
        // refuses a second).
        let base_host = base
            .and_then(|b| b.host.as_deref())
            .or_else(|| gateway_base.and_then(|k| k.base_http_host.as_deref()));
        let mut host_line = false;
        for (i, (name, value)) in head.headers().enumerate() {
            if eq_lowercase(name, b"content-type") || eq_lowercase(name, b"content-length") {
                continue;
            }
            if base_host.is_some() && eq_lowercase(name, b"host") {
                host_line = true;
                if base_host == Some(value) {
                    continue;
                }
            }
            if let Some(kind) = header_kind(name) {
                if !*trusted.get_or_insert_with(|| {
                    forwarding_trusted(peer, head, &ex.config().forwarded_allow)
                }) {
                    continue;
                }
                forwarded
                    .get_or_insert_with(Default::default)
                    .add(kind, value);
            }
            let Some(key) = self.header_key(py, name) else {
                continue;
            };
            let value = latin1_str(py, value)?;
            // Names equal but for case are the same key (names with '_',
            // which could collide with '-', are dropped above), so a
            // repeated field is found here, without a lookup in the dict.
            let repeated = head
                .headers()
                .take(i)
                .any(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name));
            let prev = if repeated { env.get_item(&key)? } else { None };
            match prev {
                Some(prev) => {
                    let sep = if eq_lowercase(name, b"cookie") {
                        "; "
                    } else {
                        ","
                    };
                    let joined = format!(
                        "{}{sep}{}",
                        prev.cast::<PyString>()?.to_cow()?,
                        value.to_cow()?
                    );
                    env.set_item(&key, joined)?;
                }
                None => env.set_item(&key, value)?,
            }
        }
        if base_host.is_some() && !host_line {
            // A request without a Host line (HTTP/1.0) on a connection whose
            // template has one.
            env.del_item(&k.http_host)?;
        }
        if head.scheme().is_some() {
            // RFC 9112 §3.2.2: the authority of an absolute-form target
            // replaces the Host header.
            if let Some(host) = head.host() {
                env.set_item(&k.http_host, latin1_str(py, host)?)?;
            }
        }
        let head_missed = gateway_base.is_some_and(|k| {
            !(method_held && protocol_held && k.base_http_host.as_deref() == head.host())
        });
        if gateway {
            if let Some(k) = kept.as_deref_mut() {
                k.head_missed = head_missed;
            }
            self.set_gateway_vars(py, &env, head, peer, kept.as_deref_mut(), raw_for_path)?;
        }
        if let Some(f) = forwarded {
            let found = f.resolve(&ex.config().forwarded_allow, head.host(), peer.https);
            self.apply_forwarding(py, &env, &found)?;
        }
        env.set_item(&k.wsgi_input, input)?;
        env.set_item(&k.wsgi_errors, errors)?;
        Ok(env)
    }

    /// Sets what a front end reported with a gateway request (FastCGI,
    /// SCGI, uwsgi, AJP13) over what the connection says: its server
    /// variables as they are — the client's address, the server's name and
    /// port, the protocol — except those the environ must not take from
    /// outside (`wsgi.*`, `SERVER_SOFTWARE`, and the Content-Type/Length
    /// the headers already set); `wsgi.url_scheme` from `HTTPS` (or
    /// `REQUEST_SCHEME`); and `SCRIPT_NAME`/`PATH_INFO` as the front end
    /// split them ([`split_script_path`]). The client's address and port
    /// and the server's name and port that the front end did not send are
    /// the connection's (for a unix socket, the Host's name and port).
    ///
    /// With `kept` (the environ is then a copy of its base, or of the
    /// template when it has none), a variable whose value is the one in the
    /// base sets nothing, and the base's keys the request did not send are
    /// removed ([`GatewayKept`]).
    fn set_gateway_vars(
        &self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        head: &RequestHead,
        peer: &PeerInfo,
        mut kept: Option<&mut GatewayKept>,
        target_str: Option<Bound<'_, PyString>>,
    ) -> PyResult<()> {
        let k = &self.keys;
        if peer.https {
            // The client reached the front end over TLS (PROXY v2's SSL
            // TLV), as for the connection's addresses when not a gateway.
            env.set_item(&k.url_scheme, self.https.bind(py))?;
        }
        let mut scheme_https = None;
        // Which of the address keys the front end set (REMOTE_ADDR,
        // REMOTE_PORT, SERVER_NAME, SERVER_PORT, REMOTE_HOST), and the
        // REMOTE_ADDR it sent.
        let mut sent = [false; 5];
        let mut remote_addr = None;
        // The str made for the REMOTE_ADDR the front end sent, which
        // REMOTE_HOST repeats when it sent none.
        let mut remote_addr_str = None;
        // The first SCRIPT_NAME and PATH_INFO, as [`RequestHead::var`]
        // would find them, gathered on the way.
        let (mut script_name, mut path_info) = (None, None);
        // The protocol the environ has already (from the request's version):
        // a front end's SERVER_PROTOCOL that says the same sets nothing.
        let protocol: &[u8] = match head.version() {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        };
        // Which keepable variables the request sent, and which of them came
        // with the value kept from before (by place).
        let (mut seen, mut repeated) = (0u64, 0u64);
        let in_base = kept
            .as_deref()
            .filter(|k| k.base.is_some())
            .map_or(0, |k| k.base_valid);
        let base_host = kept
            .as_deref()
            .is_some_and(|k| k.base.is_some() && k.base_host);
        // Whether the REMOTE_ADDR sent is the one the base holds.
        let mut addr_in_base = false;
        for (name, value) in head.vars() {
            // The name's key and role in one lookup, the last byte first:
            // names of one length often share most of their bytes.
            let known = self.vars.get(name.len()).and_then(|same_len| {
                same_len
                    .iter()
                    .find(|(n, _, _, _)| n.last() == name.last() && same_bytes(n, name))
            });
            let role = known.map_or(Role::Plain, |&(_, _, r, _)| r);
            let mut is_remote_addr = false;
            match role {
                Role::Skip => continue,
                Role::ScriptName => {
                    script_name.get_or_insert(value);
                    continue;
                }
                Role::PathInfo => {
                    path_info.get_or_insert(value);
                    continue;
                }
                // Set from the same bytes already (the head's method and
                // target are these variables): no second str for them.
                Role::RequestMethod if same_bytes(value, head.method()) => continue,
                Role::RequestUri if same_bytes(value, head.target()) => continue,
                Role::QueryString if same_bytes(value, head.query()) => continue,
                Role::ServerProtocol if same_bytes(value, protocol) => continue,
                Role::RemoteAddr => {
                    sent[0] = true;
                    remote_addr = Some(value);
                    is_remote_addr = true;
                }
                Role::RemotePort => sent[1] = true,
                Role::ServerName => sent[2] = true,
                Role::ServerPort => sent[3] = true,
                Role::RemoteHost => sent[4] = true,
                Role::Https => {
                    let on = [&b"on"[..], b"1", b"yes", b"true"]
                        .iter()
                        .any(|v| value.eq_ignore_ascii_case(v));
                    scheme_https = Some(on);
                }
                Role::RequestScheme
                    if scheme_https.is_none() && value.eq_ignore_ascii_case(b"https") =>
                {
                    scheme_https = Some(true);
                }
                _ => {}
            }
            // A value the environ's base holds already sets nothing.
            if let (Some(&(_, _, role, i)), Some(k)) = (known, kept.as_deref()) {
                let bit = 1u64 << i;
                if keepable(role) && in_base & bit != 0 {
                    if let Some((bytes, Some(made))) = k.values.get(i) {
                        if same_bytes(bytes, value) {
                            seen |= bit;
                            repeated |= bit;
                            if is_remote_addr {
                                remote_addr_str = Some(made.bind(py).clone());
                                addr_in_base = true;
                            }
                            continue;
                        }
                    }
                }
            }
            let key = match known {
                Some((_, k, _, _)) => k.bind(py).clone(),
                // No `wsgi.*` (nor any dotted name) from outside; the known
                // names have no dot. A loop over the name's few bytes costs
                // less than a memchr call.
                None if name.iter().fold(false, |dot, &b| dot | (b == b'.')) => continue,
                None => latin1_str(py, name)?,
            };
            let value = match (known, kept.as_deref_mut()) {
                (Some(&(_, _, role, i)), Some(k)) if keepable(role) => {
                    let bit = 1u64 << i;
                    seen |= bit;
                    let (s, same) = kept_value(py, &mut k.values, i, value)?;
                    if same {
                        repeated |= bit;
                    } else {
                        // The base holds another str under this key now.
                        k.base_valid &= !bit;
                    }
                    s
                }
                _ => latin1_str(py, value)?,
            };
            if is_remote_addr {
                remote_addr_str = Some(value.clone());
            }
            env.set_item(key, value)?;
        }
        if let Some(k) = kept {
            // The base's keys this request did not send leave its environ
            // (before the addresses it did not send are set below).
            if k.base.is_some() {
                let mut gone = k.base_keys & !seen;
                while gone != 0 {
                    let i = gone.trailing_zeros() as usize;
                    gone &= gone - 1;
                    if let Some(key) = self.var_keys.get(i) {
                        env.del_item(key)?;
                    }
                }
            }
            // A new base when values repeated that it does not hold, or it
            // holds keys whose values changed, at most every
            // BASE_REBUILD_EVERY requests (at once when there is none).
            k.since = k.since.saturating_add(1);
            let stale =
                repeated & !k.base_valid != 0 || k.base_keys & !k.base_valid != 0 || k.head_missed;
            if stale && (k.base.is_none() || k.since >= BASE_REBUILD_EVERY) {
                self.rebuild_gateway_base(py, k, repeated, head)?;
            }
        }
        let remote_addr = remote_addr.unwrap_or(peer.remote_addr.as_bytes());
        if !sent[0] {
            env.set_item(&k.remote_addr, latin1_str(py, remote_addr)?)?;
        }
        if !sent[1] {
            env.set_item(&k.remote_port, latin1_str(py, peer.remote_port.as_bytes())?)?;
        }
        if !sent[2] || !sent[3] {
            let (name, port) = if peer.is_unix {
                let host = head
                    .host()
                    .filter(|h| !h.is_empty())
                    .unwrap_or(b"localhost");
                let (name, port) = split_host_port(host);
                (name, port.unwrap_or(b"80"))
            } else {
                (peer.server_name.as_bytes(), peer.server_port.as_bytes())
            };
            if !sent[2] {
                env.set_item(&k.server_name, latin1_str(py, name)?)?;
            }
            if !sent[3] {
                env.set_item(&k.server_port, latin1_str(py, port)?)?;
            }
        }
        if !(sent[4] || (addr_in_base && base_host)) {
            // A str is immutable: the one REMOTE_ADDR holds serves again
            // (and the base holds it as REMOTE_HOST too when REMOTE_ADDR
            // is the base's).
            let host = match remote_addr_str {
                Some(s) => s,
                None => latin1_str(py, remote_addr)?,
            };
            env.set_item(&k.remote_host, host)?;
        }
        if scheme_https == Some(true) {
            env.set_item(&k.url_scheme, "https")?;
        }
        let (script, path) = split_script_path(head, script_name, path_info);
        // The template's SCRIPT_NAME is '' already, and nothing before
        // this sets it for a gateway request.
        if !script.is_empty() {
            env.set_item(&k.script_name, latin1_str(py, &script)?)?;
        }
        let path_str = match target_str {
            Some(t) if *path == *head.target() => t,
            _ => latin1_str(py, &path)?,
        };
        env.set_item(&k.path_info, path_str)?;
        Ok(())
    }

    /// Makes `kept`'s base anew: the template with the kept strs of the
    /// places in `places`, and `head`'s method, protocol and Host.
    fn rebuild_gateway_base(
        &self,
        py: Python<'_>,
        kept: &mut GatewayKept,
        places: u64,
        head: &RequestHead,
    ) -> PyResult<()> {
        let dict = self.template.bind(py).copy()?;
        let k = &self.keys;
        // Only an interned method: the environ's is compared by identity.
        let method = self
            .methods
            .iter()
            .find(|(m, _)| *m == head.method())
            .map(|(_, s)| s.clone_ref(py));
        if let Some(m) = &method {
            dict.set_item(&k.request_method, m.bind(py))?;
        }
        let protocol = match head.version() {
            Version::Http10 => &self.http10,
            Version::Http11 => &self.http11,
        };
        dict.set_item(&k.server_protocol, protocol.bind(py))?;
        if let Some(h) = head.host() {
            dict.set_item(&k.http_host, latin1_str(py, h)?)?;
        }
        kept.base_method = method;
        kept.base_protocol = Some(protocol.clone_ref(py));
        kept.base_http_host = head.host().map(Box::from);
        let mut held = 0u64;
        let mut left = places;
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            if let (Some(key), Some((_, Some(made)))) = (self.var_keys.get(i), kept.values.get(i)) {
                dict.set_item(key, made.bind(py))?;
                held |= 1u64 << i;
            }
        }
        // REMOTE_HOST, when the front end does not send it, is the
        // REMOTE_ADDR's str: the base holds that too.
        let addr = self.remote_addr_place;
        let host_sent = held & (1u64 << self.remote_host_place) != 0;
        kept.base_host = false;
        if held & (1u64 << addr) != 0 && !host_sent {
            if let Some((_, Some(made))) = kept.values.get(addr) {
                dict.set_item(&self.keys.remote_host, made.bind(py))?;
                kept.base_host = true;
            }
        }
        kept.base = Some(dict.unbind());
        kept.base_keys = held;
        kept.base_valid = held;
        kept.since = 0;
        Ok(())
    }

    /// Sets what a trusted peer's forwarding headers changed.
    fn apply_forwarding(
        &self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        f: &Forwarding,
    ) -> PyResult<()> {
        let k = &self.keys;
        if let Some(ip) = f.client_addr {
            let addr = PyString::new(py, &ip.to_string());
            env.set_item(&k.remote_addr, &addr)?;
            env.set_item(&k.remote_host, &addr)?;
            // The proxy's own port says nothing about the client's.
            let port = f.client_port.map(|p| p.to_string()).unwrap_or_default();
            env.set_item(&k.remote_port, port)?;
        }
        if let Some(scheme) = f.scheme {
            env.set_item(&k.url_scheme, scheme)?;
        }
        if let Some(host) = &f.http_host {
            env.set_item(&k.http_host, host)?;
        }
        if let Some(name) = &f.server_name {
            env.set_item(&k.server_name, name)?;
        }
        if let Some(port) = f.server_port {
            env.set_item(&k.server_port, port.to_string())?;
        }
        if let Some(prefix) = &f.prefix {
            // The proxy's prefix comes before any the server set itself.
            let own = env
                .get_item(&k.script_name)?
                .map(|v| v.extract::<String>())
                .transpose()?
                .unwrap_or_default();
            env.set_item(&k.script_name, format!("{prefix}{own}"))?;
        }
        Ok(())
    }
}

/// The str of `value` for the server variable at place `i` of
/// [`COMMON_VARS`], and whether it is the one kept from before (the bytes
/// are the same); a new one is kept for the next request when it is short.
fn kept_value<'py>(
    py: Python<'py>,
    values: &mut [(Vec<u8>, Option<Py<PyString>>)],
    i: usize,
    value: &[u8],
) -> PyResult<(Bound<'py, PyString>, bool)> {
    let Some((bytes, made)) = values.get_mut(i) else {
        return Ok((latin1_str(py, value)?, false));
    };
    if let Some(s) = made.as_ref().filter(|_| same_bytes(bytes, value)) {
        return Ok((s.bind(py).clone(), true));
    }
    let s = latin1_str(py, value)?;
    if value.len() <= KEPT_VALUE_MAX {
        bytes.clear();
        bytes.extend_from_slice(value);
        *made = Some(s.clone().unbind());
    } else {
        // Nothing of this value is kept: the place has no value to repeat.
        bytes.clear();
        *made = None;
    }
    Ok((s, false))
}

/// `SCRIPT_NAME` and `PATH_INFO` (decoded) of a gateway request:
///
/// - the front end sent `PATH_INFO` (nginx's `uwsgi_params`, Apache): both
///   as sent, except that when `SCRIPT_NAME` + `PATH_INFO` is, byte for
///   byte, the path of `REQUEST_URI` and holds a `%`, the front end passed
///   the path undecoded, and both are decoded here;
/// - it did not (nginx's `fastcgi_params` and `scgi_params`, which send
///   `SCRIPT_NAME` = the whole path): the path is `REQUEST_URI`'s, decoded;
///   a `SCRIPT_NAME` that is a proper prefix of it on a segment boundary
///   stays the script name and the rest is `PATH_INFO`; one that is the
///   whole path (or no prefix) is dropped, so that the application sees
///   the whole path in `PATH_INFO`, as behind an HTTP proxy. Mounting an
///   application under a prefix is then `--root-path` or `ferrowsgi.Mount`.
fn split_script_path<'a>(
    head: &'a RequestHead,
    script: Option<&'a [u8]>,
    info: Option<&'a [u8]>,
) -> (Cow<'a, [u8]>, Cow<'a, [u8]>) {
    let script = script.unwrap_or(b"");
    let raw_path = head.path();
    if let Some(info) = info {
        let joined_is_raw = raw_path.len() == script.len() + info.len()
            && raw_path.starts_with(script)
            && raw_path.ends_with(info);
        if joined_is_raw && raw_path.contains(&b'%') {
            return (percent_decode(script), percent_decode(info));
        }
        return (Cow::Borrowed(script), Cow::Borrowed(info));
    }
    let path = if raw_path == b"*" {
        Cow::Borrowed(&b""[..])
    } else {
        percent_decode(raw_path)
    };
    let script = script.strip_suffix(b"/").unwrap_or(script);
    if !script.is_empty()
        && script.len() < path.len()
        && path.starts_with(script)
        && path.get(script.len()) == Some(&b'/')
    {
        let rest = match path {
            Cow::Borrowed(p) => Cow::Borrowed(&p[script.len()..]),
            Cow::Owned(p) => Cow::Owned(p[script.len()..].to_vec()),
        };
        return (Cow::Borrowed(script), rest);
    }
    (Cow::Borrowed(&b""[..]), path)
}

/// Whether the forwarding headers of `head` are believed. The client of a
/// gateway request (FastCGI, SCGI, uwsgi, AJP13) is the `REMOTE_ADDR` its
/// front end reported, not the front end itself: a front end passes the
/// client's own `X-Forwarded-For` along as `HTTP_X_FORWARDED_FOR`, so it is
/// believed only when that client is a trusted proxy, as behind PROXY.
fn forwarding_trusted(peer: &PeerInfo, head: &RequestHead, trusted: &TrustedProxies) -> bool {
    if head.is_gateway() {
        if let Some(addr) = head.var(b"REMOTE_ADDR") {
            return std::str::from_utf8(addr)
                .ok()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| trusted.trusts(ip));
        }
    }
    peer.is_trusted(trusted)
}

/// Splits "host:port" / "[v6]:port" / "host".
fn split_host_port(h: &[u8]) -> (&[u8], Option<&[u8]>) {
    if h.first() == Some(&b'[') {
        if let Some(end) = h.iter().position(|&c| c == b']') {
            let rest = &h[end + 1..];
            return (&h[..=end], rest.strip_prefix(b":"));
        }
        return (h, None);
    }
    match h.iter().rposition(|&c| c == b':') {
        Some(i) => (&h[..i], Some(&h[i + 1..])),
        None => (h, None),
    }
}

/// The value of the request's Host line, if it has one.
fn host_field(head: &RequestHead) -> Option<&[u8]> {
    head.headers()
        .find(|(n, _)| eq_lowercase(n, b"host"))
        .map(|(_, v)| v)
}

/// The connection's addresses as Python strings, made once per connection
/// and kept in [`PeerInfo::ext`], and the connection's own environ template.
struct PeerStrings {
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    server_name: Py<PyString>,
    server_port: Py<PyString>,
    /// Requests whose environ was built from the server's template.
    requests: AtomicU32,
    /// Made on the connection's second request (a connection that serves
    /// one request does not pay for it).
    base: OnceLock<ConnBase>,
}

/// The server's template with a connection's addresses set, and the method
/// and protocol of the request it was made for: each request of the
/// connection copies it, and sets those two only if its own differ.
/// Setting an environ key costs about 190 instructions; the five address
/// keys and these two were a tenth of a hello request's user-space total.
///
/// The Host field too: a client sends the same one on every request of a
/// connection, so the template holds `HTTP_HOST` for it, and a request
/// whose Host is that one (byte for byte) sets nothing for it.
struct ConnBase {
    dict: Py<PyDict>,
    method: Py<PyString>,
    protocol: Py<PyString>,
    /// The Host field's value that `dict` holds as `HTTP_HOST` (`None`: the
    /// request it was made for had no Host field, nor has `dict` one).
    host: Option<Box<[u8]>>,
}

impl PeerStrings {
    fn new(py: Python<'_>, peer: &PeerInfo) -> PeerStrings {
        PeerStrings {
            remote_addr: PyString::new(py, &peer.remote_addr).unbind(),
            remote_port: PyString::new(py, &peer.remote_port).unbind(),
            // The server's side is mostly one of a few addresses and ports
            // (the listeners', or what PROXY headers name): interned, the
            // connections share one str instead of holding two each (an
            // interned str nothing uses any more is freed).
            server_name: PyString::intern(py, &peer.server_name).unbind(),
            server_port: PyString::intern(py, &peer.server_port).unbind(),
            requests: AtomicU32::new(0),
            base: OnceLock::new(),
        }
    }
}
