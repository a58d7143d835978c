"""Conditional rational-quadratic spline coupling (neural spline flows, Durkan et al. 2019): half
the features are transformed elementwise by a monotone rational-quadratic spline on
``[-B, B]`` (identity outside) whose knots come from a network of the other half and the condition.

Math (``x`` latent side, ``y`` data side, vectors ``[batch, D]``; split as in the affine coupling,
``k = D // 2``, flip swaps the roles of the parts)::

    y = [y_1, y_2],  x = [x_1, x_2],  x_1 = y_1
    theta = NN(y_1, c)   -> per transformed feature: K widths, K heights, K - 1 interior slopes
    inverse  (normalizing):  x_2 = RQS_theta(y_2)                 (closed form: the training path)
    forward  (generative):   y_2 = RQS_theta^{-1}(x_2)            (root of a quadratic per element)
    log|det dx/dy| = sum log RQS_theta'(y_2)   over the transformed features of one event
    RQS_theta(t) = t and RQS_theta'(t) = 1 for |t| >= B           (linear tails, log-det 0)

Parameterization of the raw network output ``h`` (``[batch, dim(y_2) * (3K - 1)]``, laid out
feature-major: ``[..., feature, (widths K | heights K | slopes K - 1)]``)::

    widths, heights = m + (2B - K m) * softmax(h_w), ...     bins sum to 2B, each >= m
    slopes          = softplus(h_d + o) + (1 - softplus(o))   >= ~m, exactly 1 at h_d = 0

with ``m = 1e-3`` and ``o = log(e^(1 - m) - 1)``. Writing the slope offset as ``1 - softplus(o)``
(not the constant ``m``) makes the slope exactly 1.0 in float at ``h = 0``: a zero last layer
gives equal widths and heights and unit slopes, i.e. the identity spline.

The untouched part is the same on both sides, so one network evaluation gives the output and the
log-det in either direction. The spline math is TFP's ``RationalQuadraticSpline`` (``range_min=-B``).
Inputs are clipped to ``[-B, B]`` before reaching it and the tails restored with ``tf.where``:
TFP's forward evaluates the spline formula at the raw out-of-range input before discarding it, which
overflows for huge inputs (|t| ~ 1e30) and turns the gradients of every parameter into NaN.
"""
from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.coupling_layer import CouplingLayer, merge_halves, split_halves

MIN_BIN_SIZE = 1e-3
MIN_SLOPE = 1e-3


def check_spline_args(bins, bound) -> tuple[int, float]:
    """``(bins, bound)`` once ``bins`` is an integer >= 2 and ``bound`` a finite number > 0 wide
    enough for ``bins`` minimum-size bins; ValueError otherwise."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if isinstance(bound, bool) or not isinstance(bound, (int, float, np.number)) \
            or not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"bound must be a finite number > 0, got {bound!r}")
    if 2 * bound <= bins * MIN_BIN_SIZE:
        raise ValueError(f"bound={bound} is too small for {bins} bins of at least {MIN_BIN_SIZE} "
                         f"(need 2 * bound > bins * {MIN_BIN_SIZE})")
    return int(bins), float(bound)


def params_per_feature(bins: int) -> int:
    """Network outputs per transformed feature: ``bins`` widths, ``bins`` heights, ``bins - 1`` slopes."""
    return 3 * bins - 1


def spline_params(h: tf.Tensor, bins: int, bound: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Raw ``h`` ``[..., F * (3K - 1)]`` -> ``(widths [..., F, K], heights [..., F, K],
    slopes [..., F, K - 1])`` (see module docstring)."""
    h = tf.reshape(h, tf.concat([tf.shape(h)[:-1], [-1, params_per_feature(bins)]], axis=0))
    h_w, h_h, h_d = tf.split(h, [bins, bins, bins - 1], axis=-1)
    span = 2.0 * bound - bins * MIN_BIN_SIZE
    widths = MIN_BIN_SIZE + span * tf.nn.softmax(h_w, axis=-1)
    heights = MIN_BIN_SIZE + span * tf.nn.softmax(h_h, axis=-1)
    offset = tf.constant(math.log(math.expm1(1.0 - MIN_SLOPE)), h.dtype)
    # 1 - softplus(o) instead of MIN_SLOPE: softplus(o) + (1 - softplus(o)) rounds to exactly 1.
    slopes = tf.nn.softplus(h_d + offset) + (1.0 - tf.nn.softplus(offset))
    return widths, heights, slopes


