"""Every private Keras / TensorFlow / TFP internal that tfcflow relies on, in one place.

Each hook is a small function (or mixin) named for what tfcflow needs, with the internal it reads.
tests/test_compat.py checks every one against the installed releases and fails with the message of
``CompatError`` naming the hook when a release moves it; the rest of the package never touches a
private name of another library.

Pinned against: Keras 3.15, TensorFlow 2.21, TensorFlow Probability 0.25.
"""
from __future__ import annotations

import keras
import tensorflow as tf


class CompatError(RuntimeError):
    """A private Keras/TF/TFP internal that tfcflow uses is missing or changed."""


def _missing(hook: str, what: str) -> CompatError:
    return CompatError(f"tfcflow._compat.{hook}: {what} (Keras {keras.__version__}, TF {tf.__version__}); "
                       f"this release moved an internal tfcflow relies on: update tfcflow/_compat.py")


# ---- Keras: deserializing a compile config ------------------------------------------------------
def deserialize_keras_config(config):
    """``keras.src.saving.serialization_lib.deserialize_keras_object``: the public
    ``keras.saving.deserialize_keras_object`` rejects the plain dict that ``get_compile_config``
    returns (Keras' own ``compile_from_config`` uses the private function)."""
    try:
        from keras.src.saving import serialization_lib
    except ImportError as e:  # pragma: no cover - only on a Keras that moved it
        raise _missing("deserialize_keras_config", f"keras.src.saving.serialization_lib ({e})") from None
    return serialization_lib.deserialize_keras_object(config)


# ---- Keras: every layer inside a layer ----------------------------------------------------------
def all_layers(layer) -> list:
    """``layer`` and every layer it holds, recursively, including those kept in lists and dicts
    (``Layer._flatten_layers()``; the public ``Model.layers`` lists only the direct children)."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        raise _missing("all_layers", f"{type(layer).__name__}._flatten_layers is gone")
    return list(flatten(include_self=True, recursive=True))


# ---- Keras: the symbolic build before fit / evaluate --------------------------------------------
#: Keras' ``TensorFlowTrainer`` calls this method before fit/evaluate/predict to build a model from
#: a first batch. Under MultiWorkerMirroredStrategy that reduction of a PerReplica batch fails
#: (keras-team/keras#20585).
SYMBOLIC_BUILD_METHOD = "_maybe_symbolic_build"


class SkipSymbolicBuild:
    """Mixin for models that are fully built in ``__init__``: Keras' symbolic build from a first
    batch is replaced by building the optimizer only (without touching the data)."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        optimizer = getattr(self, "optimizer", None)  # absent before compile
        if optimizer is not None and not optimizer.built:
            with self.distribute_strategy.scope():
                optimizer.build(self.trainable_variables)


# ---- TF: multi-worker mode ----------------------------------------------------------------------
def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """True under a MultiWorkerMirroredStrategy with more than one worker
    (``strategy.extended._in_multi_worker_mode()``)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    probe = getattr(strategy.extended, "_in_multi_worker_mode", None)
    if probe is None:
        raise _missing("in_multi_worker_mode", "MultiWorkerMirroredStrategy.extended._in_multi_worker_mode is gone")
    return bool(probe())


def logs_for_keras(strategy: tf.distribute.Strategy, logs: dict) -> dict:
    """Keras reduces every log with ``strategy.reduce(MEAN, value, axis=0)`` under
    MultiWorkerMirroredStrategy, which fails on scalars ("Invalid reduction dimension 0 for input
    with 0 dimensions"); a leading axis of size 1 reduces to the same scalar."""
    if in_multi_worker_mode(strategy):
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs


# ---- Keras optimizers: slots and EMA ------------------------------------------------------------
def adam_slots(optimizer: keras.optimizers.Adam, variable) -> tuple:
    """The first and second moment variables of ``variable`` (backing ``tf.Variable``s) in a Keras
    Adam (``_get_variable_index``, ``_momentums``, ``_velocities``)."""
    try:
        index = optimizer._get_variable_index(variable)
        return optimizer._momentums[index].value, optimizer._velocities[index].value
    except AttributeError as e:
        raise _missing("adam_slots", f"Keras Adam's slot variables ({e})") from None


def ema_pairs(optimizer: keras.optimizers.Optimizer) -> list:
    """``[(trainable variable, its EMA variable)]`` of an optimizer built with ``use_ema``
    (``_trainable_variables``, ``_model_variables_moving_average``, as Keras' SwapEMAWeights)."""
    try:
        return list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))
    except AttributeError as e:
        raise _missing("ema_pairs", f"Keras optimizer EMA variables ({e})") from None


# ---- TFP: the bijector cache --------------------------------------------------------------------
def greedy_bijector_cache(forward_name: str, inverse_name: str):
    """TFP's ``cache_util.BijectorCacheWithGreedyAttrs`` (as TFP's FFJORD uses): the log-det computed
    with a bijector's output is cached with it, so a ``TransformedDistribution`` does not evaluate
    a coupling network twice."""
    try:
        from tensorflow_probability.python.internal import cache_util
        return cache_util.BijectorCacheWithGreedyAttrs(forward_name=forward_name, inverse_name=inverse_name)
    except (ImportError, AttributeError, TypeError) as e:
        raise _missing("greedy_bijector_cache", f"tfp cache_util.BijectorCacheWithGreedyAttrs ({e})") from None


def cached_attributes(cache, value, direction: str) -> dict:
    """The attributes (e.g. a log-det) that a bijector's cache holds with ``value``, an input of the
    ``direction`` (``"forward"`` or ``"inverse"``) pass: the cache's own dict, so what is added to it
    is kept with ``value`` (``BijectorCache.forward_attributes`` / ``inverse_attributes``)."""
    if direction not in ("forward", "inverse"):
        raise ValueError(f"direction must be 'forward' or 'inverse', got {direction!r}")
    lookup = getattr(cache, f"{direction}_attributes", None)
    if lookup is None:
        raise _missing("cached_attributes", f"tfp BijectorCache.{direction}_attributes is gone")
    return lookup(value)


# ---- TF: the Philox key and counter of a stateless seed -----------------------------------------
def philox_key_counter(seed) -> tuple:
    """``random_ops_util.get_key_counter_alg(seed, "philox")``: the ``(key, counter, alg)`` that
    ``tf.random.stateless_uniform(shape, seed, alg="philox")`` hands to its raw op. tfcflow starts a
    draw at a counter offset with them, to take rows k.. of a seed's stream without drawing rows
    0..k-1 (``_random``)."""
    try:
        from tensorflow.python.ops import random_ops_util
        return random_ops_util.get_key_counter_alg(seed, "philox")
    except (ImportError, AttributeError, TypeError) as e:
        raise _missing("philox_key_counter", f"tf random_ops_util.get_key_counter_alg ({e})") from None
