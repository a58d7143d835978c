"""Why parallel chains need their own thread pools: the benchmark Glow (unconditional) at several
(intra-op threads, inter-op threads, chains) settings, one ``glow_bench.py`` process each, one after
another, then one table with each setting's speed relative to TensorFlow's default (2, 2, 1 chain).

    python bench/chains_grid.py [--runs 3] [--out docs/benchmarks/chains_grid.json] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ("train_ips", "logprob_ips", "sample_ips")
# (intra-op, inter-op, chains); the first is TensorFlow's default on a 2-core machine
GRID = [(2, 2, 1), (1, 2, 1), (2, 1, 1), (2, 2, 2), (1, 2, 2), (1, 4, 4)]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="clean runs per measurement")
    p.add_argument("--out", default=None)
    p.add_argument("--smoke", action="store_true", help="tiny model, two settings (CI)")
    a = p.parse_args(argv)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    grid = GRID[:1] + GRID[4:5] if a.smoke else GRID
    rows = []
    for intra, inter, chains in grid:
        cmd = [sys.executable, os.path.join(HERE, "glow_bench.py"), "--variant", "uncond", "--runs", str(a.runs),
               "--intra", str(intra), "--inter", str(inter), "--chains", str(chains)] + (["--smoke"] if a.smoke else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(dict(intra=intra, inter=inter, chains=chains, threads=r["threads"],
                         **{m: r[m]["median"] for m in METRICS}, first_step_s=r["train_first_step_s"],
                         peak_rss_mb=r["peak_rss_after_train_mb"]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    lines = ["| intra-op | inter-op | chains | train img/s | x default | log-prob img/s | x default | "
             "sample img/s | x default | 1st step s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = " | ".join(f"{r[m]:.0f} | {r[m] / base[m]:.2f}" for m in METRICS)
        lines.append(f"| {r['intra']} | {r['inter']} | {r['chains']} | {cells} | {r['first_step_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(dict(rows=rows, table=text), f, indent=1)
    return dict(rows=rows, table=text)


if __name__ == "__main__":
    main()
