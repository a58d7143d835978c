"""``residual=True``: the image models' flow sees y - up(c), a shift by a function of the condition."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models import ConditionalGlow
from tests.helpers import copy_model, fresh, perturb, tiny_caflow, tiny_glow

KINDS = ["glow", "caflow"]


def _data(n=4, seed=0, channels=1, condition_channels=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 8, 8, channels)).astype(np.uint8)
    c = rng.integers(0, 256, (n, 4, 4, condition_channels)).astype(np.uint8)
    return x, c


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    m = tiny_glow("image", residual=True) if request.param == "glow" else tiny_caflow(residual=True)
    m.initialize(*_data(n=16))
    perturb(m, seed=3, scale=0.02)
    return m


def _up(c, channels=1):
    """The condition in [-0.5, 0.5], bicubic x2 to 8x8, broadcast to the target's channels."""
    u = tf.image.resize(tf.cast(c, tf.float32) / 255.0 - 0.5, [8, 8], method="bicubic")
    return tf.repeat(u, channels, axis=-1) if channels != u.shape[-1] else u


def _latent(m, c):
    return m._latent_bijector(m._features(m._check_condition(c)))


def test_log_prob_is_the_flow_density_of_the_residual(model):
    x, c = _data()
    y = (tf.cast(x, tf.float32) + 0.5) / 256.0 - 0.5 - _up(c)
    z, ld = _latent(model, c).inverse_and_log_det(fresh(y))
    expected = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), -1) + ld - 64 * math.log(256)
    np.testing.assert_allclose(model.log_prob(x, c).numpy(), expected.numpy(), rtol=1e-5)
    # the same weights without the shift give another density: the option is not a no-op
    plain = type(model).from_config({**model.get_config(), "residual": False})
    plain.set_weights(model.get_weights())
    assert np.all(np.abs(plain.log_prob(x, c).numpy() - model.log_prob(x, c).numpy()) > 1e-3)


def test_mode_sample_adds_the_upsampled_condition_back(model):
    _, c = _data()
    y0 = _latent(model, c).forward(tf.zeros([4, 64]))
    expected = np.clip(np.floor((y0 + _up(c) + 0.5).numpy() * 256.0), 0, 255) / 255.0
    np.testing.assert_allclose(model.sample(c, temperature=0.0).numpy(), expected, atol=1e-6)


def test_distribution_view_round_trip_and_density(model):
    x, c = _data()
    dist = model.distribution(c)
    v = tf.cast(x, tf.float32) + 0.5
    np.testing.assert_allclose(dist.log_prob(fresh(v)).numpy(), model.log_prob(x, c).numpy(), rtol=1e-5)
    z = dist.bijector.inverse(fresh(v))
    np.testing.assert_allclose(dist.bijector.forward(fresh(z)).numpy(), v.numpy(), atol=2e-3)


def test_every_trainable_variable_gets_a_gradient(model):
    x, c = _data(n=8)
    with tf.GradientTape() as tape:
        objective, _ = model._training_losses(model._check_x(x), model._check_condition(c), tf.constant([1, 2]))
        loss = tf.reduce_mean(objective)
    grads = tape.gradient(loss, model.trainable_variables)
    assert not [v.path for v, g in zip(model.trainable_variables, grads) if g is None or not np.any(g.numpy())]


def test_config_round_trip(model):
    clone = copy_model(model)
    assert clone.get_config()["residual"] is True
    x, c = _data(seed=1)
    np.testing.assert_allclose(clone.log_prob(x, c).numpy(), model.log_prob(x, c).numpy(), rtol=1e-6)


def test_a_one_channel_condition_is_broadcast_over_the_target_channels():
    # colorization: a grey condition, a colour target
    m = ConditionalGlow((8, 8, 3), (8, 8, 1), levels=2, depth=1, width=8, encoder_width=4, prior_width=4,
                        residual=True)
    x, c = _data(channels=3)
    c = np.repeat(np.repeat(c, 2, axis=1), 2, axis=2)  # factor 1: the condition at the target size
    m.initialize(x, c)
    y = (tf.cast(x, tf.float32) + 0.5) / 256.0 - 0.5 - tf.repeat(tf.cast(c, tf.float32) / 255.0 - 0.5, 3, -1)
    z, ld = _latent(m, c).inverse_and_log_det(fresh(y))
    expected = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), -1) + ld - 192 * math.log(256)
    np.testing.assert_allclose(m.log_prob(x, c).numpy(), expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("condition_shape, match", [((3,), "image condition"), ((4, 4, 2), "3 or 1 channels")])
def test_residual_needs_an_image_condition_with_the_target_channels_or_one(condition_shape, match):
    with pytest.raises(ValueError, match=match):
        ConditionalGlow((8, 8, 3), condition_shape, levels=2, depth=1, width=8, residual=True)
