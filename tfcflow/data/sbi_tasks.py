"""Two reference simulation-based-inference tasks as prior/simulator pairs (the contract of
``tfcflow.data.simulator``), usable from configs as e.g. ``tfcflow.data.sbi_tasks:two_moons_prior``.

two_moons (2-D parameters, 2-D observations)::

    theta ~ Uniform(-1, 1)^2
    a ~ Uniform(-pi/2, pi/2),  r ~ N(0.1, 0.01^2)
    y = (r cos a + 0.25, r sin a) + (-|theta_1 + theta_2| / sqrt 2, (theta_2 - theta_1) / sqrt 2)

The posterior of a y is crescent-shaped and, because of the absolute value, bimodal.

gaussian_linear (10-D)::

    theta ~ N(0, 0.1 I),  y ~ N(theta, 0.1 I)

Conjugate, so its posterior is known exactly (``gaussian_linear_posterior``): with prior variance
s0 and noise variance s, theta | y ~ N(s0 / (s0 + s) * y, s0 s / (s0 + s) I) = N(y / 2, 0.05 I).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

GAUSSIAN_LINEAR_DIM = 10
GAUSSIAN_LINEAR_PRIOR_VAR = 0.1
GAUSSIAN_LINEAR_NOISE_VAR = 0.1


def two_moons_prior(n: int, rng: np.random.Generator) -> np.ndarray:
    """theta ``[n, 2]`` uniform on [-1, 1)^2."""
    return rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)


def two_moons_simulator(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """y ``[n, 2]`` for theta ``[n, 2]`` (module docstring)."""
    theta = np.asarray(theta, np.float64)
    n = len(theta)
    a = rng.uniform(-np.pi / 2, np.pi / 2, size=n)
    r = rng.normal(0.1, 0.01, size=n)
    p = np.stack([r * np.cos(a) + 0.25, r * np.sin(a)], axis=1)
    t1, t2 = theta[:, 0], theta[:, 1]
    shift = np.stack([-np.abs(t1 + t2), t2 - t1], axis=1) / np.sqrt(2.0)
    return (p + shift).astype(np.float32)


def gaussian_linear_prior(n: int, rng: np.random.Generator) -> np.ndarray:
    """theta ``[n, 10]`` from N(0, 0.1 I)."""
    return (np.sqrt(GAUSSIAN_LINEAR_PRIOR_VAR) * rng.standard_normal((n, GAUSSIAN_LINEAR_DIM))).astype(np.float32)


def gaussian_linear_simulator(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """y ``[n, 10]`` from N(theta, 0.1 I) for theta ``[n, 10]``."""
    theta = np.asarray(theta, np.float64)
    return (theta + np.sqrt(GAUSSIAN_LINEAR_NOISE_VAR) * rng.standard_normal(theta.shape)).astype(np.float32)


def gaussian_linear_posterior(y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The exact posterior N(mean, cov) of theta given y ``[10]`` or ``[n, 10]``: mean (float64, the
    shape of y) and cov ``[10, 10]`` (the same for every y)."""
    y = np.asarray(y, np.float64)
    if y.shape[-1:] != (GAUSSIAN_LINEAR_DIM,) or y.ndim not in (1, 2):
        raise ValueError(f"y must have shape [{GAUSSIAN_LINEAR_DIM}] or [n, {GAUSSIAN_LINEAR_DIM}], "
                         f"got {list(y.shape)}")
    # precisions add; the mean is the precision-weighted average of the prior mean 0 and y
    var = 1.0 / (1.0 / GAUSSIAN_LINEAR_PRIOR_VAR + 1.0 / GAUSSIAN_LINEAR_NOISE_VAR)
    return var / GAUSSIAN_LINEAR_NOISE_VAR * y, var * np.eye(GAUSSIAN_LINEAR_DIM)
