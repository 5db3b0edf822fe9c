#!/usr/bin/env python3
"""The thread dimension of the benchmark: each workload with 1 and with 8 application threads.

    python bench/threads.py [--rounds 3] [--duration 5] [--threads 1,8]
                            [--servers ferrowsgi,gunicorn-gthread,...] [--workloads hello,...]
                            [--single bjoern] [--counts] [--no-install] [--write-docs]

For each round, every (server, threads) cell of each workload runs once, in turns, so that a
slow spell of the machine falls on all of them alike; the tables show the median of the rounds
and, for ferrowsgi, the ratio of its N-thread figures to its 1-thread ones per round. Servers,
workloads, the server start, warm-up, wrk run and CPU accounting are run.py's (bench_one); only
the thread count changes. Every server that has application threads takes part: ferrowsgi
(`--threads`), gunicorn's gthread worker, granian's blocking threads, uWSGI `--threads`,
waitress and cheroot. Servers without application threads (`--single`, bjoern by default)
run beside them with their one thread, so that the tables also show the best server overall.

--counts adds, for ferrowsgi in each thread mode, what one request costs in events: GIL
acquisitions and releases (uprobes on libpython's take_gil and drop_gil, the functions every
acquisition and release goes through, including the forced switches of the eval loop), futex
calls (the syscalls:sys_enter_futex tracepoint) and context switches (voluntary and not, from
/proc/PID/task/*/status before and after). These runs are separate from the timed ones, since
a uprobe costs a few µs per hit. They need `perf` and root.

The results go to bench/results/STAMP-threads/ and, with --write-docs, into the section
between the THREADS markers of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the bench's own module, found through the line above)

THREADED = ("ferrowsgi", "gunicorn-gthread", "granian", "uwsgi", "waitress", "cheroot")
WORKLOADS = ("hello", "echo", "flask_json", "django", "sleep")
MARK_BEGIN = "<!-- THREADS BEGIN (bench/threads.py --write-docs) -->"
MARK_END = "<!-- THREADS END -->"
COUNT_SECONDS = 4
PROBES = ("take_gil", "drop_gil")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each cell once)")
    p.add_argument("--duration", type=int, default=5, help="seconds of measured load per cell")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    p.add_argument("--threads", default="1,8", help="comma list of thread counts")
    p.add_argument("--servers", default=",".join(THREADED), help="comma list of servers")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma list of workloads")
    p.add_argument(
        "--single",
        default="bjoern",
        help="comma list of servers without application threads, run beside the others with "
        "one (so that the tables also show the best server overall, threads or not; '' for none)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=3.0,
        help="seconds to wait for an idle machine before each cell (0: do not wait)",
    )
    p.add_argument("--counts", action="store_true", help="also count GIL, futex and switches")
    p.add_argument("--counts-only", action="store_true", help="only the counts")
    p.add_argument(
        "--mixed",
        action="store_true",
        help="also flask_json's p99 alone and beside connections whose requests sleep 10 ms",
    )
    p.add_argument("--no-install", action="store_true", help="use bench/.venv as it is")
    p.add_argument(
        "--base",
        default="",
        metavar="DIR",
        help="also run `ferrowsgi-base`: the ferrowsgi package found in DIR (a copy of an "
        "earlier build's python/ferrowsgi with its extension), for before/after ratios",
    )
    p.add_argument("--write-docs", action="store_true", help="write docs/BENCHMARKS.md's section")
    args = p.parse_args(argv)
    args.thread_list = [int(t) for t in args.threads.split(",") if t]
    args.server_list = [s for s in args.servers.split(",") if s]
    args.workload_list = [w for w in args.workloads.split(",") if w]
    if args.base:
        add_base_server(Path(args.base).resolve())
        args.server_list.append("ferrowsgi-base")
    for s in args.server_list:
        if s not in run.SERVERS or not run.SERVERS[s].threaded:
            p.error(f"{s!r} is not a server with threads; known: {', '.join(THREADED)}")
    args.single_list = [s for s in args.single.split(",") if s]
    for s in args.single_list:
        if s not in run.SERVERS or run.SERVERS[s].threaded:
            p.error(f"{s!r} is not a server without threads (for --single)")
    for w in args.workload_list:
        if w not in run.WORKLOADS:
            p.error(f"unknown workload {w!r}")
    if not all(1 <= t <= 256 for t in args.thread_list) or not args.thread_list:
        p.error("--threads must list counts in 1..256")
    if not 1 <= args.duration <= 120 or not 0 <= args.rounds <= 10:
        p.error("--duration must be 1..120 and --rounds 0..10")
    return args


def add_base_server(base: Path) -> None:
    """A second ferrowsgi, imported from `base` ahead of the venv's."""

    def argv(app: str, port: int, threads: int) -> list[str]:
        return [
            "env",
            f"PYTHONPATH={base}:{run.BENCH_DIR}",
            *run._py("-m", "ferrowsgi", app, "--bind", f"{run.HOST}:{port}"),
            *("--threads", str(threads)),
        ]

    run.SERVERS["ferrowsgi-base"] = run.Server(
        "ferrowsgi-base", "@repo", "ferrowsgi", "ferrowsgi._ferrowsgi", argv
    )


