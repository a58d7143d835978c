"""Posterior draws per second of ``sample(c, num_samples=N)`` as N grows, computed in chunks of
4,096 rows (the default ``batch_size``) and in one chunk of N rows, alternated round by round in
ONE process. Chunked draws must cost the same per draw at any N: each chunk draws only its own
rows' noise (``_random`` offsets), not the whole N rows' noise and a slice of it.

    python bench/sample_many_scaling.py                     # ~1 min on 2 cores
    python bench/sample_many_scaling.py --smoke             # tiny sizes (CI)
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,400000", help="N, comma-separated")
    p.add_argument("--rows", type=int, default=4096, help="the chunked calls' batch_size")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    import numpy as np
    import tensorflow as tf

    from tfcflow.models import ConditionalRealNVP

    sizes = [300, 1000] if a.smoke else [int(s) for s in a.sizes.split(",")]
    rows = 128 if a.smoke else a.rows
    rounds = 1 if a.smoke else a.rounds
    # a small 2-D posterior model: the per-draw cost of the noise is what this measures
    model = ConditionalRealNVP(event_shape=2, condition_shape=2, depth=2, width=16, seed=0)
    c = tf.constant([[0.1, 0.2]])
    modes = {"chunked": lambda n: rows, "one_chunk": lambda n: n}
    times = {(n, m): [] for n in sizes for m in modes}
    for n in sizes:
        for m in modes:
            model.sample(c, num_samples=n, seed=0, batch_size=modes[m](n))  # trace, untimed
    for i in range(rounds):
        for n in sizes:
            for m in (("chunked", "one_chunk") if i % 2 == 0 else ("one_chunk", "chunked")):
                t0 = time.perf_counter()
                np.asarray(model.sample(c, num_samples=n, seed=i + 1, batch_size=modes[m](n)))
                times[(n, m)].append(time.perf_counter() - t0)
    report = {}
    print(f"| N | draws/s, chunks of {rows} | draws/s, one chunk | chunked / one chunk |")
    print("|---|---|---|---|")
    for n in sizes:
        chunked = n / statistics.median(times[(n, "chunked")])
        whole = n / statistics.median(times[(n, "one_chunk")])
        report[n] = {"chunked": chunked, "one_chunk": whole}
        print(f"| {n} | {chunked:,.0f} | {whole:,.0f} | {chunked / whole:.2f} |")
    return report


if __name__ == "__main__":
    main()
