"""Draw the benchmark charts from a results.json written by run.py (needs matplotlib).

    python charts.py RESULTS_JSON OUT_DIR

One PNG per workload, OUT_DIR/<workload>.png: requests/s and server CPU µs per
request for every server that produced numbers, ferrowsgi highlighted and the
pure-Rust floor responder (where it ran) drawn apart. run.py calls this with the
bench venv's Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"ferrowsgi": "#c0392b", "floor": "#7f8c8d"}
OTHER = "#2980b9"


def draw(workload: str, rows: list[dict], out: Path) -> None:
    rows = sorted((r for r in rows if not r["status"] and r["rps"]), key=lambda r: r["rps"])
    if not rows:
        return
    names = [r["server"] for r in rows]
    colors = [COLORS.get(n, OTHER) for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 0.45 * len(rows) + 1.4), sharey=True)
    ax1.barh(names, [r["rps"] for r in rows], color=colors)
    ax1.set_xlabel("requests/s (higher is better)")
    cpu = [r["cpu_us_per_req"] or 0 for r in rows]
    ax2.barh(names, cpu, color=colors)
    ax2.set_xlabel("server CPU µs per request (lower is better)")
    positive = [c for c in cpu if c > 0]
    if positive and max(positive) > 20 * min(positive):
        ax2.set_xscale("log")
    for ax, values, fmt in ((ax1, [r["rps"] for r in rows], "{:,.0f}"), (ax2, cpu, "{:.1f}")):
        for i, v in enumerate(values):
            ax.text(v, i, " " + fmt.format(v), va="center", fontsize=8)
        ax.margins(x=0.25)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"workload {workload}: one server core, wrk on the other")
    fig.tight_layout()
    fig.savefig(out / f"{workload}.png", dpi=90)
    plt.close(fig)


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for workload, rows in data["results"].items():
        draw(workload, rows, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
