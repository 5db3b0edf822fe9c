"""Alternating A/B runs: server CPU per request for two or more servers, taken in turns.

    python bench/ab.py [--rounds 6] [--duration 5] [--path /] [--header "Connection: close"]
                       [--connections 50] [--lua post.lua --lua-arg 8388608]
                       NAME=COMMAND [NAME=COMMAND ...]

Each COMMAND starts one server; the word PORT in it is replaced by a free port, and it runs
from bench/ pinned to CPU 0. In every round each server in turn is started, warmed up with
2 s of wrk, measured with ``wrk -t1 -c50 -d DURATION`` pinned to CPU 1 (127.0.0.1 only;
``--connections`` sets -c, ``--lua`` a script from bench/lua/ with its ``--lua-arg`` values),
and stopped. Server CPU is utime+stime of all its threads and child processes (granian's
worker) from /proc, divided by the requests wrk completed. On a shared machine single runs
swing widely; taking the servers in turns, round after round, lets each round's ratio and
the medians be compared. Prints one line per server with every round's figure and the
median, then each round's ratio to the first server; the same for wrk's p99 latency and
requests/s. Standard library only; needs wrk and taskset.

Example (flask_json, as in docs/PERFORMANCE.md):

    python bench/ab.py \\
        "ferrowsgi=.venv/bin/python -m ferrowsgi apps.flask_json:app --bind 127.0.0.1:PORT" \\
        "bjoern=.venv/bin/python launch.py bjoern apps.flask_json:app 127.0.0.1 PORT 1"
"""

from __future__ import annotations

import argparse
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import tree_cpu_seconds

BENCH_DIR = Path(__file__).resolve().parent
WARMUP_S = 2
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"ab.py: the server exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"ab.py: nothing listens on port {port} after {START_TIMEOUT_S} s")


WRK_EXTRA: list[str] = []  # --header and --lua: wrk arguments for every run
WRK_SCRIPT_ARGS: list[str] = []  # --lua-arg: after the URL and "--"
CONNECTIONS = [50]  # --connections


def wrk(port: int, path: str, seconds: float) -> str:
    argv = ["taskset", "-c", "1", "wrk", "--latency", "-t1", f"-c{CONNECTIONS[0]}"]
    argv += [f"-d{seconds:g}s", *WRK_EXTRA, f"http://127.0.0.1:{port}{path}"]
    if WRK_SCRIPT_ARGS:
        argv += ["--", *WRK_SCRIPT_ARGS]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    return r.stdout


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def p99_ms(out: str) -> float:
    """wrk's 99th percentile latency in ms (NaN when absent)."""
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(m.group(1)) * UNITS_MS[m.group(2)] if m else float("nan")


def measure(command: str, path: str, seconds: float) -> tuple[float, float, float]:
    """CPU µs per request, p99 latency (ms) and requests/s of one server run."""
    port = free_port()
    argv = ["taskset", "-c", "0", *shlex.split(command.replace("PORT", str(port)))]
    proc = subprocess.Popen(
        argv, cwd=BENCH_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port, proc)
        wrk(port, path, WARMUP_S)
        before = tree_cpu_seconds(proc.pid)
        out = wrk(port, path, seconds)
        after = tree_cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    m = re.search(r"(\d+) requests in", out)
    if not m or int(m.group(1)) == 0:
        sys.exit(f"ab.py: wrk completed no requests against {command!r}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    per_s = float(rate.group(1)) if rate else float("nan")
    return (after - before) / int(m.group(1)) * 1e6, p99_ms(out), per_s


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--path", default="/")
    p.add_argument(
        "--header", action="append", default=[], help="extra request header for wrk (repeatable)"
    )
    p.add_argument("--connections", type=int, default=50, help="wrk -c")
    p.add_argument("--lua", help="wrk script in bench/lua/ (post.lua: POST a body)")
    p.add_argument("--lua-arg", action="append", default=[], help="argument for the script")
    p.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    args = p.parse_args(argv)
    for header in args.header:
        WRK_EXTRA.extend(["-H", header])
    if args.lua:
        script = BENCH_DIR / "lua" / args.lua
        if not script.is_file():
            p.error(f"--lua {args.lua}: no such script in {script.parent}")
        WRK_EXTRA.extend(["-s", str(script)])
    elif args.lua_arg:
        p.error("--lua-arg needs --lua")
    WRK_SCRIPT_ARGS.extend(args.lua_arg)
    if args.connections < 1:
        p.error("--connections must be at least 1")
    CONNECTIONS[0] = args.connections
    specs = []
    for spec in args.servers:
        name, sep, command = spec.partition("=")
        if not sep or not name or "PORT" not in command:
            p.error(f"{spec!r}: expected NAME=COMMAND with PORT in the command")
        specs.append((name, command))
    results: dict[str, list[float]] = {name: [] for name, _ in specs}
    tails: dict[str, list[float]] = {name: [] for name, _ in specs}
    rates: dict[str, list[float]] = {name: [] for name, _ in specs}
    for _ in range(args.rounds):
        for name, command in specs:
            cpu, p99, per_s = measure(command, args.path, args.duration)
            results[name].append(cpu)
            tails[name].append(p99)
            rates[name].append(per_s)
    first, *others = specs
    for title, table, fmt in (
        ("server CPU µs per request", results, "7.1f"),
        ("p99 latency ms", tails, "7.2f"),
        ("requests/s", rates, "7.0f"),
    ):
        width = max(len(name) for name in table) + len(first[0]) + 3
        print(f"{title}, {args.rounds} rounds taken in turns")
        for name, values in table.items():
            row = " ".join(f"{v:{fmt}}" for v in values)
            print(f"{name:<{width}}  {row}   median {statistics.median(values):{fmt}}")
        for name, _ in others:
            # A figure wrk did not give (p99 through the pipelining script) is 0.
            ratios = [b / a if a else None for a, b in zip(table[first[0]], table[name])]
            row = " ".join("      —" if r is None else f"{r:7.2f}" for r in ratios)
            print(f"{name + ' / ' + first[0]:<{width}}  {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
