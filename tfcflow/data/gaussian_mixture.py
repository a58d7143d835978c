"""The 8-mode Gaussian-mixture inverse problem (Ardizzone et al. 2018; Xiao et al. 2019, Sec. 5.1).

x in R^2 is drawn from an equal-weight mixture of 8 isotropic Gaussians (std ``sigma``) centred on
the vertices of a regular octagon, (+-1, +-(1+sqrt 2)) and (+-(1+sqrt 2), +-1); the observation is
the one-hot label of the mode. The task: the posterior p(x | label).
"""
from __future__ import annotations

import numpy as np

NUM_MODES = 8


def octagon_modes() -> np.ndarray:
    """The 8 mode centres, ``[8, 2]`` float64, in counter-clockwise order from angle 22.5 deg."""
    a = 1.0 + np.sqrt(2.0)
    pts = np.array([(a, 1), (1, a), (-1, a), (-a, 1), (-a, -1), (-1, -a), (1, -a), (a, -1)], float)
    return pts


def sample(n: int, seed: int, sigma: float = 0.2):
    """``n`` draws: ``(x [n, 2] float32, labels [n] int32, one_hot [n, 8] float32)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_MODES, size=n).astype(np.int32)
    x = octagon_modes()[labels] + sigma * rng.standard_normal((n, 2))
    return x.astype(np.float32), labels, np.eye(NUM_MODES, dtype=np.float32)[labels]


def nearest_mode(x: np.ndarray) -> np.ndarray:
    """Index of the closest mode centre for each row of ``x`` ``[n, 2]``."""
    d = ((np.asarray(x, float)[:, None, :] - octagon_modes()[None]) ** 2).sum(-1)
    return d.argmin(axis=1).astype(np.int32)


def bayes_optimal_labels(x: np.ndarray) -> np.ndarray:
    """The Bayes-optimal classifier for this mixture: equal weights and a shared isotropic
    covariance make the posterior argmax the nearest mode centre."""
    return nearest_mode(x)


def ground_truth_log_prob(x: np.ndarray, labels: np.ndarray, sigma: float = 0.2) -> np.ndarray:
    """The true log p(x | label) = log N(x; centre_label, sigma^2 I) (a reference for test NLL)."""
    d = np.asarray(x, float) - octagon_modes()[labels]
    return -0.5 * (d ** 2).sum(-1) / sigma ** 2 - np.log(2 * np.pi * sigma ** 2)


def posterior_report(samples: np.ndarray, labels: np.ndarray) -> list:
    """Per label: the fraction of posterior samples whose nearest mode is that label's mode, and
    the samples' mean and per-axis std next to the true centre (std should be sigma)."""
    samples = np.asarray(samples, float)
    centres = octagon_modes()
    nearest = nearest_mode(samples)
    rows = []
    for k in range(NUM_MODES):
        s = samples[labels == k]
        rows.append(dict(label=k, n=int(len(s)), mode_accuracy=float((nearest[labels == k] == k).mean()),
                         centre=centres[k].round(4).tolist(), mean=s.mean(0).round(4).tolist(),
                         mean_error=float(np.linalg.norm(s.mean(0) - centres[k])),
                         std=s.std(0).round(4).tolist()))
    return rows
