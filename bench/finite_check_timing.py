"""Sampling speed of the benchmark Glow under three forms of the samples' finiteness check
(``tfcflow._checks.finite_samples``: the library's IsFinite + All + Assert, CheckNumerics, none),
in ONE process, alternated round by round (docs/benchmarks/ab_notes.md).

    python bench/finite_check_timing.py --rounds 7          # ~2 min on 2 cores
    python bench/finite_check_timing.py --smoke             # tiny model, one round (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    from tfcflow.execution import Execution, configure_cpu_threads
    if not a.smoke:  # the smoke test runs in a process whose thread pools already exist
        configure_cpu_threads(2)
    import numpy as np
    import tensorflow as tf

    import glow_bench
    from tfcflow import _checks

    size, levels, depth, width, batch = (8, 2, 1, 8, 8) if a.smoke else (glow_bench.H, glow_bench.L, glow_bench.K,
                                                                          glow_bench.HID, 64)
    rounds, calls = (1, 1) if a.smoke else (a.rounds, a.calls)
    model = glow_bench.unconditional_glow((size, size, glow_bench.C), levels, depth, width)
    model.execution = Execution(sub_batches=2, fused_steps=True)
    x = np.random.default_rng(0).integers(0, 256, (64, size, size, glow_bench.C)).astype(np.uint8)
    model.initialize(x, np.zeros((64, 1), np.float32))
    c = tf.zeros((batch, 1))
    checks = {"assert": _checks.finite_samples, "check_numerics": lambda s: tf.debugging.check_numerics(s, "samples"),
              "none": lambda s: s}
    fns = {}
    try:
        for name, check in checks.items():  # the check in force while each function is traced
            _checks.finite_samples = check
            fns[name] = tf.function(lambda c, s: model.sample(c, temperature=1.0, seed=s))
            fns[name](c, tf.constant(0, tf.int64))
    finally:
        _checks.finite_samples = checks["assert"]
    res = {name: [] for name in checks}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            for i in range(calls):
                fn(c, tf.constant(i, tf.int64)).numpy()
            res[name].append(batch * calls / (time.perf_counter() - t))
    out = {name: dict(median=statistics.median(v), rounds=[round(r, 1) for r in v]) for name, v in res.items()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
