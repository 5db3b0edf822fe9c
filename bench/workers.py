"""The process model, measured.

``overhead``: CPU per request of ``-w 1`` (a master and one worker) against the
single process of ``ferrowsgi.serve()``, in interleaved rounds: the server pinned to
CPU 0, wrk to CPU 1, 50 keep-alive connections; CPU is the server's process tree
(utime + stime of every thread) over the run, divided by wrk's request count.

``spread``: two workers, unpinned, wrk on the same two cores: how the requests are
shared between the workers, and how many accept(2) calls found nothing (woken for a
connection another worker took) under a load of new connections (strace -c).

``reload``: a HUP under load (2 workers, flask_json, wrk with 50 keep-alive
connections, unpinned): errors, and wrk's p99 over a run with a HUP in its
middle against a run without one.

``memory``: memory (smaps_rollup: Rss, Pss, Private_*) of the master and each worker
of a ``--preload`` flask_json server with 4 workers, after some requests: ferrowsgi
against gunicorn's sync workers; and the Pss and private memory of the whole process
tree with 1 and with 4 workers, whose difference over 3 is what each extra worker
adds (medians of ``--rounds`` starts).

    python bench/workers.py overhead --rounds 4 --duration 5
    python bench/workers.py spread --duration 5
    python bench/workers.py reload --duration 6
    python bench/workers.py memory
    python bench/workers.py peers --rounds 3 --duration 5  (see workers_peers.py)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import workers_peers  # noqa: E402
from run import VENV_PY, spawn, tree_cpu_seconds  # noqa: E402
from run import stop as run_stop  # noqa: E402

HOST = "127.0.0.1"

SINGLE = (
    "import sys; sys.path.insert(0, {dir!r}); import ferrowsgi; "
    "from apps.{mod} import app; ferrowsgi.serve(app, bind=['{host}:{port}'])"
)

COUNTING_APP = """
import atexit
import os

count = 0
peers = set()


@atexit.register
def _report():
    with open(os.environ["COUNT_FILE"], "a") as f:
        f.write(f"{os.getpid()} {count} {len(peers)}\\n")


