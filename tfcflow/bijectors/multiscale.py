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

Every level is fully convolutional, so one set of weights serves any image size whose H and W are
divisible by 2^L: piece l is ``[H / 2^(l+1), W / 2^(l+1), c_l]``, and D =
H * W * C depends on the size. Shapes are computed with ``tf.shape`` where they are not static.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Optional, Sequence

import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector


def spatial_size(t: tf.Tensor) -> list:
    """``[h, w]`` of an NHWC tensor: Python ints where static, else scalar int32 tensors (so static
    shapes survive wherever they are known)."""
    dynamic = tf.shape(t)
    return [t.shape[i] if t.shape[i] is not None else dynamic[i] for i in (1, 2)]


def _static(d) -> Optional[int]:
    return d if isinstance(d, int) else None


class MultiScale(FlowBijector):
    """Multi-scale composition (see module docstring), at any image size.

    Args:
      levels: one FlowBijector (image event) per level, in normalizing order.
      priors: per non-last level, a FlowBijector applied before the split (a GaussianSplitPrior)
        or None; length ``len(levels) - 1``.
      piece_layout: per piece ``e_l``, ``(f, c)``: the piece is ``[H / f, W / f, c]`` for images
        ``[H, W, C]`` (the layout is size-free; a fully convolutional flow works at any size whose
        H and W are divisible by every ``f``).
      size: ``(H, W)`` of the images (ints, or scalar tensors for a size known only at run time),
        or None. Only the generative direction needs it: a flat latent ``[batch, D]`` does not say
        which ``H x W`` it came from. ``encode`` / ``decode`` (the pieces API) never need it.
    """

    def __init__(self, levels: Sequence[FlowBijector], priors: Sequence[Optional[FlowBijector]],
                 piece_layout: Sequence[Sequence[int]], size: Optional[Sequence] = None,
                 validate_args: bool = False, name: str = "multi_scale"):
        if len(priors) != len(levels) - 1:
            raise ValueError(f"{name}: need one prior slot per non-last level ({len(levels) - 1}), "
                             f"got {len(priors)}")
        self._levels = list(levels)
        self._priors = list(priors)
        self._layout = [(int(f), int(c)) for f, c in piece_layout]
        channels = sum(Fraction(c, f * f) for f, c in self._layout)
        if channels.denominator != 1:
            raise ValueError(f"{name}: piece layout {self._layout} does not tile an image (its pieces hold "
                             f"{channels} values per pixel)")
        self._channels = int(channels)
        self._size = None if size is None else list(size)
        super().__init__(event_ndims=3, latent_event_ndims=1, name=name, validate_args=validate_args)

    @property
    def piece_layout(self) -> list:
        return list(self._layout)

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def size(self) -> Optional[list]:
        return self._size

    @property
    def piece_shapes(self) -> list:
        """``(h, w, c)`` of each piece at this view's size (ints where static)."""
        if self._size is None:
            raise ValueError(f"{self.name}: the image size is unknown (a flat latent does not say which H x W "
                             f"it came from): build the view with a size")
        h, w = self._size
        return [(h // f, w // f, c) for f, c in self._layout]

    @property
    def piece_sizes(self) -> list:
        return [h * w * c for h, w, c in self.piece_shapes]

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
        return flatten_pieces(pieces)

    def unflatten(self, z: tf.Tensor) -> list:
        return unflatten_pieces(z, self.piece_shapes)

    # ---- FlowBijector -------------------------------------------------------------------------------
    def _inverse_and_log_det(self, x):
        pieces, ld = self.encode(x)
        return self.flatten(pieces), ld

    def _forward_and_log_det(self, z):
        return self.decode(self.unflatten(z))

    def _forward_event_shape(self, input_shape):
        h, w = self._size or (None, None)
        return tf.TensorShape([_static(h), _static(w), self._channels])

    def _inverse_event_shape(self, output_shape):
        h, w = output_shape[0], output_shape[1]
        known = h is not None and w is not None
        return tf.TensorShape([h * w * self._channels if known else None])

    def _forward_event_shape_tensor(self, input_shape):
        self.piece_shapes  # a clear error when the size is unknown
        return tf.stack([*self._size, self._channels])

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.reshape(tf.reduce_prod(output_shape), [1])


def flatten_pieces(pieces: Sequence[tf.Tensor]) -> tf.Tensor:
    """Pieces ``[batch, h, w, c]`` -> one flat latent ``[batch, sum(h*w*c)]`` (dynamic sizes welcome)."""
    batch = tf.shape(pieces[0])[0]
    return tf.concat([tf.reshape(p, tf.stack([batch, -1])) for p in pieces], axis=-1)


def unflatten_pieces(z: tf.Tensor, shapes: Sequence[Sequence]) -> list:
    """Inverse of ``flatten_pieces`` for piece ``shapes`` ``(h, w, c)`` (ints or scalar tensors)."""
    batch = tf.shape(z)[0]
    parts = tf.split(z, [h * w * c for h, w, c in shapes], axis=-1)
    return [tf.reshape(p, tf.stack([batch, h, w, c])) for p, (h, w, c) in zip(parts, shapes)]
