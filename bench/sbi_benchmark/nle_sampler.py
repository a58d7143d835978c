"""How many chains ``NLE.sample`` needs on a multimodal posterior, on held-out simulations only.

slcp's posterior is exactly symmetric under the signs of theta 3 and theta 4 (the simulator uses
their squares, the prior is a symmetric box): each of the four sign quadrants holds a quarter of
the mass. The total variation between the draws' quadrant weights and 1/4 measures how well the
chains weigh the modes, with no reference posterior and no scored observation (the rows are
``simulate.py --heldout`` simulations). An NLE with the defaults is trained on the task's 10,000
cached simulations (seed 0) and saved at ``--estimator`` (reused when it exists).

    .venv/bin/python bench/sbi_benchmark/nle_sampler.py --chains 16,64 --rows 0,1 --draws 2000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import priors  # noqa: E402


def quadrant_tv(draws) -> float:
    """Total variation between the draws' weights in the sign quadrants of theta 3, theta 4 and 1/4."""
    import numpy as np
    q = (draws[:, 2] > 0) * 2 + (draws[:, 3] > 0)
    return float(0.5 * np.abs(np.bincount(q, minlength=4) / len(q) - 0.25).sum())


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--estimator", default=os.path.join("runs", "nle_slcp"), help="saved NLE (trained if missing)")
    p.add_argument("--chains", default="16,64")
    p.add_argument("--rows", default="0,1", help="held-out simulations used as observations")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    import numpy as np
    from tfcflow.inference import NLE

    if os.path.exists(os.path.join(a.estimator, "estimator.json")):
        nle = NLE.load(a.estimator)
    else:
        data = np.load(common.cache_file(a.out, "slcp"))
        t0 = time.perf_counter()
        nle = NLE(priors.prior("slcp"), seed=0)
        nle.fit(data["theta"], data["x"], verbose=0)
        print(f"nle_sampler: trained in {time.perf_counter() - t0:.0f} s", flush=True)
        nle.save(a.estimator)
    held = np.load(common.cache_file(a.out, "slcp").replace(".npz", ".heldout.npz"))
    results = []
    for chains in map(int, a.chains.split(",")):
        for row in map(int, a.rows.split(",")):
            t0 = time.perf_counter()
            with warnings.catch_warnings():  # the chains disagree by design (four modes)
                warnings.simplefilter("ignore", RuntimeWarning)
                draws = nle.sample(held["x"][row], a.draws, seed=row, chains=chains)
            r = {"chains": chains, "row": row, "quadrant_tv": quadrant_tv(draws),
                 "seconds": time.perf_counter() - t0}  # the first call of a chain count compiles
            results.append(r)
            print(json.dumps(r), flush=True)
    if a.json:
        common.write_json(a.json, {"rows": results, "draws": a.draws, "git_revision": common.git_revision()})
    return results


if __name__ == "__main__":
    main()
