import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors import Squeeze, SqueezeLayer
from tests.helpers import check_bijector


def test_round_trip_shape_and_log_det():
    x = tf.random.stateless_normal([2, 4, 6, 3], [1, 2])
    z = check_bijector(lambda i=None: Squeeze(), x)
    assert z.shape == (2, 2, 3, 12)


def test_event_shapes():
    b = Squeeze()
    assert b.inverse_event_shape([8, 4, 3]) == [4, 2, 12]
    assert b.forward_event_shape([4, 2, 12]) == [8, 4, 3]
    assert SqueezeLayer().output_shape_for((None, 8, 4, 3)) == (None, 4, 2, 12)


def test_pixels_are_only_reordered():
    x = tf.reshape(tf.range(2 * 4 * 4 * 1, dtype=tf.float32), [2, 4, 4, 1])
    z, ld = Squeeze().inverse_and_log_det(x)
    np.testing.assert_array_equal(np.sort(z.numpy().ravel()), np.sort(x.numpy().ravel()))
    np.testing.assert_array_equal(ld.numpy(), 0.0)


def test_not_divisible_is_a_clear_error():
    with pytest.raises(ValueError, match="height 5 is not divisible by the squeeze factor 2"):
        SqueezeLayer().build((None, 5, 4, 1))
    with pytest.raises(ValueError, match="width 3 is not divisible"):
        Squeeze().inverse(tf.zeros([1, 4, 3, 1]))
    with pytest.raises(ValueError, match="NHWC images"):
        SqueezeLayer().build((None, 4))
