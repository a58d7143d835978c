"""Where a training step of the benchmark Glow spends its time: runs a few warm `fit` steps (or
log_prob / sample calls at batch 64) under tf.profiler, reads the trace (XPlane) and prints the
host op time summed by op type.

    python bench/profile_train_step.py [--variant uncond] [--call train|log_prob|sample] [--xla]
        [--steps 10] [--top 25] [--trace DIR] [--smoke]

Op time counts each TensorFlow op event on the host's executor threads (intra-op work of an op
is attributed to the op). Under XLA the ops are fused clusters, so the table names XLA modules.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import glow_bench  # noqa: E402  (after the path insert)


def op_table(xplane_path: str) -> tuple[dict, float]:
    """{op type: [total µs, count]} over the host plane's op events, and the traced span in µs."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    raw = open(xplane_path, "rb").read()
    space.ParseFromString(gzip.decompress(raw) if xplane_path.endswith(".gz") else raw)
    totals = collections.defaultdict(lambda: [0.0, 0])
    start, end = float("inf"), 0.0
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for ev in line.events:
                name = plane.event_metadata[ev.metadata_id].name
                # TF op events are named "op_name:OpType" (oneDNN kernels: "_Mkl..."); executor and
                # function bookkeeping ("KernelAndDeviceFunc::Run", "__inference_...") is not
                if "::" in name or ":" not in name or name.startswith("__inference"):
                    continue
                kind = name.rsplit(":", 1)[1].lstrip("_")
                if not kind or not kind[0].isupper():
                    continue
                t0 = (line.timestamp_ns + ev.offset_ps / 1000) / 1000
                start, end = min(start, t0), max(end, t0 + ev.duration_ps / 1e6)
                totals[kind][0] += ev.duration_ps / 1e6
                totals[kind][1] += 1
    return dict(totals), max(end - start, 0.0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="uncond", choices=glow_bench.VARIANTS)
    p.add_argument("--call", default="train", choices=("train", "log_prob", "sample"))
    p.add_argument("--xla", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--smoke", action="store_true", help="tiny model, one call (CI)")
    p.add_argument("--trace", default=None, help="keep the trace here (TensorBoard profile plugin can open it)")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from tfcflow.optim import FusedAdam
    import numpy as np
    import tensorflow as tf

    glow_bench.set_threads(inter=1)
    keras.utils.set_random_seed(0)
    if a.smoke:
        a.steps = 1
    model, cond_kind = glow_bench.build(a.variant, smoke=a.smoke)
    size = 8 if a.smoke else glow_bench.H
    model.compile(optimizer=FusedAdam(1e-3), jit_compile=a.xla)
    rng = np.random.default_rng(0)
    b = glow_bench.BATCH_TRAIN
    x, c = glow_bench.synthetic_batch(4 * b, size, cond_kind, rng)
    model.initialize(x[:b], c[:b])
    ds = glow_bench.train_dataset(x, c)  # no tf.data autotuning: its sleeps pad every fit() call
    model.fit(ds, epochs=1, steps_per_epoch=1 if a.smoke else 5, verbose=0)  # trace + warm up

    if a.call == "train":
        def run():
            model.fit(ds, epochs=1, steps_per_epoch=a.steps, verbose=0)
    else:
        b = glow_bench.BATCH_INFER
        xi, ci = (tf.constant(t) for t in glow_bench.synthetic_batch(b, size, cond_kind, rng))
        jit = {"jit_compile": True} if a.xla else {}
        fn = (tf.function(lambda: model.log_prob(xi, ci), **jit) if a.call == "log_prob"
              else tf.function(lambda: model.sample(ci, temperature=1.0, seed=tf.constant([1, 2])), **jit))
        fn().numpy()

        def run():
            for _ in range(a.steps):
                fn().numpy()

    # the same calls unprofiled first: the profiler slows a training step ~1.4-2x (a log-prob call
    # hardly), so its op times are shares of a distorted step and the plain wall time is reported
    t = time.perf_counter()
    run()
    plain = time.perf_counter() - t
    logdir = a.trace or tempfile.mkdtemp(prefix="tfcflow_profile_")
    tf.profiler.experimental.start(logdir)
    t = time.perf_counter()
    run()
    wall = time.perf_counter() - t
    tf.profiler.experimental.stop()
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb*"), recursive=True))
    totals, span_us = op_table(paths[-1])
    op_us = sum(v[0] for v in totals.values())
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])
    # one op runs at a time (inter-op threads = 1; each op uses both intra-op threads), so op
    # time / wall is the share of the step spent inside kernels rather than between them
    print(f"{a.variant} {a.call}{' xla' if a.xla else ''}: {a.steps} calls of batch {b} in {wall:.2f} s "
          f"({a.steps * b / wall:.1f} img/s under the profiler); op time {op_us / 1e6:.2f} s "
          f"= {100 * op_us / (wall * 1e6):.0f}% of wall; unprofiled {a.steps * b / plain:.1f} img/s "
          f"(the profiler slowed the calls {wall / plain:.2f}x)")
    print("| op type | ms per call | share of op time | ops per call |")
    print("|---|---|---|---|")
    for kind, (us, n) in rows[:a.top]:
        print(f"| {kind} | {us / 1000 / a.steps:.1f} | {100 * us / op_us:.1f}% | {n / a.steps:.0f} |")
    result = {"variant": a.variant, "call": a.call, "xla": a.xla, "steps": a.steps, "wall_s": wall,
              "unprofiled_wall_s": plain, "op_s": op_us / 1e6,
              "span_s": span_us / 1e6, "ops": {k: {"ms_per_step": v[0] / 1000 / a.steps,
                                                    "calls_per_step": v[1] / a.steps} for k, v in rows}}
    print(json.dumps({k: v for k, v in result.items() if k != "ops"}))
    return result


if __name__ == "__main__":
    main()
