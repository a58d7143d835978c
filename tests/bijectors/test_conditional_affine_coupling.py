import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import bijectors as tfb, distributions as tfd

from tfcflow.bijectors import AffineCouplingLayer, ConditionalAffineCoupling
from tfcflow.networks import ConvNetwork, MLPNetwork
from tests.helpers import assert_every_variable_gets_a_gradient, check_bijector, fresh, perturb


def _image_layer(flip=False, scale="sigmoid", channels=4, cond_channels=2):
    transformed = channels - channels // 2 if not flip else channels // 2
    layer = AffineCouplingLayer(ConvNetwork(2 * transformed, hidden_channels=8), flip=flip, scale=scale)
    layer.build((None, 4, 4, channels), None if cond_channels is None else (None, 4, 4, cond_channels))
    return layer


def _vector_layer(dim=5, cond_dim=3, flip=False, scale="exp_tanh"):
    transformed = dim - dim // 2 if not flip else dim // 2
    layer = AffineCouplingLayer(MLPNetwork(2 * transformed, (16, 16)), flip=flip, scale=scale)
    layer.build((None, dim), None if cond_dim is None else (None, cond_dim))
    return layer


def _make(layer, c):
    return lambda i=None: layer.bijector(None if c is None else (c if i is None else c[i:i + 1]))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("scale", ["sigmoid", "exp_tanh"])
def test_image_round_trip_and_log_det(flip, scale):
    layer = _image_layer(flip, scale)
    perturb(layer, seed=3, scale=0.05)
    x = tf.random.stateless_normal([3, 4, 4, 4], [1, 2])
    c = tf.random.stateless_normal([3, 4, 4, 2], [3, 4])
    check_bijector(_make(layer, c), x)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("cond_dim", [3, None])
def test_vector_round_trip_and_log_det(flip, cond_dim):
    layer = _vector_layer(cond_dim=cond_dim, flip=flip)
    perturb(layer, seed=4, scale=0.1)
    x = tf.random.stateless_normal([4, 5], [1, 2])
    c = None if cond_dim is None else tf.random.stateless_normal([4, cond_dim], [3, 4])
    check_bijector(_make(layer, c), x)


@pytest.mark.parametrize("flip", [False, True])
def test_condition_changes_only_the_transformed_part(flip):
    layer = _vector_layer(dim=6, flip=flip)
    perturb(layer, seed=5, scale=0.1)
    x = tf.random.stateless_normal([4, 6], [1, 2])
    c1 = tf.random.stateless_normal([4, 3], [3, 4])
    c2 = tf.random.stateless_normal([4, 3], [5, 6])
    z1, ld1 = layer(fresh(x), condition=c1)
    z2, ld2 = layer(fresh(x), condition=c2)
    untouched = slice(3, 6) if flip else slice(0, 3)
    transformed = slice(0, 3) if flip else slice(3, 6)
    np.testing.assert_array_equal(z1[:, untouched].numpy(), x[:, untouched].numpy())
    np.testing.assert_array_equal(z2[:, untouched].numpy(), x[:, untouched].numpy())
    assert np.all(np.abs(z1[:, transformed].numpy() - z2[:, transformed].numpy()) > 1e-4)
    assert np.all(np.abs(ld1.numpy() - ld2.numpy()) > 1e-4)


def test_zero_initialized_network_starts_as_identity():
    layer = _vector_layer(scale="exp_tanh")
    x = tf.random.stateless_normal([4, 5], [1, 2])
    z, ld = layer(x, condition=tf.ones([4, 3]))
    np.testing.assert_array_equal(z.numpy(), x.numpy())
    np.testing.assert_array_equal(ld.numpy(), 0.0)
    # Glow's sigmoid(h + 2) starts at the constant scale sigmoid(2) instead.
    glow = _vector_layer(scale="sigmoid")
    z, ld = glow(x, condition=tf.ones([4, 3]))
    np.testing.assert_allclose(z[:, 2:].numpy(), x[:, 2:].numpy() / (1 + np.exp(-2.0)), rtol=1e-6)


def test_scale_is_bounded_so_generation_cannot_blow_up():
    layer = _vector_layer(scale="exp_tanh")
    perturb(layer, seed=0, scale=50.0)  # absurd weights
    x = 100.0 * tf.random.stateless_normal([8, 5], [1, 2])
    c = 100.0 * tf.random.stateless_normal([8, 3], [3, 4])
    _, ld = layer(x, condition=c)
    assert np.all(np.abs(ld.numpy()) <= 3 * 2.0 + 1e-4)  # 3 transformed dims, |log s| <= clamp = 2


def test_one_network_evaluation_per_log_prob():
    calls = []
    net = MLPNetwork(6, (8,))
    layer = AffineCouplingLayer(net)
    layer.build((None, 5), (None, 2))

    def counting(inputs):
        calls.append(1)
        return net(inputs)

    c = tf.ones([3, 2])
    bij = ConditionalAffineCoupling(counting, c, scale="sigmoid", event_ndims=1)
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc=tf.zeros(5)), bij)
    dist.log_prob(tf.random.stateless_normal([3, 5], [0, 1]))
    assert len(calls) == 1
    # TFP's own RealNVP needs two evaluations for the same log_prob.
    calls.clear()
    def shift_and_log_scale(x, d):
        calls.append(1)
        zeros = tf.zeros(tf.concat([tf.shape(x)[:-1], [d]], 0))
        return zeros, zeros

    realnvp = tfb.RealNVP(num_masked=2, shift_and_log_scale_fn=shift_and_log_scale)
    tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc=tf.zeros(5)), realnvp).log_prob(
        tf.random.stateless_normal([3, 5], [0, 1]))
    assert len(calls) == 2


def test_every_variable_gets_a_gradient():
    layer = _image_layer()
    perturb(layer, seed=1, scale=0.05)
    x = tf.random.stateless_normal([2, 4, 4, 4], [0, 1])
    c = tf.random.stateless_normal([2, 4, 4, 2], [2, 3])
    assert_every_variable_gets_a_gradient(layer, x, c, count=6)


def test_bad_input_messages():
    layer = _vector_layer()
    with pytest.raises(ValueError, match="built with a condition; got condition=None"):
        layer.bijector(None)
    unconditional = _vector_layer(cond_dim=None)
    with pytest.raises(ValueError, match="built without a condition"):
        unconditional.bijector(tf.ones([1, 3]))
    with pytest.raises(ValueError, match="at least 2 features"):
        AffineCouplingLayer(MLPNetwork(2, (4,))).build((None, 1))
    with pytest.raises(ValueError, match="must output 2 \\* 3 = 6"):
        AffineCouplingLayer(MLPNetwork(4, (4,))).build((None, 5))
    with pytest.raises(ValueError, match="scale must be one of"):
        AffineCouplingLayer(MLPNetwork(6, (4,)), scale="exp")
