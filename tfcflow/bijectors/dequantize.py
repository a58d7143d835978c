"""Uniform dequantization of 8-bit images and its change of variables.

Discrete pixels ``x in {0..255}^D`` get uniform noise ``u ~ U[0, 1)^D``; the flow models the
rescaled continuous values::

    v = x + u in [0, 256)
    inverse  (normalizing):  y = v / 256 - 0.5   in [-0.5, 0.5)
    forward  (generative):   v = 256 * (y + 0.5)
    log|det dy/dv| = -D log 256

and ``log P(x) >= E_u[ log p_v(x + u) ] = E_u[ log p_y(y) ] - D log 256`` (Theis et al. 2016), so
bits/dim = ``-(log p_y(y) - D log 256) / (D log 2)``. Evaluating at the bin centre (``u = 0.5``)
instead gives the midpoint-rule estimate of ``log P(x)``.
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfcflow import _random
from tfcflow.bijectors.flow_bijector import FlowBijector

BINS = 256


class UniformDequantization(FlowBijector):
    """``v in [0, 256)`` (data side) <-> ``y in [-0.5, 0.5)`` (latent side); see module docstring."""

    def __init__(self, event_ndims: int = 3, validate_args: bool = False,
                 name: str = "uniform_dequantization"):
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    def _size(self, t):
        return tf.cast(tf.reduce_prod(tf.shape(t)[-self.event_ndims:]), t.dtype)

    def _inverse_and_log_det(self, v):
        ld = -self._size(v) * math.log(BINS)
        return v / BINS - 0.5, tf.fill(tf.shape(v)[:-self.event_ndims], ld)

    def _forward_and_log_det(self, y):
        ld = self._size(y) * math.log(BINS)
        return BINS * (y + 0.5), tf.fill(tf.shape(y)[:-self.event_ndims], ld)


def add_uniform_noise(bins: tf.Tensor, seed=None) -> tf.Tensor:
    """``x + u``, ``u ~ U[0, 1)`` (stateless with a ``[2]`` seed, else a fresh draw); ``x`` float 8-bit values."""
    if seed is None:
        return bins + tf.random.uniform(tf.shape(bins), dtype=bins.dtype)
    return bins + _random.uniform(tf.shape(bins), seed, dtype=bins.dtype)


def quantize(v: tf.Tensor) -> tf.Tensor:
    """Continuous values ``v`` in [0, 256) -> 8-bit levels (float) in {0..255}."""
    return tf.clip_by_value(tf.floor(v), 0.0, BINS - 1.0)
