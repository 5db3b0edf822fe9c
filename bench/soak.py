"""Soak ferrowsgi with normal keep-alive clients while slow and malformed clients attack it.

    python bench/soak.py [--duration 30] [--slowloris 1000] [--slow-readers 200] [--threads 4]
                         [--timeline]

Standard library only; all traffic goes to 127.0.0.1. The script

1. starts one ``python -m ferrowsgi apps.soak_app:app`` process (``--threads N``,
   ``--read-timeout 10 --write-timeout 10``, RLIMIT_NOFILE raised to its hard limit);
2. baseline: ``--clients`` keep-alive client threads (in their own process) GET / in a loop
   for ``--baseline`` seconds and record every request's latency;
3. attack: another process opens ``--slowloris`` connections that send a partial head and
   trickle one byte every ``--trickle`` seconds (reopened when the server closes them),
   ``--slow-readers`` connections with a 4 KiB receive buffer that read 16 bytes a second
   (reopened when the server closes them): a ``--stream-share`` of them (0.5) request /stream
   (16 MiB in 64 KiB blocks), the others pipeline ``--pipeline`` requests for /big (1 MiB
   each, so the answers outgrow the kernel's socket buffers), and a stream of malformed
   and smuggling requests (``--malformed-rate`` per second, one per connection); once every
   attacker is connected the normal clients run again for ``--duration`` seconds;
4. afterwards checks that the server still answers /, /big and /stream in full, that its
   descriptors went back down, and stops it (SIGINT, then SIGKILL after 35 s).

A slow reader's server-side socket is watched in /proc/net/tcp: the server closed it when
that socket leaves ESTABLISHED. Prints a table (``--timeline`` adds the normal clients' p99
and max for each second, to tell a steady tail from bursts); exit status 1 when a normal
request failed or the server is not healthy afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from serverproc import ServerProc

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
APP = "apps.soak_app:app"
BIG_SIZE = 1 << 20
STREAM_SIZE = 256 * 65536
MAX_LOOPS = 10_000_000  # upper bound for every "until the deadline" loop

# --------------------------------------------------------------------------------------------
# shared helpers


def raise_nofile() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (children inherit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def read_response(sock: socket.socket, max_body: int = 8 << 20) -> tuple[int, bytes, bool]:
    """One response with a Content-Length or chunked body: (status, body, server_closes)."""
    buf = b""
    for _ in range(10_000):
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the response head")
        buf += data
    else:
        raise ConnectionError("response head too long")
    head, rest = buf[:end].decode("latin-1"), buf[end + 4 :]
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    closes = "close" in headers.get("connection", "")
    if "content-length" in headers:
        n = int(headers["content-length"])
        for _ in range(max_body // 1024 + 10):
            if len(rest) >= n:
                break
            data = sock.recv(max(65536, n - len(rest)))
            if not data:
                raise ConnectionError("closed inside the body")
            rest += data
        return status, rest[:n], closes
    if headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        for _ in range(max_body // 16 + 10):
            while b"\r\n" not in rest:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed inside a chunked body")
                rest += data
            line, rest = rest.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed inside a chunk")
                rest += data
            if size == 0:
                return status, bytes(body), closes
            body += rest[:size]
            rest = rest[size + 2 :]
        raise ConnectionError("too many chunks")
    return status, rest, True


# --------------------------------------------------------------------------------------------
# role "normal": keep-alive clients measuring latency


def run_normal(port: int, clients: int, duration: float) -> dict:
    deadline = time.monotonic() + duration
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    reconnects = [0]
    timeline: list[tuple[float, float]] = []
    origin = time.perf_counter()

    def client() -> None:
        mine: list[float] = []
        starts: list[float] = []
        sock = None
        for _ in range(MAX_LOOPS):
            if time.monotonic() >= deadline:
                break
            try:
                if sock is None:
                    sock = socket.create_connection((HOST, port), timeout=10)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                t0 = time.perf_counter()
                sock.sendall(request)
                status, body, closes = read_response(sock)
                mine.append(time.perf_counter() - t0)
                starts.append(t0)
                if status != 200 or body != b"Hello, World!":
                    with lock:
                        errors.append(f"status {status}")
                if closes:  # --keep-alive-requests reached: not an error
                    sock.close()
                    sock = None
                    with lock:
                        reconnects[0] += 1
            except OSError as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
        if sock is not None:
            sock.close()
        with lock:
            latencies.extend(mine)
            timeline.extend(zip(starts, mine))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 30)
    lat = sorted(latencies)
    kinds: dict[str, int] = {}
    for e in errors:
        kinds[e] = kinds.get(e, 0) + 1
    return {
        "requests": len(lat),
        "errors": len(errors),
        "error_kinds": kinds,
        "reconnects": reconnects[0],
        "seconds": duration,
        "rps": len(lat) / duration,
        "p50_ms": percentile(lat, 50) * 1e3,
        "p90_ms": percentile(lat, 90) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "p999_ms": percentile(lat, 99.9) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "mean_ms": (statistics.fmean(lat) if lat else float("nan")) * 1e3,
        "timeline": by_second(timeline, origin),
    }


def by_second(samples: list[tuple[float, float]], origin: float) -> list[list[float]]:
    """Per second of the run (by request start): [second, requests, p99 ms, max ms]."""
    buckets: dict[int, list[float]] = {}
    for start, latency in samples:
        buckets.setdefault(int(start - origin), []).append(latency)
    rows = []
    for second in sorted(buckets):
        lat = sorted(buckets[second])
        rows.append([second, len(lat), percentile(lat, 99) * 1e3, lat[-1] * 1e3])
    return rows


# --------------------------------------------------------------------------------------------
# role "attack": slowloris, slow readers, malformed requests

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
# (name, raw request, expected status); the ones marked as smuggling carry a second request.
MALFORMED: list[tuple[str, bytes, int]] = [
    (
        "cl-te",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "te-cl",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 6\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "cl-cl",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n"
        b"hello" + SMUGGLED,
        400,
    ),
    (
        "te-space-colon",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "te-xchunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "te-chunked-identity",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, "
        b"identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "te-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "te-obs-fold",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "chunk-overflow",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10000000000000005\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    (
        "chunk-no-crlf",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED,
        400,
    ),
    ("cl-plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("nul-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("no-host", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment", b"GET /#x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad-version", b"GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    ("tls-hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32, 400),
    ("long-line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("many-fields", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-F: v\r\n" * 101 + b"\r\n", 431),
    ("long-field", b"GET / HTTP/1.1\r\nHost: a\r\nX-L: " + b"v" * 9000 + b"\r\n\r\n", 431),
    (
        "expect-bad",
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
        417,
    ),
    ("body-too-big", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000000\r\n\r\n", 413),
]


class Slowloris:
    HEAD = b"GET /?slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: soak\r\n"
    TRICKLE = b"X-Trickle-Header: still-coming\r\n"

    def __init__(self, sock: socket.socket, now: float, trickle: float, phase: float) -> None:
        self.sock = sock
        self.opened = now
        self.next_send = now + phase * trickle
        self.pos = 0


class SlowReader:
    def __init__(self, sock: socket.socket, now: float, path: str) -> None:
        self.sock = sock
        self.opened = now
        self.path = path
        self.received = 0
        self.port = sock.getsockname()[1]


def server_side_states(server_port: int) -> dict[int, int]:
    """client port -> TCP state of the server's end of that connection (/proc/net/tcp)."""
    out: dict[int, int] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, state = parts[1], parts[2], int(parts[3], 16)
            if int(local.split(":")[1], 16) == server_port:
                out[int(remote.split(":")[1], 16)] = state
    return out


