"""A/B speed of the benchmark Glow between a git revision and the working tree, in ONE process.

On a shared machine two processes run minutes apart can differ by 10-30%; alternating the two
versions within one process, call after call, leaves only the code as the difference. The
revision's ``tfcflow`` package and ``bench/glow_bench.py`` are exported to a temporary folder
under the names ``tfcflow_ab`` / ``glow_bench_ab``, then both models are built, warmed up and
timed in alternation; both train with the working tree's default Adam.

    python bench/ab_compare.py REV [--call train|log_prob|sample] [--rounds 8] [--inter 2]

Prints min and median time per call of each and the speedup (A = REV, B = working tree).
"""
from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def export_revision(rev: str, dest: str) -> None:
    """Writes REV's tfcflow as ``dest/tfcflow_ab`` and its glow_bench as ``dest/glow_bench_ab.py``."""
    data = subprocess.run(["git", "-C", ROOT, "archive", rev, "tfcflow", "bench/glow_bench.py"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            text = tar.extractfile(member).read().decode()
            # the package name in imports and in Keras' registered names, so both versions coexist
            text = re.sub(r"\btfcflow(?=[. ])", "tfcflow_ab", text).replace('package="tfcflow"',
                                                                            'package="tfcflow_ab"')
            name = member.name.replace("bench/glow_bench.py", "glow_bench_ab.py")
            path = os.path.join(dest, name.replace("tfcflow/", "tfcflow_ab/", 1))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rev", help="git revision for A (e.g. HEAD~1)")
    p.add_argument("--call", default="train", choices=("train", "log_prob", "sample"))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--calls", type=int, default=10, help="calls (training steps) per timing")
    p.add_argument("--inter", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="tiny models, one round (CI)")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tmp = tempfile.mkdtemp(prefix="tfcflow_ab_")
    export_revision(a.rev, tmp)
    sys.path.insert(0, tmp)
    import keras
    import numpy as np
    import tensorflow as tf

    import glow_bench
    glow_bench.set_threads(a.inter)
    import glow_bench_ab
    from tfcflow.optim import FusedAdam

    size = 8 if a.smoke else glow_bench.H
    rounds, calls = (1, 1) if a.smoke else (a.rounds, a.calls)
    rng = np.random.default_rng(0)
    x, c = glow_bench.synthetic_batch(4 * glow_bench.BATCH_TRAIN, size, None, rng)
    ds = glow_bench.train_dataset(x, c)
    xi, ci = (tf.constant(t) for t in glow_bench.synthetic_batch(glow_bench.BATCH_INFER, size, None, rng))
    runs, log_probs = {}, {}
    for name, module in (("A", glow_bench_ab), ("B", glow_bench)):
        keras.utils.set_random_seed(0)
        model, _ = module.build("uncond", a.smoke)
        model.compile(optimizer=FusedAdam(1e-3))
        model.initialize(x[:glow_bench.BATCH_TRAIN], c[:glow_bench.BATCH_TRAIN])
        log_probs[name] = float(tf.reduce_mean(model.log_prob(xi, ci)))  # before any training step
        if a.call == "train":
            model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
            runs[name] = (lambda m: lambda: m.fit(ds, epochs=1, steps_per_epoch=calls, verbose=0))(model)
        else:
            fn = (tf.function(lambda m=model: tf.reduce_sum(m.log_prob(xi, ci))) if a.call == "log_prob" else
                  tf.function(lambda m=model: tf.reduce_sum(m.sample(ci, temperature=1.0, seed=tf.constant([1, 2])))))
            fn()
            runs[name] = (lambda f: lambda: [f().numpy() for _ in range(calls)])(fn)
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t) / calls)
    ta, tb = np.array(times["A"]), np.array(times["B"])
    res = dict(rev=a.rev, call=a.call, inter=a.inter, rounds=rounds, log_prob_a=log_probs["A"],
               log_prob_b=log_probs["B"], a_ms=dict(min=1e3 * ta.min(), median=1e3 * np.median(ta)),
               b_ms=dict(min=1e3 * tb.min(), median=1e3 * np.median(tb)),
               speedup_of_mins=float(ta.min() / tb.min()), median_speedup=float(np.median(ta / tb)))
    print(f"{a.call}: A ({a.rev}) min {res['a_ms']['min']:.1f} / median {res['a_ms']['median']:.1f} ms per call; "
          f"B (working tree) min {res['b_ms']['min']:.1f} / median {res['b_ms']['median']:.1f} ms; "
          f"speedup B/A: of the minima {res['speedup_of_mins']:.3f}, median of paired ratios "
          f"{res['median_speedup']:.3f} ({rounds} rounds); initial mean log-prob A {log_probs['A']:.3f}, "
          f"B {log_probs['B']:.3f}")
    return res


if __name__ == "__main__":
    main()
