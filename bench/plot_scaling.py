#!/usr/bin/env python3
"""plot_scaling.py: the PNG of bench_scaling's predicted speed-up against the GPU count.

What it is: reads one or more CSV files written by `bench_scaling --csv FILE` and draws, for each,
the step speed-up (one worker world, one video: Ulysses / CFG parallelism) and the queue speed-up
(videos/hour, worker worlds allowed) against the GPUs allocated, with ideal linear speed-up for
comparison; each step point is labelled with its layout and the GPUs it uses.
What it is not: part of the bench (the bench needs no Python); matplotlib is needed here only.
Run:   build/bench/bench_scaling --csv scaling.csv
       python3 bench/plot_scaling.py --out bench/results/scaling_a14b_720p.png scaling.csv [more.csv]
"""
import argparse
import csv
import sys


def short(layout):
    """'shared U=4, cfg-parallel, vae 8' -> 'U=4 cfg'; 'split high U=2 + low U=4, ...' -> 'split 2+4'."""
    cfg = " cfg" if "cfg-parallel" in layout else ""
    if layout.startswith("split"):
        parts = layout.split("U=")
        return "split %s+%s%s" % (parts[1].split()[0], parts[2].split(",")[0].split()[0], cfg)
    return "U=%s%s" % (layout.split("U=")[1].split(",")[0].split()[0], cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="+", help="bench_scaling --csv files")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--title", default=None)
    a = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_scaling.py: matplotlib is missing (pip install matplotlib)")

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    gmax = 1
    styles = [("tab:blue", "tab:orange"), ("tab:green", "tab:red"), ("tab:purple", "tab:brown")]
    for k, path in enumerate(a.csv):
        rows = list(csv.DictReader(open(path)))
        if not rows:
            sys.exit("plot_scaling.py: %s has no rows" % path)
        src = rows[0]["cost"]
        tag = "" if len(a.csv) == 1 else " [%s]" % ("measured CPU" if "measured" in src else src.split(" (")[0])
        cs, cq = styles[k % len(styles)]
        for mode, color, label in (("step", cs, "one video: step speed-up"),
                                   ("queue", cq, "queue: videos/hour speed-up")):
            r = [x for x in rows if x["mode"] == mode]
            if not r:
                continue
            g = [int(x["gpus"]) for x in r]
            s = [float(x["speedup"]) for x in r]
            gmax = max(gmax, max(g))
            ax.plot(g, s, "o-", color=color, label=label + tag, lw=1.8, ms=5)
            if mode == "step" and k == 0:
                for x, y, row in zip(g, s, r):
                    used = int(row["used"])
                    note = short(row["layout"]) + ("" if used == x else "\n(%d used)" % used)
                    ax.annotate(note, (x, y), textcoords="offset points", xytext=(6, -16),
                                fontsize=7, color=color)
    ax.plot([1, gmax], [1, gmax], "--", color="black", lw=1, label="ideal (linear)", zorder=5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ticks = sorted({int(x["gpus"]) for p in a.csv for x in csv.DictReader(open(p))})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_yticks(ticks)
    ax.set_yticklabels([str(t) for t in ticks])
    ax.set_xlabel("GPUs (8 per node)")
    ax.set_ylabel("predicted speed-up over 1 GPU")
    ax.set_title(a.title or "Wan2.2-T2V-A14B 1280x720x81 (75,600 tokens): predicted scaling",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.01, 0.005, "model: bench/PERFORMANCE.md; rates: %s" % rows[0]["cost"][:90],
             fontsize=6, color="gray")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(a.out)
    print("plot_scaling.py: wrote %s" % a.out)


if __name__ == "__main__":
    main()
