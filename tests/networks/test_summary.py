import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow.networks import DeepSet, TimeSeriesNetwork

POOLINGS = ["mean", "sum", "max"]


def _deepset(pooling="mean", **kwargs):
    keras.utils.set_random_seed(0)
    return DeepSet(3, width=8, pooling=pooling, **kwargs)


def _close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_deepset_is_permutation_invariant(pooling):
    net = _deepset(pooling)
    x = tf.random.normal([4, 7, 2], seed=1)
    mask = tf.cast(tf.random.uniform([4, 7], seed=2) > 0.3, tf.float32)
    perm = np.random.default_rng(0).permutation(7)
    _close(net(x), net(tf.gather(x, perm, axis=1)))
    _close(net((x, mask)), net((tf.gather(x, perm, axis=1), tf.gather(mask, perm, axis=1))))


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("fill", [1e6, np.inf, np.nan])
def test_deepset_masked_element_changes_nothing(pooling, fill):
    """Row 0 pads slots 1 and 4 with ``fill``: output and gradients equal those of the 3 present
    elements alone (tf.where, not a product, so even inf/NaN in a padded slot cannot leak)."""
    net = _deepset(pooling)
    x = tf.random.normal([2, 5, 2], seed=3)
    x_padded = tf.tensor_scatter_nd_update(x, [[0, 1, 0], [0, 4, 1]], [fill, fill])
    mask = tf.constant([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], tf.float32)
    alone = tf.gather(x[:1], [0, 2, 3], axis=1)
    with tf.GradientTape(persistent=True) as tape:
        padded_out = net((x_padded, mask))[0]
        alone_out = net(alone)[0]
        losses = [tf.reduce_sum(padded_out ** 2), tf.reduce_sum(alone_out ** 2)]
    _close(padded_out, alone_out)
    _close(net((x, mask))[1], net(x[1:])[0])
    for g_padded, g_alone in zip(*(tape.gradient(loss, net.trainable_variables) for loss in losses)):
        _close(g_padded, g_alone, tol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_deepset_mask_all_ones_and_empty_sets(pooling):
    net = _deepset(pooling)
    x = tf.random.normal([3, 4, 2], seed=4)
    _close(net((x, tf.ones([3, 4]))), net(x))
    _close(net([x, tf.ones([3, 4], tf.bool)]), net(x))  # a list and a bool mask work too
    # every element masked: the documented behaviour is a zero pooled vector (and n = 0)
    empty = net((tf.fill([2, 4, 2], np.nan), tf.zeros([2, 4]))).numpy()
    assert np.isfinite(empty).all()
    _close(empty[0], empty[1])
    _close(net(tf.zeros([2, 0, 2])), empty)


def test_deepset_include_count_tells_set_sizes_apart():
    """A set of copies of one element has the same mean/max for any n; log1p(n) separates them."""
    x = tf.ones([1, 1, 2])
    with_count, without = _deepset(), _deepset(include_count=False)
    assert not np.allclose(with_count(x), with_count(tf.tile(x, [1, 5, 1])))
    _close(without(x), without(tf.tile(x, [1, 5, 1])))


def test_deepset_variable_set_size_eager_and_in_one_tf_function():
    net = _deepset()
    sets = [tf.random.normal([2, n, 2], seed=n) for n in (1, 3, 8)]
    eager = [net(s) for s in sets]

    @tf.function(input_signature=[tf.TensorSpec([None, None, 2])])
    def summarize(x):
        return net(x)

    @tf.function(input_signature=[(tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, None]))])
    def summarize_masked(pair):
        return net(pair)

    for s, e in zip(sets + [tf.random.normal([5, 4, 2])], eager + [None]):
        out = summarize(s)
        assert out.shape == (s.shape[0], 3) and out.dtype == tf.float32
        if e is not None:
            _close(out, e)
        _close(summarize_masked((s, tf.ones(s.shape[:2]))), out)
    assert summarize.experimental_get_tracing_count() == 1
    assert summarize_masked.experimental_get_tracing_count() == 1


def _timeseries():
    keras.utils.set_random_seed(0)
    return TimeSeriesNetwork(3, filters=4, kernel_size=3, depth=2)


def test_timeseries_variable_length_eager_and_in_one_tf_function():
    net = _timeseries()
    net.build((None, None, 2))  # variables created inside a first trace would force a second one

    @tf.function(input_signature=[tf.TensorSpec([None, None, 2])])
    def summarize(x):
        return net(x)

    for batch, steps in [(2, 1), (3, 9), (1, 32)]:
        x = tf.random.normal([batch, steps, 2], seed=steps)
        out = summarize(x)
        assert out.shape == (batch, 3) and out.dtype == tf.float32
        _close(out, net(x))
    assert summarize.experimental_get_tracing_count() == 1
    assert TimeSeriesNetwork(3, depth=0)(x).shape == (1, 3)  # just the average over time and Dense


