"""Training under tf.distribute: 2 replicas == 1 device, XLA per replica, MultiWorker processes."""
import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import _compat
from tfcflow.data import gaussian_mixture as gm
from tfcflow.distribute import make_strategy
from tfcflow.models import RelaxedConditionFlow
from tests.helpers import tiny_glow
from tfcflow.optim import FusedAdam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rcf():
    return RelaxedConditionFlow(2, 8, depth=2, width=16, actnorm=True)


def _glow():
    return tiny_glow("image")


def _data(kind, n=16):
    if kind == "rcf":
        x, _, c = gm.sample(n, seed=1)
        return x, c
    rng = np.random.default_rng(2)
    return rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8), rng.integers(0, 256, (n, 4, 4, 1)).astype(np.uint8)


def _train(strategy, kind, steps=2, clipnorm=0.05, jit_compile=False, sgd=False):
    x, c = _data(kind)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        m = _rcf() if kind == "rcf" else _glow()
        opt = (keras.optimizers.SGD(1e-2) if sgd else
               FusedAdam(1e-2, use_ema=True, ema_momentum=0.5))
        m.compile(optimizer=opt, clipnorm=clipnorm, seed=3, jit_compile=jit_compile)
    ds = tf.data.Dataset.from_tensor_slices((x, c)).batch(8).repeat()
    hist = m.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return m, hist.history


def _weights(m):
    return [v.numpy() for v in m.trainable_variables]


@pytest.mark.parametrize("kind", ["rcf", "glow"])
def test_two_replicas_give_the_single_device_update(kind):
    mirrored = make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    single, h1 = _train(tf.distribute.get_strategy(), kind)
    double, h2 = _train(mirrored, kind)
    assert all(np.all(np.isfinite(v)) for v in h1.values()) and h1["skipped_steps"] == [0.0]
    for a, b in zip(_weights(single), _weights(double)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    # metrics are global, not per replica: loss, per-dim NLL and the (clipped-at-0.05) gradient norm
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-4)
    assert h1["grad_norm"][0] > 0.05  # clipping was active
    # the data-dependent init ran before fit, once, identically on both replicas
    an = [layer for layer in _compat.all_layers(double) if hasattr(layer, "is_initialized")]
    assert an and all(layer.is_initialized for layer in an)
    for layer in an:
        per_replica = mirrored.experimental_local_results(layer.loc.value)
        np.testing.assert_array_equal(per_replica[0].numpy(), per_replica[1].numpy())


def test_keras_clipping_on_the_optimizer_is_refused():
    with pytest.raises(ValueError, match="set clipping with model.compile"):
        _rcf().compile(optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=1.0))


def test_xla_per_replica_gradients_under_mirrored_strategy():
    # SGD: Adam's first steps turn float rounding of near-zero gradients into +-lr weight changes
    mirrored = make_strategy("mirrored")
    plain, h1 = _train(mirrored, "rcf", sgd=True)
    xla, h2 = _train(mirrored, "rcf", jit_compile=True, sgd=True)
    assert xla.training_options.xla_gradients and not plain.training_options.xla_gradients
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-4)
    for a, b in zip(_weights(plain), _weights(xla)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _cli(args, env_extra=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "tfcflow", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _results(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out[out.index("{"):])


def test_multi_worker_fit_matches_a_single_process(tmp_path):
    config = os.path.join(ROOT, "training", "gaussian_mixture", "rcf_fast.json")
    common = ["--set", "train.steps=20", "--set", "train.steps_per_epoch=10", "--set", "train.batch_size=64",
              "--set", "train.deterministic=true"]
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [_cli([config, "--out", str(tmp_path / "mw"), "--set", "train.strategy=multi_worker", *common],
                    {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    single = _cli([config, "--out", str(tmp_path / "single"), *common])
    res = [_results(p) for p in workers] + [_results(single)]
    assert res[0]["steps"] == res[1]["steps"] == res[2]["steps"] == 20
    assert res[0]["weights_sha256"] == res[1]["weights_sha256"], "the two workers diverged"
    # same model as one process with the same global batch: equal up to float summation order
    np.testing.assert_allclose(res[0]["test_loss"], res[2]["test_loss"], rtol=1e-4)
    assert os.path.exists(tmp_path / "mw" / "checkpoints" / "ckpt-20.index")
    assert not [d for d in os.listdir(tmp_path / "mw") if d.startswith(".worker_scratch")]
