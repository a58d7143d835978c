"""Image models at any size: one set of weights, built (and initialized) at 8x8, evaluated and
sampled at other sizes divisible by 2^levels (levels = 2 here: multiples of 4)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models import CAFlow, ConditionalGlow
from tests.helpers import autodiff_log_abs_det, fresh, perturb, tiny_caflow, tiny_glow

KINDS = ["glow", "glow_label", "caflow"]
TINY = dict(glow=dict(levels=2, depth=1, width=8, conditioning={"encoder_width": 4, "prior_width": 4}),
            glow_label=dict(levels=2, depth=1, width=8, conditioning={"encoder_width": 4, "prior_width": 0}),
            caflow=dict(levels=2, depth=1, width={"condition": 8, "target": 8, "latent": 4}))


def _build(kind, any_size=False):
    """The tiny model of ``kind`` at 8x8 (``event_shape=(8, 8, 1)``), or the same architecture
    built for any size (``(None, None, 1)``, factor 2 for image conditions)."""
    if not any_size:
        return {"glow": lambda: tiny_glow("image"), "glow_label": lambda: tiny_glow("label"),
                "caflow": tiny_caflow}[kind]()
    if kind == "glow":
        return ConditionalGlow((None, None, 1), (None, None, 1), factor=2, **TINY[kind])
    if kind == "glow_label":
        return ConditionalGlow((None, None, 1), (3,), **TINY[kind])
    return CAFlow((None, None, 1), (None, None, 1), factor=2, **TINY[kind])


def _data(kind, n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, h, w, 1)).astype(np.uint8)
    if kind == "glow_label":
        return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, rng.integers(0, 256, (n, h // 2, w // 2, 1)).astype(np.uint8)


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    m = _build(request.param)
    m.initialize(*_data(request.param, 16, 8, 8))
    perturb(m, seed=5, scale=0.02)
    m.kind = request.param
    return m


def _bijector(m, c, size):
    return m._latent_bijector(m._features_at(m._check_condition(c), list(size)))


@pytest.mark.parametrize("size", [(16, 8), (8, 16), (16, 24)])
def test_log_prob_and_round_trip_at_another_size(model, size):
    h, w = size
    x, c = _data(model.kind, 3, h, w, seed=1)
    lp = model.log_prob(x, c).numpy()
    assert lp.shape == (3,) and np.all(np.isfinite(lp))
    # log_prob is the latent density + log-det + dequantization at this size
    y = (tf.cast(x, tf.float32) + 0.5) / 256.0 - 0.5
    z, ld = _bijector(model, c, size).inverse_and_log_det(fresh(y))
    assert z.shape == (3, h * w)
    expected = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), -1) + ld - h * w * math.log(256)
    np.testing.assert_allclose(lp, expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(model.bits_per_dim(x, c).numpy(), -lp / (h * w * math.log(2)), rtol=1e-5)
    # round trip x -> z -> x on fresh tensors, through fresh views
    y = tf.random.stateless_uniform([3, h, w, 1], [1, 2], -0.5, 0.5)
    z, ld = _bijector(model, c, size).inverse_and_log_det(fresh(y))
    y_back, fld = _bijector(model, c, size).forward_and_log_det(fresh(z))
    assert float(tf.reduce_max(tf.abs(y_back - y))) < 1e-4
    np.testing.assert_allclose(ld.numpy(), -fld.numpy(), atol=2e-3, rtol=1e-5)


def test_log_det_matches_autodiff_at_8x12(model):
    _, c = _data(model.kind, 1, 8, 12, seed=2)
    y = tf.random.stateless_uniform([1, 8, 12, 1], [3, 4], -0.5, 0.5)
    _, ld = _bijector(model, c, (8, 12)).inverse_and_log_det(fresh(y))
    expected = autodiff_log_abs_det(lambda t: _bijector(model, c, (8, 12)).inverse(t), y)
    assert abs(expected - float(ld[0])) < 1e-3 * max(1.0, abs(expected)), (expected, float(ld[0]))


def test_sampling_at_another_size(model):
    _, c = _data(model.kind, 2, 16, 24, seed=3)
    size = dict(size=(16, 24)) if model.kind == "glow_label" else {}
    s = model.sample(c, temperature=0.8, seed=3, **size).numpy()
    assert s.shape == (2, 16, 24, 1) and np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0
    np.testing.assert_array_equal(model.sample(c, temperature=0.8, seed=3, **size).numpy(), s)
    many = model.sample(c, temperature=0.8, seed=3, num_samples=2, **size).numpy()
    assert many.shape == (2, 2, 16, 24, 1)
    if model.kind == "glow_label":
        # without a size a vector condition samples at the default size
        assert model.sample(c, seed=3).shape == (2, 8, 8, 1)
        assert model.sample(c, seed=3, num_samples=2).shape == (2, 2, 8, 8, 1)
        assert model.sample(c, seed=3, num_samples=2, size=(8, 12)).shape == (2, 2, 8, 12, 1)
        # best of n at that size: the kept sample's score is its log p(x | c), the best of its n
        best, lp = model.best_of_n(c, 3, temperature=0.8, seed=3, size=(8, 12))
        assert best.shape == (2, 8, 12, 1)
        np.testing.assert_allclose(lp.numpy(), model.log_prob(best, c).numpy(), rtol=1e-4)
        drawn = model.sample(np.repeat(c, 3, axis=0), temperature=0.8, seed=3, size=(8, 12))
        per_row = model.log_prob(drawn, np.repeat(c, 3, axis=0)).numpy().reshape(2, 3)
        np.testing.assert_allclose(lp.numpy(), per_row.max(axis=1), rtol=1e-4)
        return
    # in a graph whose condition has unknown H, W (a SavedModel signature), num_samples included
    spec = tf.TensorSpec([None, None, None, 1], tf.uint8)
    graph = tf.function(lambda ci: model.sample(ci, temperature=0.8, seed=3, num_samples=2), input_signature=[spec])
    # the same draws; a graph may round differently, which can move a value to the next 8-bit level
    np.testing.assert_allclose(graph(tf.constant(c)).numpy(), many, atol=1.01 / 255)


def test_sizes_not_divisible_by_2_to_the_levels(model):
    x, c = _data(model.kind, 2, 12, 16)
    x = x[:, :10]  # 10 x 16
    c = c[:, :5] if model.kind != "glow_label" else c
    with pytest.raises(ValueError, match=r"x size 10x16 is not divisible by 2\^levels = 4"):
        model.log_prob(x, c)
    if model.kind == "glow_label":
        with pytest.raises(ValueError, match=r"the sample size 10x16 is not divisible by 2\^levels = 4"):
            model.sample(c, seed=1, size=(10, 16))
        c_spec = tf.TensorSpec([None, 3], tf.float32)
    else:
        with pytest.raises(ValueError, match=r"the condition's size 5x8 x factor 2 = 10x16 is not divisible by "
                                             r"2\^levels = 4"):
            model.sample(c, seed=1)
        c_spec = tf.TensorSpec([None, None, None, 1], tf.uint8)
        sample = tf.function(lambda ci: model.sample(ci, seed=1), input_signature=[c_spec])
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"divisible by 2\^levels = 4"):
            sample(tf.constant(c))
    log_prob = tf.function(model.log_prob, input_signature=[tf.TensorSpec([None, None, None, 1], tf.uint8), c_spec])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"x height and width must be divisible by 2\^levels = 4"):
        log_prob(tf.constant(x), tf.constant(c))


def test_image_condition_size_must_match_the_factor():
    m = _build("glow", any_size=True)
    x, c = _data("glow", 2, 16, 16)
    with pytest.raises(ValueError, match=r"condition must have shape \[batch, 8, 8, 1\], got shape \[2, 4, 4, 1\]"):
        m.log_prob(x, c[:, :4, :4])
    log_prob = tf.function(m.log_prob, input_signature=[tf.TensorSpec([None, None, None, 1], tf.uint8)] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"x height and width must be the condition height and width x factor 2"):
        log_prob(tf.constant(x), tf.constant(c[:, :4, :4]))
    with pytest.raises(ValueError, match=r"image size 16x16 is not the condition size 4x4 x factor 2"):
        ConditionalGlow((16, 16, 1), (4, 4, 1), factor=2, levels=2)
    with pytest.raises(ValueError, match=r"not the condition size 3x3 times one integer factor"):
        ConditionalGlow((8, 8, 1), (3, 3, 1), levels=2)
    with pytest.raises(ValueError, match=r"a vector condition \(3,\) has none"):
        ConditionalGlow((None, None, 1), (3,), factor=2, levels=2)
    label = _build("glow_label", any_size=True)
    with pytest.raises(ValueError, match=r"pass sample\(\.\.\., size=\(H, W\)\)"):
        label.sample(np.eye(3, dtype=np.float32), seed=1)
    from tfcflow import export
    _, signatures = export.serving_module(label)  # no default size: only the signatures that take one
    assert set(signatures) == {"log_prob", "sample_at_size", "best_of_n_at_size", "sample_many_at_size",
                               "serving_default"}
    assert signatures["serving_default"] is signatures["sample_at_size"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_for_any_size_is_the_fixed_size_model_at_that_size(kind, tmp_path):
    fixed, free = _build(kind), _build(kind, any_size=True)
    x, c = _data(kind, 8, 8, 8)
    fixed.initialize(x, c)
    perturb(fixed, seed=7, scale=0.02)
    assert [v.shape for v in free.weights] == [v.shape for v in fixed.weights]
    free.set_weights(fixed.get_weights())
    size = dict(size=(8, 8)) if kind == "glow_label" else {}
    np.testing.assert_allclose(free.log_prob(x, c).numpy(), fixed.log_prob(x, c).numpy(), rtol=1e-6)
    np.testing.assert_allclose(free.sample(c, temperature=0.7, seed=4, **size).numpy(),
                               fixed.sample(c, temperature=0.7, seed=4).numpy(), atol=1e-6)
    # the training step's bits/dim: of the batch's own size
    free.compile(optimizer=keras.optimizers.Adam(1e-4))
    logs = free.evaluate(x, c, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["bits_per_dim"], logs["loss"] / (64 * math.log(2)), rtol=1e-5)
    # config and .keras round trips keep the size-free shapes
    config = free.get_config()
    assert config["event_shape"] == [None, None, 1]
    clone = type(free).from_config(config)
    clone.set_weights(free.get_weights())
    x2, c2 = _data(kind, 2, 16, 24, seed=9)
    np.testing.assert_allclose(clone.log_prob(x2, c2).numpy(), free.log_prob(x2, c2).numpy(), rtol=1e-6)
    path = str(tmp_path / "m.keras")
    clone.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).log_prob(x2, c2).numpy(),
                               free.log_prob(x2, c2).numpy(), rtol=1e-6)
