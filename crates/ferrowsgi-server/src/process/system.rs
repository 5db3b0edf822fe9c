//! What the processes ask of the system: usable CPUs, users and groups,
//! inherited sockets (`--fd`, systemd's `LISTEN_FDS`), the pid file, the
//! parent-death signal.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use crate::listen::{Bind, BindAddr, Listener, Scheme};

/// First descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// How many CPUs this process may use: the affinity mask, capped by the
/// cgroup's quota (v2 `cpu.max`, or v1 `cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`), rounded up; at least 1.
pub fn usable_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let affinity = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set) as usize
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    };
    let quota = cgroup_quota().unwrap_or(usize::MAX);
    affinity.min(quota).max(1)
}

/// The CPU quota of this process's cgroup, in whole CPUs (rounded up).
fn cgroup_quota() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let ceil = |quota: f64, period: f64| -> Option<usize> {
        (quota > 0.0 && period > 0.0).then(|| (quota / period).ceil() as usize)
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if id == "0" && controllers.is_empty() {
            // cgroup v2: "max 100000" or "200000 100000".
            let max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cpu.max"))
                .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cpu.max"))
                .ok()?;
            let mut f = max.split_whitespace();
            let (q, p) = (f.next()?, f.next()?);
            return ceil(q.parse().ok()?, p.parse().ok()?);
        }
        if controllers.split(',').any(|c| c == "cpu") {
            for base in [
                format!("/sys/fs/cgroup/cpu,cpuacct{path}"),
                format!("/sys/fs/cgroup/cpu{path}"),
                "/sys/fs/cgroup/cpu,cpuacct".to_string(),
            ] {
                let read = |f: &str| -> Option<f64> {
                    std::fs::read_to_string(format!("{base}/{f}"))
                        .ok()?
                        .trim()
                        .parse()
                        .ok()
                };
                if let (Some(q), Some(p)) = (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
                    return ceil(q, p);
                }
            }
        }
    }
    None
}

/// The user and group the workers run as (`-u`, `-g`).
#[derive(Debug, Clone)]
pub struct Identity {
    /// User id to switch to, with its name (for its supplementary groups).
    pub user: Option<(libc::uid_t, CString)>,
    /// Group id to switch to.
    pub gid: Option<libc::gid_t>,
}

fn lookup_user(name: &str) -> Result<(libc::uid_t, libc::gid_t, CString), String> {
    let bad = || format!("no such user {name:?} (-u/--user)");
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: a zeroed passwd is valid; getpwnam_r/getpwuid_r write into
    // it and into `buf`, whose length is passed; `result` tells whether
    // an entry was found.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = if let Ok(uid) = name.parse::<libc::uid_t>() {
            libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result)
        } else {
            let c = CString::new(name).map_err(|_| bad())?;
            libc::getpwnam_r(
                c.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            if let Ok(uid) = name.parse::<libc::uid_t>() {
                // A numeric id without a passwd entry is still an id.
                return Ok((uid, libc::getgid(), CString::default()));
            }
            return Err(bad());
        }
        Ok((pw.pw_uid, pw.pw_gid, CStr::from_ptr(pw.pw_name).to_owned()))
    }
}

fn lookup_group(name: &str) -> Result<libc::gid_t, String> {
    if let Ok(gid) = name.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    let bad = || format!("no such group {name:?} (-g/--group)");
    let c = CString::new(name).map_err(|_| bad())?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: as in lookup_user, for getgrnam_r.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            c.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return Err(bad());
        }
        Ok(gr.gr_gid)
    }
}

