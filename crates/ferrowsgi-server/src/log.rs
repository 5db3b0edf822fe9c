//! The error log (stderr, gunicorn-style lines) and the access log (stdout,
//! combined log format).

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Error-log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Per-connection detail.
    Debug = 10,
    /// Start-up, shutdown and rejected requests.
    Info = 20,
    /// Something the operator should look at.
    Warning = 30,
    /// Application errors.
    Error = 40,
    /// The server cannot go on.
    Critical = 50,
}

impl Level {
    /// Parses a level name as given to `--log-level`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the lowest level that is printed.
pub fn set_level(level: Level) {
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a line at `level` would be printed.
pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Prints one error-log line (more lines when `msg` has them) to stderr:
/// `[2026-11-25 13:30:00 +0000] [PID] [LEVEL] msg`.
pub fn log(level: Level, msg: &str) {
    if !enabled(level) {
        return;
    }
    let line = format!(
        "[{}] [{}] [{}] {}\n",
        timestamp_iso(),
        std::process::id(),
        level.name(),
        msg.trim_end()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Reopens the log files, as `SIGUSR1` asks (after logrotate moved them).
///
/// The error log goes to stderr and the access log to stdout, which are the
/// process's own descriptors and never reopened, so there is nothing to do
/// yet; log files will be reopened here.
pub fn reopen() -> std::io::Result<()> {
    Ok(())
}

/// Logs at info level.
pub fn info(msg: &str) {
    log(Level::Info, msg);
}

/// Logs at debug level.
pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// Logs at warning level.
pub fn warning(msg: &str) {
    log(Level::Warning, msg);
}

/// Logs at error level.
pub fn error(msg: &str) {
    log(Level::Error, msg);
}

/// The fields of one access-log line.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// Client address.
    pub remote: &'a str,
    /// Request method.
    pub method: &'a [u8],
    /// Raw request target.
    pub target: &'a [u8],
    /// "HTTP/1.1" or "HTTP/1.0".
    pub protocol: &'a str,
    /// Response status code.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Referer header, if any.
    pub referer: Option<&'a [u8]>,
    /// User-Agent header, if any.
    pub user_agent: Option<&'a [u8]>,
}

/// Prints one access-log line in combined log format to stdout.
pub fn access(rec: &AccessRecord<'_>) {
    let mut line = Vec::with_capacity(160);
    line.extend_from_slice(rec.remote.as_bytes());
    line.extend_from_slice(b" - - [");
    line.extend_from_slice(timestamp_clf().as_bytes());
    line.extend_from_slice(b"] \"");
    push_escaped(&mut line, rec.method);
    line.push(b' ');
    push_escaped(&mut line, rec.target);
    line.push(b' ');
    line.extend_from_slice(rec.protocol.as_bytes());
    line.extend_from_slice(b"\" ");
    line.extend_from_slice(itoa::Buffer::new().format(rec.status).as_bytes());
    line.push(b' ');
    line.extend_from_slice(itoa::Buffer::new().format(rec.bytes).as_bytes());
    for field in [rec.referer, rec.user_agent] {
        line.extend_from_slice(b" \"");
        match field {
            Some(v) => push_escaped(&mut line, v),
            None => line.push(b'-'),
        }
        line.push(b'"');
    }
    line.push(b'\n');
    let _ = std::io::stdout().lock().write_all(&line);
}

/// Copies `v`, escaping `"`, `\` and bytes outside printable ASCII as `\xHH`
/// so that a client cannot forge log lines.
fn push_escaped(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in v {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
    }
}

/// Civil date (UTC) of a Unix time: (year, month, day, hour, min, sec).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn timestamp_iso() -> String {
    let (y, mo, d, h, mi, s) = civil(now_secs());
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000")
}

fn timestamp_clf() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = civil(now_secs());
    let month = MONTHS[(mo as usize).saturating_sub(1) % 12];
    format!("{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(784_111_777), (1994, 11, 6, 8, 49, 37));
        assert_eq!(civil(1_709_164_800), (2024, 2, 29, 0, 0, 0));
    }

    #[test]
    fn escapes_log_forgery() {
        let mut out = Vec::new();
        push_escaped(&mut out, b"a\"b\n\xff");
        assert_eq!(out, b"a\\\"b\\x0a\\xff");
    }
}
