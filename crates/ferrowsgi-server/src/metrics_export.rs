//! The Prometheus endpoint of `--metrics-bind`, served by the master.
//!
//! The master has no threads (it forks), so the endpoint is a small state
//! machine driven by the master's own poll(2) loop. Its listener and its
//! few connections (each reads one request head, writes one response and
//! closes) sit in an epoll set of their own, whose one descriptor
//! ([`MetricsExporter::fd`]) the master polls for input beside its pipes;
//! when it is readable, [`MetricsExporter::on_readable`] handles what is
//! ready, without blocking.
//!
//! The text follows the exposition format 0.0.4: `# HELP` and `# TYPE`
//! before each family, counters ending in `_total`, histograms as
//! cumulative `_bucket{le=...}` series with `_sum` and `_count`.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::metrics::{self, MasterCounts, RestartCause, Totals, BOUNDS_NS, CLASSES, METHODS};

/// A request head larger than this is refused (a scrape's is ~200 bytes).
const MAX_HEAD: usize = 8 * 1024;
/// A scrape connection open longer than this is dropped when another
/// arrives, so slow or idle clients cannot pile up in the master.
const CONN_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; at the limit, the oldest goes.
const MAX_CONNS: usize = 16;
/// The listener's token; connections have their own numbers.
const LISTENER: Token = Token(usize::MAX);

/// Where one scrape connection is.
#[derive(Debug)]
enum Phase {
    /// Reading the request head.
    Reading(Vec<u8>),
    /// Writing the response from `pos`; then closing.
    Writing {
        /// The whole response.
        out: Vec<u8>,
        /// Bytes already written.
        pos: usize,
    },
}

#[derive(Debug)]
struct ScrapeConn {
    token: Token,
    stream: TcpStream,
    phase: Phase,
    since: Instant,
}

/// The `--metrics-bind` endpoint: its epoll set, listener and connections.
#[derive(Debug)]
pub struct MetricsExporter {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    conns: Vec<ScrapeConn>,
    next_token: usize,
}