@pytest.mark.parametrize("kind", ["deepset", "timeseries"])
def test_gradients_reach_every_weight(kind):
    net = _deepset() if kind == "deepset" else _timeseries()
    x = tf.random.normal([4, 6, 2], seed=5)
    inputs = (x, tf.constant([[1.0] * 6, [1.0] * 3 + [0.0] * 3] * 2)) if kind == "deepset" else x
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(inputs) ** 2)
    grads = tape.gradient(loss, net.trainable_variables)
    assert len(grads) == len(net.trainable_variables) > 0
    for v, g in zip(net.trainable_variables, grads):
        assert g is not None and float(tf.norm(g)) > 0, v.path


def test_round_trips(tmp_path):
    """get_config/from_config + set_weights, and a whole keras.Model saved as .keras, reproduce
    the outputs of both layers exactly."""
    x = tf.random.normal([2, 5, 2], seed=6)
    mask = tf.constant([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]], tf.float32)
    for net, inputs in [(_deepset("max"), (x, mask)), (_timeseries(), x)]:
        expected = net(inputs)
        clone = type(net).from_config(net.get_config())
        clone(inputs)
        clone.set_weights(net.get_weights())
        _close(clone(inputs), expected, tol=0)
        assert clone.summary_dim == net.summary_dim == 3

    x_in, mask_in = keras.Input((None, 2)), keras.Input((None,))
    deepset, series = _deepset("max"), _timeseries()
    model = keras.Model([x_in, mask_in], [deepset((x_in, mask_in)), series(x_in)])
    path = str(tmp_path / "summaries.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for got, want in zip(loaded([x, mask]), model([x, mask])):
        _close(got, want, tol=0)
    assert {type(layer) for layer in loaded.layers} >= {DeepSet, TimeSeriesNetwork}


def test_wrong_shapes_raise_clear_errors():
    net = _deepset()
    net(tf.zeros([2, 4, 2]))
    for bad, words in [((tf.zeros([2, 2]),), ["x must have shape [batch, n_obs, 2]", "got shape [2, 2]"]),
                       ((tf.zeros([2, 4, 2, 1]),), ["rank 3", "got shape [2, 4, 2, 1]"]),
                       ((tf.zeros([2, 4, 5]),), ["got shape [2, 4, 5]"]),
                       (((tf.zeros([2, 4, 2]), tf.ones([2, 3])),), ["mask must have shape [2, 4]"])]:
        with pytest.raises(ValueError) as err:
            net(*bad)
        for w in words + [net.name, "DeepSet"]:
            assert w in str(err.value)
    with pytest.raises(ValueError, match=r"TimeSeriesNetwork\): x must have shape \[batch, T, channels\]"):
        TimeSeriesNetwork(2)(tf.zeros([2, 8]))
    with pytest.raises(ValueError, match="pooling"):
        DeepSet(2, pooling="median")
    with pytest.raises(ValueError, match="summary_dim"):
        TimeSeriesNetwork(0)


def test_mixed_precision_outputs_float32():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = tf.random.normal([2, 5, 2])
        deepset, series = DeepSet(3, width=8), TimeSeriesNetwork(3, filters=4)
        out = deepset((x, tf.constant([[1, 1, 1, 0, 0]] * 2, tf.float32)))
        assert deepset.phi[0].compute_dtype == "float16"
        assert out.dtype == series(x).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_deep_set_mask_channel_is_the_pair_form():
    """The mask as x's last feature (one tensor: a model's condition) gives the (x, mask) result."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 6, 2)).astype(np.float32)
    mask = (rng.uniform(size=(3, 6)) > 0.4).astype(np.float32)
    mask[:, 0] = 1.0
    pair = DeepSet(4, width=8, name="pair")
    packed = DeepSet(4, width=8, mask_channel=True, name="packed")
    pair.build(((None, None, 2), (None, None)))
    packed.build((None, None, 3))
    packed.set_weights(pair.get_weights())
    x_padded = np.where(mask[..., None] > 0, x, 1e6).astype(np.float32)  # padding values change nothing
    want = pair((tf.constant(x), tf.constant(mask))).numpy()
    got = packed(tf.constant(np.concatenate([x_padded, mask[..., None]], -1))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert DeepSet.from_config(packed.get_config()).mask_channel
    with pytest.raises(ValueError, match="mask_channel"):
        DeepSet(4, mask_channel=True).build((None, None, 1))
