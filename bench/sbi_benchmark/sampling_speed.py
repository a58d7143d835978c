"""Posterior samples per second of the spline cINN, plain against ``Execution(jit_sampling=True)``
(XLA-compiled flow passes), for several coupling-network sizes, in one process.

    python bench/sbi_benchmark/sampling_speed.py [--task two_moons] [--sizes 128x6,128x3,128x3x1]
        [--draws 10000] [--batch-size 10000] [--json FILE] [--smoke]

Each size (``WIDTHxBLOCKS[xHIDDEN_LAYERS]``, two hidden layers by default) is the table's
``tfcflow_cinn_spline`` (spline couplings, LU mixing, standardization, the prior's box mapped:
rejection's cost depends on the trained posterior, which one epoch does not give) trained for one
epoch on the task's cached simulations: the weights barely matter for the cost. Per size, the two
executions each sample ``--draws`` draws of every observation, timed over ``--runs`` runs with
``bench/timing.timed`` (clean runs on a quiet machine, medians). The first call of each (tracing;
XLA's compilation) is timed apart. With ``--smoke`` (CI) a tiny model on random data and one run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
from cost_model import one_epoch_model, task_data  # noqa: E402
from timing import timed  # noqa: E402


def _sizes(spec: str) -> list:
    """``"128x6,128x3x1"`` -> ``[(128, 6, 2), (128, 3, 1)]`` (width, blocks, hidden layers)."""
    try:
        sizes = [tuple(int(v) for v in s.split("x")) for s in spec.split(",")]
        if not all(len(t) in (2, 3) for t in sizes):
            raise ValueError
    except ValueError:
        raise SystemExit(f"--sizes: WIDTHxBLOCKS[xHIDDEN_LAYERS],... (e.g. 128x6,128x3x1), got {spec!r}") from None
    return [t if len(t) == 3 else t + (2,) for t in sizes]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="two_moons", choices=common.TASKS)
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--sizes", default="128x6,128x3,128x3x1",
                   help="WIDTHxBLOCKS[xHIDDEN_LAYERS] of the coupling networks (hidden layers default 2)")
    p.add_argument("--draws", type=int, default=common.NUM_POSTERIOR_SAMPLES, help="draws per observation")
    p.add_argument("--batch-size", type=int, default=10_000, help="sample's batch_size (rows per chunk)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--smoke", action="store_true", help="tiny model on random data, one run (CI)")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    from tfcflow.execution import Execution

    theta, x, observations, box = task_data(a.out, a.task, a.smoke)
    batch = 256
    if a.smoke:
        a.sizes, a.draws, a.batch_size, a.runs, batch = "8x1", 100, 64, 1, 64
    rows = []
    for width, depth, hidden in _sizes(a.sizes):
        model = one_epoch_model(theta, x, box, width, depth, hidden, batch)

        def sample_all():
            for i, o in enumerate(observations):
                np.asarray(model.sample(o[None], num_samples=a.draws, seed=i, batch_size=a.batch_size))

        row = {"width": width, "depth": depth, "hidden_layers": hidden}
        for name, execution in (("plain", Execution()), ("jit", Execution(jit_sampling=True))):
            model.execution = execution
            t = time.perf_counter()
            sample_all()  # tracing (and compiling): timed apart
            row[f"{name}_first_call_seconds"] = time.perf_counter() - t
            row[name] = timed(sample_all, a.draws * len(observations), calls=1, runs=a.runs)
        row["jit_over_plain"] = row["jit"]["median"] / row["plain"]["median"]
        rows.append(row)
        print(f"{a.task} spline cINN {width}x{depth}, {hidden} hidden layer(s): "
              f"plain {row['plain']['median']:.0f} samples/s, "
              f"jit {row['jit']['median']:.0f} samples/s ({row['jit_over_plain']:.2f}x; compiling "
              f"{row['jit_first_call_seconds']:.1f} s)", flush=True)
    result = {"task": a.task, "draws": a.draws, "observations": len(observations), "batch_size": a.batch_size,
              "sizes": rows, "versions": common.versions("tensorflow", "keras", "tensorflow-probability"),
              "git_revision": common.git_revision(), "command": common.this_command()}
    if a.json:
        common.write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
