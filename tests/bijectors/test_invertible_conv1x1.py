import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors import InvertibleConv1x1Layer
from tfcflow.bijectors.invertible_conv1x1 import lu_decompose, random_rotation
from tests.helpers import assert_every_variable_gets_a_gradient, check_bijector, perturb


def test_lu_decompose_reconstructs_with_pivoting():
    w = np.random.default_rng(0).standard_normal((6, 6))
    p, lower, upper = lu_decompose(w)
    np.testing.assert_allclose(p @ lower @ upper, w, atol=1e-12)
    np.testing.assert_allclose(np.triu(lower, 1), 0)
    np.testing.assert_allclose(np.diag(lower), 1)
    np.testing.assert_allclose(np.tril(upper, -1), 0)


def test_initial_weight_is_the_seeded_rotation():
    layer = InvertibleConv1x1Layer(seed=3)
    layer.build((None, 2, 2, 5))
    w = layer.bijector().weight().numpy()
    np.testing.assert_allclose(w, random_rotation(5, 3), atol=1e-6)
    np.testing.assert_allclose(w @ w.T, np.eye(5), atol=1e-5)


@pytest.mark.parametrize("lu", [True, False])
@pytest.mark.parametrize("shape", [(3, 4, 4, 4), (5, 6)])
def test_round_trip_and_log_det(lu, shape):
    layer = InvertibleConv1x1Layer(lu=lu, seed=1)
    layer.build((None,) + shape[1:])
    perturb(layer, seed=2, scale=0.2)
    x = tf.random.stateless_normal(shape, [1, 2])
    check_bijector(lambda i=None: layer.bijector(), x)


@pytest.mark.parametrize("lu", [True, False])
def test_inverse_weight_is_the_inverse(lu):
    layer = InvertibleConv1x1Layer(lu=lu, seed=4)
    layer.build((None, 1, 1, 7))
    perturb(layer, seed=5, scale=0.3)
    b = layer.bijector()
    np.testing.assert_allclose(b.weight().numpy() @ b.inverse_weight().numpy(), np.eye(7), atol=1e-5)
    _, logdet = np.linalg.slogdet(b.weight().numpy().astype(np.float64))
    np.testing.assert_allclose(float(b.log_abs_det_weight()), logdet, atol=1e-5)


@pytest.mark.parametrize("lu", [True, False])
def test_every_variable_gets_a_gradient(lu):
    layer = InvertibleConv1x1Layer(lu=lu)
    layer.build((None, 2, 2, 3))
    perturb(layer, seed=0)
    x = tf.random.stateless_normal([2, 2, 2, 3], [0, 1])
    assert_every_variable_gets_a_gradient(layer, x, count=3 if lu else 1)


def test_lu_entries_outside_their_triangles_are_ignored():
    # L's diagonal is 1 and U's is sign * exp(log_abs_diag): whatever the variables hold there
    # (and below / above the triangles) changes neither W nor the gradients
    layer = InvertibleConv1x1Layer(seed=6)
    layer.build((None, 1, 1, 4))
    w = layer.bijector().weight().numpy()
    rng = np.random.default_rng(0)
    layer.lower.assign(layer.lower.numpy() + np.triu(rng.normal(size=(4, 4))).astype(np.float32))
    layer.upper.assign(layer.upper.numpy() + np.tril(rng.normal(size=(4, 4))).astype(np.float32))
    with tf.GradientTape() as tape:
        b = layer.bijector()
        loss = tf.reduce_sum(b.weight() ** 2) + tf.reduce_sum(b.inverse_weight())
    np.testing.assert_allclose(b.weight().numpy(), w, atol=1e-6)
    g_lower, g_upper = tape.gradient(loss, [layer.lower, layer.upper])
    np.testing.assert_array_equal(np.triu(g_lower.numpy()), 0.0)
    np.testing.assert_array_equal(np.tril(g_upper.numpy()), 0.0)
    assert np.all(np.tril(g_lower.numpy(), -1)[1:, :1] != 0.0)
