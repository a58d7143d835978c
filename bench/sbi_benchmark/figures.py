"""The SBI benchmark's summary figures, from OUT/results (the headline rows of run.py's summary).

- ``OUT/c2st.png``: C2ST per task, one bar per estimator with its defaults (tfcflow's NPE: the
  mean over its seeds, each seed a dot); 0.5 is the best possible.
- ``OUT/train_time.png``: training seconds per task, the same estimators.

    .venv/bin/python bench/sbi_benchmark/figures.py --out docs/benchmarks/sbi
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import run  # noqa: E402


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    a = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    results = {}
    for path in glob.glob(os.path.join(a.out, "results", "*__*.json")):
        if not path.endswith(".partial.json"):
            r = common.read_json(path)
            results[(r["task"], r["contestant"])] = r
    tasks = [t for t in common.TASKS if any(k[0] == t for k in results)]
    rows = run.headline(results, tasks)
    if not rows:
        raise SystemExit(f"figures.py: no headline results in {a.out}/results")
    labels = list(rows)
    width = 0.8 / len(labels)
    written = []
    for key, name, ylabel in (("c2st", "c2st.png", "C2ST (0.5 = indistinguishable from the reference)"),
                              ("train_seconds", "train_time.png", "training wall-clock seconds")):
        fig, ax = plt.subplots(figsize=(9, 4))
        for i, label in enumerate(labels):
            xs = np.arange(len(tasks)) + (i - (len(labels) - 1) / 2) * width
            vals = [rows[label].get(t, {}).get(key, np.nan) for t in tasks]
            ax.bar(xs, vals, width, label=label)
            if key == "c2st":
                for x, t in zip(xs, tasks):
                    seeds = rows[label].get(t, {}).get("c2st_seeds", [])
                    if len(seeds) > 1:
                        ax.plot([x] * len(seeds), seeds, "k.", markersize=4)
        ax.set_xticks(np.arange(len(tasks)), tasks)
        ax.set_ylabel(ylabel)
        if key == "c2st":
            ax.set_ylim(0.5, 1.0)
        ax.legend(fontsize=8)
        ax.set_title(f"sbibm, 10,000 simulations, observations 1-5: {ylabel.split(' (')[0]}")
        fig.tight_layout()
        path = os.path.join(a.out, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        print(f"figures: {path}", flush=True)
    return written


if __name__ == "__main__":
    main()
