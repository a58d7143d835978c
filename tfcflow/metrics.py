"""Image-quality and likelihood metrics for conditional image models.

Images are float in [0, 1] (tfcflow samples) or uint8; shapes ``[batch, H, W, C]``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def _unit(x) -> tf.Tensor:
    t = tf.convert_to_tensor(x)
    return tf.cast(t, tf.float32) / 255.0 if t.dtype == tf.uint8 else tf.cast(t, tf.float32)


def psnr(a, b) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image (max value 1)."""
    return tf.image.psnr(_unit(a), _unit(b), max_val=1.0).numpy()


def ssim(a, b) -> np.ndarray:
    """Structural similarity per image (max value 1; 7x7 Gaussian window so 28x28 images work)."""
    return tf.image.ssim(_unit(a), _unit(b), max_val=1.0, filter_size=7).numpy()


def upsample(images, size, method: str = "bicubic") -> np.ndarray:
    """Resizes ``images`` to ``size`` (H, W), clipped to [0, 1] (the interpolation baseline)."""
    return tf.clip_by_value(tf.image.resize(_unit(images), size, method=method), 0.0, 1.0).numpy()


def best_of_n_report(model, targets, conditions, n: int = 10, temperature: float = 0.5, seed: int = 0) -> dict:
    """Draws ``n`` samples per condition and reports (per-image arrays and means):

    - PSNR / SSIM of the sample of highest conditional log-likelihood (paper 4.4) and of the
      first sample alone;
    - whether the ground truth scores higher log p(x | c) than every one of the n samples.
    """
    batch = len(conditions)
    tiled = np.repeat(np.asarray(conditions), n, axis=0)
    samples = model.sample(tiled, temperature=temperature, seed=seed).numpy()
    lp = model.log_prob(samples, tiled).numpy().reshape(batch, n)
    samples = samples.reshape((batch, n) + samples.shape[1:])
    best = samples[np.arange(batch), lp.argmax(1)]
    gt_lp = model.log_prob(targets, conditions).numpy()
    return dict(best=best, first=samples[:, 0], samples=samples, sample_log_prob=lp, target_log_prob=gt_lp,
                psnr_best=psnr(best, targets), psnr_first=psnr(samples[:, 0], targets),
                ssim_best=ssim(best, targets), ssim_first=ssim(samples[:, 0], targets),
                target_beats_all=gt_lp > lp.max(1))