def app(environ, start_response):
    global count
    count += 1
    peers.add(environ.get("REMOTE_PORT"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not answer")


def start(mode: str, app: str, port: int, pin: str | None, cwd: Path, extra=()):
    if mode == "single":
        code = SINGLE.format(dir=str(cwd), mod=app, host=HOST, port=port)
        argv = [sys.executable, "-c", code]
    else:
        workers = {"w1": "1", "w2": "2", "w4": "4"}[mode]
        argv = [sys.executable, "-m", "ferrowsgi", f"apps.{app}:app", "-b", f"{HOST}:{port}"]
        argv += ["-w", workers, *extra]
    if pin:
        argv = ["taskset", "-c", pin, *argv]
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(
    port: int,
    duration: int,
    path: str = "/",
    script: str | None = None,
    pin: str | None = "1",
    conns: int = 50,
    extra: tuple[str, ...] = (),
) -> int:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", *extra]
    if script:
        argv += ["-s", str(BENCH_DIR / "lua" / script)]
    argv.append(f"http://{HOST}:{port}{path}")
    if pin:
        argv = ["taskset", "-c", pin, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print("  wrk:", errors.group(0))
    return int(m.group(1)) if m else 0


def overhead(args) -> None:
    apps = {
        "hello": ("hello", "/", None),
        "echo": ("echo", "/", "post.lua"),
        "flask_json": ("flask_json", "/", None),
    }
    for name in args.apps.split(","):
        mod, path, script = apps[name]
        results: dict[str, list[float]] = {"single": [], "w1": []}
        for r in range(args.rounds):
            order = ["single", "w1"] if r % 2 == 0 else ["w1", "single"]
            for mode in order:
                port = free_port()
                proc = start(mode, mod, port, "0", BENCH_DIR)
                try:
                    wrk(port, 1, path, script)  # warm up
                    cpu0 = tree_cpu_seconds(proc.pid)
                    n = wrk(port, args.duration, path, script)
                    cpu = tree_cpu_seconds(proc.pid) - cpu0
                finally:
                    stop(proc)
                results[mode].append(cpu / n * 1e6)
                print(
                    f"{name} round {r + 1} {mode:6}: {n / args.duration:8.0f} req/s "
                    f"{cpu / n * 1e6:6.2f} us CPU/request"
                )
        single = statistics.median(results["single"])
        w1 = statistics.median(results["w1"])
        print(
            f"{name}: median CPU/request single {single:.2f} us, -w 1 {w1:.2f} us "
            f"({(w1 / single - 1) * 100:+.1f}%)"
        )


def spread(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        Path(d, "apps").mkdir()
        Path(d, "apps", "__init__.py").write_text("")
        Path(d, "apps", "counting.py").write_text(COUNTING_APP)
        for label, extra in (
            ("keep-alive", ()),
            ("new connection per request", ("-H", "Connection: close")),
        ):
            port = free_port()
            os.environ["COUNT_FILE"] = str(Path(d, "counts"))
            proc = start("w2", "counting", port, None, Path(d))
            try:
                time.sleep(0.5)
                workers = [
                    int(p)
                    for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                ]
                tracer = None
                if args.strace and label != "keep-alive":
                    tracer = subprocess.Popen(
                        [
                            "strace",
                            "-f",
                            "-c",
                            "-e",
                            "trace=accept4,epoll_wait",
                            "-o",
                            f"{d}/strace",
                            *sum((["-p", str(w)] for w in workers), []),
                        ],
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(0.5)
                n = wrk(port, args.duration, "/", None, pin=None, extra=extra)
                if tracer:
                    tracer.send_signal(signal.SIGINT)
                    tracer.wait(20)
                stop(proc)
                # Each worker wrote its count as it left.
                counts = {}
                conns = {}
                for line in Path(d, "counts").read_text().split("\n"):
                    if line:
                        pid, count, peers = line.split()
                        counts[int(pid)] = int(count)
                        conns[int(pid)] = int(peers)
                Path(d, "counts").unlink()
                total = sum(counts.values())
                shares = ", ".join(
                    f"{c / total * 100:.1f}%" for c in sorted(counts.values(), reverse=True)
                )
                print(
                    f"{label}: {n / args.duration:.0f} req/s; per worker: {shares} "
                    f"(requests {counts}, client ports {conns})"
                )
                if tracer:
                    print(Path(f"{d}/strace").read_text())
            finally:
                stop(proc)


def wrk_latency(port: int, duration: int, path: str) -> tuple[int, str, str]:
    """(requests, p99, error lines) of a wrk run with --latency."""
    argv = ["wrk", "-t1", "-c50", f"-d{duration}s", "--latency", f"http://{HOST}:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)
    errors = "; ".join(re.findall(r"(?:Socket errors|Non-2xx or 3xx responses).*", out)) or "none"
    return n, p99, errors


def reload(args) -> None:
    for label, hup in (("steady", False), ("HUP at mid-run", True), ("steady", False)):
        port = free_port()
        proc = start("w2", "flask_json", port, None, BENCH_DIR)
        try:
            wrk(port, 1, "/", None, pin=None)  # warm up
            timer = None
            if hup:
                import threading

                timer = threading.Timer(args.duration / 2, proc.send_signal, (signal.SIGHUP,))
                timer.start()
            n, p99, errors = wrk_latency(port, args.duration, "/")
            if timer:
                timer.join()
            print(f"{label:15}: {n / args.duration:8.0f} req/s, p99 {p99}, errors: {errors}")
        finally:
            stop(proc)


def smaps(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in KiB (Rss, Pss, Private = Private_Clean + Private_Dirty)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":")
        fields[name] = int(value.split()[0])
    fields["Private"] = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields


def memory_argv(server: str, port: int, workers: int) -> list[str]:
    if server == "ferrowsgi":
        return [
            sys.executable,
            "-m",
            "ferrowsgi",
            "apps.flask_json:app",
            "-b",
            f"{HOST}:{port}",
        ] + [
            "-w",
            str(workers),
            "--preload",
        ]
    return [
        str(VENV_PY),
        *f"-m gunicorn -k sync -w {workers} --preload --log-level warning".split(),
        *("-b", f"{HOST}:{port}", "apps.flask_json:app"),
    ]


def memory(args) -> None:
    """Each process's memory after some requests, and what each extra worker adds."""
    totals: dict[tuple[str, int], list[int]] = {}
    with tempfile.TemporaryDirectory() as d:
        for rnd in range(args.rounds):
            for server in ("ferrowsgi", "gunicorn"):
                for workers in (1, 4):
                    port = free_port()
                    proc = spawn(memory_argv(server, port, workers), Path(d, "log"))
                    try:
                        wait_port(port, proc)
                        wrk(port, 2, "/", None, pin=None)
                        time.sleep(0.5)
                        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
                        rows = [("master", proc.pid)] + [("worker", int(k)) for k in kids.split()]
                        table = [(label, pid, smaps(pid)) for label, pid in rows]
                    finally:
                        run_stop(proc)
                    pss = sum(f["Pss"] for _, _, f in table)
                    private = sum(f["Private"] for _, _, f in table)
                    totals.setdefault((server, workers), []).append(pss)
                    totals.setdefault((server, -workers), []).append(private)
                    if rnd == 0:
                        print(
                            f"{server} --preload -w {workers}, flask_json, "
                            "after 2 s of wrk -c50 (KiB)"
                        )
                        print("| process | Rss | Pss | Private (clean+dirty) | Private_Dirty |")
                        print("|---|---:|---:|---:|---:|")
                        for label, _, f in table:
                            print(
                                f"| {label} | {f['Rss']:,} | {f['Pss']:,} | {f['Private']:,} "
                                f"| {f['Private_Dirty']:,} |"
                            )
                        print()
    print(
        "| server | Pss of all processes, -w 1 | -w 4 | each extra worker (Pss) |"
        " private, -w 1 | -w 4 | each extra worker (private) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for server in ("ferrowsgi", "gunicorn"):
        p1, p4 = (statistics.median(totals[(server, w)]) for w in (1, 4))
        v1, v4 = (statistics.median(totals[(server, -w)]) for w in (1, 4))
        print(
            f"| {server} | {p1:,.0f} | {p4:,.0f} | {(p4 - p1) / 3:,.0f} "
            f"| {v1:,.0f} | {v4:,.0f} | {(v4 - v1) / 3:,.0f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--rounds", type=int, default=4)
    o.add_argument("--duration", type=int, default=5)
    o.add_argument("--apps", default="hello,echo,flask_json")
    s = sub.add_parser("spread")
    s.add_argument("--duration", type=int, default=5)
    s.add_argument("--strace", action="store_true")
    r = sub.add_parser("reload")
    r.add_argument("--duration", type=int, default=6)
    m = sub.add_parser("memory")
    m.add_argument("--rounds", type=int, default=3)
    workers_peers.add_parser(sub)
    args = p.parse_args()
    commands = {"overhead": overhead, "spread": spread, "reload": reload, "memory": memory}
    commands["peers"] = workers_peers.peers
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