impl MetricsExporter {
    /// Binds `addr` (HOST:PORT) without blocking. Metrics must be
    /// [`metrics::enable`]d for there to be anything to show.
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsExporter> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(MetricsExporter {
            poll,
            events: Events::with_capacity(64),
            listener,
            conns: Vec::new(),
            next_token: 0,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The descriptor to poll for input: readable when a scrape
    /// connection arrived or one of them can go on.
    pub fn fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// Handles whatever is ready (accepts, reads, answers, writes) without
    /// blocking.
    pub fn on_readable(&mut self) {
        if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            if e.kind() != io::ErrorKind::Interrupted {
                // Nothing to do but try again at the next wake-up.
                return;
            }
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in ready {
            if token == LISTENER {
                self.accept();
            } else if let Some(i) = self.conns.iter().position(|c| c.token == token) {
                self.drive(i);
            }
        }
    }

    /// Accepts every pending connection; at the limit, the oldest open one
    /// is dropped for each new one.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let now = Instant::now();
                    self.conns
                        .retain(|c| now.duration_since(c.since) < CONN_TIMEOUT);
                    if self.conns.len() >= MAX_CONNS {
                        self.conns.remove(0);
                    }
                    let token = Token(self.next_token);
                    self.next_token = (self.next_token + 1) % (usize::MAX - 1);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.push(ScrapeConn {
                        token,
                        stream,
                        phase: Phase::Reading(Vec::new()),
                        since: now,
                    });
                    let i = self.conns.len() - 1;
                    self.drive(i);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or out of descriptors: the rest wait.
                Err(_) => return,
            }
        }
    }

    /// Moves connection `i` forward as far as its socket allows (its
    /// readiness is edge-triggered, so until it would block); removes it
    /// once its response is out or it failed.
    fn drive(&mut self, i: usize) {
        let done = loop {
            let Some(c) = self.conns.get_mut(i) else {
                return;
            };
            match &mut c.phase {
                Phase::Reading(buf) => {
                    let mut chunk = [0u8; 2048];
                    match c.stream.read(&mut chunk) {
                        Ok(0) => break true,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            if let Some(end) = find_head_end(buf) {
                                let out = respond(&buf[..end]);
                                c.phase = Phase::Writing { out, pos: 0 };
                            } else if buf.len() > MAX_HEAD {
                                let out = plain(431, "Request Header Fields Too Large", "");
                                c.phase = Phase::Writing { out, pos: 0 };
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                        Err(_) => break true,
                    }
                }
                Phase::Writing { out, pos } => match c.stream.write(&out[*pos..]) {
                    Ok(n) => {
                        *pos += n;
                        if *pos >= out.len() {
                            let _ = c.stream.shutdown(std::net::Shutdown::Write);
                            break true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                },
            }
        };
        if done {
            // Closing the socket takes it out of the epoll set.
            self.conns.swap_remove(i);
        }
    }
}

impl crate::process::Source for MetricsExporter {
    fn fd(&self) -> RawFd {
        MetricsExporter::fd(self)
    }

    fn ready(&mut self) -> crate::process::SourceAction {
        self.on_readable();
        crate::process::SourceAction::Nothing
    }
}

/// Where the head in `buf` ends (after its blank line), if it is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The response to a request head: the metrics for `GET /metrics` (or `/`),
/// otherwise a short error.
fn respond(head: &[u8]) -> Vec<u8> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if method != b"GET" && method != b"HEAD" {
        return plain(405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
    }
    if path != b"/metrics" && path != b"/" {
        return plain(404, "Not Found", "");
    }
    let body = render(&metrics::master_counts());
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method == b"GET" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn plain(status: u16, reason: &str, extra: &str) -> Vec<u8> {
    let body = format!("{status} {reason}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn histogram(out: &mut String, name: &str, help: &str, buckets: &[u64], sum_ns: u64) {
    family(out, name, "histogram", help);
    let mut cumulative = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        match BOUNDS_NS.get(i) {
            Some(&b) => {
                let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", seconds(b));
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let _ = writeln!(out, "{name}_sum {}", seconds(sum_ns));
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// The Prometheus text for the region's live workers plus `counts`.
pub fn render(counts: &MasterCounts) -> String {
    let live: Vec<(usize, &metrics::WorkerSlot)> = metrics::region()
        .map(|r| {
            r.slots()
                .iter()
                .enumerate()
                .filter(|(_, s)| s.pid() != 0)
                .collect()
        })
        .unwrap_or_default();
    render_slots(counts, &live)
}

/// The Prometheus text for the workers of `live` (slot index, slot) plus
/// `counts`.
fn render_slots(counts: &MasterCounts, live: &[(usize, &metrics::WorkerSlot)]) -> String {
    let mut t: Totals = counts.retired.clone();
    for (_, s) in live {
        t.add(s);
    }
    let mut out = String::with_capacity(8192);

    family(
        &mut out,
        "ferrowsgi_requests_total",
        "counter",
        "Requests answered, by method and status class.",
    );
    for (m, row) in METHODS.iter().zip(&t.requests) {
        for (c, n) in CLASSES.iter().zip(row) {
            if *n > 0 {
                let _ = writeln!(
                    out,
                    "ferrowsgi_requests_total{{method=\"{m}\",code=\"{c}\"}} {n}"
                );
            }
        }
    }
    family(
        &mut out,
        "ferrowsgi_requests_rejected_total",
        "counter",
        "Requests refused while being read, never given to the application, by status class.",
    );
    for (c, n) in CLASSES.iter().zip(&t.rejected) {
        if *n > 0 {
            let _ = writeln!(out, "ferrowsgi_requests_rejected_total{{code=\"{c}\"}} {n}");
        }
    }
    histogram(
        &mut out,
        "ferrowsgi_request_duration_seconds",
        "From a request being ready to its response being complete.",
        &t.latency,
        t.latency_sum_ns,
    );
    histogram(
        &mut out,
        "ferrowsgi_request_queue_seconds",
        "Time a request waited for an application thread (0 when none was busy).",
        &t.queue,
        t.queue_sum_ns,
    );
    family(
        &mut out,
        "ferrowsgi_gil_wait_seconds",
        "summary",
        "Time spent taking the GIL back after a blocking wait.",
    );
    let _ = writeln!(
        out,
        "ferrowsgi_gil_wait_seconds_sum {}",
        seconds(t.gil_wait_ns)
    );
    let _ = writeln!(out, "ferrowsgi_gil_wait_seconds_count {}", t.gil_waits);
    let counters: [(&str, &str, u64); 4] = [
        (
            "ferrowsgi_request_bytes_total",
            "Request bytes received (heads and bodies).",
            t.bytes_in,
        ),
        (
            "ferrowsgi_response_bytes_total",
            "Response bytes sent (heads and bodies).",
            t.bytes_out,
        ),
        (
            "ferrowsgi_connections_total",
            "Connections accepted.",
            t.connections_total,
        ),
        (
            "ferrowsgi_deadlines_total",
            "Requests that reached their deadline.",
            t.deadlines,
        ),
    ];
    for (name, help, v) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    family(
        &mut out,
        "ferrowsgi_worker_restarts_total",
        "counter",
        "Workers replaced, by cause.",
    );
    for (c, n) in RestartCause::ALL.iter().zip(&counts.restarts) {
        let _ = writeln!(
            out,
            "ferrowsgi_worker_restarts_total{{cause=\"{}\"}} {n}",
            c.label()
        );
    }
    family(&mut out, "ferrowsgi_workers", "gauge", "Workers running.");
    let _ = writeln!(out, "ferrowsgi_workers {}", live.len());
    let per_worker: [(&str, &str, &str); 4] = [
        (
            "ferrowsgi_worker_requests_total",
            "counter",
            "Requests answered by each worker since it started (its slot's count starts again when it is replaced).",
        ),
        (
            "ferrowsgi_requests_in_flight",
            "gauge",
            "Application calls running, per worker.",
        ),
        (
            "ferrowsgi_requests_queued",
            "gauge",
            "Requests waiting for an application thread, per worker.",
        ),
        (
            "ferrowsgi_connections_open",
            "gauge",
            "Connections open, per worker.",
        ),
    ];
    for (k, (name, kind, help)) in per_worker.iter().enumerate() {
        family(&mut out, name, kind, help);
        for (i, s) in live {
            let (in_flight, queued, conns) = s.gauges();
            let v = match k {
                0 => s.requests_served() as i64,
                1 => in_flight,
                2 => queued,
                _ => conns,
            };
            let _ = writeln!(out, "{name}{{worker=\"{i}\",pid=\"{}\"}} {v}", s.pid());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_other_than_a_scrape_get_errors() {
        let r = respond(b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with(b"HTTP/1.1 405 "));
        let r = respond(b"GET /other HTTP/1.1\r\n\r\n");
        assert!(r.starts_with(b"HTTP/1.1 404 "));
        let r = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with(b"HTTP/1.1 200 "));
        assert!(r.ends_with(b"\r\n\r\n"), "a HEAD answer has no body");
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut counts = MasterCounts::default();
        counts.retired.latency[0] = 3;
        counts.retired.latency[2] = 2;
        counts.retired.latency_sum_ns = 1_500_000_000;
        counts.restarts[1] = 4;
        let text = render_slots(&counts, &[]);
        assert!(text.contains("ferrowsgi_request_duration_seconds_bucket{le=\"0.00005\"} 3\n"));
        assert!(text.contains("ferrowsgi_request_duration_seconds_bucket{le=\"0.0001\"} 3\n"));
        assert!(text.contains("ferrowsgi_request_duration_seconds_bucket{le=\"0.00025\"} 5\n"));
        assert!(text.contains("ferrowsgi_request_duration_seconds_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("ferrowsgi_request_duration_seconds_count 5\n"));
        assert!(text.contains("ferrowsgi_request_duration_seconds_sum 1.5\n"));
        assert!(text.contains("ferrowsgi_worker_restarts_total{cause=\"signal\"} 4\n"));
    }
}
