"""Multi-scale architecture (RealNVP / Glow) as one bijector: NHWC image <-> flat latent vector.

Level ``l`` of ``L`` in the normalizing direction, on the activation ``h`` (``h = x`` at first)::

    h <- level_l^{-1}(h)                     a FlowChain: e.g. squeeze, transitions, flow steps
    l < L-1:  [h_keep, e_l] = prior_l^{-1}(h) (identity without a learned prior), split on
              channels (first half kept);  h <- h_keep
    l = L-1:  e_l = h
    z = concat(flatten(e_0), ..., flatten(e_{L-1}))        (the "pieces", in level order)
    log|det dz/dx| = sum_l log|det level_l^{-1}| + sum_l log|det prior_l^{-1}|

and the generative direction runs the same steps backwards, re-joining ``[h_keep, e_l]`` on
channels at each split. With N(0, I) on z, each piece ``e_l`` is the standardized split-off half
of level l, so per-scale temperatures scale the pieces separately.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector


class MultiScale(FlowBijector):
    """Multi-scale composition (see module docstring).

    Args:
      levels: one FlowBijector (image event) per level, in normalizing order.
      priors: per non-last level, a FlowBijector applied before the split (a GaussianSplitPrior)
        or None; length ``len(levels) - 1``.
      image_shape: ``(H, W, C)`` of the data.
      piece_shapes: ``(h, w, c)`` of each piece ``e_l``; their sizes sum to ``H * W * C``.
    """

    def __init__(self, levels: Sequence[FlowBijector], priors: Sequence[Optional[FlowBijector]],
                 image_shape: Sequence[int], piece_shapes: Sequence[Sequence[int]],
                 validate_args: bool = False, name: str = "multi_scale"):
        if len(priors) != len(levels) - 1:
            raise ValueError(f"{name}: need one prior slot per non-last level ({len(levels) - 1}), "
                             f"got {len(priors)}")
        self._levels = list(levels)
        self._priors = list(priors)
        self._image_shape = tuple(int(d) for d in image_shape)
        self._piece_shapes = [tuple(int(d) for d in s) for s in piece_shapes]
        self._piece_sizes = [int(np.prod(s)) for s in self._piece_shapes]
        if sum(self._piece_sizes) != int(np.prod(self._image_shape)):
            raise ValueError(f"{name}: piece sizes {self._piece_sizes} do not add up to the image size "
                             f"{int(np.prod(self._image_shape))}")
        super().__init__(event_ndims=3, latent_event_ndims=1, name=name, validate_args=validate_args)

    @property
    def piece_shapes(self) -> list:
        return list(self._piece_shapes)

    @property
    def piece_sizes(self) -> list:
        return list(self._piece_sizes)

    # ---- pieces API (used by CAFlow, whose latents stay separate) --------------------------------
    def encode(self, x: tf.Tensor):
        """x ``[batch, H, W, C]`` -> (list of pieces ``[batch, h_l, w_l, c_l]``, log|det dz/dx|)."""
        pieces = []
        h = x
        total = tf.zeros(tf.shape(x)[:1], x.dtype)
        for l, level in enumerate(self._levels):
            h, ld = level.inverse_and_log_det(h)
            total += ld
            if l == len(self._levels) - 1:
                pieces.append(h)
                break
            prior = self._priors[l]
            if prior is not None:
                h, ld = prior.inverse_and_log_det(h)
                total += ld
            keep = h.shape[-1] // 2
            h, piece = tf.split(h, [keep, h.shape[-1] - keep], axis=-1)
            pieces.append(piece)
        return pieces, total

    def decode(self, pieces: Sequence[tf.Tensor]):
        """Inverse of ``encode``: (pieces) -> (x, log|det dx/dz|)."""
        h = pieces[-1]
        total = tf.zeros(tf.shape(h)[:1], h.dtype)
        for l in reversed(range(len(self._levels))):
            if l < len(self._levels) - 1:
                h = tf.concat([h, pieces[l]], axis=-1)
                prior = self._priors[l]
                if prior is not None:
                    h, ld = prior.forward_and_log_det(h)
                    total += ld
            h, ld = self._levels[l].forward_and_log_det(h)
            total += ld
        return h, total

    def flatten(self, pieces: Sequence[tf.Tensor]) -> tf.Tensor:
        batch = tf.shape(pieces[0])[0]
        return tf.concat([tf.reshape(p, tf.stack([batch, -1])) for p in pieces], axis=-1)

    def unflatten(self, z: tf.Tensor) -> list:
        batch = tf.shape(z)[0]
        parts = tf.split(z, self._piece_sizes, axis=-1)
        return [tf.reshape(p, tf.concat([[batch], s], 0)) for p, s in zip(parts, self._piece_shapes)]

    # ---- FlowBijector -------------------------------------------------------------------------------
    def _inverse_and_log_det(self, x):
        pieces, ld = self.encode(x)
        return self.flatten(pieces), ld

    def _forward_and_log_det(self, z):
        return self.decode(self.unflatten(z))

    def _forward_event_shape(self, input_shape):
        return tf.TensorShape(self._image_shape)

    def _inverse_event_shape(self, output_shape):
        return tf.TensorShape([int(np.prod(self._image_shape))])

    def _forward_event_shape_tensor(self, input_shape):
        return tf.constant(self._image_shape, tf.int32)

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.constant([int(np.prod(self._image_shape))], tf.int32)
