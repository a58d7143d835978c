"""Closed-form Gaussian log-densities used by the models' latent terms."""
from __future__ import annotations

import math

import tensorflow as tf

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def standard_normal_log_prob(z: tf.Tensor, event_ndims: int = 1) -> tf.Tensor:
    """sum over the event of log N(z; 0, 1) -> batch shape."""
    return tf.reduce_sum(-0.5 * tf.square(z) - _HALF_LOG_2PI, axis=list(range(-event_ndims, 0)))


def normal_log_prob(x: tf.Tensor, loc, scale, event_ndims: int = 1) -> tf.Tensor:
    """sum over the event of log N(x; loc, scale^2) -> batch shape. ``scale`` > 0."""
    scale = tf.convert_to_tensor(scale, x.dtype)
    u = (x - loc) / scale
    return tf.reduce_sum(-0.5 * tf.square(u) - _HALF_LOG_2PI - tf.math.log(scale) * tf.ones_like(u),
                         axis=list(range(-event_ndims, 0)))
