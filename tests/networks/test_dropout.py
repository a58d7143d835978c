"""Dropout in the coupling networks: on only inside ``training_dropout``, seeded, inverted."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import _random
from tfcflow.networks import MLPNetwork, ResidualNetwork
from tfcflow._checks import check_fraction
from tfcflow.networks.dropout import dropout, layer_key, training_dropout
from tests.helpers import perturb


def _noise(seed):
    return lambda shape, key: _random.uniform(shape, _random.fold_in_tensor(tf.constant([seed, 0]), key))


def test_inside_the_context_it_drops_the_rate_and_rescales_the_rest():
    h = tf.ones((2000, 64))
    with training_dropout(_noise(0)):
        out = dropout(h, 0.25, "net/dense_0").numpy()
        again = dropout(h, 0.25, "net/dense_0").numpy()
        other = dropout(h, 0.25, "net/dense_1").numpy()
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    dropped = np.mean(out == 0)  # 128,000 Bernoulli(0.25): std 0.0012
    assert abs(dropped - 0.25) < 0.006 and abs(out.mean() - 1.0) < 0.01  # inverted: the mean is kept
    np.testing.assert_array_equal(again, out)  # a function of the noise and the layer only
    assert np.mean((other == 0) != (out == 0)) > 0.3  # another layer, another mask
    with training_dropout(_noise(1)):
        assert np.mean((dropout(h, 0.25, "net/dense_0").numpy() == 0) != (out == 0)) > 0.3
    np.testing.assert_array_equal(dropout(h, 0.25, "net/dense_0").numpy(), h.numpy())  # outside: identity


def test_layer_keys_are_stable_and_distinct():
    assert layer_key("block0_net0/dense_0") == layer_key("block0_net0/dense_0") >= 0
    assert len({layer_key(f"block{i}_net{j}/dense_{k}") for i in range(8) for j in range(2) for k in range(3)}) == 48


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, True, "0.1", None])
def test_a_rate_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        check_fraction(bad, "dropout")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        MLPNetwork(4, (8,), dropout=bad)


@pytest.mark.parametrize("make", [lambda r: MLPNetwork(6, (16, 16), dropout=r, name="n"),
                                  lambda r: ResidualNetwork(6, width=16, blocks=2, dropout=r, name="n")],
                         ids=["mlp", "residual"])
def test_networks_drop_only_while_training_and_keep_the_rate_in_their_config(make):
    net, plain = make(0.4), make(0.0)
    for n in (net, plain):
        n.build([(None, 3), (None, 4)])
    perturb(net, seed=0, scale=0.3)
    plain.set_weights(net.get_weights())
    x = [tf.random.stateless_normal((64, 3), [1, 1]), tf.random.stateless_normal((64, 4), [2, 2])]
    np.testing.assert_array_equal(net(x).numpy(), plain(x).numpy())  # evaluation: no dropout
    with training_dropout(_noise(0)):
        dropped, same = net(x).numpy(), plain(x).numpy()
    assert np.abs(dropped - plain(x).numpy()).max() > 1e-2
    np.testing.assert_array_equal(same, plain(x).numpy())  # rate 0: nothing drawn, nothing dropped
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert clone.get_config()["dropout"] == 0.4 and clone.get_config() == net.get_config()
