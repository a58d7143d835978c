"""A bounded support: maps all of R^D onto a box of lower and/or upper bounds per dimension.

Math (per dimension; ``u`` latent side in R, ``x`` data side in the support; ``sp`` = softplus,
``sigma`` = logistic sigmoid; a dimension without bounds is the identity)::

    bounds     forward (generative)       inverse (normalizing)         log|dx/du|
    [a, b]     x = a + (b - a) sigma(u)   u = log(x - a) - log(b - x)   log(b - a) + log sigma(u) + log sigma(-u)
    [a, inf)   x = a + sp(u)              u = log(expm1(x - a))         log sigma(u)
    (-inf, b]  x = b - sp(u)              u = log(expm1(b - x))         log sigma(u)

A box's forward map is computed from the nearer bound (``b - (b - a) sigma(-u)`` for u > 0), so
float32 resolves a sample near ``b`` as finely as one near ``a``, and samples are clipped to the
open support: float32 rounding could otherwise put a far-tail sample on a bound, where the
density is 0. (A probit map, ``a + (b - a) Phi(u)``, which turns a box's uniform into N(0, 1),
scored worse on two_moons: docs/history.md, 2026-12-04.)

A flow on ``u`` then gives every sample inside the support, and ``log_prob`` of the flow plus
``log|du/dx| = -log|dx/du|`` is the density on the support. Points outside the support (or on
its boundary) have density 0: ``inverse`` gives NaN there, and the models that use this bijector
return ``log_prob = -inf`` for them (tfcflow never lets such a NaN escape).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector

Bounds = Sequence[Sequence[Optional[float]]]


def check_bounds(bounds: Bounds, dim: int, name: str = "bounds") -> list[list[Optional[float]]]:
    """``bounds``: one ``[lower, upper]`` pair per dimension (``None`` = unbounded on that side).
    Returns them as lists of floats / None; ValueError naming the dimension otherwise."""
    if len(bounds) != dim:
        raise ValueError(f"{name} needs one [lower, upper] pair per dimension ({dim}), got {len(bounds)}")
    out = []
    for d, pair in enumerate(bounds):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{name}[{d}] must be a [lower, upper] pair (null = unbounded), got {pair!r}")
        lo, hi = (None if v is None else float(v) for v in pair)
        if any(v is not None and not np.isfinite(v) for v in (lo, hi)):
            raise ValueError(f"{name}[{d}]: bounds must be finite numbers or null, got {list(pair)}")
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"{name}[{d}]: lower bound {lo} must be < upper bound {hi}")
        out.append([lo, hi])
    return out


class BoxSupport(FlowBijector):
    """R^D -> the box of ``bounds`` (see module docstring). Vectors ``[..., D]``."""

    def __init__(self, bounds: Bounds, validate_args: bool = False, name: str = "box_support"):
        bounds = [list(p) for p in bounds]
        self._bounds = bounds
        lo = np.array([np.nan if a is None else a for a, _ in bounds], np.float32)
        hi = np.array([np.nan if b is None else b for _, b in bounds], np.float32)
        has_lo, has_hi = ~np.isnan(lo), ~np.isnan(hi)
        self._both = tf.constant(has_lo & has_hi)
        self._lower_only = tf.constant(has_lo & ~has_hi)
        self._upper_only = tf.constant(~has_lo & has_hi)
        self._lo = tf.constant(np.where(has_lo, lo, 0.0).astype(np.float32))
        self._hi = tf.constant(np.where(has_hi, hi, 1.0).astype(np.float32))
        # (b - a) for two-sided dims, 1 elsewhere (never used there)
        self._width = tf.constant(np.where(has_lo & has_hi, hi - lo, 1.0).astype(np.float32))
        # the open support's float32 ends: the nearest floats inside each bound (a normal number
        # away from a bound at 0: TF flushes subnormals to zero on CPU)
        self._open_lo = tf.constant(np.where(has_lo, _step_inside(lo, +1), -np.inf).astype(np.float32))
        self._open_hi = tf.constant(np.where(has_hi, _step_inside(hi, -1), np.inf).astype(np.float32))
        super().__init__(event_ndims=1, name=name, validate_args=validate_args)

    @property
    def bounds(self) -> list:
        return [list(p) for p in self._bounds]

    def _forward_and_log_det(self, u):
        sp = tf.nn.softplus(u)
        log_sig = -tf.nn.softplus(-u)  # log sigma(u), numerically stable for |u| large
        # from the nearer bound: sigma(u) for u <= 0, 1 - sigma(u) = sigma(-u) for u > 0
        tail = self._width * tf.sigmoid(-tf.abs(u))
        two_sided = tf.where(u > 0, self._hi - tail, self._lo + tail)
        two_ld = tf.math.log(self._width) + log_sig - tf.nn.softplus(u)  # + log sigma(-u)
        x = tf.where(self._both, two_sided,
                     tf.where(self._lower_only, self._lo + sp, tf.where(self._upper_only, self._hi - sp, u)))
        x = tf.clip_by_value(x, self._open_lo, self._open_hi)
        ld = tf.where(self._both, two_ld, tf.where(self._lower_only | self._upper_only, log_sig, tf.zeros_like(u)))
        return x, tf.reduce_sum(ld, axis=-1)

    def _inverse_and_log_det(self, x):
        # distance to each finite bound (NaN outside the support: log of a negative number)
        # (1 where a dimension has no such bound, so unselected branches stay finite for autodiff)
        below = tf.where(self._both | self._lower_only, x - self._lo, tf.ones_like(x))
        above = tf.where(self._both | self._upper_only, self._hi - x, tf.ones_like(x))
        two_sided = tf.math.log(below) - tf.math.log(above)
        one_sided = _log_expm1(tf.where(self._lower_only, below, above))
        u = tf.where(self._both, two_sided, tf.where(self._lower_only | self._upper_only, one_sided, x))
        _, fldj = self._forward_and_log_det(u)
        return u, -fldj


def _step_inside(bound: np.ndarray, direction: int) -> np.ndarray:
    """The float32 next to ``bound`` (NaN = none) in ``direction``, at least the smallest normal away."""
    b = np.nan_to_num(bound.astype(np.float32))
    tiny = np.finfo(np.float32).tiny
    step = np.nextafter(b, np.float32(direction * np.inf))
    return np.where(np.abs(step - b) < tiny, b + direction * tiny, step).astype(np.float32)



def _log_expm1(t):
    """log(exp(t) - 1), the inverse of softplus, stable for large t (NaN for t < 0, -inf at 0)."""
    return tf.where(t > 20.0, t + tf.math.log1p(-tf.exp(-tf.minimum(t, 80.0))), tf.math.log(tf.math.expm1(t)))


def outside_support(bounds: Bounds, x: tf.Tensor) -> tf.Tensor:
    """``[batch]`` bool: rows of ``x`` ``[batch, D]`` with a value on or beyond a bound."""
    bad = tf.zeros(tf.shape(x)[:-1], tf.bool)
    for d, (lo, hi) in enumerate(bounds):
        if lo is not None:
            bad |= x[..., d] <= lo
        if hi is not None:
            bad |= x[..., d] >= hi
    return bad