def cell_args(args: argparse.Namespace, threads: int) -> argparse.Namespace:
    """The namespace run.bench_one reads, for one thread count."""
    return argparse.Namespace(
        duration=args.duration, connections=args.connections, threads=threads, rounds=0
    )


def workload_for(name: str, threads: int) -> run.Workload:
    """run.py's workload with its thread count set (the `sleep` workload fixes 8 there)."""
    return dataclasses.replace(run.WORKLOADS[name], threads=threads)


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(run.BENCH_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{run.VENV_DIR / 'bin'}:{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)
    return env


# --------------------------------------------------------------------------- timed rounds


def timed_rounds(args: argparse.Namespace, env: dict[str, str], logs: Path) -> dict:
    """{workload: {"server/threads": [figures per round]}}."""
    out: dict[str, dict[str, list[dict]]] = {w: {} for w in args.workload_list}
    for rnd in range(args.rounds):
        for wname in args.workload_list:
            cells = [(s, t) for s in args.server_list for t in args.thread_list]
            cells += [(s, 1) for s in args.single_list]
            for sname, t in cells:
                srv = run.SERVERS[sname]
                if args.quiet_wait:
                    run.wait_quiet(args.quiet_wait)
                res = run.bench_one(srv, workload_for(wname, t), cell_args(args, t), env, logs)
                fig = {
                    "round": rnd,
                    "status": res.status,
                    "rps": res.rps,
                    "p99_us": res.p99_us,
                    "cpu_us_per_req": res.cpu_us_per_req,
                    "errors": res.errors,
                    "steal_pct": res.steal_pct,
                    "other_pct": res.other_pct,
                }
                out[wname].setdefault(f"{sname}/{t}", []).append(fig)
                print(
                    f"  round {rnd + 1} {wname} {sname} --threads {t}: "
                    f"{res.status or ''} rps {res.rps} p99 {res.p99_us} µs "
                    f"cpu {res.cpu_us_per_req and round(res.cpu_us_per_req, 1)} µs/req",
                    flush=True,
                )
    return out


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x]
    return statistics.median(xs) if xs else None


def _f(v: float | None, spec: str = ".0f") -> str:
    return "—" if v is None else format(v, spec)


