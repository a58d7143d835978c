import math

import numpy as np
import tensorflow as tf

from tfcflow.bijectors.dequantize import UniformDequantization, add_uniform_noise, quantize
from tests.helpers import check_bijector


def test_round_trip_and_log_det():
    v = tf.random.stateless_uniform([3, 2, 2, 2], [1, 2], 0.0, 256.0)
    check_bijector(lambda i=None: UniformDequantization(), v, rt_tol=3e-5)


def test_log_det_is_minus_d_log_256():
    y, ld = UniformDequantization().inverse_and_log_det(tf.fill([2, 4, 4, 3], 255.5))
    np.testing.assert_allclose(ld.numpy(), -48 * math.log(256), rtol=1e-6)
    assert float(tf.reduce_max(y)) < 0.5 and float(tf.reduce_min(y)) >= -0.5


def test_noise_stays_in_the_bin_and_quantize_recovers_the_levels():
    levels = tf.constant(np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1))
    v = add_uniform_noise(levels, tf.constant([1, 2]))
    assert np.all(v.numpy() >= levels.numpy()) and np.all(v.numpy() < levels.numpy() + 1)
    np.testing.assert_array_equal(quantize(v).numpy(), levels.numpy())
    np.testing.assert_array_equal(add_uniform_noise(levels, tf.constant([1, 2])).numpy(), v.numpy())
    np.testing.assert_array_equal(quantize(tf.constant([-3.0, 300.0])).numpy(), [0.0, 255.0])
