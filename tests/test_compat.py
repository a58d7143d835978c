"""tfcflow/_compat.py: one test per private Keras/TF/TFP hook, each failing with a message that
names the hook when a release moves the internal it reads."""
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import _compat
from tfcflow.optim import FusedAdam


def _explain(hook: str, what: str) -> str:
    return f"tfcflow._compat.{hook}: {what} changed in Keras {keras.__version__} / TF {tf.__version__}"


def test_deserialize_keras_config_round_trips_a_compile_config():
    from tests.helpers import tiny_model
    m = tiny_model("cinn")
    m.compile(optimizer=keras.optimizers.Adam(3e-4), clipnorm=2.0, seed=7)
    config = _compat.deserialize_keras_config(m.get_compile_config())
    assert isinstance(config["optimizer"], keras.optimizers.Adam), _explain("deserialize_keras_config", "the format")
    assert config["clipnorm"] == 2.0 and config["seed"] == 7


def test_all_layers_finds_the_layers_held_in_lists_at_any_depth():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2, name=f"{self.name}_dense")

    class Outer(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="outer")
            self.blocks = [Block(name="b0"), Block(name="b1")]  # a list: not in Model.layers' sense

    outer = Outer()
    names = [layer.name for layer in _compat.all_layers(outer)]
    assert sorted(names) == ["b0", "b0_dense", "b1", "b1_dense", "outer"], _explain("all_layers", names)
    # and a model's ActNorm layers, kept in its flow's list of steps, are found
    from tests.helpers import tiny_glow
    from tfcflow.bijectors.actnorm import ActNormLayer
    m = tiny_glow()
    found = [layer for layer in _compat.all_layers(m) if isinstance(layer, ActNormLayer)]
    assert found and len({id(layer) for layer in found}) == len(found), _explain("all_layers", "a model's layers")
    assert m.needs_initialization()


def test_the_symbolic_build_hook_is_the_method_keras_calls_before_fit():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    assert hasattr(TensorFlowTrainer, _compat.SYMBOLIC_BUILD_METHOD), _explain("SkipSymbolicBuild", "the method name")
    for method in (TensorFlowTrainer.fit, TensorFlowTrainer.evaluate):
        assert _compat.SYMBOLIC_BUILD_METHOD in inspect.getsource(method), _explain("SkipSymbolicBuild", "fit/evaluate")
    params = list(inspect.signature(getattr(TensorFlowTrainer, _compat.SYMBOLIC_BUILD_METHOD)).parameters)
    assert params[:3] == ["self", "iterator", "data_batch"], _explain("SkipSymbolicBuild", "the signature")
    # and it builds the optimizer only
    from tests.helpers import tiny_model
    m = tiny_model("cinn")
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert not m.optimizer.built
    m._maybe_symbolic_build(data_batch=None)
    assert m.optimizer.built


def test_in_multi_worker_mode_reads_the_strategy():
    assert _compat.in_multi_worker_mode(tf.distribute.get_strategy()) is False
    assert hasattr(tf.distribute.MultiWorkerMirroredStrategy, "extended")
    from tensorflow.python.distribute import collective_all_reduce_strategy as cars
    assert hasattr(cars.CollectiveAllReduceExtended, "_in_multi_worker_mode"), _explain(
        "in_multi_worker_mode", "CollectiveAllReduceExtended._in_multi_worker_mode")
    logs = {"loss": tf.constant(1.0)}
    assert _compat.logs_for_keras(tf.distribute.get_strategy(), logs) is logs


@pytest.mark.parametrize("cls", [keras.optimizers.Adam, FusedAdam])
def test_adam_slots_are_the_moments_keras_updates(cls):
    v = keras.Variable(np.ones(3, np.float32))
    opt = cls(learning_rate=0.1)
    opt.build([v])
    opt.apply([tf.constant([1.0, 2.0, 3.0])], [v])
    m, s = _compat.adam_slots(opt, v)
    np.testing.assert_allclose(m.numpy(), 0.1 * np.array([1.0, 2.0, 3.0]), rtol=1e-6,
                               err_msg=_explain("adam_slots", "Keras Adam's first moments"))
    np.testing.assert_allclose(s.numpy(), 0.001 * np.array([1.0, 4.0, 9.0]), rtol=1e-4,
                               err_msg=_explain("adam_slots", "Keras Adam's second moments"))