def rounds_table(wname: str, cells: dict[str, list[dict]], threads: list[int]) -> list[str]:
    md = [
        f"#### `{wname}`",
        "",
        "| server | threads | rounds | req/s | p99 ms | CPU µs/req | CPU × own 1-thread "
        "(per round) | p99 × own 1-thread (per round) |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for key, figs in cells.items():
        sname, t = key.split("/")
        ok = [f for f in figs if not f["status"] and f["rps"]]
        base = cells.get(f"{sname}/{threads[0]}", [])
        cr, pr = [], []
        for f in ok:
            b = next((x for x in base if x["round"] == f["round"] and not x["status"]), None)
            if b and b["cpu_us_per_req"] and f["cpu_us_per_req"]:
                cr.append(f["cpu_us_per_req"] / b["cpu_us_per_req"])
            if b and b["p99_us"] and f["p99_us"]:
                pr.append(f["p99_us"] / b["p99_us"])
        p99 = _median([f["p99_us"] for f in ok])
        failed = [f["status"] for f in figs if f["status"]]
        md.append(
            f"| {sname} | {t} | {len(ok)}{' (' + failed[0][:60] + ')' if failed else ''} | "
            f"{_f(_median([f['rps'] for f in ok]), ',.0f')} | "
            f"{_f(p99 / 1000 if p99 else None, '.2f')} | "
            f"{_f(_median([f['cpu_us_per_req'] for f in ok]), '.1f')} | "
            + (
                "—"
                if t == str(threads[0])
                else f"{_f(_median(cr), '.2f')} ({' '.join(f'{x:.2f}' for x in cr)})"
            )
            + " | "
            + (
                "—"
                if t == str(threads[0])
                else f"{_f(_median(pr), '.2f')} ({' '.join(f'{x:.2f}' for x in pr)})"
            )
            + " |"
        )
    return md + [""]


# --------------------------------------------------------------------------- mixed

MIXED_SLOW_CONNECTIONS = 4


def mixed_one(
    sname: str, threads: int, args: argparse.Namespace, env: dict[str, str], logs: Path
) -> dict:
    """flask_json's p99 alone, then while MIXED_SLOW_CONNECTIONS more connections ask for a
    10 ms sleep each time (apps/mixed.py), on one server with `threads` threads."""
    srv = run.SERVERS[sname]
    fast = dataclasses.replace(run.WORKLOADS["flask_json"], name="mixed", app="apps.mixed:app")
    slow = dataclasses.replace(fast, name="mixed_sleep", path="/sleep", check=run.Check())
    port = run.free_port()
    stem = f"mixed-{sname}-{threads}"
    proc = run.spawn(
        ["taskset", "-c", run.SERVER_CPU, *srv.argv(fast.app, port, threads)],
        logs / f"{stem}.server.log",
        env,
    )
    side = None
    try:
        why = run.wait_ready(proc, port, fast, logs / f"{stem}.server.log")
        if why:
            return {"status": why}
        run.run_wrk(port, fast, 1, args.connections, logs / f"{stem}.warmup")
        time.sleep(run.DRAIN_SECONDS)
        alone = run.run_wrk(port, fast, args.duration, args.connections, logs / f"{stem}.alone")
        script = run.wrk_script(slow, logs)
        side = run.spawn(
            run.wrk_argv(port, slow, args.duration + 2, MIXED_SLOW_CONNECTIONS, script),
            logs / f"{stem}.slow",
        )
        time.sleep(1)
        both = run.run_wrk(port, fast, args.duration, args.connections, logs / f"{stem}.both")
        side.wait(timeout=args.duration + 30)
        slow_out = run.parse_wrk((logs / f"{stem}.slow").read_text(errors="replace"))
        return {
            "status": "",
            "alone_p99_us": alone.get("p99_us"),
            "alone_rps": alone.get("rps"),
            "mixed_p99_us": both.get("p99_us"),
            "mixed_rps": both.get("rps"),
            "sleep_rps": slow_out.get("rps"),
        }
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return {"status": f"error: {exc}"[:200]}
    finally:
        if side is not None:
            run.stop(side)
        run.stop(proc)


def mixed(args: argparse.Namespace, env: dict[str, str], logs: Path) -> dict:
    out: dict[str, list[dict]] = {}
    threads = max(args.thread_list)
    for _ in range(max(1, args.rounds)):
        for sname in args.server_list:
            m = mixed_one(sname, threads, args, env, logs)
            out.setdefault(f"{sname}/{threads}", []).append(m)
            print(f"  mixed {sname} --threads {threads}: {m}", flush=True)
    return out


def mixed_table(data: dict) -> list[str]:
    md = [
        "| server | threads | rounds | flask_json p99 alone, ms | p99 with the sleepers, ms | "
        "ratio per round | flask_json req/s alone / mixed | sleep req/s |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for key, runs in data.items():
        sname, t = key.split("/")
        ok = [r for r in runs if not r.get("status") and r.get("alone_p99_us")]
        ratios = [r["mixed_p99_us"] / r["alone_p99_us"] for r in ok if r.get("mixed_p99_us")]
        a = _median([r["alone_p99_us"] for r in ok])
        m = _median([r["mixed_p99_us"] for r in ok])
        md.append(
            f"| {sname} | {t} | {len(ok)} | {_f(a / 1000 if a else None, '.2f')} | "
            f"{_f(m / 1000 if m else None, '.2f')} | {' '.join(f'{x:.2f}' for x in ratios)} | "
            f"{_f(_median([r['alone_rps'] for r in ok]), ',.0f')} / "
            f"{_f(_median([r['mixed_rps'] for r in ok]), ',.0f')} | "
            f"{_f(_median([r['sleep_rps'] for r in ok]), ',.0f')} |"
        )
    return md + [""]


# --------------------------------------------------------------------------- counts


def libpython() -> str:
    return str(Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("LDLIBRARY"))


def add_probes() -> str:
    """Adds the uprobes on take_gil/drop_gil (idempotent); "" when done, else why not."""
    if not shutil.which("perf") or os.geteuid() != 0:
        return "perf and root are needed for the counts"
    lib = os.path.realpath(libpython())
    have = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    for fn in PROBES:
        if f":{fn} " in have:
            continue
        r = subprocess.run(["perf", "probe", "-x", lib, "--add", fn], capture_output=True)
        if r.returncode != 0:
            return f"perf probe {fn} failed: {r.stderr.decode(errors='replace')[-200:]}"
    return ""


def remove_probes() -> None:
    """Removes the uprobes add_probes defined (they cost nothing while unused, but are the
    system's, not this script's)."""
    for event in probe_events():
        subprocess.run(["perf", "probe", "-d", event], capture_output=True)


def probe_events() -> list[str]:
    have = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    found = []
    for fn in PROBES:
        m = re.search(rf"(\S+:{fn})\s", have)
        if m:
            found.append(m.group(1))
    return found


def task_switches(pid: int) -> tuple[int, int]:
    """(voluntary, nonvoluntary) context switches summed over the process's threads."""
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def python_pid(root: int) -> int:
    """The server's Python process under `taskset` (which execs, so usually root itself)."""
    pids = run.tree_pids(root)
    return pids[-1] if pids else root


def count_one(
    sname: str,
    wname: str,
    threads: int,
    args: argparse.Namespace,
    env: dict[str, str],
    logs: Path,
) -> dict:
    """One ferrowsgi run under perf stat: events per request."""
    srv = run.SERVERS[sname]
    wl = workload_for(wname, threads)
    port = run.free_port()
    stem = f"counts-{sname}-{wname}-{threads}"
    log = logs / f"{stem}.server.log"
    proc = run.spawn(["taskset", "-c", run.SERVER_CPU, *srv.argv(wl.app, port, threads)], log, env)
    try:
        why = run.wait_ready(proc, port, wl, log)
        if why:
            return {"status": why}
        conns = wl.connections or args.connections
        run.run_wrk(port, wl, 1, conns, logs / f"{stem}.warmup")
        pid = python_pid(proc.pid)
        events = ["syscalls:sys_enter_futex", "context-switches", *probe_events()]
        stat_out = logs / f"{stem}.perf"
        perf = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-o", str(stat_out), "-e", ",".join(events)]
            + ["-p", str(pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # perf attaches
        sw0 = task_switches(pid)
        w = run.run_wrk(port, wl, COUNT_SECONDS, conns, logs / f"{stem}.wrk")
        sw1 = task_switches(pid)
        perf.send_signal(2)
        perf.wait(timeout=30)
        # perf also counted the moments before and after wrk: nothing runs then (idle
        # keep-alive sweeps aside), so the request count of wrk divides it.
        n = w.get("requests") or 0
        counts: dict[str, float] = {}
        for line in stat_out.read_text().splitlines():
            parts = line.split(",")
            if len(parts) > 3 and parts[0].strip().replace(".", "").isdigit():
                name = parts[2].split(":")[-1]
                counts[name] = float(parts[0])
        per = {k: v / n for k, v in counts.items()} if n else {}
        per["voluntary_switches"] = (sw1[0] - sw0[0]) / n if n else 0
        per["nonvoluntary_switches"] = (sw1[1] - sw0[1]) / n if n else 0
        return {"status": "", "requests": n, "rps": w.get("rps"), "per_request": per}
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return {"status": f"error: {exc}"[:200]}
    finally:
        run.stop(proc)


def counts(args: argparse.Namespace, env: dict[str, str], logs: Path) -> dict:
    why = add_probes()
    if why:
        print(f"counts: {why}; GIL counts left out", flush=True)
    out: dict[str, dict[str, dict]] = {}
    try:
        for sname in [s for s in args.server_list if s.startswith("ferrowsgi")]:
            for wname in args.workload_list:
                for t in args.thread_list:
                    c = count_one(sname, wname, t, args, env, logs)
                    out.setdefault(f"{sname} {wname}", {})[str(t)] = c
                    print(f"  counts {sname} {wname} --threads {t}: {c}", flush=True)
    finally:
        if not why:
            remove_probes()
    return out


def counts_table(data: dict) -> list[str]:
    md = [
        "| server and workload | threads | take_gil | drop_gil | futex calls | "
        "voluntary switches | involuntary switches | all switches (perf) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for wname, by_t in data.items():
        for t, c in by_t.items():
            p = c.get("per_request")
            if not p:
                md.append(f"| `{wname}` | {t} | {c.get('status', '')} | | | | | |")
                continue
            md.append(
                f"| `{wname}` | {t} | {_f(p.get('take_gil'), '.2f')} | "
                f"{_f(p.get('drop_gil'), '.2f')} | {_f(p.get('sys_enter_futex'), '.2f')} | "
                f"{_f(p.get('voluntary_switches'), '.2f')} | "
                f"{_f(p.get('nonvoluntary_switches'), '.2f')} | "
                f"{_f(p.get('context-switches'), '.2f')} |"
            )
    return md + [""]


# --------------------------------------------------------------------------- report


def section(
    args: argparse.Namespace, timed: dict, cnt: dict, mix: dict, when: str, command: str
) -> str:
    md = [
        MARK_BEGIN,
        "## Threads: 1 and 8 application threads",
        "",
        f"Measured {when} with `{command}`: one worker process per server pinned to CPU 0, wrk "
        f"on CPU 1, {args.connections} connections (64 for `sleep`), {args.duration} s per "
        f"cell, {args.rounds} rounds in which every cell of a workload ran once in turns. "
        "Figures are the medians of the rounds; the ratio columns divide a server's N-thread "
        "figure by its own 1-thread one in the same round (the ratios are steadier than the "
        "figures on this shared 2-core machine). Each row says how many threads it ran.",
        "",
    ]
    for wname, cells in timed.items():
        md += rounds_table(wname, cells, args.thread_list)
    if mix:
        md += [
            "#### Blocking and quick requests together",
            "",
            f"flask_json on {args.connections} connections, alone and while "
            f"{MIXED_SLOW_CONNECTIONS} more connections ask for a 10 ms `time.sleep` each time "
            "(bench/apps/mixed.py; one server, both run with its largest thread count).",
            "",
            *mixed_table(mix),
        ]
    if cnt:
        md += [
            "#### Events per request, ferrowsgi",
            "",
            "Counted in separate runs (uprobes on libpython's `take_gil`/`drop_gil`, the "
            "`sys_enter_futex` tracepoint, /proc's context switches), over a "
            f"{COUNT_SECONDS} s wrk run after a 1 s warm-up, divided by wrk's request count. "
            "The probes slow each GIL hand-over down, so only the counts are read here.",
            "",
            *counts_table(cnt),
        ]
    md.append(MARK_END)
    return "\n".join(md)


def write_docs(text: str) -> None:
    doc = run.DOCS_FILE.read_text()
    if MARK_BEGIN in doc and MARK_END in doc:
        head, rest = doc.split(MARK_BEGIN, 1)
        _, tail = rest.split(MARK_END, 1)
        doc = head + text + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    run.DOCS_FILE.write_text(doc)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    servers = [run.SERVERS[s] for s in args.server_list + args.single_list if s != "ferrowsgi-base"]
    run.ensure_venv()
    deadline = time.monotonic() + 3600
    status = run.check_installed(servers) if args.no_install else run.install(servers, deadline)
    bad = {s: why for s, why in status.items() if why}
    if bad:
        for s, why in bad.items():
            print(f"{s}: {why}; left out", flush=True)
        args.server_list = [s for s in args.server_list if s not in bad]
        args.single_list = [s for s in args.single_list if s not in bad]
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {int(run.WRK_CPU)})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = run.RESULTS_DIR / f"{stamp}-threads"
    logs.mkdir(parents=True, exist_ok=True)
    env = bench_env()
    command = "python bench/threads.py " + " ".join(argv)
    try:
        timed = {} if args.counts_only else timed_rounds(args, env, logs)
        mix = mixed(args, env, logs) if args.mixed else {}
        cnt = counts(args, env, logs) if (args.counts or args.counts_only) else {}
    finally:
        run.stop_all()
    when = run._now()
    (logs / "results.json").write_text(
        json.dumps(
            {"command": command, "when": when, "timed": timed, "counts": cnt, "mixed": mix},
            indent=2,
        )
    )
    text = section(args, timed, cnt, mix, when, command)
    print(text)
    print(f"\nlogs and results.json in {logs}")
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
