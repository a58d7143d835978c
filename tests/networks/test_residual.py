import keras
import numpy as np
import tensorflow as tf

from tfcflow.networks import ResidualNetwork
from tests.helpers import perturb


def _net(**kw):
    net = ResidualNetwork(6, width=16, blocks=2, **kw)
    net.build([(None, 3), (None, 4)])
    return net


def test_starts_at_zero_output_so_a_coupling_starts_as_the_identity():
    net = _net()
    out = net([tf.ones((5, 3)), tf.ones((5, 4))])
    assert out.shape == (5, 6) and out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), 0.0)


def test_the_gate_is_a_sigmoid_of_the_condition_on_each_blocks_residual():
    net = _net()
    perturb(net, seed=0, scale=0.3)
    u = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    c = np.random.default_rng(2).standard_normal((4, 4)).astype(np.float32)
    relu = tf.nn.relu
    h = net.inp(tf.concat([u, c], -1))
    for first, second, gate in zip(net.first, net.second, net.gates):
        h = h + second(relu(first(relu(h)))) * tf.sigmoid(gate(c))
    expected = net.out(relu(h))
    np.testing.assert_allclose(net([u, c]).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_without_a_condition_it_has_no_gates():
    net = ResidualNetwork(2, width=8, blocks=3)
    net.build([(None, 5)])
    assert net([tf.ones((2, 5))]).shape == (2, 2)
    assert not [w for w in net.weights if "gate" in w.path]


def test_config_round_trip_gives_the_same_function():
    net = _net()
    perturb(net, seed=3)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert clone.built  # Keras rebuilds it from its build config
    clone.set_weights(net.get_weights())
    x = [tf.random.stateless_normal((3, 3), [1, 1]), tf.random.stateless_normal((3, 4), [2, 2])]
    np.testing.assert_allclose(clone(x).numpy(), net(x).numpy(), rtol=1e-6)
    assert clone.get_config() == net.get_config()
