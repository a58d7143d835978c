"""The API and training step shared by every tfcflow model.

A model is a Keras 3 ``Model`` of p(x | condition) with:

- ``log_prob(x, condition)`` -> ``[batch]`` log-density in nats;
- ``sample(condition, temperature=1.0, seed=None)`` -> one sample per condition row
  (``seed`` given -> deterministic, via stateless RNG);
- ``best_of_n(condition, n, temperature, seed)`` -> the sample of highest ``log_prob`` among n;
- ``distribution(condition)`` -> a ``tfd.Distribution`` view for TFP tooling;
- ``initialize(x, condition)`` -> data-dependent (ActNorm) initialization, once, before training;
- ``fit`` on ``(x, condition)`` batches with the negative log-likelihood as loss, reported also
  per dimension (``nats_per_dim``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _checks


def seed_tensor(seed) -> tf.Tensor:
    """``None`` -> a fresh random seed; an int -> ``[seed, 0]``; a ``[2]`` int tensor as is."""
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=2**31 - 1, dtype=tf.int32)
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        return tf.stack([tf.cast(seed, tf.int32), 0])
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"seed must be an int or a [2] int tensor, got shape {seed.shape.as_list()}")
    return tf.cast(seed, tf.int32)


def check_temperature(temperature) -> tf.Tensor:
    """A float >= 0 (ValueError) or a tensor checked in-graph (InvalidArgumentError)."""
    if isinstance(temperature, (int, float, np.floating, np.integer)):
        if not np.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        return tf.constant(float(temperature), tf.float32)
    t = tf.cast(tf.convert_to_tensor(temperature), tf.float32)
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(t) & (t >= 0))):
            raise ValueError(f"temperature must be >= 0, got {t.numpy()!r}")
        return t
    with tf.control_dependencies([tf.debugging.assert_non_negative(
            t, message="temperature must be >= 0")]):
        return tf.identity(t)


class ConditionalFlowModel(keras.Model):
    """Base class (see module docstring). Subclasses build their layers in ``__init__`` (so the
    model is built and its variables exist as soon as it is constructed) and implement
    ``_log_prob``, ``_sample``, ``_data_init`` and ``distribution``.

    Args:
      event_shape: shape of one x, without batch.
      condition_shape: shape of one condition, without batch.
    """

    def __init__(self, event_shape: Sequence[int], condition_shape: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self._event_shape = tuple(int(d) for d in event_shape)
        self._condition_shape = tuple(int(d) for d in condition_shape)
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._per_dim_tracker = keras.metrics.Mean(name=self.PER_DIM_METRIC)

    #: name of the per-dimension NLL metric reported by fit/evaluate
    PER_DIM_METRIC = "nats_per_dim"

    # ---- shapes and validation -------------------------------------------------------------------
    @property
    def event_shape(self) -> tuple:
        return self._event_shape

    @property
    def condition_shape(self) -> tuple:
        return self._condition_shape

    @property
    def event_size(self) -> int:
        """Number of dimensions of x (the denominator of nats/dim)."""
        return int(np.prod(self._event_shape))

    def _check_x(self, x, name: str = "x") -> tf.Tensor:
        x = _checks.as_tensor(x, name)
        _checks.check_shape(x, name, (None,) + self._event_shape)
        return _checks.check_finite(x, name)

    def _check_condition(self, condition) -> tf.Tensor:
        if condition is None:
            raise ValueError(f"condition is required: {type(self).__name__} models p(x | condition) "
                             f"with condition of shape {_checks.describe_shape((None,) + self._condition_shape)}")
        c = _checks.as_tensor(condition, "condition")
        _checks.check_shape(c, "condition", (None,) + self._condition_shape)
        return _checks.check_finite(c, "condition")

    def _check_pair(self, x, condition):
        x = self._check_x(x)
        c = self._check_condition(condition)
        deps = _checks.check_same_batch(x, "x", c, "condition")
        if deps:
            with tf.control_dependencies(deps):
                x = tf.identity(x)
        return x, c

    # ---- public API ------------------------------------------------------------------------------
    def log_prob(self, x, condition) -> tf.Tensor:
        """log p(x | condition) in nats. Shapes: x ``[batch, *event_shape]``, condition
        ``[batch, *condition_shape]`` -> ``[batch]``."""
        x, c = self._check_pair(x, condition)
        return self._log_prob(x, c)

    def sample(self, condition, temperature=1.0, seed=None) -> tf.Tensor:
        """One sample per condition row, latents drawn at ``temperature`` (0 = the mode path).
        Shapes: condition ``[batch, *condition_shape]`` -> ``[batch, *event_shape]``."""
        c = self._check_condition(condition)
        return self._sample(c, check_temperature(temperature), seed_tensor(seed))

    def best_of_n(self, condition, n: int, temperature=1.0, seed=None):
        """Draws ``n`` samples per condition row and keeps the one of highest log p(x | condition).

        Returns ``(samples [batch, *event_shape], log_prob [batch])``.
        """
        n = _checks.check_positive_int(n, "n")
        c = self._check_condition(condition)
        batch = tf.shape(c)[0]
        tiled = tf.repeat(c, n, axis=0)  # row b*n + i is sample i of condition b
        x = self._sample(tiled, check_temperature(temperature), seed_tensor(seed))
        lp = tf.reshape(self._log_prob(x, tiled), [batch, n])
        best = tf.argmax(lp, axis=1, output_type=tf.int32)
        rows = tf.range(batch) * n + best
        return tf.gather(x, rows), tf.reduce_max(lp, axis=1)

    def initialize(self, x, condition, force: bool = False) -> None:
        """Data-dependent initialization (every ActNorm) from one batch; eager, once.

        Call it before ``fit`` (inside ``strategy.scope()`` when distributing) with a
        representative batch of a few hundred examples. A no-op for already initialized layers
        unless ``force``.
        """
        x, c = self._check_pair(x, condition)
        self._data_init(x, c, force)

    def per_dim(self, nll: tf.Tensor) -> tf.Tensor:
        """NLL (nats) -> the per-dimension metric (nats/dim here; bits/dim for image models)."""
        return nll / float(self.event_size)

    # ---- Keras -----------------------------------------------------------------------------------
    def call(self, inputs, training=None):
        """``model((x, condition))`` -> log p(x | condition)."""
        x, condition = inputs
        return self.log_prob(x, condition)

    @property
    def metrics(self):
        return [self._loss_tracker, self._per_dim_tracker]

    def _unpack(self, data):
        if isinstance(data, dict):
            return data["x"], data.get("condition")
        if isinstance(data, (tuple, list)) and len(data) >= 2:
            return data[0], data[1]
        raise ValueError("training data must be (x, condition) pairs or {'x': ..., 'condition': ...}")

    def _training_losses(self, x, condition):
        """Per-example ``(objective, nll)`` minimized by train_step. The objective is the NLL here;
        models with training noise or extra terms override it."""
        nll = -self._log_prob(x, condition)
        return nll, nll

    def _update_metrics(self, objective, nll):
        self._loss_tracker.update_state(objective)
        self._per_dim_tracker.update_state(self.per_dim(nll))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, condition = self._unpack(data)
        x, condition = self._check_pair(x, condition)
        with tf.GradientTape() as tape:
            objective, nll = self._training_losses(x, condition)
            # Average over the GLOBAL batch: correct gradients under tf.distribute.
            loss = tf.nn.compute_average_loss(objective)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._update_metrics(objective, nll)

    def test_step(self, data):
        x, condition = self._unpack(data)
        x, condition = self._check_pair(x, condition)
        nll = -self._log_prob(x, condition)
        return self._update_metrics(nll, nll)

    # ---- subclass hooks --------------------------------------------------------------------------
    def _log_prob(self, x: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _sample(self, condition: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _data_init(self, x: tf.Tensor, condition: tf.Tensor, force: bool) -> None:
        raise NotImplementedError

    def distribution(self, condition):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}
