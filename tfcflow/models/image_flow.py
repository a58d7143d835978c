"""Shared behaviour of the 8-bit image models (ConditionalGlow, CAFlow).

Images are 8-bit: ``uint8`` in [0, 255] or float in [0, 1] meaning ``uint8 / 255`` (other values
are rejected). The flow models dequantized values (dequantize.py):

- training adds uniform noise ``u ~ U[0, 1)`` to the 8-bit levels (the bound of Theis et al.);
- ``evaluate`` / ``fit`` validation report that bound too (with a fixed noise seed): the
  bits/dim that papers report;
- ``log_prob(x, c)`` evaluates at the bin centres (``u = 0.5``), a deterministic midpoint-rule
  estimate of the discrete log-likelihood log P(x | c), in nats -- what best-of-n ranks by and
  what the SavedModel serves. It is not a bound and can sit well above it on images with many
  saturated pixels (MNIST);
- ``log_prob_bound(x, c, seed)``: the bound for given inputs;
- ``bits_per_dim(x, c) = -log_prob / (D log 2)``;
- ``sample`` returns float images in [0, 1] on the 8-bit grid (samples are quantized).

Image-shaped conditions are given like images (uint8 or [0, 1] floats) and reach the networks in
[-0.5, 0.5]; vector conditions (e.g. one-hot labels) are used as they are.

Temperatures: a float, or one float per level (per-scale temperatures, finest level first); a
level's temperature scales the latents that generate the target's latent at that level.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfcflow import _checks
from tfcflow.bijectors.dequantize import LEVELS, add_uniform_noise, quantize
from tfcflow.models.base import ConditionalFlowModel, seed_tensor


def to_levels(x, name: str) -> tf.Tensor:
    """uint8 / integer [0, 255] or float [0, 1] -> float32 8-bit levels in {0..255}."""
    if x is None:
        raise ValueError(f"{name} is required but got None")
    t = tf.convert_to_tensor(x)
    if t.dtype.is_floating:
        lo, hi, kind = 0.0, 1.0, "float"
        levels = tf.round(tf.cast(t, tf.float32) * (LEVELS - 1))
    elif t.dtype == tf.uint8:
        return tf.cast(t, tf.float32)  # always a valid 8-bit image: nothing to check
    elif t.dtype.is_integer:
        lo, hi, kind = 0, LEVELS - 1, "integer"
        levels = tf.cast(t, tf.float32)
    else:
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {t.dtype.name}")
    return _check_range(t, levels, name, lo, hi, kind)


def to_unit_interval(x, name: str) -> tf.Tensor:
    """Image-like condition: uint8 [0, 255] or float [0, 1] -> float32 in [-0.5, 0.5]."""
    t = tf.convert_to_tensor(x)
    if t.dtype == tf.uint8:
        return tf.cast(t, tf.float32) / (LEVELS - 1) - 0.5
    if t.dtype.is_integer:
        return _check_range(t, tf.cast(t, tf.float32) / (LEVELS - 1) - 0.5, name, 0, LEVELS - 1, "integer")
    if not t.dtype.is_floating:
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {t.dtype.name}")
    return _check_range(t, tf.cast(t, tf.float32) - 0.5, name, 0.0, 1.0, "float")


def _check_range(raw, converted, name, lo, hi, kind):
    msg = f"{name} must be uint8 in [0, 255] or float in [0, 1]"
    if tf.executing_eagerly():
        r = tf.cast(raw, tf.float64)
        if not bool(tf.reduce_all(tf.math.is_finite(r))):
            raise ValueError(f"{name} contains NaN or inf values")
        mn, mx = float(tf.reduce_min(r)), float(tf.reduce_max(r))
        if mn < lo or mx > hi:
            raise ValueError(f"{msg}; got {kind} values in [{mn:g}, {mx:g}]")
        return converted
    r = tf.cast(raw, tf.float32)
    checks = [tf.debugging.assert_all_finite(r, f"{name} contains NaN or inf values"),
              tf.debugging.assert_greater_equal(r, tf.cast(lo, tf.float32), message=msg),
              tf.debugging.assert_less_equal(r, tf.cast(hi, tf.float32), message=msg)]
    with tf.control_dependencies(checks):
        return tf.identity(converted)


class ImageFlowModel(ConditionalFlowModel):
    """Base of the image models (see module docstring). Subclasses implement
    ``_log_prob_dequantized(v, c)`` (v = levels + noise in [0, 256)),
    ``_sample_dequantized(c, temperatures [levels], seed)`` and ``_data_init_dequantized``."""

    PER_DIM_METRIC = "bits_per_dim"

    def __init__(self, image_shape: Sequence[int], condition_shape: Sequence[int], levels: int, **kwargs):
        super().__init__(image_shape, condition_shape, **kwargs)
        self.num_levels = int(levels)
        self._image_condition = len(self.condition_shape) == 3

    # ---- conversions ------------------------------------------------------------------------------
    def _check_x(self, x, name: str = "x") -> tf.Tensor:
        levels = to_levels(x, name)
        _checks.check_shape(levels, name, (None,) + self.event_shape)
        return levels

    def _check_condition(self, condition) -> tf.Tensor:
        if condition is None:
            raise ValueError(f"condition is required: {type(self).__name__} models p(x | condition) with "
                             f"condition of shape {_checks.describe_shape((None,) + self.condition_shape)}")
        if self._image_condition:
            c = to_unit_interval(condition, "condition")
        else:
            c = _checks.check_finite(_checks.as_tensor(condition, "condition"), "condition")
        _checks.check_shape(c, "condition", (None,) + self.condition_shape)
        return c

    def per_dim(self, nll):
        return nll / (float(self.event_size) * math.log(2.0))

    def _temperatures(self, temperature) -> tf.Tensor:
        t = tf.reshape(temperature, [-1])
        if t.shape[0] is not None and t.shape[0] not in (1, self.num_levels):
            raise ValueError(f"temperature must be a float or one value per level ({self.num_levels}), "
                             f"got {t.shape[0]} values")
        return tf.broadcast_to(t, [self.num_levels])

    # ---- ConditionalFlowModel hooks -----------------------------------------------------------------
    def _log_prob(self, levels, condition):
        return self._log_prob_dequantized(levels + 0.5, condition)

    def _training_losses(self, levels, condition, seed):
        nll = -self._log_prob_dequantized(levels + self._training_noise("uniform", tf.shape(levels), seed),
                                          condition)
        return nll, nll

    def _validation_nll(self, levels, condition):
        # the dequantization bound, as in training but with a fixed noise seed (deterministic)
        return -self._log_prob_bound(levels, condition, seed=0)

    def _log_prob_bound(self, levels, condition, seed):
        return self._log_prob_dequantized(levels + self._batch_noise("uniform", tf.shape(levels), seed_tensor(seed)),
                                          condition)

    def _sample(self, condition, temperature, seed):
        v = self._sample_dequantized(condition, self._temperatures(temperature), seed)
        # quantize() clips overflowing values into range; its floor and clip propagate NaN, so a
        # diverged sample stays visible to the finiteness check (tested)
        return quantize(v) / (LEVELS - 1)

    def _data_init(self, levels, condition, force):
        self._data_init_dequantized(add_uniform_noise(levels, seed_tensor(0)), condition, force)

    # ---- public extras --------------------------------------------------------------------------------
    def log_prob_bound(self, x, condition, seed=0) -> tf.Tensor:
        """log p(x + u | c) - D log 256 with seeded uniform noise u: an unbiased estimate of a lower
        bound of log P(x | c) (nats, ``[batch]``)."""
        return self._in_chains(lambda li, ci: self._log_prob_bound(li, ci, seed), *self._check_pair(x, condition))

    def bits_per_dim(self, x, condition) -> tf.Tensor:
        """``-log_prob(x, condition) / (D log 2)``, ``[batch]``."""
        return self.per_dim(-self.log_prob(x, condition))

    def sample(self, condition, temperature=1.0, seed=None) -> tf.Tensor:
        """One 8-bit sample per condition row, as float in [0, 1]. ``temperature``: a float or one
        per level (finest first); 0 gives the mode path."""
        return super().sample(condition, temperature, seed)

    # ---- subclass hooks ---------------------------------------------------------------------------------
    def _log_prob_dequantized(self, v, condition):
        raise NotImplementedError

    def _sample_dequantized(self, condition, temperatures, seed):
        raise NotImplementedError

    def _data_init_dequantized(self, v, condition, force):
        raise NotImplementedError


def piece_temperatures(temperatures: tf.Tensor, piece_shapes: Sequence[Sequence[int]],
                       piece_levels: Sequence[int]) -> tf.Tensor:
    """Per-level temperatures -> a ``[D]`` vector scaling a flat latent made of pieces ``(h, w, c)``,
    piece k being scaled by the temperature of level ``piece_levels[k]`` (0 = finest)."""
    return tf.concat([tf.fill([int(np.prod(shape))], temperatures[level])
                      for shape, level in zip(piece_shapes, piece_levels)], axis=0)
