import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors import ActNorm, ActNormLayer
from tests.helpers import assert_every_variable_gets_a_gradient, check_bijector, fresh, perturb


@pytest.mark.parametrize("shape", [(6, 3), (3, 4, 4, 2)])
def test_round_trip_and_log_det(shape):
    layer = ActNormLayer()
    layer.build((None,) + shape[1:])
    perturb(layer, seed=1, scale=0.5)
    x = tf.random.stateless_normal(shape, [1, 2])
    check_bijector(lambda i=None: layer.bijector(), x)


def test_log_det_formula_images():
    # H*W*sum(log_scale): 4*4*(0.5 - 0.25) = 4
    b = ActNorm(loc=tf.zeros(2), log_scale=tf.constant([0.5, -0.25]), event_ndims=3)
    _, fldj = b.forward_and_log_det(tf.zeros([3, 4, 4, 2]))
    np.testing.assert_allclose(fldj.numpy(), [4.0] * 3, rtol=1e-6)


@pytest.mark.parametrize("shape", [(256, 5), (16, 6, 6, 3)])
def test_data_init_normalizes_the_init_batch(shape):
    layer = ActNormLayer()
    layer.build((None,) + shape[1:])
    x = 3.0 + 2.5 * tf.random.stateless_normal(shape, [3, 4]) * tf.range(1.0, shape[-1] + 1.0)
    assert not layer.is_initialized
    layer.data_init(x)
    assert layer.is_initialized
    z, _ = layer(fresh(x))
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(np.mean(z.numpy(), axis=axes), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(z.numpy(), axis=axes), 1.0, atol=1e-4)


def test_data_init_runs_once_unless_forced():
    layer = ActNormLayer()
    layer.build((None, 3))
    layer.data_init(tf.random.stateless_normal([64, 3], [0, 1]))
    loc = layer.loc.numpy().copy()
    layer.data_init(10.0 + tf.random.stateless_normal([64, 3], [0, 2]))
    np.testing.assert_array_equal(layer.loc.numpy(), loc)
    layer.data_init(10.0 + tf.random.stateless_normal([64, 3], [0, 2]), force=True)
    assert np.all(layer.loc.numpy() > 9.0)


def test_data_init_refuses_graph_mode():
    layer = ActNormLayer()
    layer.build((None, 3))
    with pytest.raises(RuntimeError, match="eagerly"):
        tf.function(lambda x: layer.data_init(x))(tf.ones([4, 3]))


def test_every_variable_gets_a_gradient():
    layer = ActNormLayer()
    layer.build((None, 4, 4, 2))
    perturb(layer, seed=1)
    x = tf.random.stateless_normal([2, 4, 4, 2], [5, 6])
    assert_every_variable_gets_a_gradient(layer, x, count=2)


def test_rejects_other_ranks():
    with pytest.raises(ValueError, match="rank 3"):
        ActNormLayer().build((None, 4, 2))
