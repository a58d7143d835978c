"""Combines the cINN and relaxed-condition runs of the Gaussian-mixture problem into one table and a
figure like Xiao et al.'s Figure 5.1.

    python training/gaussian_mixture/report.py runs/gaussian_mixture_cinn runs/gaussian_mixture_rcf \
        --out runs/gaussian_mixture_report
"""
import argparse
import json
import os
import sys

import numpy as np


def _load(run):
    with open(os.path.join(run, "results.json")) as f:
        res = json.load(f)
    with open(os.path.join(run, "config.json")) as f:
        cfg = json.load(f)
    return cfg, res, dict(np.load(os.path.join(run, "posterior_samples.npz")))


def table(runs) -> str:
    lines = ["| model | min / mean mode accuracy | test NLL (nats) | label accuracy (Bayes-optimal) "
             "| parameters | train s |",
             "|---|---|---|---|---|---|"]
    for cfg, res, _ in runs:
        nll = f"{res['test_loss']:.4f}"
        iw = [k for k in res if k.startswith("test_nll_importance")]
        if iw:
            nll += f" (plug-in x0=0); {res[iw[0]]:.4f} (IW bound K={iw[0].rsplit('k', 1)[1]})"
        acc = (f"{res['infer_condition_accuracy']:.4%} ({res['bayes_optimal_accuracy']:.4%})"
               if "infer_condition_accuracy" in res else "n/a")
        lines.append(f"| {cfg['model']['class']} | {res['mode_accuracy_min']:.4%} / {res['mode_accuracy_mean']:.4%} | "
                     f"{nll} | {acc} | {res['parameters']:,} | {res['train_seconds']:.0f} |")
    lines.append("")
    lines.append(f"Ground-truth test NLL (the true posterior density): {runs[0][1]['reference_test_nll']:.4f} nats")
    for cfg, res, _ in runs:
        lines += ["", f"Per label, {cfg['model']['class']} (true sigma = {cfg['data']['sigma']}):", "",
                  "| label | mode accuracy | centre | sample mean | distance | sample std |",
                  "|---|---|---|---|---|---|"]
        for r in res["per_label"]:
            lines.append(f"| {r['label']} | {r['mode_accuracy']:.4%} | {r['centre']} | {r['mean']} | "
                         f"{r['mean_error']:.4f} | {r['std']} |")
    return "\n".join(lines)


def figure(runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'tfcflow[experiments]'): no figure", file=sys.stderr)
        return None
    panels = []
    for cfg, _, arr in runs:
        if "predicted" in arr:
            title = f"{cfg['model']['class']}: test data,\ncoloured by inferred label"
            panels.append((title, arr["test_x"], arr["predicted"]))
    for cfg, _, arr in runs:
        keep = np.random.default_rng(0).permutation(len(arr["samples"]))[:8000]
        panels.append((f"{cfg['model']['class']}: posterior samples,\ncoloured by conditioning label",
                       arr["samples"][keep], arr["labels"][keep]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (title, pts, col) in zip(np.atleast_1d(axes), panels):
        ax.scatter(pts[:, 0], pts[:, 1], c=col, cmap="tab10", vmin=0, vmax=9, s=1.5)
        ax.set_title(title, fontsize=9)
        ax.set(xlim=(-3.6, 3.6), ylim=(-3.6, 3.6), aspect="equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    runs = [_load(r) for r in args.runs]
    os.makedirs(args.out, exist_ok=True)
    text = table(runs)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")
    fig = figure(runs, os.path.join(args.out, "figure.png"))
    print(text)
    return dict(table=text, figure=fig)


if __name__ == "__main__":
    main()
