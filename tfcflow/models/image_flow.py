"""Shared behaviour of the 8-bit image models (ConditionalGlow, CAFlow).

Images are 8-bit: ``uint8`` in [0, 255] or float in [0, 1] meaning ``uint8 / 255`` (other values
are rejected). The flow models dequantized values (dequantize.py):

- training adds uniform noise ``u ~ U[0, 1)`` to the 8-bit values (the bound of Theis et al.);
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
from tensorflow_probability import bijectors as tfb, distributions as tfd

from tfcflow import _checks, _random
from tfcflow.bijectors.dequantize import BINS, UniformDequantization, add_uniform_noise, quantize
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.gaussian import standard_normal_log_prob


def to_bins(x, name: str) -> tf.Tensor:
    """uint8 / integer [0, 255] or float [0, 1] -> float32 8-bit values (bins) in {0..255}."""
    if x is None:
        raise ValueError(f"{name} is required but got None")
    t = tf.convert_to_tensor(x)
    if t.dtype.is_floating:
        lo, hi, kind = 0.0, 1.0, "float"
        bins = tf.round(tf.cast(t, tf.float32) * (BINS - 1))
    elif t.dtype == tf.uint8:
        return tf.cast(t, tf.float32)  # always a valid 8-bit image: nothing to check
    elif t.dtype.is_integer:
        lo, hi, kind = 0, BINS - 1, "integer"
        bins = tf.cast(t, tf.float32)
    else:
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {t.dtype.name}")
    return _check_range(t, bins, name, lo, hi, kind)


def to_unit_interval(x, name: str) -> tf.Tensor:
    """Image-like condition: uint8 [0, 255] or float [0, 1] -> float32 in [-0.5, 0.5]."""
    t = tf.convert_to_tensor(x)
    if t.dtype == tf.uint8:
        return tf.cast(t, tf.float32) / (BINS - 1) - 0.5
    if t.dtype.is_integer:
        return _check_range(t, tf.cast(t, tf.float32) / (BINS - 1) - 0.5, name, 0, BINS - 1, "integer")
    if not t.dtype.is_floating:
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {t.dtype.name}")
    return _check_range(t, tf.cast(t, tf.float32) - 0.5, name, 0.0, 1.0, "float")


def _check_range(raw, converted, name, lo, hi, kind):
    r = tf.cast(raw, tf.float32)
    converted = _checks.enforce(converted, tf.math.is_finite(r), f"{name} contains NaN or inf values",
                                lambda: f"first at row {_checks.first_nonfinite_row(r)}")
    return _checks.enforce(converted, (r >= lo) & (r <= hi), f"{name} must be uint8 in [0, 255] or float in [0, 1]",
                           lambda: f"got {kind} values in [{float(tf.reduce_min(r)):g}, {float(tf.reduce_max(r)):g}]")


class ImageFlowModel(ConditionalFlowModel):
    """Base of the image models (see module docstring): a flow ``z = F(y; features)`` of the
    dequantized image ``y = v / 256 - 0.5`` (``v`` = 8-bit values + noise in [0, 256)), with
    condition features computed once per condition. Subclasses implement::

        _features(condition)        -> what the latent bijector is conditioned on (any nest)
        _latent_bijector(features)  -> FlowBijector y [b, H, W, C] -> z [b, D], with ``piece_shapes``
        _piece_levels()             -> the level (0 = finest) whose temperature scales each piece
        _data_init_dequantized(v, condition, force)

    ``distribution(c)`` is over the dequantized values ``v`` in [0, 256) (a continuous density
    needs a continuous space); ``log_prob`` is the discrete one of 8-bit x (see module docstring)."""

    PER_DIM_METRIC = "bits_per_dim"

    def __init__(self, event_shape: Sequence[int], condition_shape: Sequence[int], levels: int, **kwargs):
        super().__init__(event_shape, condition_shape, **kwargs)
        self.num_levels = int(levels)
        self._image_condition = len(self.condition_shape) == 3

    # ---- conversions ------------------------------------------------------------------------------
    def _check_x(self, x, name: str = "x") -> tf.Tensor:
        bins = to_bins(x, name)
        _checks.check_shape(bins, name, (None,) + self.event_shape)
        return bins

    def _check_condition(self, condition) -> tf.Tensor:
        if condition is None:
            raise self._missing_condition()
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
    def _log_prob(self, bins, condition):
        return self._log_prob_dequantized(bins + 0.5, condition)

    def _training_losses(self, bins, condition, seed):
        nll = -self._log_prob_dequantized(bins + self._training_noise("uniform", tf.shape(bins), seed),
                                          condition)
        return nll, nll

    def _validation_nll(self, bins, condition):
        # the dequantization bound, as in training but with a fixed noise seed (deterministic)
        return -self._log_prob_bound(bins, condition, seed=0)

    def _log_prob_bound(self, bins, condition, seed):
        noise = self._batch_noise("uniform", tf.shape(bins), _random.seed_tensor(seed))
        return self._log_prob_dequantized(bins + noise, condition)

    def _sample(self, condition, temperature, seed):
        v = self._sample_dequantized(condition, self._temperatures(temperature), seed)
        # quantize() clips overflowing values into range; its floor and clip propagate NaN, so a
        # diverged sample stays visible to the finiteness check (tested)
        return quantize(v) / (BINS - 1)

    def _data_init(self, bins, condition, force):
        self._data_init_dequantized(add_uniform_noise(bins, _random.seed_tensor(0)), condition, force)

    # ---- public extras --------------------------------------------------------------------------------
    def log_prob_bound(self, x, condition, seed=0) -> tf.Tensor:
        """log p(x + u | c) - D log 256 with seeded uniform noise u: an unbiased estimate of a lower
        bound of log P(x | c) (nats, ``[batch]``)."""
        return self._in_sub_batches(lambda bi, ci: self._log_prob_bound(bi, ci, seed), *self._check_pair(x, condition))

    def bits_per_dim(self, x, condition) -> tf.Tensor:
        """``-log_prob(x, condition) / (D log 2)``, ``[batch]``."""
        return self.per_dim(-self.log_prob(x, condition))

    def sample(self, condition, temperature=1.0, seed=None, num_samples=None, batch_size=None) -> tf.Tensor:
        """8-bit samples as float in [0, 1]: one per condition row, or ``num_samples`` per row
        (``[batch, N, H, W, C]``; see ``ConditionalFlowModel.sample``). ``temperature``: a float or
        one per level (finest first); 0 gives the mode path."""
        return super().sample(condition, temperature, seed, num_samples=num_samples, batch_size=batch_size)

    def distribution(self, condition) -> tfd.Distribution:
        """p(v | condition) over dequantized pixel values ``v = x_uint8 + u`` in [0, 256), as a
        ``TransformedDistribution`` of N(0, I): batch ``[batch]``, event ``event_shape``."""
        c = self._check_condition(condition)
        base = tfd.MultivariateNormalDiag(loc=tf.zeros([tf.shape(c)[0], self.event_size]))
        return tfd.TransformedDistribution(base, tfb.Chain([UniformDequantization(),
                                                            self._latent_bijector(self._features(c))]))

    # ---- the dequantized density, shared by every image model --------------------------------------------
    def _log_prob_dequantized(self, v, condition):
        return self._log_prob_given(v, self._features(condition))

    def _log_prob_given(self, v, features):
        """log p(v | features): dequantization, the latent bijector, the N(0, I) prior."""
        y, ld_dequant = UniformDequantization().inverse_and_log_det(v)
        z, ld = self._latent_bijector(features).inverse_and_log_det(y)
        return standard_normal_log_prob(z) + ld + ld_dequant

    def _sample_dequantized(self, condition, temperatures, seed):
        bijector = self._latent_bijector(self._features(condition))
        scale = piece_temperatures(temperatures, bijector.piece_shapes, self._piece_levels())
        z = scale * self._batch_noise("normal", tf.stack([tf.shape(condition)[0], self.event_size]), seed)
        y, _ = bijector.forward_and_log_det(z)
        v, _ = UniformDequantization().forward_and_log_det(y)
        return v

    # ---- subclass hooks ---------------------------------------------------------------------------------
    def _features(self, condition):
        raise NotImplementedError

    def _latent_bijector(self, features):
        raise NotImplementedError

    def _piece_levels(self) -> Sequence[int]:
        raise NotImplementedError

    def _data_init_dequantized(self, v, condition, force):
        raise NotImplementedError


def piece_temperatures(temperatures: tf.Tensor, piece_shapes: Sequence[Sequence[int]],
                       piece_levels: Sequence[int]) -> tf.Tensor:
    """Per-level temperatures -> a ``[D]`` vector scaling a flat latent made of pieces ``(h, w, c)``,
    piece k being scaled by the temperature of level ``piece_levels[k]`` (0 = finest)."""
    return tf.concat([tf.fill([int(np.prod(shape))], temperatures[level])
                      for shape, level in zip(piece_shapes, piece_levels)], axis=0)
