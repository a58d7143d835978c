"""Builders of the image flow steps (Glow / SRFlow / CAFLOW Appendix A)."""
from __future__ import annotations

import tensorflow as tf

from tfcflow import _checks
from tfcflow.bijectors import (ActNormLayer, AffineCouplingLayer, AffineInjectorLayer,
                               InvertibleConv1x1Layer)
from tfcflow.networks import ConvNetwork


def transition_step(prefix: str, lu: bool = True, seed: int = 0) -> list:
    """ActNorm -> invertible 1x1 convolution (after a squeeze: learns a linear interpolation of
    neighbouring pixels, avoiding checkerboard artifacts)."""
    return [ActNormLayer(name=f"{prefix}_actnorm"),
            InvertibleConv1x1Layer(lu=lu, seed=seed, name=f"{prefix}_conv1x1")]


def flow_step(prefix: str, channels: int, hidden_channels: int, conditional: bool,
              injector: bool = True, scale: str = "exp_tanh", clamp: float = 2.0, lu: bool = True,
              seed: int = 0) -> list:
    """ActNorm -> 1x1 conv -> [affine injector] -> (conditional) affine coupling.

    The injector is added only when ``conditional and injector``; the coupling sees the condition
    when ``conditional``. ``channels`` is the activation's channel count (>= 2).
    """
    steps = transition_step(prefix, lu, seed)
    if conditional and injector:
        steps.append(AffineInjectorLayer(ConvNetwork(2 * channels, hidden_channels, name=f"{prefix}_injector_net"),
                                         scale=scale, clamp=clamp, name=f"{prefix}_injector"))
    transformed = channels - channels // 2
    steps.append(AffineCouplingLayer(ConvNetwork(2 * transformed, hidden_channels, name=f"{prefix}_coupling_net"),
                                     scale=scale, clamp=clamp, name=f"{prefix}_coupling"))
    return steps


def check_image_shape(shape, levels: int, name: str = "image") -> None:
    """A shape ``(H, W, C)``: H and W (None = any size) divisible by 2**levels (one squeeze per level)."""
    if len(shape) != 3 or shape[-1] is None:
        raise ValueError(f"{name} shape must be (height, width, channels) with a known channel count "
                         f"(height and width may be None: any size), got {tuple(shape)}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
    if (shape[0] is None) != (shape[1] is None):
        raise ValueError(f"{name} shape: give both height and width, or neither (None, None: any size); "
                         f"got {tuple(shape)}")
    f = 2 ** levels
    h, w, _ = shape
    if h is not None and (h % f or w % f):
        raise ValueError(f"{name} size {h}x{w} is not divisible by 2^levels = {f} (levels={levels}); "
                         f"use fewer levels or resize/pad the images")


def check_divisible_size(t: tf.Tensor, levels: int, name: str) -> tf.Tensor:
    """``t`` (NHWC), once its H and W are divisible by 2**levels: ValueError when the size is static
    (always so eagerly), else an in-graph InvalidArgumentError naming the size."""
    f = 2 ** levels
    h, w = t.shape[1], t.shape[2]
    if h is not None and w is not None:
        if h % f or w % f:
            raise ValueError(f"{name} size {h}x{w} is not divisible by 2^levels = {f} (levels={levels}): "
                             f"a multi-scale flow squeezes H and W by 2 at each level; resize, crop or pad "
                             f"to a multiple of {f}")
        return t
    size = tf.shape(t)[1:3]
    return _checks.enforce(t, tf.equal(size % f, 0),
                           f"{name} height and width must be divisible by 2^levels = {f} (levels={levels}); "
                           f"got height, width =", data=[size])
