"""A per-position linear map over the channel (last) axis, as one 2-D matmul.

``[..., C_in] @ [C_in, C_out] (+ bias) -> [..., C_out]``: on CPU the 2-D matmul's gradients are
two plain matmuls, where the equivalent einsum's kernel gradient ran ~12x slower than its forward
pass and oneDNN's 1x1 convolution 1.3-1.6x slower (docs/history.md, 2026-11-23).
"""
from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf


def channel_matmul(t: tf.Tensor, w: tf.Tensor, bias: Optional[tf.Tensor] = None,
                   activation: Optional[Callable] = None) -> tf.Tensor:
    """``activation(t @ w + bias)`` on the last axis of ``t`` (any rank >= 2); ``w`` has a static
    shape. The activation is applied on the 2-D product, so Grappler can fuse matmul, bias and
    ReLU into one oneDNN kernel."""
    c_in, c_out = w.shape[0], w.shape[1]
    y = tf.matmul(tf.reshape(t, [-1, c_in]), w)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    if activation is not None:
        y = activation(y)
    return tf.reshape(y, tf.concat([tf.shape(t)[:-1], [c_out]], axis=0))
