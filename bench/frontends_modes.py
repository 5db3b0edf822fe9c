"""The hello app behind nginx over uwsgi (or SCGI) in the modes people run, each beside
uWSGI's same mode: ``python bench/frontends_modes.py [--rounds 3] [--duration 5]
[--unix] [--protocol uwsgi|scgi] [--only ...]``.

Three tables, one per mode: one process and one application thread (ferrowsgi's default
against ``--processes 1 --threads 1``), four threads (``--threads 4`` against uWSGI's
``--threads 4``), and two worker processes (``--workers 2`` against ``--processes 2
--master``). Every process of a backend shares CPU 0, as in the other front-end benches,
so the figure is CPU per request, not how two cores are used. The method (pinning,
rotating rounds, the backend tree's CPU per request, each peer's ratio per round) is
bench/frontends.py's.

Each table has the floor beside them (bench/floor ``--gateway``: accept, read, one send,
close, no Python; ``--processes 2`` for the two-worker mode, one process for the others,
as threads cannot make a server cheaper than one that needs none): uWSGI over the floor is
the most any server could show against uWSGI in that mode.
"""

from __future__ import annotations

import sys

from frontends import Case, compare, ferrowsgi, floor, nginx, uwsgi


def front(proto: str):
    return nginx(f"include /etc/nginx/{proto}_params;\n            {proto}_pass backend;")


def uwsgi_mode(option: str, processes: int, threads: int) -> list[str] | None:
    """uWSGI with ``option`` (its socket) and the given processes and threads."""
    argv = uwsgi(option)
    if argv is None:
        return None
    argv = list(argv)
    argv[argv.index("--processes") + 1] = str(processes)
    argv[argv.index("--threads") + 1] = str(threads)
    if processes > 1:
        argv.append("--master")
    return argv


def main() -> None:
    proto = "uwsgi"
    if "--protocol" in sys.argv:
        at = sys.argv.index("--protocol")
        proto = sys.argv[at + 1]
        del sys.argv[at : at + 2]
    if proto not in ("uwsgi", "scgi"):
        raise SystemExit(f"--protocol: uwsgi or scgi, not {proto!r}")
    option = f"--{proto}-socket"
    ours = ferrowsgi(proto)
    modes = [
        ("1 thread", [], (1, 1)),
        ("4 threads", ["--threads", "4"], (1, 4)),
        ("2 workers", ["--workers", "2"], (2, 1)),
    ]
    cases = [
        Case(
            f"{proto}, {label}",
            front(proto),
            {
                "ferrowsgi": ours + extra,
                "uwsgi": uwsgi_mode(option, *peer),
                "floor": floor(proto, processes=peer[0]),
            },
        )
        for label, extra, peer in modes
    ]
    compare(__doc__, *cases, rounds=3, duration=5, connections=32)


if __name__ == "__main__":
    main()
