"""User-space instructions per request, counted by valgrind's callgrind.

    python bench/instructions.py [--server ferrowsgi] [--app apps.hello:app]
                                 [--low 300] [--high 900] [--option=--timeout=0 ...]
                                 [--body BYTES] [--python PATH]

The VM this project is measured on exposes no hardware counter, so `perf stat -e
instructions` cannot count; callgrind can (user space only: the kernel's share, most of a
hello request's time, is not in it). The server runs under callgrind twice, serving LOW and
then HIGH keep-alive requests on one connection (both below --keep-alive-requests), and the
difference of the two totals divided by HIGH - LOW is the cost of one request without the
start-up and shutdown. Per shared object and the top functions are printed from the same
difference, and so are the calls per request to the allocator (malloc, free, realloc,
calloc) and to memcpy/memmove. ``--server`` counts a peer instead (one that bench/launch.py
starts, such as fastwsgi or bjoern), so that the user-space work of two servers around the
same application can be set side by side without the machine's noise. ``--body N`` sends
POST requests with an N-byte body instead (for ``apps.echo:app``, whose answer is the
body's length). Needs valgrind (Debian package) and the bench virtual environment
(bench/.venv, made by run.py), or ``--python`` naming another interpreter with ferrowsgi
installed (a development build's virtual environment); takes a few minutes.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV_PY = BENCH_DIR / ".venv" / "bin" / "python"
LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drive(port: int, n: int, expect: bytes, body: int = 0) -> None:
    """Send ``n`` requests on one keep-alive connection, each after the previous answer.

    GET / without a body, or with ``body`` > 0 a POST / carrying that many bytes.
    """
    deadline = time.monotonic() + 120
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("the server under valgrind did not start")
            time.sleep(0.2)
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    if body:
        request = (
            b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
            + f"Content-Length: {body}\r\n\r\n".encode()
            + b"x" * body
        )
    with sock:
        for i in range(n):
            sock.sendall(request)
            buf = b""
            while expect not in buf:
                data = sock.recv(65536)
                if not data:
                    sys.exit(f"connection closed after {i} answers")
                buf += data


def profile(
    server: str,
    app: str,
    n: int,
    out: Path,
    expect: bytes,
    options: list[str] | None = None,
    body: int = 0,
    python: Path = VENV_PY,
) -> None:
    port = free_port()
    # One file per process (%p): under a master, the worker is the process
    # that serves, the one forked last (the highest pid).
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", str(python)]
    if server == "ferrowsgi":
        argv += ["-m", "ferrowsgi", app, "--bind", f"127.0.0.1:{port}", *(options or [])]
    else:
        argv += ["launch.py", server, app, "127.0.0.1", str(port)]
    # A fixed hash seed: string hashes, and with them the probing of every
    # dict the request fills, are then the same from run to run (with random
    # seeds libpython's count alone moved by some 300 instructions).
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        argv, cwd=BENCH_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        drive(port, n, expect, body)
        # ferrowsgi stops on SIGINT; a peer that ignores it is ended with
        # SIGTERM, which callgrind also dumps its counts for.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def costs(path: Path) -> tuple[int, collections.Counter, collections.Counter]:
    """Total, per object and per function, from callgrind_annotate's exclusive listing."""
    text = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = 0
    objs: collections.Counter = collections.Counter()
    funcs: collections.Counter = collections.Counter()
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        if rest.startswith("PROGRAM TOTALS"):
            total = n
            continue
        obj = "?"
        if rest.endswith("]") and " [" in rest:
            rest, obj = rest.rsplit(" [", 1)
            obj = os.path.basename(obj[:-1])
        func = rest.split(":", 1)[1] if ":" in rest else rest
        if obj == "?" and "::" in func:
            # Rust functions whose line callgrind printed without the object.
            obj = "Rust, object not recorded (the extension)"
        objs[obj] += n
        funcs[(obj, func)] += n
    return total, objs, funcs


