"""What rejection to the prior's box would score: C2ST of a contestant's samples with the ones
outside the box dropped (peer environment: sbibm's C2ST, as score.py).

sbi's NPE draws from an unbounded flow and rejects the draws outside the prior's support; our
bounded models map R^D onto the box instead. This probe takes the samples of a run made without
bounds (``ours.py --no-bounds``), keeps the draws inside the box (ours.PRIOR_BOXES), and scores
them against the reference, on as many reference samples as draws were kept (C2ST needs equal
sizes). Printed per observation: the kept share and the C2ST. Nothing is written.

    /work/peervenv/bin/python bench/sbi_benchmark/truncation_probe.py \\
        --out docs/benchmarks/sbi_variants/spline_lu_nobounds --task two_moons --contestant tfcflow_cinn_spline
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from ours import PRIOR_BOXES  # noqa: E402
from score import c2st_sbibm  # noqa: E402


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--task", required=True, choices=sorted(PRIOR_BOXES))
    p.add_argument("--contestant", required=True, choices=common.CONTESTANTS)
    p.add_argument("--seed", type=int, default=1, help="classifier seed (score.py's sbibm default)")
    a = p.parse_args(argv)
    import numpy as np

    lo, hi, _ = PRIOR_BOXES[a.task]
    cache = np.load(common.cache_file(a.out, a.task))
    samples = np.load(common.samples_prefix(a.out, a.task, a.contestant) + ".npz")["samples"]
    rows = []
    for k, (ref, draws) in enumerate(zip(cache["reference"], samples)):
        kept = draws[np.all((draws > lo) & (draws < hi), axis=1)]
        n = min(len(kept), len(ref))
        score = c2st_sbibm(ref[:n], kept[:n], a.seed)
        rows.append((k + 1, len(kept) / len(draws), score))
        print(f"observation {k + 1}: kept {len(kept) / len(draws):.3f} of the draws, C2ST {score:.4f} "
              f"on {n} samples", flush=True)
    print(f"mean C2ST {np.mean([r[2] for r in rows]):.4f}")
    return rows


if __name__ == "__main__":
    main()