ESTABLISHED = 1


def run_attack(port: int, args: argparse.Namespace, duration: float) -> dict:
    stats: dict = {
        "slowloris_opened": 0,
        "slowloris_closed_408": 0,
        "slowloris_closed_other_status": {},
        "slowloris_closed_silently": 0,
        "slowloris_open_at_end": 0,
        "slowloris_lifetimes": [],
        "slowloris_connect_errors": 0,
        "readers_opened": {"/big": 0, "/stream": 0},
        "readers_closed_by_server": {"/big": 0, "/stream": 0},
        "readers_open_at_end": 0,
        "reader_lifetimes": {"/big": [], "/stream": []},
        "reader_bytes_before_cut": [],
        "readers_completed": 0,
        "reader_connect_errors": 0,
    }
    mal: dict = {"sent": 0, "expected": 0, "by_status": {}, "mismatches": {}, "extra": 0}
    stop = threading.Event()

    def malformed_loop() -> None:
        interval = 1.0 / args.malformed_rate if args.malformed_rate > 0 else None
        if interval is None:
            return
        nxt = time.monotonic()
        for i in range(MAX_LOOPS):
            if stop.is_set():
                break
            name, raw, expect = MALFORMED[i % len(MALFORMED)]
            status, extra = -1, 0
            try:
                with socket.create_connection((HOST, port), timeout=5) as s:
                    s.sendall(raw)
                    data = b""
                    for _ in range(1000):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
                status = int(m.group(1)) if m else 0
                extra = max(0, len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", data)) - 1)
            except OSError:
                status = -1
            mal["sent"] += 1
            mal["by_status"][status] = mal["by_status"].get(status, 0) + 1
            mal["extra"] += extra
            if status == expect:
                mal["expected"] += 1
            else:
                key = f"{name}: {status}"
                mal["mismatches"][key] = mal["mismatches"].get(key, 0) + 1
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                stop.wait(delay)

    sel = selectors.DefaultSelector()
    loris: dict[socket.socket, Slowloris] = {}
    readers: dict[int, SlowReader] = {}

    def open_loris(now: float, phase: float) -> None:
        try:
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(Slowloris.HEAD)
            s.setblocking(False)
        except OSError:
            stats["slowloris_connect_errors"] += 1
            return
        loris[s] = Slowloris(s, now, args.trickle, phase)
        sel.register(s, selectors.EVENT_READ)
        stats["slowloris_opened"] += 1

    def close_loris(s: socket.socket, now: float, data: bytes) -> None:
        lo = loris.pop(s)
        sel.unregister(s)
        s.close()
        stats["slowloris_lifetimes"].append(now - lo.opened)
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
        if m and m.group(1) == b"408":
            stats["slowloris_closed_408"] += 1
        elif m:
            other = stats["slowloris_closed_other_status"]
            other[m.group(1).decode()] = other.get(m.group(1).decode(), 0) + 1
        else:
            stats["slowloris_closed_silently"] += 1

    def open_reader(now: float, i: int) -> None:
        path = "/stream" if (i * args.stream_share) % 1 + args.stream_share >= 1 else "/big"
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5)
            s.connect((HOST, port))
            req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            s.sendall(req * (args.pipeline if path == "/big" else 1))
            s.setblocking(False)
        except OSError:
            stats["reader_connect_errors"] += 1
            return
        r = SlowReader(s, now, path)
        readers[r.port] = r
        stats["readers_opened"][path] += 1

    def drain(sock: socket.socket, limit: float) -> tuple[int, bool]:
        """Read what is left quickly; (bytes, reached EOF)."""
        sock.settimeout(0.5)
        n, end = 0, time.monotonic() + limit
        for _ in range(100_000):
            if time.monotonic() > end:
                return n, False
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                return n, False
            except OSError:
                return n, True
            if not data:
                return n, True
            n += len(data)
        return n, False

    t_start = time.monotonic()
    # Ramp: open everything, spread over about 2 s, trickle phases spread out.
    for i in range(args.slowloris):
        open_loris(time.monotonic(), (i % 97) / 97)
        if i % 100 == 99:
            time.sleep(0.05)
    for i in range(args.slow_readers):
        open_reader(time.monotonic(), i)
    ramp = time.monotonic() - t_start
    print(json.dumps({"ready": True, "ramp_s": ramp}), flush=True)
    mal_thread = threading.Thread(target=malformed_loop, daemon=True)
    mal_thread.start()

    deadline = time.monotonic() + duration
    next_read = time.monotonic() + 1.0
    reader_counter = args.slow_readers
    for _ in range(MAX_LOOPS):
        now = time.monotonic()
        if now >= deadline:
            break
        timeout = max(0.0, min(0.2, deadline - now))
        for key, _ev in sel.select(timeout):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            close_loris(s, time.monotonic(), data)
            if time.monotonic() < deadline - 1:
                open_loris(time.monotonic(), 0.0)
        now = time.monotonic()
        for s, lo in list(loris.items()):
            if now >= lo.next_send:
                byte = Slowloris.TRICKLE[lo.pos % len(Slowloris.TRICKLE)]
                try:
                    s.send(bytes([byte]))
                    lo.pos += 1
                except BlockingIOError:
                    pass
                except OSError:
                    pass  # the read side reports the close
                lo.next_send = now + args.trickle
        if now >= next_read:
            next_read = now + 1.0
            states = server_side_states(port)
            for rport, r in list(readers.items()):
                try:
                    data = r.sock.recv(16)
                    r.received += len(data)
                    eof = not data
                except BlockingIOError:
                    eof = False
                except OSError:
                    eof = True
                server_closed = states.get(rport, 0) != ESTABLISHED
                if not (eof or server_closed):
                    continue
                n, _ = drain(r.sock, 2.0)
                r.received += n
                r.sock.close()
                del readers[rport]
                full = BIG_SIZE * args.pipeline if r.path == "/big" else STREAM_SIZE
                if r.received > full:
                    stats["readers_completed"] += 1
                else:
                    stats["readers_closed_by_server"][r.path] += 1
                    stats["reader_lifetimes"][r.path].append(time.monotonic() - r.opened)
                    stats["reader_bytes_before_cut"].append(r.received)
                if time.monotonic() < deadline - 1:
                    open_reader(time.monotonic(), reader_counter)
                    reader_counter += 1
    stop.set()
    mal_thread.join(10)
    stats["slowloris_open_at_end"] = len(loris)
    stats["readers_open_at_end"] = len(readers)
    for s in list(loris):
        sel.unregister(s)
        s.close()
    for r in readers.values():
        r.sock.close()
    sel.close()
    for key in ("slowloris_lifetimes",):
        v = sorted(stats[key])
        stats[key] = {"n": len(v), "p50": percentile(v, 50), "max": v[-1] if v else None}
    for path, v in stats["reader_lifetimes"].items():
        v = sorted(v)
        stats["reader_lifetimes"][path] = {
            "n": len(v),
            "p50": percentile(v, 50),
            "max": v[-1] if v else None,
        }
    v = sorted(stats["reader_bytes_before_cut"])
    stats["reader_bytes_before_cut"] = {"p50": percentile(v, 50), "max": v[-1] if v else None}
    stats["malformed"] = mal
    stats["ramp_s"] = ramp
    return stats


