//! systemd's readiness protocol (`sd_notify`): datagrams such as
//! `READY=1` sent to the unix socket named by `NOTIFY_SOCKET` (a path, or
//! `@name` for the abstract namespace). Written here rather than linked
//! from libsystemd: it is one sendto(2).

use std::io;
use std::os::unix::net::UnixDatagram;

/// A connection to the service manager, if the process has one.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and removes it from the environment, so that
    /// the workers (and what they start) do not talk to systemd in the
    /// master's name. `None` when the variable is unset or unusable.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        std::env::remove_var("NOTIFY_SOCKET");
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
        let addr = if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?
        } else if bytes.first() == Some(&b'/') {
            std::os::unix::net::SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?
        } else {
            crate::log::warning(&format!(
                "NOTIFY_SOCKET={path:?} is neither a path nor an abstract name; not notifying"
            ));
            return None;
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, addr })
    }

    /// Sends `state` (lines such as `READY=1\nSTATUS=...`). A failure is
    /// logged once per call and otherwise ignored: the server works
    /// without its manager's knowledge.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.send_to(state) {
            crate::log::warning(&format!("sd_notify failed: {e}"));
        }
    }

    fn send_to(&self, state: &str) -> io::Result<()> {
        self.sock
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

/// CLOCK_MONOTONIC in microseconds, as `RELOADING=1` wants it
/// (`MONOTONIC_USEC=`, for systemd's `Type=notify-reload`).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for clock_gettime to fill.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
