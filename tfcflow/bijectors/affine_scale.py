"""Bounded scale parametrizations shared by the affine coupling and the affine injector.

A network outputs an unconstrained ``h``; the affine map multiplies by ``s = exp(log_s(h))``:

- ``"sigmoid"`` (Glow, SRFlow): ``s = sigmoid(h + 2)`` in (0, 1); ``s = 0.88`` at ``h = 0``.
- ``"exp_tanh"``: ``s = exp(c * tanh(h / c))`` in ``(e^-c, e^c)``; exactly 1 at ``h = 0``. It can
  expand as well as contract, which flows without ActNorm (the vector cINN / relaxed-condition
  flows) need.

Bounding ``s`` keeps the generative direction (which divides by ``s``) from blowing up. tfcflow
defaults to ``exp_tanh`` everywhere: with Glow's sigmoid every coupling can only contract in the
normalizing direction, so generation only expands, and barely trained image flows were measured
to overflow to inf/NaN when sampled; ``exp_tanh`` bounds the per-coupling factor both ways.
"""
from __future__ import annotations

import tensorflow as tf

SCALE_KINDS = ("sigmoid", "exp_tanh")


def check_scale_kind(kind: str) -> str:
    if kind not in SCALE_KINDS:
        raise ValueError(f"scale must be one of {SCALE_KINDS}, got {kind!r}")
    return kind


def scale_and_log_scale(h: tf.Tensor, kind: str, clamp: float = 2.0) -> tuple[tf.Tensor, tf.Tensor]:
    """``(s, log s)`` for the raw network output ``h`` (float32)."""
    if kind == "sigmoid":
        # sigmoid then log: on CPU, TF's Softplus (inside log_sigmoid) and the Exp back to s cost
        # ~1.5x this pair, forward and backward. s underflows only for h < -105 (log s = -inf: a
        # non-finite loss, which training reports or skips).
        s = tf.sigmoid(h + 2.0)
        return s, tf.math.log(s)
    if kind == "exp_tanh":
        log_s = clamp * tf.tanh(h / clamp)
        return tf.exp(log_s), log_s
    raise ValueError(f"scale must be one of {SCALE_KINDS}, got {kind!r}")
