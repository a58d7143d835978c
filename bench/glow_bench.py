"""tfcflow on the peer benchmark's architecture (../shared/bench/peers): one variant per process.

Architecture (as the peers): 32x32x3 input, L=3 levels, K=8 steps per level, each step ActNorm ->
LU 1x1 conv -> affine coupling (sigmoid(h+2) scale; conv3x3(64)-ReLU-conv1x1(64)-ReLU-conv3x3
zero-initialized), no transition steps, a learned split prior (one conv3x3) at each exit, batch 32
for training (Adam 1e-3), 64 for log-prob and sampling, uniform dequantization of 8-bit images.

Variants:
  uncond      the multi-scale flow with tfcflow's training step (fit), unconditional
  cond_label  ConditionalGlow, one-hot class condition (10), condition fed to couplings and priors
  cond_label_injector   the same plus SRFlow's affine injector in every step
  cond_image  ConditionalGlow, 16x16x3 image condition (encoder features at every level)
  mirrored    `uncond` under MirroredStrategy with 2 logical CPU replicas (global batch 32)

    python bench/glow_bench.py --variant uncond [--xla] [--smoke] [--out results/x.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import timing  # noqa: E402

H = W = 32
C, L, K, HID = 3, 3, 8, 64
BATCH_TRAIN, BATCH_INFER = 32, 64
VARIANTS = ("uncond", "cond_label", "cond_label_injector", "cond_image", "mirrored")


def macs_per_image(cond_channels: int = 0, injector: bool = False) -> int:
    """Forward (x -> z) multiply-accumulates per image: coupling nets, 1x1 convs, exit priors
    (+ the condition's extra input channels in couplings / injectors)."""
    macs, h, w, c = 0, H, W, C
    for lvl in range(L):
        h, w, c = h // 2, w // 2, c * 4
        px = h * w
        ci, co = c // 2, 2 * (c - c // 2)
        step = ((ci + cond_channels) * HID * 9 + HID * HID + HID * co * 9) * px + c * c * px
        if injector:
            step += (cond_channels * HID * 9 + HID * HID + HID * 2 * c * 9) * px
        macs += K * step
        if lvl < L - 1:
            macs += ((c // 2) + cond_channels) * (2 * (c // 2)) * 9 * px
            c //= 2
    return macs


def unconditional_glow(shape, levels: int, depth: int, width: int):
    """The peers' unconditional multi-scale Glow in a small ``ImageFlowModel`` subclass (tfcflow's
    image-model training step; shared with bench/equal_time)."""
    from tfcflow.models import ImageFlowModel, MultiScaleFlow

    shape = tuple(shape)

    class Glow(ImageFlowModel):
        """The base class wants a condition; this one takes a 1-dim dummy that no layer reads."""

        def __init__(self):
            super().__init__(shape, (1,), levels)
            self.flow = MultiScaleFlow(levels, depth, width, transition_steps=0, injector=False,
                                       learned_prior=True, prior_width=0, scale="sigmoid", name="flow")
            self.flow.build((None,) + shape)
            self.built = True

        def _features(self, condition):
            return None

        def _latent_bijector(self, features):
            return self.flow.bijector()

        def _piece_levels(self):
            return range(self.levels)

        def _data_init_flow(self, y, condition, force):
            self.flow.data_init(y, force=force)

    return Glow()


def build(variant: str, smoke: bool, chains: int = 1, fused_steps: bool = True):
    from tfcflow.execution import Execution
    from tfcflow.models import ConditionalGlow

    levels, steps, hid = (2, 1, 8) if smoke else (L, K, HID)
    size = 8 if smoke else H

    common = dict(levels=levels, depth=steps, width=hid, transition_steps=0,
                  coupling={"kind": "affine", "scale": "sigmoid"})
    if variant in ("uncond", "mirrored"):
        model, kind = unconditional_glow((size, size, C), levels, steps, hid), None
    elif variant in ("cond_label", "cond_label_injector"):
        conditioning = {"encoder_width": 10, "injector": variant == "cond_label_injector", "prior_width": 0}
        model, kind = ConditionalGlow((size, size, C), (10,), conditioning=conditioning, **common), 10
    else:
        conditioning = {"encoder_width": 16, "injector": False, "prior_width": 0}
        model, kind = ConditionalGlow((size, size, C), (size // 2, size // 2, C), conditioning=conditioning,
                                      **common), "image"
    # tfcflow's CPU execution choices, asked for explicitly (tfcflow/execution.py)
    model.execution = Execution(sub_batches=chains, fused_steps=fused_steps)
    return model, kind


def synthetic_batch(n: int, size: int, cond_kind, rng):
    """``n`` random 8-bit images ``[n, size, size, C]`` and conditions of ``cond_kind`` (what
    ``build`` returns: None -> a dummy ``[n, 1]``, "image" -> 8-bit ``[n, size/2, size/2, C]``,
    10 -> one-hot labels)."""
    import numpy as np

    x = rng.integers(0, 256, (n, size, size, C)).astype(np.uint8)
    if cond_kind is None:
        return x, np.zeros((n, 1), np.float32)
    if cond_kind == "image":
        return x, rng.integers(0, 256, (n, size // 2, size // 2, C)).astype(np.uint8)
    return x, np.eye(10, dtype=np.float32)[np.arange(n) % 10]


def set_threads(inter: int, intra: int = 2) -> None:
    """TensorFlow's thread pools for a timed run. Only possible before TensorFlow initializes; a
    no-op after (the smoke tests call the scripts' main() in one process)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        pass


def dequantized(x, rng):
    """8-bit images ``x`` plus uniform noise, scaled to [-0.5, 0.5): the flow's (and the peers') input."""
    import numpy as np

    return (x.astype(np.float32) + rng.random(x.shape, np.float32)) / 256.0 - 0.5


def train_dataset(x, c):
    """Endless batches of BATCH_TRAIN for timed ``fit`` calls: a fixed prefetch and no tf.data
    autotuning, because the autotuner's thread sleeps in doubling periods (10 ms, 20 ms, ...) and
    the iterator's teardown at the end of every fit() call waits for the current sleep, which made
    timed fit() calls snap to 2.56 / 5.12 / 10.24 s."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    ds = tf.data.Dataset.from_tensor_slices((x, c)).batch(BATCH_TRAIN, drop_remainder=True).repeat()
    return ds.prefetch(2).with_options(options)


def effective_params(model) -> int:
    """Trainable parameters, counting the LU 1x1 convolutions' used triangles only (C^2 each)."""
    from tfcflow import _compat
    from tfcflow.bijectors import InvertibleConv1x1Layer
    total = sum(int(v.numpy().size) for v in model.trainable_variables)
    for layer in _compat.all_layers(model):
        if isinstance(layer, InvertibleConv1x1Layer) and layer.lu:
            c = int(layer.log_abs_diag.shape[0])
            total -= c * c + c
    return total


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="uncond", choices=VARIANTS)
    p.add_argument("--xla", action="store_true", help="jit_compile=True (training and inference functions)")
    p.add_argument("--smoke", action="store_true", help="tiny model, one call per measurement (CI)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="training steps per timed call")
    p.add_argument("--chains", type=int, default=1,
                   help="parallel sub-batches (tfcflow/execution.py: Execution.sub_batches); the threads default to "
                        "what tfcflow.execution.configure_cpu_threads sets (1 intra-op, CHAINS inter-op)")
    p.add_argument("--plain-steps", action="store_true",
                   help="the layers' own bijector views (Execution.fused_steps=False; default: fused steps)")
    p.add_argument("--inter", type=int, default=None,
                   help="inter-op threads (default: 2, TensorFlow's default on this 2-core machine; CHAINS if > 1)")
    p.add_argument("--intra", type=int, default=None,
                   help="intra-op threads (default: 2, TensorFlow's default here; 1 with chains)")
    p.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"),
                   help="Keras policy for the coupling networks (flows and log-dets stay float32); the bf16 run "
                        "also reports its log-prob's distance from a float32 twin with the same weights")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from tfcflow.optim import FusedAdam
    import tensorflow as tf
    from tfcflow import optim
    from tfcflow.distribute import make_strategy, use_logical_cpus

    if a.variant == "mirrored":
        try:  # only possible before TensorFlow initializes (a fresh process; the tests call main() in-process)
            use_logical_cpus(2)
        except RuntimeError:
            pass
    chained = a.chains > 1
    set_threads(a.inter if a.inter is not None else (a.chains if chained else 2),
                a.intra if a.intra is not None else (1 if chained else 2))
    keras.utils.set_random_seed(0)
    rss0 = timing.peak_rss_mb()
    strategy = make_strategy("mirrored") if a.variant == "mirrored" else tf.distribute.get_strategy()
    optim.set_precision(a.precision)
    try:
        with strategy.scope():
            model, cond_kind = build(a.variant, a.smoke, a.chains, fused_steps=not a.plain_steps)
            model.compile(optimizer=FusedAdam(1e-3), jit_compile=a.xla)
        return _measure(a, model, cond_kind, strategy, rss0)
    finally:  # the policy is global: leave float32 behind (the tests call main() in-process)
        optim.set_precision("float32")


def _measure(a, model, cond_kind, strategy, rss0) -> dict:
    import numpy as np
    import tensorflow as tf
    from tfcflow import optim

    runs, calls, steps = (1, 1, 1) if a.smoke else (a.runs, 10, a.steps)
    budget = 0.0 if a.smoke else 240.0
    size = model.event_shape[0]
    rng = np.random.default_rng(0)
    x_train, c_train = synthetic_batch(4 * BATCH_TRAIN, size, cond_kind, rng)
    model.initialize(x_train[:BATCH_TRAIN], c_train[:BATCH_TRAIN])
    res = dict(variant=a.variant, xla=a.xla, smoke=a.smoke, precision=a.precision, tf=tf.__version__,
               replicas=strategy.num_replicas_in_sync, chains=model.execution.sub_batches,
               fused_steps=model.execution.fused_steps,
               threads=dict(intra=tf.config.threading.get_intra_op_parallelism_threads(),
                            inter=tf.config.threading.get_inter_op_parallelism_threads()),
               params=int(model.count_params()), params_effective=effective_params(model),
               macs_per_image=macs_per_image(10 if cond_kind == 10 else (16 + 3 * 4 if cond_kind == "image" else 0),
                                             a.variant == "cond_label_injector"))
    ds = train_dataset(x_train, c_train)

    # ---- inference (like the peers: before training) ----
    jit = dict(jit_compile=True) if a.xla else {}
    lp_fn = tf.function(lambda x, c: model.log_prob(x, c), **jit)
    smp_fn = tf.function(lambda c, s: model.sample(c, temperature=1.0, seed=s), **jit)
    x64, c64 = synthetic_batch(BATCH_INFER, size, cond_kind, rng)
    t = time.perf_counter()
    float(tf.reduce_sum(lp_fn(tf.constant(x64), tf.constant(c64))))
    res["logprob_first_call_s"] = time.perf_counter() - t
    res["logprob_ips"] = timing.timed(lambda: float(tf.reduce_sum(lp_fn(tf.constant(x64), tf.constant(c64)))),
                                      BATCH_INFER, calls, runs, budget)
    seed = tf.constant([1, 2])
    t = time.perf_counter()
    float(tf.reduce_sum(smp_fn(tf.constant(c64), seed)))
    res["sample_first_call_s"] = time.perf_counter() - t
    res["sample_ips"] = timing.timed(lambda: float(tf.reduce_sum(smp_fn(tf.constant(c64), seed))), BATCH_INFER,
                                     calls, runs, budget)
    res["peak_rss_after_infer_mb"] = timing.peak_rss_mb()

    # ---- training: Keras fit with tfcflow's train_step ----
    t = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    res["train_first_step_s"] = time.perf_counter() - t
    model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
    hist = {}

    def block():
        hist["h"] = model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)

    res["train_ips"] = timing.timed(block, steps * BATCH_TRAIN, 1, runs, budget)
    res["final_loss_nats_per_img"] = float(hist["h"].history["loss"][-1])
    res["peak_rss_after_train_mb"] = timing.peak_rss_mb()
    res["rss_at_start_mb"] = rss0

    # ---- round trip on fresh tensors, trained weights ----
    def view():
        return model._latent_bijector(model._features(model._check_condition(c64)))

    y = tf.constant(dequantized(x64, rng))
    z = view().inverse(y)
    y_back = view().forward(tf.constant(z.numpy()))  # a fresh tensor and view: no TFP cache hit
    res["inv_err_max"] = float(tf.reduce_max(tf.abs(y_back - y)))
    if a.precision != "float32":
        # the trained weights in a float32 twin: how far the mixed-precision log-prob is from float32's
        optim.set_precision("float32")
        twin, _ = build(a.variant, a.smoke)
        twin.initialize(x_train[:BATCH_TRAIN], c_train[:BATCH_TRAIN])
        twin.set_weights(model.get_weights())
        x, c = tf.constant(x64), tf.constant(c64)
        bpd = [m.log_prob_bound(x, c, seed=0) / (-np.log(2.0) * np.prod(model.event_shape)) for m in (model, twin)]
        res["bpd_abs_diff_vs_float32"] = dict(max=float(tf.reduce_max(tf.abs(bpd[0] - bpd[1]))),
                                              mean=float(tf.reduce_mean(tf.abs(bpd[0] - bpd[1]))))
    return emit_json(res, a.out)


def emit_json(res: dict, out) -> dict:
    """Prints ``res`` as one JSON line (run_bench reads the last line) and writes it to ``out`` if given."""
    text = json.dumps(res)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
