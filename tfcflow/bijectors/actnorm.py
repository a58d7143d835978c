"""Activation normalization (Glow): a per-channel affine map with data-dependent initialization.

Math (per channel c; ``x`` latent side, ``y`` data side)::

    forward  (generative):   y = x * exp(s_c) + b_c
    inverse  (normalizing):  x = (y - b_c) * exp(-s_c)
    log|det dy/dx| = P * sum_c s_c,   P = H*W for NHWC images, 1 for vectors
    log|det dx/dy| = -P * sum_c s_c

Data-dependent init sets ``b = mean(y)`` and ``s = log(max(std(y), epsilon))`` over a batch, so the
normalizing direction maps that batch to zero-mean, unit-variance channels (constant channels are
left at scale ``1 / epsilon``).
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_layer import FlowLayer


class ActNorm(FlowBijector):
    """Per-channel affine bijector (see module docstring).

    Args:
      loc: ``[C]`` shift ``b``.
      log_scale: ``[C]`` log-scale ``s``.
      event_ndims: 1 (vectors ``[..., C]``) or 3 (images ``[..., H, W, C]``).
    """

    def __init__(self, loc, log_scale, event_ndims: int = 1, validate_args: bool = False,
                 name: str = "act_norm"):
        self._loc = loc
        self._log_scale = log_scale
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    @property
    def loc(self):
        return self._loc

    @property
    def log_scale(self):
        return self._log_scale

    def _forward_and_log_det(self, x):
        log_scale = tf.cast(self._log_scale, x.dtype)
        y = x * tf.exp(log_scale) + tf.cast(self._loc, x.dtype)
        return y, self._log_det(x, log_scale)

    def _inverse_and_log_det(self, y):
        log_scale = tf.cast(self._log_scale, y.dtype)
        x = (y - tf.cast(self._loc, y.dtype)) * tf.exp(-log_scale)
        return x, -self._log_det(y, log_scale)

    def _log_det(self, t, log_scale):
        per_event = self._num_positions(t) * tf.reduce_sum(log_scale)
        return tf.fill(tf.shape(t)[:-self.event_ndims], per_event)


@keras.saving.register_keras_serializable(package="tfcflow")
class ActNormLayer(FlowLayer):
    """Owns ActNorm's ``loc`` and ``log_scale`` (zeros until ``data_init``) and an ``initialized``
    flag, saved with the weights so a restored model is never re-initialized.

    Args:
      epsilon: floor of the batch std: a channel (nearly) constant in the initialization batch --
        a background pixel, a constant input dimension, a coarse level seen through a few
        examples -- gets scale ``1 / epsilon`` at most, not up to ``1e6`` (which left CAFlow's
        log-probs near -1e18 after an initialization from a few examples).
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        channels = input_shape[-1]
        self.loc = self.add_weight(shape=(channels,), initializer="zeros", name="loc")
        self.log_scale = self.add_weight(shape=(channels,), initializer="zeros", name="log_scale")
        self.initialized = self.add_weight(shape=(), initializer="zeros", dtype="int32",
                                           trainable=False, name="initialized")

    def bijector(self, condition=None) -> ActNorm:
        return ActNorm(self.loc, self.log_scale, event_ndims=self.event_ndims, name=self.name)

    @property
    def is_initialized(self) -> bool:
        return bool(keras.ops.convert_to_numpy(self.initialized))

    def data_init(self, x: tf.Tensor, condition: Optional[tf.Tensor] = None, force: bool = False):
        """Sets loc/log_scale from the batch ``x`` (data side) unless already initialized.

        Runs eagerly (call it once before training, outside ``tf.function``); under a
        ``tf.distribute`` strategy, call it in ``strategy.scope()`` so every replica gets the same
        values.
        """
        if not tf.executing_eagerly():
            raise RuntimeError("ActNormLayer.data_init must run eagerly, once, before training")
        if self.is_initialized and not force:
            return
        axes = list(range(len(x.shape) - 1))
        mean, var = tf.nn.moments(tf.cast(x, tf.float32), axes=axes)
        self.loc.assign(mean)
        self.log_scale.assign(tf.math.log(tf.maximum(tf.sqrt(var), self.epsilon)))
        self.initialized.assign(1)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