# The allocator's entry points and the copy functions whose calls are counted.
COUNTED = re.compile(r"^(malloc|free|realloc|calloc|__memcpy\w*|__memmove\w*|memcpy|memmove)$")
NAMED = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")


def calls(path: Path) -> collections.Counter:
    """Calls made to the functions COUNTED matches, from the callgrind file's call lines.

    Names are compressed in the file: ``cfn=(id) name`` the first time, ``cfn=(id)``
    after; each ``calls=N ...`` line counts N calls to the function the last ``cfn``
    named.
    """
    names: dict[str, str] = {}
    counted: collections.Counter = collections.Counter()
    callee = ""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = NAMED.match(line.rstrip("\n"))
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("cfn="):
                    callee = names.get(m.group(1), "")
                continue
            if line.startswith("calls=") and COUNTED.match(callee):
                counted[callee] += int(line[6:].split()[0])
    return counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--server",
        default="ferrowsgi",
        help="ferrowsgi, or a server that launch.py starts (bjoern, fastwsgi, meinheld, ...)",
    )
    ap.add_argument("--app", default="apps.hello:app")
    ap.add_argument("--expect", default="Hello, World!", help="text every answer contains")
    ap.add_argument("--low", type=int, default=300)
    ap.add_argument("--high", type=int, default=900)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument(
        "--body",
        type=int,
        default=0,
        help="send POST requests with a body of this many bytes instead of GET (for apps.echo:app)",
    )
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        help="a command-line option for ferrowsgi (repeat; e.g. --option=--timeout=0)",
    )
    ap.add_argument(
        "--python",
        # Made absolute (the server runs from bench/) but not resolved: a
        # virtual environment's interpreter is a symlink that must stay one.
        type=lambda p: Path(os.path.abspath(p)),
        default=VENV_PY,
        help="the interpreter that runs the server (default: bench/.venv's)",
    )
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        sys.exit("instructions.py: valgrind is not installed (apt-get install valgrind)")
    if not args.python.exists():
        sys.exit(f"instructions.py: no {args.python}; run `python bench/run.py` once first")
    with tempfile.TemporaryDirectory() as d:
        results = []
        counts: list[collections.Counter] = []
        for n in (args.low, args.high):
            out = Path(d) / f"callgrind.{n}.out"
            profile(
                args.server,
                args.app,
                n,
                out,
                args.expect.encode(),
                args.option,
                args.body,
                args.python,
            )
            files = sorted(Path(d).glob(f"callgrind.{n}.out.*"))
            worker = max(files, key=lambda f: int(f.suffix.lstrip(".")))
            results.append(costs(worker))
            counts.append(calls(worker))
    (t1, o1, f1), (t2, o2, f2) = results
    per = args.high - args.low
    each = (t2 - t1) / per
    print(f"{args.server}, app {args.app}: {each:,.0f} user-space instructions per request")
    print(f"(callgrind totals {t1:,} for {args.low} requests, {t2:,} for {args.high})")
    print("\nper shared object (instructions per request):")
    for obj in sorted(o2, key=lambda k: -(o2[k] - o1[k])):
        d = (o2[obj] - o1[obj]) / per
        if abs(d) >= 20:
            print(f"  {d:8,.0f}  {obj}")
    print("\ncalls per request (allocator and copies):")
    for name in sorted(counts[1], key=lambda k: -(counts[1][k] - counts[0][k])):
        print(f"  {(counts[1][name] - counts[0][name]) / per:8,.2f}  {name}")
    print(f"\ntop {args.top} functions (instructions per request):")
    ranked = sorted(f2, key=lambda k: -(f2[k] - f1[k]))[: args.top]
    for key in ranked:
        print(f"  {(f2[key] - f1[key]) / per:8,.0f}  {key[0]}: {key[1][:90]}")


if __name__ == "__main__":
    main()
