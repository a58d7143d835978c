"""tfcflow's benchmark Glow against TFP's ``tfb.Glow`` of the same architecture in ONE process:
log-prob and sampling (batch 64), the contestants' timed blocks alternating round by round, so
every ratio compares two measurements taken seconds apart on the same machine state. The separate
per-process runs of run_bench.py drift by up to 30% between rows on this shared machine.

A third log-prob contestant evaluates only our coupling and split-prior networks, once each, at
the shapes log-prob feeds them: the dense work alone, so its img/s bounds what any rearrangement
of the flow's other ops could reach with these convolution and matmul kernels.

TFP's Glow is built as the peer script builds it (../shared/bench/peers/tfp_glow_bench.py:
GlowDefaultNetwork(64), GlowDefaultExitNetwork, data-dependent ActNorm init on a batch of 32) and
timed as ``tf.function`` and with XLA; ours as in glow_bench.py (TensorFlow's default threads: 2
intra-op, 2 inter-op, for both).

    python bench/head_to_head.py [--rounds 9] [--calls 10] [--out docs/benchmarks/head_to_head.json]
    python bench/head_to_head.py --smoke        # CI: tiny sizes, one round
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import glow_bench  # noqa: E402
import timing  # noqa: E402


def _tfp_glow(size: int, levels: int, steps: int, hidden: int, x_init):
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfb, tfd = tfp.bijectors, tfp.distributions
    glow = tfb.Glow(output_shape=(size, size, glow_bench.C), num_glow_blocks=levels, num_steps_per_block=steps,
                    coupling_bijector_fn=functools.partial(tfb.GlowDefaultNetwork, num_hidden=hidden),
                    exit_bijector_fn=tfb.GlowDefaultExitNetwork, seed=0)
    z_shape = glow.inverse_event_shape([size, size, glow_bench.C])
    px = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), z_shape), glow)
    px.log_prob(tf.constant(x_init))  # eager first call: TFP's data-dependent ActNorm init
    return glow, px, [int(d) for d in z_shape]


def _networks_only(model, batch: int):
    """A function evaluating every coupling and split-prior network of ``model`` once, on fixed
    inputs of the shapes log-prob feeds them: the dense work of a log-prob call alone, a ceiling."""
    import tensorflow as tf
    from tfcflow import _compat
    from tfcflow.networks.conv import ConvNetwork

    nets = [l for l in _compat.all_layers(model) if isinstance(l, ConvNetwork)]
    inputs = []
    for net in nets:  # each network was built for the (unconditional: single) input it is fed
        (shape,) = net.get_build_config()["input_shape"]
        inputs.append(tf.random.stateless_normal([batch, *shape[1:]], [0, len(inputs)]))

    @tf.function
    def run():
        return tf.add_n([tf.reduce_sum(net([h])) for net, h in zip(nets, inputs)])

    return run, len(nets)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--calls", type=int, default=10, help="calls per timed block")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    glow_bench.set_threads(inter=2)
    rounds, calls = (1, 1) if a.smoke else (a.rounds, a.calls)
    levels, steps, hidden = (2, 1, 8) if a.smoke else (glow_bench.L, glow_bench.K, glow_bench.HID)
    size = 8 if a.smoke else glow_bench.H
    batch = glow_bench.BATCH_INFER
    rng = np.random.default_rng(0)

    keras.utils.set_random_seed(0)
    ours, _ = glow_bench.build("uncond", a.smoke)
    x_init, c_init = glow_bench.synthetic_batch(glow_bench.BATCH_TRAIN, size, None, rng)
    ours.initialize(x_init, c_init)
    x, c = glow_bench.synthetic_batch(batch, size, None, rng)
    y = glow_bench.dequantized(x, rng)  # the peers' inputs
    tf.random.set_seed(0)
    glow, px, z_shape = _tfp_glow(size, levels, steps, hidden, y[: glow_bench.BATCH_TRAIN])
    z = np.random.default_rng(1).standard_normal((batch, *z_shape)).astype(np.float32)

    ours_lp = tf.function(lambda x, c: ours.log_prob(x, c))
    ours_smp = tf.function(lambda c, s: ours.sample(c, temperature=1.0, seed=s))
    nets_only, n_nets = _networks_only(ours, batch)
    contestants = {
        "logprob_tfcflow_networks_only": nets_only,
        # fresh tensors every call, as the peer does (TFP's bijector cache is keyed on tensor identity)
        "logprob_tfcflow": lambda: ours_lp(tf.constant(x), tf.constant(c)),
        "logprob_tfp_function": functools.partial(tf.function(px.log_prob), tf.constant(y)),
        "logprob_tfp_xla": functools.partial(tf.function(px.log_prob, jit_compile=True), tf.constant(y)),
        "sample_tfcflow": lambda: ours_smp(tf.constant(c), tf.constant([1, 2])),
        "sample_tfp_function": functools.partial(tf.function(glow.forward), tf.constant(z)),
    }
    first = {}
    for name, fn in contestants.items():
        t = time.perf_counter()
        float(tf.reduce_sum(fn()))
        first[name] = time.perf_counter() - t
        float(tf.reduce_sum(fn()))
    ips = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, fn in contestants.items():
            if not a.smoke:
                timing.wait_quiet()
            t = time.perf_counter()
            for _ in range(calls):
                out = fn()
            float(tf.reduce_sum(out))
            ips[name].append(batch * calls / (time.perf_counter() - t))

    def ratios(ours_key, peer_key):
        r = [o / t for o, t in zip(ips[ours_key], ips[peer_key])]
        return dict(median=statistics.median(r), min=min(r), max=max(r))

    res = dict(rounds=rounds, calls=calls, batch=batch, smoke=a.smoke, tf=tf.__version__,
               threads=dict(intra=tf.config.threading.get_intra_op_parallelism_threads(),
                            inter=tf.config.threading.get_inter_op_parallelism_threads()),
               first_call_s=first,
               ips={k: dict(median=statistics.median(v), best=max(v), all=v) for k, v in ips.items()},
               networks=n_nets,
               logprob_vs_tfp_xla=ratios("logprob_tfcflow", "logprob_tfp_xla"),
               networks_only_vs_tfp_xla=ratios("logprob_tfcflow_networks_only", "logprob_tfp_xla"),
               logprob_vs_networks_only=ratios("logprob_tfcflow", "logprob_tfcflow_networks_only"),
               logprob_vs_tfp_function=ratios("logprob_tfcflow", "logprob_tfp_function"),
               sample_vs_tfp_function=ratios("sample_tfcflow", "sample_tfp_function"))
    return glow_bench.emit_json(res, a.out)


if __name__ == "__main__":
    main()
