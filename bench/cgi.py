"""Time per request of ``ferrowsgi cgi`` against wsgiref's CGIHandler, for a hello app.

    python bench/cgi.py [--runs N]

A CGI program is started for every request, so process start-up decides its cost. Each
round runs both programs once, in alternating order, with the same CGI environment (a GET of
/hello) and checks that each answered 200 with the hello body; the rounds are interleaved so
that a change in the machine's load falls on both alike. Prints, per program, the median and
mean wall-clock time and the mean CPU time (user + system of the child) per request, and one
JSON line with the same numbers. With ``--instructions``, each program also runs once under
valgrind's callgrind, whose count of user-space instructions does not depend on the
machine's load (the VM has no hardware counters for ``perf stat``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FERROWSGI = str(Path(sys.executable).parent / "ferrowsgi")

ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "GATEWAY_INTERFACE": "CGI/1.1",
    "SERVER_SOFTWARE": "bench",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "/cgi-bin/hello",
    "PATH_INFO": "/hello",
    "QUERY_STRING": "",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1",
}

PROGRAMS = {
    "ferrowsgi cgi": [FERROWSGI, "cgi", "apps.hello:app"],
    "wsgiref CGIHandler": [
        sys.executable,
        "-c",
        "import wsgiref.handlers; from apps.hello import app; "
        "wsgiref.handlers.CGIHandler().run(app)",
    ],
}


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one request."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=BENCH, env=ENV, capture_output=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if b"200 OK" not in proc.stdout.split(b"\r\n", 1)[0] or not proc.stdout.endswith(b"!"):
        raise SystemExit(f"{argv[0]}: unexpected response {proc.stdout!r} {proc.stderr!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def instructions(argv: list[str]) -> int:
    """User-space instructions of one request, counted by callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
        subprocess.run(cmd, cwd=BENCH, env=ENV, capture_output=True, check=True)
        with open(out) as f:
            for line in f:
                if line.startswith("summary:"):
                    return int(line.split()[1])
    raise SystemExit("callgrind wrote no summary")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    args = parser.parse_args()
    names = list(PROGRAMS)
    for name in names:  # warm the page cache and the bytecode caches
        run_once(PROGRAMS[name])
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.runs):
        for name in names if i % 2 == 0 else reversed(names):
            wall, cpu = run_once(PROGRAMS[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    result = {}
    for name in names:
        result[name] = {
            "runs": args.runs,
            "wall_median_ms": round(statistics.median(walls[name]) * 1000, 2),
            "wall_mean_ms": round(statistics.mean(walls[name]) * 1000, 2),
            "cpu_mean_ms": round(statistics.mean(cpus[name]) * 1000, 2),
        }
        if args.instructions:
            result[name]["instructions_m"] = round(instructions(PROGRAMS[name]) / 1e6, 1)
        r = result[name]
        print(
            f"{name:20} median {r['wall_median_ms']:7.2f} ms  mean {r['wall_mean_ms']:7.2f} ms"
            f"  cpu {r['cpu_mean_ms']:7.2f} ms  ({args.runs} runs)"
            + (f"  {r['instructions_m']} M instructions" if args.instructions else "")
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
