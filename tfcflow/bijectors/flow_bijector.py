"""Base class of tfcflow's bijectors: one evaluation gives the output and its log-det.

Direction convention (TFP's): ``forward`` is the generative direction, latent -> data;
``inverse`` is the normalizing direction, data -> latent. ``log_prob(x) = log p_z(inverse(x)) +
inverse_log_det_jacobian(x)``.

Subclasses implement two methods, each returning the transformed tensor and the log-det already
summed over the bijector's event dims (shape = batch shape):

    _forward_and_log_det(x) -> (y, log|det dy/dx|)
    _inverse_and_log_det(y) -> (x, log|det dx/dy|)

Why: TFP's RealNVP/Glow compute ``inverse`` and ``inverse_log_det_jacobian`` separately, evaluating
every coupling network twice per ``log_prob``. Here the TFP cache is the greedy-attribute variant
(the one TFP's FFJORD uses), so the log-det computed alongside the output is stored with it and a
``TransformedDistribution.log_prob`` costs one network evaluation per bijector. The fused public
methods ``forward_and_log_det`` / ``inverse_and_log_det`` skip the cache entirely; tfcflow's models
use them.

Every instance is unique to TFP (``parameters=None``): two views built from the same layer never
share a cache, so a pass computed outside a ``GradientTape`` cannot hand stale, gradient-less
results to a pass inside one.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfcflow import _compat


class FlowBijector(tfb.Bijector):
    """A bijector that computes its output and log-det together (see module docstring).

    Args:
      event_ndims: number of trailing dims forming one event on the data side: 1 for vectors
        ``[..., D]``, 3 for NHWC images ``[..., H, W, C]``.
      name: bijector name.
      validate_args: passed to ``tfb.Bijector``.
      latent_event_ndims: event rank on the latent side, if it differs (a bijector that
        flattens images into vectors).
    """

    _cache = _compat.greedy_bijector_cache(forward_name="_augmented_forward", inverse_name="_augmented_inverse")

    def __init__(self, event_ndims: int, name: str, validate_args: bool = False,
                 latent_event_ndims: int | None = None):
        if event_ndims not in (1, 3):
            raise ValueError(f"event_ndims must be 1 (vectors) or 3 (NHWC images), got {event_ndims}")
        self._event_ndims = event_ndims
        latent_event_ndims = event_ndims if latent_event_ndims is None else latent_event_ndims
        # TFP names dims by the input of `forward`, i.e. the latent side.
        super().__init__(forward_min_event_ndims=latent_event_ndims, inverse_min_event_ndims=event_ndims,
                         validate_args=validate_args, parameters=None, name=name)

    @property
    def event_ndims(self) -> int:
        return self._event_ndims

    # ---- public fused API (no cache) ------------------------------------------------------------
    def forward_and_log_det(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(forward(x), forward_log_det_jacobian(x))`` from one evaluation."""
        with tf.name_scope(self.name):
            return self._forward_and_log_det(tf.convert_to_tensor(x))

    def inverse_and_log_det(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(inverse(y), inverse_log_det_jacobian(y))`` from one evaluation."""
        with tf.name_scope(self.name):
            return self._inverse_and_log_det(tf.convert_to_tensor(y))

    # ---- subclass hooks -------------------------------------------------------------------------
    def _forward_and_log_det(self, x):
        raise NotImplementedError

    def _inverse_and_log_det(self, y):
        raise NotImplementedError

    # ---- TFP plumbing: the greedy cache stores both log-dets with the output --------------------
    def _augmented_forward(self, x):
        y, fldj = self._forward_and_log_det(x)
        return y, {"fldj": fldj, "ildj": -fldj}

    def _augmented_inverse(self, y):
        x, ildj = self._inverse_and_log_det(y)
        return x, {"ildj": ildj, "fldj": -ildj}

    def _forward(self, x):
        return self._augmented_forward(x)[0]

    def _inverse(self, y):
        return self._augmented_inverse(y)[0]

    def _forward_log_det_jacobian(self, x):
        attrs = _compat.cached_attributes(self._cache, x, "forward")
        if "fldj" not in attrs:
            attrs.update(self._augmented_forward(x)[1])
        return attrs["fldj"]

    def _inverse_log_det_jacobian(self, y):
        attrs = _compat.cached_attributes(self._cache, y, "inverse")
        if "ildj" not in attrs:
            attrs.update(self._augmented_inverse(y)[1])
        return attrs["ildj"]

    # ---- helpers for subclasses ------------------------------------------------------------------
    def _sum_event(self, t: tf.Tensor) -> tf.Tensor:
        """Sums a per-element tensor over this bijector's event dims."""
        return tf.reduce_sum(t, axis=list(range(-self._event_ndims, 0)))

    def _num_positions(self, t: tf.Tensor) -> tf.Tensor:
        """Number of positions sharing per-channel parameters in one event (H*W for images)."""
        if self._event_ndims == 1:
            return tf.constant(1.0, t.dtype)
        shape = tf.shape(t)
        return tf.cast(shape[-3] * shape[-2], t.dtype)