# --------------------------------------------------------------------------------------------
# the orchestrator


class SoakServer(ServerProc):
    def __init__(self, threads: int, log_path: Path) -> None:
        args = ["--threads", str(threads), "--read-timeout", "10", "--write-timeout", "10"]
        super().__init__(APP, args, log_path, "soak")

    def nofile(self) -> str:
        with open(f"/proc/{self.proc.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return line.split()[3]
        return "?"


class Sampler(threading.Thread):
    """Samples the server's RSS and descriptor count every 0.2 s."""

    def __init__(self, server: SoakServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop_event = threading.Event()
        self.peak_rss = 0.0
        self.peak_fds = 0

    def run(self) -> None:
        for _ in range(MAX_LOOPS):
            if self.stop_event.wait(0.2):
                break
            try:
                self.peak_rss = max(self.peak_rss, self.server.rss_mib())
                self.peak_fds = max(self.peak_fds, self.server.fds())
            except OSError:
                break


def role_cmd(role: str, port: int, args: argparse.Namespace, duration: float) -> list[str]:
    return [
        sys.executable, __file__, "--role", role, "--port", str(port),
        "--duration", str(duration), "--clients", str(args.clients),
        "--slowloris", str(args.slowloris), "--slow-readers", str(args.slow_readers),
        "--trickle", str(args.trickle), "--malformed-rate", str(args.malformed_rate),
        "--pipeline", str(args.pipeline), "--stream-share", str(args.stream_share),
    ]  # fmt: skip


def run_role(role: str, port: int, args: argparse.Namespace, duration: float) -> dict:
    out = subprocess.run(
        role_cmd(role, port, args, duration),
        capture_output=True,
        text=True,
        timeout=duration + 120,
    )
    if out.returncode != 0:
        raise SystemExit(f"soak: {role} clients failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def health(port: int) -> dict:
    result = {}
    for path, size in (("/", 13), ("/big", BIG_SIZE), ("/stream", STREAM_SIZE)):
        try:
            with socket.create_connection((HOST, port), timeout=10) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                status, body, _ = read_response(s)
            result[path] = status == 200 and len(body) == size
        except OSError as e:
            result[path] = f"{type(e).__name__}: {e}"
    return result


def wait_fds(server: ServerProc, target: int, limit: float) -> int:
    deadline = time.monotonic() + limit
    fds = server.fds()
    for _ in range(1000):
        fds = server.fds()
        if fds <= target or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    return fds


def log_counts(text: str) -> dict:
    return {
        "rejected 408": len(re.findall(r"rejected: 408 ", text)),
        "rejected other 4xx": len(re.findall(r"rejected: 4(?!08)\d\d ", text)),
        "rejected 5xx": len(re.findall(r"rejected: 5\d\d ", text)),
        "ERROR lines": text.count("[ERROR]"),
        "WARNING lines": text.count("[WARNING]"),
        "panics": text.count("panic"),
    }


def fmt(x: float) -> str:
    return f"{x:.2f}"


def orchestrate(args: argparse.Namespace) -> int:
    nofile = raise_nofile()
    need = args.slowloris + args.slow_readers + args.clients + 100
    if nofile < need:
        raise SystemExit(f"soak: RLIMIT_NOFILE {nofile} < {need} needed")
    workdir = Path(tempfile.mkdtemp(prefix="ferrowsgi-soak-"))
    server = SoakServer(args.threads, workdir / "server.log")
    sampler = Sampler(server)
    try:
        load0 = os.getloadavg()
        health(server.port)  # warm up
        rss0, fds0 = server.rss_mib(), server.fds()
        print(
            f"server pid {server.proc.pid} port {server.port}, nofile {server.nofile()}, "
            f"RSS {rss0:.1f} MiB, {fds0} fds; baseline {args.baseline:g} s ...",
            flush=True,
        )
        base = run_role("normal", server.port, args, args.baseline)
        rss_base = server.rss_mib()
        print(
            f"baseline: {base['requests']} requests, p99 {base['p99_ms']:.2f} ms; "
            f"attack ramp + {args.duration:g} s ...",
            flush=True,
        )
        sampler.start()
        attack = subprocess.Popen(
            role_cmd("attack", server.port, args, args.duration + 2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with selectors.DefaultSelector() as wait:  # the ramp, at most 120 s
                wait.register(attack.stdout, selectors.EVENT_READ)
                ready_line = attack.stdout.readline() if wait.select(120) else ""
            if not ready_line:
                raise SystemExit(f"soak: attackers failed:\n{attack.stderr.read()[-3000:]}")
            ready = json.loads(ready_line)
            time.sleep(1)  # let the first trickles and malformed requests start
            fds_attack = server.fds()
            under = run_role("normal", server.port, args, args.duration)
            out, err = attack.communicate(timeout=args.duration + 60)
        finally:
            if attack.poll() is None:
                attack.kill()
                attack.wait(5)
        if attack.returncode != 0:
            raise SystemExit(f"soak: attackers failed:\n{err[-3000:]}")
        atk = json.loads(out.strip().splitlines()[-1])
        rss_peak_attack = sampler.peak_rss
        sampler.stop_event.set()
        sampler.join(2)
        fds_after = wait_fds(server, fds0 + 2, 15)
        time.sleep(1)
        rss1 = server.rss_mib()
        healthy = health(server.port)
        load1 = os.getloadavg()
        alive = server.alive()
    finally:
        sampler.stop_event.set()
        rc = server.stop()
    logs = log_counts((workdir / "server.log").read_text(errors="replace"))
    if args.keep_log:
        shutil.copy(workdir / "server.log", args.keep_log)
    shutil.rmtree(workdir, ignore_errors=True)

    mal = atk["malformed"]
    ok = (
        base["errors"] == 0
        and under["errors"] == 0
        and alive
        and all(v is True for v in healthy.values())
    )
    ratio = under["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
    rows = [
        ("", "baseline", "under attack"),
        ("seconds", fmt(base["seconds"]), fmt(under["seconds"])),
        ("normal requests", str(base["requests"]), str(under["requests"])),
        ("normal req/s", f"{base['rps']:.0f}", f"{under['rps']:.0f}"),
        ("normal errors", str(base["errors"]), str(under["errors"])),
        ("p50 ms", fmt(base["p50_ms"]), fmt(under["p50_ms"])),
        ("p90 ms", fmt(base["p90_ms"]), fmt(under["p90_ms"])),
        ("p99 ms", fmt(base["p99_ms"]), fmt(under["p99_ms"])),
        ("p99.9 ms", fmt(base["p999_ms"]), fmt(under["p999_ms"])),
        ("max ms", fmt(base["max_ms"]), fmt(under["max_ms"])),
        ("server RSS MiB", f"{rss0:.1f} -> {rss_base:.1f}",
         f"peak {rss_peak_attack:.1f}, after {rss1:.1f}"),
        ("server fds", str(fds0), f"{fds_attack} at start, peak {sampler.peak_fds}, "
         f"after {fds_after}"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print()
    print(
        f"ferrowsgi soak: --threads {args.threads}, {args.clients} normal clients, "
        f"{args.slowloris} slowloris, {args.slow_readers} slow readers, "
        f"{args.malformed_rate:g} malformed/s; --read-timeout 10 --write-timeout 10"
    )
    for a, b, c in rows:
        print(f"  {a:<{width}}  {b:>16}  {c}")
    print(
        f"  p99 ratio under attack / baseline: {ratio:.2f} (goal <= 2: "
        f"{'met' if ratio <= 2 else 'MISSED'})"
    )
    if args.timeline:
        for name, run in (("baseline", base), ("under attack", under)):
            cells = ", ".join(
                f"{int(sec)}s {n} {p99:.1f}/{mx:.0f}" for sec, n, p99, mx in run["timeline"]
            )
            print(f"  {name} by second (requests p99/max ms): {cells}")
    if base["error_kinds"] or under["error_kinds"]:
        print(f"  normal error kinds: {base['error_kinds']} / {under['error_kinds']}")
    lt = atk["slowloris_lifetimes"]
    print(
        f"  slowloris: opened {atk['slowloris_opened']} (ramp {ready['ramp_s']:.1f} s), "
        f"closed by the server with 408: {atk['slowloris_closed_408']}, with another status: "
        f"{atk['slowloris_closed_other_status'] or 0}, silently: "
        f"{atk['slowloris_closed_silently']}; lifetime p50 {lt['p50']:.1f} s, max "
        f"{(lt['max'] or 0):.1f} s; still open at the end: {atk['slowloris_open_at_end']}, "
        f"connect errors: {atk['slowloris_connect_errors']}"
    )
    rl = atk["reader_lifetimes"]
    print(
        f"  slow readers: opened {atk['readers_opened']}, closed by the server "
        f"{atk['readers_closed_by_server']} (lifetime p50 /big "
        f"{rl['/big']['p50']:.1f} s, /stream {rl['/stream']['p50']:.1f} s; bytes read before "
        f"the cut p50 {atk['reader_bytes_before_cut']['p50']:.0f}), completed "
        f"{atk['readers_completed']}, still open at the end {atk['readers_open_at_end']}, "
        f"connect errors {atk['reader_connect_errors']}"
    )
    print(
        f"  malformed: sent {mal['sent']}, answered with the expected status "
        f"{mal['expected']}, by status {mal['by_status']}, extra responses (smuggled) "
        f"{mal['extra']}, mismatches {mal['mismatches'] or 'none'}"
    )
    print(f"  server log: {logs}")
    print(f"  healthy afterwards: {healthy}, process alive: {alive}, exit status {rc}")
    print(
        f"  load average before {load0[0]:.2f}, after {load1[0]:.2f} "
        f"({os.cpu_count()} CPUs, shared)"
    )
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=30, help="attack phase seconds (30)")
    p.add_argument("--baseline", type=float, default=10, help="baseline seconds (10)")
    p.add_argument("--slowloris", type=int, default=1000)
    p.add_argument("--slow-readers", type=int, default=200)
    p.add_argument("--threads", type=int, default=4, help="server application threads (4)")
    p.add_argument("--clients", type=int, default=8, help="normal client threads (8)")
    p.add_argument("--trickle", type=float, default=3.0, help="slowloris byte interval (3 s)")
    p.add_argument("--malformed-rate", type=float, default=50, help="malformed requests/s (50)")
    p.add_argument("--pipeline", type=int, default=8, help="/big requests per slow reader (8)")
    p.add_argument("--stream-share", type=float, default=0.5, help="slow readers on /stream")
    p.add_argument("--timeline", action="store_true", help="print p99 and max per second")
    p.add_argument("--keep-log", metavar="PATH", help="copy the server log here")
    p.add_argument("--role", choices=["normal", "attack"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 0 < args.duration <= 3600 or not 0 < args.baseline <= 3600:
        p.error("--duration and --baseline must be in (0, 3600]")
    if not 0 <= args.stream_share <= 1 or args.pipeline < 1:
        p.error("--stream-share must be in [0, 1] and --pipeline at least 1")
    if args.role == "normal":
        print(json.dumps(run_normal(args.port, args.clients, args.duration)))
        return 0
    if args.role == "attack":
        raise_nofile()
        print(json.dumps(run_attack(args.port, args, args.duration)), flush=True)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