def test_ema_pairs_are_the_variables_and_their_averages():
    v = keras.Variable(np.zeros(2, np.float32))
    opt = keras.optimizers.SGD(1.0, use_ema=True, ema_momentum=0.5)
    opt.build([v])
    opt.apply([tf.constant([-2.0, -4.0])], [v])  # v = [2, 4]; Keras starts the EMA at v
    opt.apply([tf.constant([-2.0, -4.0])], [v])  # v = [4, 8]; EMA = 0.5 * [2, 4] + 0.5 * v
    pairs = _compat.ema_pairs(opt)
    assert len(pairs) == 1 and pairs[0][0] is v, _explain("ema_pairs", "_trainable_variables")
    np.testing.assert_allclose(pairs[0][1].numpy(), [3.0, 6.0], err_msg=_explain("ema_pairs", "the EMA update"))


def test_greedy_bijector_cache_stores_the_log_det_with_the_output():
    from tensorflow_probability import distributions as tfd
    from tfcflow.bijectors import ActNorm

    calls = []

    class Counting(ActNorm):
        def _inverse_and_log_det(self, y):
            calls.append(1)
            return super()._inverse_and_log_det(y)

    b = Counting(tf.constant([0.5, -1.0]), tf.constant([0.2, 0.1]), event_ndims=1)
    d = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), b)
    d.log_prob(tf.constant([[0.3, 0.7]]))
    assert len(calls) == 1, _explain("greedy_bijector_cache", "TFP's cache: inverse and its log-det evaluated apart")


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_cached_attributes_are_the_log_dets_kept_with_a_pass_input(direction):
    from tfcflow.bijectors import ActNorm

    b = ActNorm(tf.constant([0.5, -1.0]), tf.constant([0.2, 0.1]), event_ndims=1)
    t = tf.constant([[0.3, 0.7]])
    getattr(b, direction)(t)  # the pass stores both log-dets with its input
    attrs = _compat.cached_attributes(b._cache, t, direction)
    assert set(attrs) >= {"fldj", "ildj"}, _explain("cached_attributes", f"{direction}_attributes")
    expected = b.forward_and_log_det(t)[1] if direction == "forward" else b.inverse_and_log_det(t)[1]
    key = "fldj" if direction == "forward" else "ildj"
    np.testing.assert_allclose(attrs[key].numpy(), expected.numpy(), rtol=1e-6)
    # the dict is the cache's own: what is added to it is kept with the tensor
    attrs["mark"] = 1
    assert _compat.cached_attributes(b._cache, t, direction)["mark"] == 1, _explain("cached_attributes", "a copy")
    # a new tensor object has nothing cached (the cache is keyed by identity)
    assert "fldj" not in _compat.cached_attributes(b._cache, tf.constant([[0.3, 0.7]]), direction)
    with pytest.raises(ValueError, match="direction"):
        _compat.cached_attributes(b._cache, t, "sideways")


def test_philox_key_counter_are_what_stateless_uniform_draws_with():
    seed = tf.constant([11, 4])
    key, counter, alg = _compat.philox_key_counter(seed)
    raw = tf.raw_ops.StatelessRandomUniformFullIntV2(shape=[37], key=key, counter=counter, alg=alg, dtype=tf.uint32)
    public = tf.random.stateless_uniform([37], seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox")
    assert np.array_equal(raw.numpy(), public.numpy()), _explain("philox_key_counter", "the key/counter derivation")
    # and the counter advances by one per 4 uint32 (what _random's offsets rely on)
    next_counter = counter + tf.constant([1, 0], tf.uint64)
    moved = tf.raw_ops.StatelessRandomUniformFullIntV2(shape=[33], key=key, counter=next_counter, alg=alg,
                                                       dtype=tf.uint32)
    assert np.array_equal(moved.numpy(), public.numpy()[4:]), _explain("philox_key_counter", "Philox's counter layout")