impl Identity {
    /// Looks up `-u USER` and `-g GROUP` (names or numeric ids). A user
    /// without `-g` brings its primary group. The error is one line.
    pub fn lookup(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let mut id = Identity {
            user: None,
            gid: None,
        };
        if let Some(u) = user {
            let (uid, gid, name) = lookup_user(u)?;
            id.user = Some((uid, name));
            id.gid = Some(gid);
        }
        if let Some(g) = group {
            id.gid = Some(lookup_group(g)?);
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let same = id.user.as_ref().map_or(true, |(u, _)| *u == euid)
            // SAFETY: getegid has no preconditions.
            && id.gid.map_or(true, |g| g == unsafe { libc::getegid() });
        if euid != 0 && !same {
            return Err("-u/--user and -g/--group need the server to start as root".to_string());
        }
        Ok(Some(id))
    }

    /// Switches this process to the group, then to the user (with its
    /// supplementary groups): the order in which a process that is still
    /// root can do both.
    pub fn switch(&self) -> io::Result<()> {
        // SAFETY: plain system calls on ids; the name is a valid C string.
        unsafe {
            if let Some(gid) = self.gid {
                if libc::setgroups(1, &gid) != 0 && libc::geteuid() == 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(gid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((uid, name)) = &self.user {
                let gid = self.gid.unwrap_or_else(|| libc::getgid());
                if !name.as_bytes().is_empty() && libc::initgroups(name.as_ptr(), gid) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setuid(*uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// The ids a unix socket file is given, so that the workers can use it.
    pub fn owner(&self) -> (libc::uid_t, libc::gid_t) {
        // SAFETY: no preconditions.
        unsafe {
            (
                self.user.as_ref().map_or(libc::geteuid(), |(u, _)| *u),
                self.gid.unwrap_or(libc::getegid()),
            )
        }
    }
}

/// Whether [`take_listen_fds`] took sockets from systemd: the variables are
/// gone then, but a reload that reads the settings again must still know
/// that those sockets stand for the default address.
static TOOK_LISTEN_FDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether systemd passed sockets, now or before [`take_listen_fds`] took
/// them.
pub fn had_listen_fds() -> bool {
    TOOK_LISTEN_FDS.load(std::sync::atomic::Ordering::Relaxed)
        || listen_fds_env().is_some_and(|n| n > 0)
}

/// `LISTEN_FDS` when `LISTEN_PID` names this process.
pub fn listen_fds_env() -> Option<usize> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    if pid != std::process::id() {
        return None;
    }
    std::env::var("LISTEN_FDS").ok()?.parse().ok()
}

/// Takes the sockets systemd passed (descriptors 3 to 3 + `LISTEN_FDS`),
/// each with the name `LISTEN_FDNAMES` gives it (`None` without the
/// variable), and removes the variables, so that no child takes them for
/// its own. The error is one line: a `LISTEN_FDNAMES` that does not name
/// each socket once.
pub fn take_listen_fds() -> Result<Vec<(RawFd, Option<String>)>, String> {
    let n = listen_fds_env().unwrap_or(0);
    if n > 0 {
        TOOK_LISTEN_FDS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let fds = (0..n as RawFd).map(|i| LISTEN_FDS_START + i);
    let Some(names) = names.filter(|_| n > 0) else {
        return Ok(fds.map(|fd| (fd, None)).collect());
    };
    let names: Vec<&str> = names.split(':').collect();
    if names.len() != n {
        return Err(format!(
            "LISTEN_FDNAMES names {} sockets but LISTEN_FDS passes {n}",
            names.len()
        ));
    }
    Ok(fds
        .zip(names)
        .map(|(fd, name)| (fd, Some(name.to_string())))
        .collect())
}

/// The protocol a systemd socket's name (`FileDescriptorName=`) asks
/// for: `http`, `fastcgi`, `scgi`, `uwsgi` or `ajp`, each optionally
/// followed by `+proxy`. Any other name is HTTP, as before names had a
/// meaning: systemd names a socket after its unit (`app.socket`) unless
/// told otherwise, and a unit may name its sockets for its own purposes.
/// A name of four or more characters that is nearly a protocol's
/// (`fastcig`, `uwsg`), or one with a `+` (`fastcgi+prox`), is taken
/// for a mistake: the error is one line naming it. Shorter names are too close
/// to everything (`app` is one letter from `ajp`) to be judged.
pub fn protocol_of_fd_name(fd: RawFd, name: &str) -> Result<(Scheme, bool), String> {
    if let Some(found) = Scheme::parse_protocol(name) {
        return Ok(found);
    }
    let known = || Scheme::ALL.iter().map(|s| s.name());
    let bad = |hint: String| {
        format!(
            "systemd socket {fd} is named {name:?} (LISTEN_FDNAMES), which is not a protocol{hint}: \
             name it http, fastcgi, scgi, uwsgi or ajp, each optionally followed by +proxy"
        )
    };
    // A '+' is the scheme's spelling: a mistake in the protocol or in
    // its suffix.
    if let Some((protocol, _)) = name.split_once('+') {
        return Err(bad(match crate::settings::closest(protocol, known()) {
            Some(k) => format!(" (did you mean \"{k}+proxy\"?)"),
            None => String::new(),
        }));
    }
    match crate::settings::closest(name, known()) {
        Some(k) if name.len() >= 4 => Err(bad(format!(" (did you mean {k:?}?)"))),
        _ => Ok((Scheme::Http, false)),
    }
}

/// The inherited listening sockets, adopted: those of `--fd` (`fds`,
/// HTTP), those systemd passed (`LISTEN_FDS`, each speaking the protocol
/// its name asks for, see [`protocol_of_fd_name`]), and those `binds`
/// name as `SCHEME://fd:N`. A descriptor named in `binds` speaks the
/// protocol given there, also when `--fd` or systemd passed it: the
/// command line is the more specific. `proxy_all` (`--proxy-protocol`)
/// puts a PROXY protocol header before every connection's first byte.
/// The error is one line naming the descriptor.
pub fn inherited_listeners(
    fds: &[RawFd],
    binds: &[Bind],
    proxy_all: bool,
) -> Result<Vec<Listener>, String> {
    // (descriptor, protocol, PROXY header, systemd's name)
    let mut wanted: Vec<(RawFd, Scheme, bool, Option<String>)> = Vec::new();
    for &fd in fds {
        if !wanted.iter().any(|w| w.0 == fd) {
            wanted.push((fd, Scheme::Http, false, None));
        }
    }
    for (fd, name) in take_listen_fds()? {
        if wanted.iter().any(|w| w.0 == fd) {
            continue;
        }
        let (scheme, proxy) = match &name {
            Some(n) => protocol_of_fd_name(fd, n)?,
            None => (Scheme::Http, false),
        };
        wanted.push((fd, scheme, proxy, name));
    }
    for bind in binds {
        let BindAddr::Fd(fd) = bind.addr else {
            continue;
        };
        match wanted.iter_mut().find(|w| w.0 == fd) {
            Some(w) => {
                if let Some(name) = &w.3 {
                    if (w.1, w.2) != (bind.scheme, bind.proxy)
                        && Scheme::parse_protocol(name).is_some()
                    {
                        crate::log::warning(&format!(
                            "systemd socket {fd} is named {name:?}; --bind {bind} says how it \
                             is spoken"
                        ));
                    }
                }
                (w.1, w.2) = (bind.scheme, bind.proxy);
            }
            None => wanted.push((fd, bind.scheme, bind.proxy, None)),
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (fd, scheme, proxy, _) in wanted {
        let mut l = Listener::from_fd(fd)?.with_scheme(scheme);
        l.set_proxy_protocol(proxy || proxy_all);
        out.push(l);
    }
    Ok(out)
}

/// Sets the file mode creation mask.
pub fn set_umask(mask: u32) {
    // SAFETY: umask has no preconditions.
    unsafe {
        libc::umask(mask as libc::mode_t);
    }
}

/// Writes this process's id to `path` (atomically: a temporary file
/// renamed over it).
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Removes the pid file if it still names this process.
pub fn remove_pid_file(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        if text.trim() == std::process::id().to_string() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Asks the kernel to send `sig` to this process when its parent dies,
/// then checks that the parent is still `parent` (it may have died before
/// the request). Returns false when it is already gone.
pub fn die_with_parent(parent: libc::pid_t, sig: libc::c_int) -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; getppid has
    // no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0);
        libc::getppid() == parent
    }
}

/// The resident set size of this process in bytes, from
/// `/proc/self/statm` (read through a descriptor kept open, so the check
/// after each request is one pread(2)).
pub fn rss_bytes() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    use std::sync::OnceLock;
    static STATM: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let f = STATM
        .get_or_init(|| std::fs::File::open("/proc/self/statm").ok())
        .as_ref()?;
    let mut buf = [0u8; 128];
    let n = f.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}
