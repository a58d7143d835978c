import numpy as np
import tensorflow as tf

from tfcflow.bijectors import Permute, RandomPermutationLayer
from tests.helpers import check_bijector


def test_round_trip_and_log_det():
    layer = RandomPermutationLayer(seed=3)
    layer.build((None, 7))
    x = tf.random.stateless_normal([4, 7], [1, 2])
    z = check_bijector(lambda i=None: layer.bijector(), x)
    np.testing.assert_array_equal(np.sort(z.numpy(), axis=1), np.sort(x.numpy(), axis=1))


def test_permutation_is_fixed_by_the_seed_and_not_trainable():
    a, b, c = RandomPermutationLayer(seed=1), RandomPermutationLayer(seed=1), RandomPermutationLayer(seed=2)
    for layer in (a, b, c):
        layer.build((None, 16))
    np.testing.assert_array_equal(a.permutation.numpy(), b.permutation.numpy())
    assert np.any(a.permutation.numpy() != c.permutation.numpy())
    assert sorted(a.permutation.numpy().tolist()) == list(range(16))
    assert a.trainable_variables == []


def test_forward_semantics():
    y, _ = Permute([2, 0, 1]).forward_and_log_det(tf.constant([[10.0, 11.0, 12.0]]))
    np.testing.assert_array_equal(y.numpy(), [[12.0, 10.0, 11.0]])