class ConditionalSplineCoupling(FlowBijector):
    """Rational-quadratic spline coupling conditioned on ``condition`` (see module docstring).

    Shapes: ``y``/``x`` ``[batch, D]``; log-dets ``[batch]``.

    Args:
      network: callable ``network([y_1, condition]) -> [batch, (3 * bins - 1) * dim(y_2)]``.
      condition: ``[batch, Dc]``, or None for an unconditional coupling.
      flip: transform the first part given the second instead.
      bins: number of spline bins ``K`` (>= 2).
      bound: the spline acts on ``[-bound, bound]``; identity outside.
    """

    def __init__(self, network, condition: Optional[tf.Tensor] = None, flip: bool = False, bins: int = 8,
                 bound: float = 3.0, event_ndims: int = 1, validate_args: bool = False,
                 name: str = "conditional_spline_coupling"):
        if event_ndims != 1:
            raise ValueError(f"{name}: spline couplings take vectors (event_ndims=1), got event_ndims={event_ndims}")
        self._network = network
        self._condition = condition
        self._flip = bool(flip)
        self._bins, self._bound = check_spline_args(bins, bound)
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    def _split(self, t):
        return split_halves(t, self._flip)

    def _merge(self, untouched, transformed, like):
        out = merge_halves(untouched, transformed, self._flip)
        out.set_shape(like.shape)  # TFP's spline loses the static shape; the next coupling splits on it
        return out

    def _spline(self, untouched) -> tfb.RationalQuadraticSpline:
        """The per-element splines of the transformed part, from one network evaluation."""
        inputs = [untouched] if self._condition is None else [untouched, self._condition]
        h = tf.cast(self._network(inputs), untouched.dtype)
        widths, heights, slopes = spline_params(h, self._bins, self._bound)
        return tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-self._bound)

    def _clip(self, t):
        """``(t clipped to [-B, B], inside mask)``: the spline never sees a far-out value."""
        inside = tf.abs(t) < self._bound
        return tf.clip_by_value(t, -self._bound, self._bound), inside

    def _inverse_and_log_det(self, y):
        untouched, transformed = self._split(y)
        spline = self._spline(untouched)
        t, inside = self._clip(transformed)
        out = tf.where(inside, spline.forward(t), transformed)
        ld = tf.where(inside, spline.forward_log_det_jacobian(t, event_ndims=0), tf.zeros_like(t))
        return self._merge(untouched, out, y), self._sum_event(ld)

    def _forward_and_log_det(self, x):
        untouched, transformed = self._split(x)
        spline = self._spline(untouched)
        t, inside = self._clip(transformed)
        spline_out = spline.inverse(t)
        # log|dy/dx| = -log RQS'(y) at y = RQS^{-1}(x); TFP's inverse_log_det_jacobian(t) would
        # recompute the inverse (measured: its cache misses here)
        ld = tf.where(inside, -spline.forward_log_det_jacobian(spline_out, event_ndims=0), tf.zeros_like(t))
        out = tf.where(inside, spline_out, transformed)
        return self._merge(untouched, out, x), self._sum_event(ld)


@keras.saving.register_keras_serializable(package="tfcflow")
class SplineCouplingLayer(CouplingLayer):
    """Owns the coupling network. Conditional when built with a ``condition_shape``. Vectors only.

    Args:
      network: a Keras layer taking ``[untouched, condition]`` (or ``[untouched]``) and returning
        ``(3 * bins - 1) * dim(transformed)`` features, zero-initialized last layer (e.g.
        ``MLPNetwork``), so the coupling starts as the identity.
      flip, bins, bound: see ``ConditionalSplineCoupling``.
    """

    PARAMS = "bin widths, heights and knot slopes"

    def __init__(self, network: keras.layers.Layer, flip: bool = False, bins: int = 8, bound: float = 3.0,
                 **kwargs):
        super().__init__(network, flip=flip, **kwargs)
        self.bins, self.bound = check_spline_args(bins, bound)

    def params_per_feature(self) -> int:
        return params_per_feature(self.bins)

    def build(self, input_shape, condition_shape=None):
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: spline couplings take vectors [batch, D], "
                             f"got an input of shape {list(input_shape)}")
        super().build(input_shape, condition_shape)

    def _view(self, condition) -> ConditionalSplineCoupling:
        return ConditionalSplineCoupling(self.network, condition, flip=self.flip, bins=self.bins,
                                         bound=self.bound, event_ndims=self.event_ndims, name=self.name)

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "bound": self.bound}
