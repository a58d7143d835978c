"""Are image samples plausible, or sharp noise? Three measurements of N samples of one condition.

- ``lr_consistency``: PSNR (dB) between the low-resolution input and each sample downscaled the way
  the input was made (the NTIRE "learning the super-resolution space" challenge's consistency
  check). A sample that explains its input reaches it closely: the challenge asks >= 45 dB at x4.
  Only super-resolution has a low-resolution input; for inpainting the same question is asked of
  the known pixels (``known_consistency``), and colorization of the luminance (``luma_consistency``).
- ``diversity``: the per-pixel standard deviation over the samples (a map, and its mean): zero
  for a model that returns one answer, large for one that draws noise; it says nothing about
  plausibility on its own, hence the two other figures.
- ``calibration``: for every held-out pixel, whether its true value lies inside the samples'
  central interval. With N exchangeable samples and the truth one more draw of the same law, the
  truth falls inside ``[x(k), x(N + 1 - k)]`` (order statistics) with probability
  ``(N + 1 - 2k) / (N + 1)``: with N = 19, ``[x(1), x(19)]`` is a 90% interval and
  ``[x(5), x(15)]`` a 50% one. A calibrated model covers 90% and 50% of the pixels; less means
  over-confident samples, more under-confident ones. 8-bit values tie: a truth equal to an
  endpoint counts as inside, so coverage is at least the nominal level for a calibrated model.

Images are ``[..., H, W, C]``, uint8 or float in [0, 1]; ``samples`` are ``[N, H, W, C]``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: samples per condition of the calibration map: its 90% and 50% intervals are order statistics
CALIBRATION_SAMPLES = 19
#: nominal coverage -> k, the interval [x(k), x(N + 1 - k)] of 19 samples
CALIBRATION_LEVELS = {0.9: 1, 0.5: 5}


def _unit(images) -> np.ndarray:
    a = np.asarray(images)
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def _psnr(a: np.ndarray, b: np.ndarray, axes) -> np.ndarray:
    mse = np.mean((a - b) ** 2, axis=axes)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def _samples(samples, name: str = "samples") -> np.ndarray:
    s = _unit(samples)
    if s.ndim != 4:
        raise ValueError(f"{name} must be [N, H, W, C] (N samples of one condition), got shape {list(s.shape)}")
    return s


def downscale(images, factor: int, method: str = "area") -> np.ndarray:
    """``[..., H, W, C]`` -> ``[..., H/factor, W/factor, C]`` in [0, 1], as the super-resolution
    inputs are made (tfcflow.data.tasks.downsample: area average or antialiased bicubic), in float."""
    import tensorflow as tf

    x = _unit(images)
    h, w = x.shape[-3], x.shape[-2]
    if h % factor or w % factor:
        raise ValueError(f"images of {h}x{w} cannot be downscaled by {factor}: the size must be a multiple of it")
    small = tf.image.resize(tf.constant(x, tf.float32), (h // factor, w // factor), method=method, antialias=True)
    return np.clip(small.numpy().astype(np.float64), 0.0, 1.0)


def lr_consistency(samples, lr_input, factor: int, method: str = "area") -> np.ndarray:
    """``[N]`` PSNR (dB) between ``lr_input`` ``[h, w, C]`` and each sample ``[N, h*factor,
    w*factor, C]`` downscaled by ``factor`` with ``method`` (the input's own downscaling)."""
    s = _samples(samples)
    lr = _unit(lr_input)
    if s.shape[1:] != (lr.shape[0] * factor, lr.shape[1] * factor, lr.shape[2]):
        raise ValueError(f"samples {list(s.shape[1:])} must be the input {list(lr.shape)} x factor {factor}")
    return _psnr(downscale(s, factor, method), lr[None], axes=(1, 2, 3))


def known_consistency(samples, target, known_mask) -> np.ndarray:
    """``[N]`` PSNR (dB) of each sample against ``target`` on the known pixels (``known_mask``
    ``[H, W]`` or ``[H, W, 1]``, 1 = known), inpainting's input."""
    s, t = _samples(samples), _unit(target)
    m = np.asarray(known_mask, np.float64).reshape(t.shape[0], t.shape[1], 1)
    if not m.any():
        raise ValueError("known_mask has no known pixel")
    mse = ((s - t[None]) ** 2 * m[None]).sum(axis=(1, 2, 3)) / (m.sum() * t.shape[-1])
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def luma_consistency(samples, gray) -> np.ndarray:
    """``[N]`` PSNR (dB) between the grayscale input ``gray`` ``[H, W, 1]`` and each RGB sample's
    luma (ITU-R BT.601 weights, as ``tf.image.rgb_to_grayscale``), colorization's input."""
    s, g = _samples(samples), _unit(gray)
    if s.shape[-1] != 3:
        raise ValueError(f"luma_consistency needs RGB samples, got {s.shape[-1]} channels")
    luma = s @ np.array([0.2989, 0.5870, 0.1140])
    return _psnr(luma[..., None], g.reshape(1, *s.shape[1:3], 1), axes=(1, 2, 3))


def diversity(samples) -> dict:
    """``{"map": [H, W] per-pixel std over the samples (mean over channels, in [0, 1] units),
    "mean": its mean}``."""
    s = _samples(samples)
    if len(s) < 2:
        raise ValueError("diversity needs at least 2 samples")
    spread = s.std(axis=0, ddof=1).mean(axis=-1)
    return {"map": spread, "mean": float(spread.mean())}


def calibration(samples, target, levels: Sequence[float] = tuple(CALIBRATION_LEVELS)) -> dict:
    """``{level: {"map": [H, W] share of the channels inside the interval, "coverage": share of
    all pixel values inside}}`` for ``CALIBRATION_SAMPLES`` (19) samples ``[19, H, W, C]`` of one
    condition and its true ``target`` ``[H, W, C]`` (module docstring)."""
    s, t = _samples(samples), _unit(target)
    if len(s) != CALIBRATION_SAMPLES:
        raise ValueError(f"calibration reads the order statistics of {CALIBRATION_SAMPLES} samples, got {len(s)}")
    if s.shape[1:] != t.shape:
        raise ValueError(f"samples {list(s.shape[1:])} and target {list(t.shape)} must have the same shape")
    ordered = np.sort(s, axis=0)
    out = {}
    for level in levels:
        if level not in CALIBRATION_LEVELS:
            raise ValueError(f"levels must be among {sorted(CALIBRATION_LEVELS)}, got {level}")
        k = CALIBRATION_LEVELS[level]
        inside = (ordered[k - 1] <= t) & (t <= ordered[len(s) - k])
        out[level] = {"map": inside.mean(axis=-1), "coverage": float(inside.mean())}
    return out


def plot_image_diagnostics(samples, target, path: str, title: str = "") -> str:
    """A figure of one condition's samples: the target, the first sample, the diversity map and
    the 90% / 50% calibration maps (19 samples); written to ``path`` (PNG). Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, t = _samples(samples), _unit(target)
    spread = diversity(s)
    cal = calibration(s, t)
    # the diversity map on its own scale (a std is small next to 1)
    panels = [(t, "target", 1.0), (s[0], "sample 1", 1.0),
              (spread["map"], f"diversity (mean std {spread['mean']:.3f})", max(float(spread["map"].max()), 1e-6))]
    panels += [(cal[level]["map"], f"inside {int(level * 100)}% interval: {cal[level]['coverage']:.0%}", 1.0)
               for level in (0.9, 0.5)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (image, label, top) in zip(axes, panels):
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(np.clip(image, 0, top), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=top)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
