"""A/B of two source trees on one machine: the same Glow benchmark rows (bench/glow_bench.py of
each tree, each tree's own tfcflow) alternated process by process, so that both see the same
machine and the same neighbours; prints the per-round ratios B / A and their median.

    python bench/ab_trees.py --a 5ba4787 --b HEAD --rows uncond:2,cond_label:2 --rounds 3 \
        --out docs/benchmarks/ab_5ba4787_head.json

What it answers: did a change between two commits make the measured rows slower or faster on
this machine kind, independently of how this kind compares with another (docs/benchmarks.md).
Each tree is checked out with ``git worktree`` into a temporary folder (nothing in the working
tree is touched); a row ``variant:chains`` runs ``glow_bench.py --variant V --chains N``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
METRICS = ("train_ips", "logprob_ips", "sample_ips")


def checkout(rev: str, where: str, side: str) -> str:
    path = os.path.join(where, side + "_" + rev.replace("/", "_"))
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", path, rev], check=True,
                   capture_output=True)
    return path


def run_row(tree: str, variant: str, chains: int, runs: int, smoke: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, os.path.join(tree, "bench", "glow_bench.py"), "--variant", variant,
           "--chains", str(chains), "--runs", str(runs)] + (["--smoke"] if smoke else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (tree {tree}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="the reference revision")
    p.add_argument("--b", default="HEAD", help="the revision compared with it")
    p.add_argument("--rows", default="uncond:2,cond_label:2", help="variant:chains,...")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=3, help="timed calls per measurement in each process")
    p.add_argument("--smoke", action="store_true", help="tiny models, one round (CI)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = [(v, int(c)) for v, c in (r.split(":") for r in args.rows.split(","))]
    rounds = 1 if args.smoke else args.rounds
    with tempfile.TemporaryDirectory(prefix="ab_trees_") as tmp:
        trees = {}
        try:
            for side in ("a", "b"):
                trees[side] = checkout(getattr(args, side), tmp, side)
            results = {f"{v}:{c}": {"a": [], "b": []} for v, c in rows}
            for r in range(rounds):
                for v, c in rows:
                    order = ("a", "b") if r % 2 == 0 else ("b", "a")  # alternate who goes first
                    for side in order:
                        m = run_row(trees[side], v, c, args.runs, args.smoke)
                        m = {k: m[k]["median"] for k in METRICS}  # img/s, median of the clean timed runs
                        results[f"{v}:{c}"][side].append(m)
                        print(f"round {r} {v}:{c} {side}: " + ", ".join(f"{k} {m[k]:.1f}" for k in METRICS),
                              flush=True)
        finally:
            for t in trees.values():
                subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", t], capture_output=True)
    summary = {}
    for row, res in results.items():
        summary[row] = {}
        for k in METRICS:
            ratios = [b[k] / a[k] for a, b in zip(res["a"], res["b"])]
            summary[row][k] = dict(median_b_over_a=statistics.median(ratios), min=min(ratios), max=max(ratios),
                                   a=[x[k] for x in res["a"]], b=[x[k] for x in res["b"]])
            print(f"{row} {k}: B/A median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
                  f"max {max(ratios):.3f})")
    revs = {s: subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", getattr(args, s)], capture_output=True,
                              text=True).stdout.strip() for s in ("a", "b")}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(a=revs["a"], b=revs["b"], rounds=rounds, runs=args.runs, rows=summary), f, indent=1)


if __name__ == "__main__":
    main()
