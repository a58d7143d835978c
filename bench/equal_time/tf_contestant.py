"""The tfcflow contestant of the equal-time benchmark, one per process.

  --part mnist  the unconditional multi-scale Glow of bench/glow_bench.py (``uncond``): MultiScaleFlow
                (L = 3, K = 8, hidden 64; ActNorm, LU 1x1 conv, affine coupling with sigmoid(h+2)
                scale, no transition steps, a learned split prior -- one conv3x3 -- at each exit) in a
                small ImageFlowModel subclass, on 32x32x1 MNIST.
  --part sr     ConditionalGlow, x4 super-resolution: the same flow given an 8x8x1 condition through
                its ConditionEncoder (16 channels; bicubic x4 upsampling, conv3x3 stem, a stride-2
                conv per level, plus the upsampled condition squeezed to each level) that the
                couplings and split priors see; no injector (the FrEIA peer has none).

Training is what a user writes: ``model.compile(optimizer=FusedAdam(1e-3))`` and one ``model.fit``
on a shuffled ``tf.data`` pipeline of the 60,000 training digits (batch 32, float32), a callback
keeping the clock (protocol.py). Execution, as in the project's benchmarks (docs/benchmarks.md,
documented faster on this 2-core machine: training 1.28x in run 11): 2 sub-batches with 1 intra-op
and 2 inter-op threads, fused steps (``--execution default`` runs tfcflow's plain defaults).

    python bench/equal_time/tf_contestant.py --part mnist --seconds 600 --out r.json
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: glow_bench
import numpy as np  # noqa: E402

import glow_bench  # noqa: E402
import protocol as pc  # noqa: E402


def build(part: str, s: dict):
    """(model, training conditions of ``train``, test conditions) for ``part``."""
    from tfcflow.models import ConditionalGlow

    shape = (pc.SIZE, pc.SIZE, pc.CHANNELS)
    if part == "sr":
        return ConditionalGlow(shape, (pc.SIZE // pc.SR_FACTOR, pc.SIZE // pc.SR_FACTOR, pc.CHANNELS),
                               levels=s["levels"], depth=s["depth"], width=s["hidden"], transition_steps=0,
                               conditioning={"encoder_width": pc.ENCODER_WIDTH, "injector": False, "prior_width": 0},
                               coupling={"kind": "affine", "scale": "sigmoid"})
    return glow_bench.unconditional_glow(shape, s["levels"], s["depth"], s["hidden"])


def conditions(part: str, x: np.ndarray) -> np.ndarray:
    """The condition rows of images ``x``: the 8x8 low-resolution image, or the dummy zeros."""
    return pc.low_resolution(x) if part == "sr" else np.zeros((len(x), 1), np.float32)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--execution", default="benchmark", choices=("benchmark", "default"),
                   help="benchmark: 2 sub-batches, 1 intra-op + 2 inter-op threads, fused steps; default: "
                        "TensorFlow's threads, tfcflow's default Execution()")
    pc.add_common_args(p)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    import tfcflow
    from tfcflow.execution import Execution, configure_cpu_threads
    from tfcflow.optim import FusedAdam

    if a.execution == "benchmark":
        configure_cpu_threads(2)
    keras.utils.set_random_seed(0)
    s = pc.sizes(a)
    t0 = time.perf_counter()
    train, test = pc.load_mnist()
    test = test[:s["test_digits"]]
    c_train, c_test = conditions(a.part, train), conditions(a.part, test)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = build(a.part, s)
    if a.execution == "benchmark":
        model.execution = Execution(sub_batches=2, fused_steps=True)
    model.compile(optimizer=FusedAdam(pc.LR))
    init = pc.init_indices(len(train))
    model.initialize(train[init], c_train[init])
    build_s = time.perf_counter() - t0

    options = tf.data.Options()
    options.autotune.enabled = False  # no autotuner thread competing for the 2 cores (bench/glow_bench.py)
    ds = (tf.data.Dataset.from_tensor_slices((train, c_train)).shuffle(len(train), seed=0)
          .batch(pc.BATCH, drop_remainder=True).repeat().prefetch(2).with_options(options))
    dims = pc.SIZE * pc.SIZE * pc.CHANNELS
    log_prob_bound = tf.function(lambda x, c, seed: model.log_prob_bound(x, c, seed=seed))

    def test_bpd(n: int) -> np.ndarray:
        out = []
        for i, lo in enumerate(range(0, n, pc.EVAL_BATCH)):
            hi = min(n, lo + pc.EVAL_BATCH)
            lp = log_prob_bound(tf.constant(test[lo:hi]), tf.constant(c_test[lo:hi]),
                                tf.constant([pc.eval_seed(i), 0], tf.int32))
            out.append(lp.numpy())
        # log_prob_bound already includes -D log 256: bits/dim = -log P / (D log 2)
        return -np.concatenate(out).astype(np.float64) / (dims * math.log(2.0))

    res = pc.base_result(a.part, "tfcflow", a.seconds, a.smoke, s["test_digits"])
    res.update(framework="tensorflow " + tf.__version__, impl="tfcflow " + getattr(tfcflow, "__version__", "?"),
               keras=keras.__version__, execution=a.execution, sub_batches=model.execution.sub_batches,
               fused_steps=model.execution.fused_steps,
               threads=dict(intra=tf.config.threading.get_intra_op_parallelism_threads(),
                            inter=tf.config.threading.get_inter_op_parallelism_threads()),
               architecture=s, params=int(model.count_params()), params_effective=glow_bench.effective_params(model),
               load_s=round(load_s, 2), build_s=round(build_s, 2),
               optimizer="tfcflow.optim.FusedAdam(1e-3) (Keras Adam's update in one kernel)")

    clock, curve = pc.TrainClock(), pc.Curve(a.seconds)
    state = dict(steps=0, t_fit=None, last=None)

    def take_point():
        t = time.perf_counter()
        bpd = float(np.mean(test_bpd(s["curve_digits"])))
        curve.add(clock.elapsed, state["steps"], bpd, time.perf_counter() - t)
        return bpd

    class Budget(keras.callbacks.Callback):
        """Keeps the training clock: starts it after the warm-up step, pauses it for curve points,
        stops fit when the budget is spent or the loss is not finite."""

        def on_train_batch_end(self, batch, logs=None):
            state["steps"] += 1
            state["last"] = (logs or {}).get("loss")
            if state["steps"] == 1:
                res["warmup_s"] = round(time.perf_counter() - state["t_fit"], 3)
                take_point()
                clock.start()
                return
            if not math.isfinite(float(np.asarray(state["last"]).ravel()[0])):
                res["diverged"] = True
                self.model.stop_training = True
            elif clock.elapsed >= a.seconds:
                self.model.stop_training = True
            elif curve.due(clock.elapsed):
                clock.pause()
                take_point()
                clock.start()

    res["diverged"] = False
    state["t_fit"] = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=10 ** 9, verbose=0, shuffle=False, callbacks=[Budget()])
    clock.pause()
    t = time.perf_counter()
    final = test_bpd(s["test_digits"])
    res["final_eval_s"] = round(time.perf_counter() - t, 2)
    pc.finish(res, clock, state["steps"], state["steps"] - 1, curve, final, s["curve_digits"])
    return pc.dump(res, a.out)


if __name__ == "__main__":
    main()
