import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow.optim import WarmupStepDecay, make_optimizer, set_precision


def test_warmup_then_step_decay_then_one_plateau_reduction():
    s = WarmupStepDecay(1e-3, warmup_steps=500, gamma=0.999, interval=100, plateau_factor=0.1)
    lr = lambda t: float(s(t))
    assert lr(0) == 0.0 and lr(250) == pytest.approx(5e-4) and lr(500) == pytest.approx(1e-3)
    assert lr(599) == pytest.approx(1e-3) and lr(600) == pytest.approx(1e-3 * 0.999)
    assert lr(70_500) == pytest.approx(1e-3 * 0.999 ** 700, rel=1e-4)
    assert s.reduce_on_plateau(1000) and not s.reduce_on_plateau(2000)  # once only
    assert lr(999) == pytest.approx(1e-3 * 0.999 ** 4) and lr(1000) == pytest.approx(1e-4 * 0.999 ** 5)
    clone = WarmupStepDecay(**s.get_config())
    assert float(clone(1500)) == pytest.approx(lr(1500))


def test_bad_schedule_values():
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        WarmupStepDecay(0.0)
    with pytest.raises(ValueError, match="gamma must be in"):
        WarmupStepDecay(1e-3, gamma=1.5)
    with pytest.raises(ValueError, match="precision must be one of"):
        set_precision("float64")
    with pytest.raises(ValueError, match="ema must be in"):
        make_optimizer(1e-3, ema=1.0)


@pytest.mark.parametrize("policy,tolerance", [("mixed_float16", 0.02), ("mixed_bfloat16", 0.1)])
def test_log_prob_under_mixed_precision_stays_close_to_float32(policy, tolerance):
    """Documented tolerance: |bits/dim difference| < 0.02 (float16) / 0.1 (bfloat16) on MNIST-like
    8x8 images with a trained-looking (perturbed) conditional Glow."""
    from tfcflow.models import ConditionalGlow

    def build():
        keras.utils.set_random_seed(0)
        return ConditionalGlow((8, 8, 1), (4, 4, 1), levels=2, depth=2, width=16,
                               conditioning={"encoder_width": 8, "prior_width": 8})

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 8, 8, 1)).astype(np.uint8)
    c = rng.integers(0, 256, (16, 4, 4, 1)).astype(np.uint8)
    ref = build()
    ref.initialize(x, c)
    for v in ref.trainable_variables:
        v.assign(v.numpy() + 0.02 * rng.standard_normal(v.shape).astype(np.float32))
    try:
        set_precision(policy)
        mixed = build()
        for a, b in zip(mixed.weights, ref.weights):
            a.assign(b.numpy())
        assert mixed.flow.level_flows[0].steps[-1].network.compute_dtype in ("float16", "bfloat16")
        lp = mixed.log_prob(x, c)
        assert lp.dtype == tf.float32
        diff = np.abs(mixed.bits_per_dim(x, c).numpy() - ref.bits_per_dim(x, c).numpy())
        assert diff.max() < tolerance, diff.max()
        # and a float16 training step with loss scaling runs and stays finite
        mixed.compile(optimizer=make_optimizer(1e-3, ema=None, precision=policy), clipnorm=1.0)
        hist = mixed.fit(x, c, batch_size=8, epochs=1, verbose=0)
        assert math.isfinite(hist.history["loss"][0])
    finally:
        set_precision("float32")


@pytest.mark.parametrize("ema", [False, True])
def test_fused_adam_takes_keras_adam_steps(ema):
    """Same updates (and EMA weights) as Keras' Adam, eagerly and in a tf.function, over steps
    whose gradients change sign and scale."""
    from tfcflow.optim import FusedAdam

    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)]
    grads = [[rng.normal(scale=10.0 ** (t % 3 - 1), size=w.shape).astype(np.float32) for w in init]
             for t in range(5)]
    results = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        for graph in (False, True):
            ws = [keras.Variable(w) for w in init]
            opt = cls(learning_rate=0.05, beta_1=0.8, beta_2=0.95, epsilon=1e-3, use_ema=ema, ema_momentum=0.5)
            opt.build(ws)
            apply = tf.function(lambda g: opt.apply(g, ws)) if graph else (lambda g: opt.apply(g, ws))
            for g in grads:
                apply([tf.constant(x) for x in g])
            results.append([w.numpy() for w in ws] + [v.numpy() for v in opt.variables])
    reference = results[0]
    assert not np.allclose(reference[0], init[0], atol=1e-2)  # the steps did move the weights
    for other in results[1:]:
        for a, b in zip(reference, other):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
