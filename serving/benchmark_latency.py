"""Latency of every exported signature through the loaded SavedModel (what TF Serving runs) vs the
same call on the in-process model (its methods wrapped in tf.function), at batch 1 and 64.

    python serving/benchmark_latency.py --run runs/mnist_sr_caflow [--out docs/serving_latency.json]
    python serving/benchmark_latency.py --run runs/gaussian_mixture_rcf

Reports the median of repeated calls in milliseconds (after a warm-up call), one process.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a `tfcflow train` run folder")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--n", type=int, default=10, help="n of best_of_n")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from tfcflow import export, trainer
    from tfcflow.models.image_flow import ImageFlowModel

    model = trainer.load_run(a.run)
    path = export.save(model, tempfile.mkdtemp(), model_name="bench", use_ema=False)
    loaded = tf.saved_model.load(path).signatures
    rng = np.random.default_rng(0)
    image = isinstance(model, ImageFlowModel)

    def data(batch):
        if image:
            x = rng.integers(0, 256, (batch,) + model.event_shape).astype(np.uint8)
            if len(model.condition_shape) == 3:
                c = rng.integers(0, 256, (batch,) + model.condition_shape).astype(np.uint8)
            else:
                c = np.eye(model.condition_shape[0], dtype=np.float32)[np.arange(batch) % model.condition_shape[0]]
        else:
            x = rng.standard_normal((batch,) + model.event_shape).astype(np.float32)
            c = np.eye(model.condition_shape[0], dtype=np.float32)[np.arange(batch) % model.condition_shape[0]]
        return tf.constant(x), tf.constant(c)

    t, s, n = tf.constant(0.7), tf.constant(1, tf.int64), tf.constant(a.n)
    local = {"log_prob": tf.function(lambda x, c: model.log_prob(x, c)),
             "sample": tf.function(lambda c: model.sample(c, temperature=t, seed=s)),
             "best_of_n": tf.function(lambda c: model.best_of_n(c, n, temperature=t, seed=s)),
             "infer_condition": (tf.function(lambda x: model.infer_condition(x))
                                 if hasattr(model, "infer_condition") else None)}
    rows = []
    for batch in [int(b) for b in a.batches.split(",")]:
        x, c = data(batch)
        calls = {"log_prob": (lambda: loaded["log_prob"](x=x, condition=c), lambda: local["log_prob"](x, c)),
                 "sample": (lambda: loaded["sample"](condition=c, temperature=t, seed=s), lambda: local["sample"](c)),
                 "best_of_n": (lambda: loaded["best_of_n"](condition=c, n=n, temperature=t, seed=s),
                               lambda: local["best_of_n"](c))}
        if local["infer_condition"] is not None:
            calls["infer_condition"] = (lambda: loaded["infer_condition"](x=x), lambda: local["infer_condition"](x))
        for name, (served, in_process) in calls.items():
            ms_saved, ms_local = _median_ms(served, a.repeats), _median_ms(in_process, a.repeats)
            rows.append(dict(signature=name, batch=batch, savedmodel_ms=round(ms_saved, 2),
                             in_process_ms=round(ms_local, 2), ratio=round(ms_saved / ms_local, 3)))
            print(json.dumps(rows[-1]), flush=True)
    result = dict(run=a.run, model=type(model).__name__, n=a.n, repeats=a.repeats, rows=rows)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
