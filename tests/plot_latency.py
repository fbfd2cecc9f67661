#!/usr/bin/env python3
"""Plots the start-latency samples of husk-bench-start (CSV: frontend,runtime,run,ms)
as cumulative distributions, husk against runc, CLI and podman. Used by tests/bench.sh.

    plot_latency.py SAMPLES.csv OUT.png [TITLE]
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    series = {}
    with open(sys.argv[1], newline="") as f:
        for row in csv.DictReader(f):
            key = (row["frontend"], row["runtime"])
            series.setdefault(key, []).append(float(row["ms"]))
    if not series:
        sys.exit(f"no samples in {sys.argv[1]}")
    styles = {"husk": "-", "runc": "--"}
    colours = {"cli": "tab:blue", "podman": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for (frontend, runtime), values in sorted(series.items()):
        values.sort()
        n = len(values)
        ax.step(
            values,
            [(i + 1) / n for i in range(n)],
            where="post",
            linestyle=styles.get(runtime, ":"),
            color=colours.get(frontend, "tab:gray"),
            label=f"{'CLI run' if frontend == 'cli' else 'podman run --rm'}, "
            f"{runtime} (n={n})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("start to exit of `run … true` (ms, log scale)")
    ax.set_ylabel("fraction of runs")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(sys.argv[3] if len(sys.argv) > 3 else "Start latency, husk against runc")
    fig.tight_layout()
    fig.savefig(sys.argv[2])
    print(f"plot: {sys.argv[2]}", file=sys.stderr)


if __name__ == "__main__":
    main()
