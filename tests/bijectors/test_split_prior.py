import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors.split_prior import SplitPriorLayer
from tfcflow.models.gaussian import normal_log_prob, standard_normal_log_prob
from tfcflow.networks import ConvNetwork
from tests.helpers import check_bijector, perturb


def _layer(conditional=True, hidden=8):
    layer = SplitPriorLayer(ConvNetwork(4, hidden))
    layer.build((None, 4, 4, 4), (None, 4, 4, 3) if conditional else None)
    perturb(layer, seed=1, scale=0.1)
    return layer


@pytest.mark.parametrize("conditional", [True, False])
def test_round_trip_and_log_det(conditional):
    layer = _layer(conditional)
    x = tf.random.stateless_normal([3, 4, 4, 4], [1, 2])
    c = tf.random.stateless_normal([3, 4, 4, 3], [3, 4]) if conditional else None
    check_bijector(lambda i=None: layer.bijector(None if c is None else (c if i is None else c[i:i + 1])), x)


def test_standardizing_equals_the_gaussian_prior_density():
    """log N(eps; 0, I) + log|det| == log N(h_2; mu, sigma^2), with (mu, sigma) from the network."""
    layer = _layer(hidden=0)
    h = tf.random.stateless_normal([2, 4, 4, 4], [1, 2])
    c = tf.random.stateless_normal([2, 4, 4, 3], [3, 4])
    out, ld = layer(h, condition=c)
    np.testing.assert_array_equal(out[..., :2].numpy(), h[..., :2].numpy())  # kept half untouched
    raw = layer.network([h[..., :2], c])
    mu, r = raw[..., :2], raw[..., 2:]
    sigma = tf.exp(3.0 * tf.tanh(r / 3.0))
    expected = normal_log_prob(h[..., 2:], mu, sigma, event_ndims=3)
    got = standard_normal_log_prob(out[..., 2:], event_ndims=3) + ld
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5)


def test_zero_latent_maps_to_the_prior_mean():
    layer = _layer(hidden=0)
    kept = tf.random.stateless_normal([2, 4, 4, 2], [1, 2])
    c = tf.random.stateless_normal([2, 4, 4, 3], [3, 4])
    h, _ = layer.bijector(c).forward_and_log_det(tf.concat([kept, tf.zeros_like(kept)], -1))
    mu = layer.network([kept, c])[..., :2]
    np.testing.assert_allclose(h[..., 2:].numpy(), mu.numpy(), atol=1e-6)


def test_odd_channels_are_a_clear_error():
    with pytest.raises(ValueError, match="a split needs an even channel count"):
        SplitPriorLayer(ConvNetwork(4, 0)).build((None, 4, 4, 3))


def test_conditional_prior_needs_its_condition():
    with pytest.raises(ValueError, match="built with a condition"):
        _layer().bijector(None)
