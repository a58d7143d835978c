import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors import AffineInjectorLayer
from tfcflow.networks import ConvNetwork, MLPNetwork
from tests.helpers import assert_every_variable_gets_a_gradient, check_bijector, fresh, perturb


def _layer(scale="sigmoid"):
    layer = AffineInjectorLayer(ConvNetwork(8, hidden_channels=8), scale=scale)
    layer.build((None, 4, 4, 4), (None, 4, 4, 3))
    perturb(layer, seed=7, scale=0.05)
    return layer


@pytest.mark.parametrize("scale", ["sigmoid", "exp_tanh"])
def test_round_trip_and_log_det(scale):
    layer = _layer(scale)
    x = tf.random.stateless_normal([3, 4, 4, 4], [1, 2])
    c = tf.random.stateless_normal([3, 4, 4, 3], [3, 4])
    check_bijector(lambda i=None: layer.bijector(c if i is None else c[i:i + 1]), x)


def test_vector_round_trip_and_log_det():
    layer = AffineInjectorLayer(MLPNetwork(8, (16,)), scale="exp_tanh")
    layer.build((None, 4), (None, 3))
    perturb(layer, seed=1, scale=0.2)
    x = tf.random.stateless_normal([3, 4], [1, 2])
    c = tf.random.stateless_normal([3, 3], [3, 4])
    check_bijector(lambda i=None: layer.bijector(c if i is None else c[i:i + 1]), x)


def test_log_det_depends_on_the_condition_only():
    layer = _layer()
    c = tf.random.stateless_normal([2, 4, 4, 3], [3, 4])
    x1 = tf.random.stateless_normal([2, 4, 4, 4], [1, 2])
    x2 = 5.0 * tf.random.stateless_normal([2, 4, 4, 4], [7, 8])
    _, ld1 = layer(x1, condition=c)
    _, ld2 = layer(x2, condition=fresh(c))
    np.testing.assert_array_equal(ld1.numpy(), ld2.numpy())
    _, ld3 = layer(fresh(x1), condition=c + 1.0)
    assert np.all(np.abs(ld3.numpy() - ld1.numpy()) > 1e-4)
    # and the condition moves every feature
    z1, _ = layer(fresh(x1), condition=c)
    z3, _ = layer(fresh(x1), condition=c + 1.0)
    assert np.mean(np.abs(z1.numpy() - z3.numpy()) > 1e-6) > 0.99


def test_every_variable_gets_a_gradient():
    layer = _layer()
    x = tf.random.stateless_normal([2, 4, 4, 4], [0, 1])
    c = tf.random.stateless_normal([2, 4, 4, 3], [2, 3])
    assert_every_variable_gets_a_gradient(layer, x, c, count=6)


def test_bad_input_messages():
    layer = _layer()
    with pytest.raises(ValueError, match="needs a condition"):
        layer.bijector(None)
    with pytest.raises(ValueError, match="needs a condition_shape"):
        AffineInjectorLayer(ConvNetwork(8, 8)).build((None, 4, 4, 4))
    with pytest.raises(ValueError, match="spatial size"):
        AffineInjectorLayer(ConvNetwork(8, 8)).build((None, 4, 4, 4), (None, 8, 8, 3))
