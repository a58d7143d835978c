"""Builders of the image flow steps (Glow / SRFlow / CAFLOW Appendix A)."""
from __future__ import annotations

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
    """H and W must be divisible by 2**levels (one squeeze per level)."""
    if len(shape) != 3:
        raise ValueError(f"{name} shape must be (height, width, channels), got {tuple(shape)}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
    f = 2 ** levels
    h, w, _ = shape
    if h % f or w % f:
        raise ValueError(f"{name} size {h}x{w} is not divisible by 2^levels = {f} (levels={levels}); "
                         f"use fewer levels or resize/pad the images")
