"""Where the spline cINN of the SBI benchmark spends its time: sampling 10,000 draws of one
observation (op types, from a tf.profiler trace) and the parts of one training step.

    python bench/sbi_benchmark/profile_posterior.py [--task two_moons] [--width 128] [--depth 6]
        [--calls 5] [--steps 30] [--top 12] [--json FILE] [--smoke]

The model is the table's ``tfcflow_cinn_spline`` (ours.py's defaults: spline couplings, LU mixing,
standardization, the prior's box), built on the task's cached simulations and trained for one
epoch (the weights barely matter for the cost). The training step is split into what it does:
the loss and its gradients, the optimizer's update of every variable, and Keras' ``fit`` step
around them (data iterator, checks, clipping, metrics), each timed alone in its own
``tf.function`` as the mean of ``--steps`` warm calls at batch 256. With ``--smoke`` (CI) a tiny
model on random data, one call each, and no trace.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
from cost_model import one_epoch_model, task_data  # noqa: E402
from profile_train_step import op_table  # noqa: E402


def _mean_ms(fn, n: int) -> float:
    import numpy as np
    np.asarray(fn())  # warm (traced)
    t = time.perf_counter()
    for _ in range(n):
        out = fn()
    np.asarray(out)
    return (time.perf_counter() - t) / n * 1000


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="two_moons", choices=common.TASKS)
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--calls", type=int, default=5, help="profiled sampling calls")
    p.add_argument("--steps", type=int, default=30, help="timed calls of each training-step part")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--smoke", action="store_true", help="tiny model on random data, one call each (CI)")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    theta, x, observations, box = task_data(a.out, a.task, a.smoke)
    if a.smoke:
        a.width, a.depth, a.calls, a.steps, draws, batch = 8, 1, 1, 1, 100, 64
    else:
        draws, batch = common.NUM_POSTERIOR_SAMPLES, 256
    model = one_epoch_model(theta, x, box, a.width, a.depth, batch=batch)

    # ---- sampling: op types of `calls` calls of `draws` draws each ---------------------------------
    def sample(i=0):
        return model.sample(observations[i % len(observations)][None], num_samples=draws, seed=i)

    sample_ms = _mean_ms(sample, a.calls)
    ops = {}
    if not a.smoke:
        logdir = tempfile.mkdtemp(prefix="tfcflow_profile_")
        tf.profiler.experimental.start(logdir)
        for i in range(a.calls):
            np.asarray(sample(i))
        tf.profiler.experimental.stop()
        totals, _ = op_table(sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb*"), recursive=True))[-1])
        op_us = sum(v[0] for v in totals.values())
        ops = {k: {"share": v[0] / op_us, "ms_per_call": v[0] / 1000 / a.calls, "ops_per_call": v[1] / a.calls}
               for k, v in sorted(totals.items(), key=lambda kv: -kv[1][0])}

    # ---- the parts of one training step ------------------------------------------------------------
    t, c = tf.constant(theta[:batch]), tf.constant(x[:batch])
    seed = tf.constant([0, 1])
    variables = model.trainable_variables
    grads = [tf.zeros_like(v) for v in variables]
    loss_and_grads = tf.function(lambda: model._loss_and_grads(t, c, seed)[2:])
    # the update with zero gradients: the same ops as any update (the learning rate does not change them)
    update = tf.function(lambda: (model.optimizer.apply(grads, variables), model.optimizer.iterations)[1])
    it = iter(tf.data.Dataset.from_tensor_slices((theta[:batch], x[:batch])).batch(batch).repeat())
    fit_step = lambda: model.train_function(it)["loss"]  # noqa: E731
    parts = {"loss and gradients": _mean_ms(lambda: loss_and_grads()[0], a.steps),
             "optimizer update": _mean_ms(update, a.steps),
             "Keras fit step (all of it)": _mean_ms(fit_step, a.steps)}

    result = {"task": a.task, "width": a.width, "depth": a.depth, "draws": draws, "sample_ms": sample_ms,
              "samples_per_second": draws / sample_ms * 1000, "variables": len(variables),
              "parameters": int(sum(int(np.prod(v.shape)) for v in variables)), "batch": batch,
              "train_step_ms": parts, "sampling_ops": ops, "versions": common.versions("tensorflow", "keras",
                                                                                       "tensorflow-probability"),
              "command": common.this_command()}
    print(f"{a.task} spline cINN, {a.depth} blocks of 2 x {a.width}: {draws} draws in {sample_ms:.1f} ms "
          f"({result['samples_per_second']:.0f} samples/s)")
    if ops:
        print("| op type (sampling) | ms per call | share of op time | ops per call |")
        print("|---|---|---|---|")
        for kind, v in list(ops.items())[:a.top]:
            print(f"| {kind} | {v['ms_per_call']:.1f} | {100 * v['share']:.1f}% | {v['ops_per_call']:.0f} |")
    print(f"| training step part (batch {batch}, {len(variables)} variables) | ms |")
    print("|---|---|")
    for k, v in parts.items():
        print(f"| {k} | {v:.1f} |")
    if a.json:
        common.write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
