"""Per-simulation posterior summaries: z-score and contraction (Schad, Betancourt & Vasishth 2021).

Both are computed per simulation and dimension from the draws' mean and variance (ddof = 1):

    z-score      z = |E_q[theta] - theta*| / sd_q(theta)    how far the truth sits from the posterior
                                                            mean, in posterior standard deviations
    contraction  c = 1 - Var_q(theta) / Var_prior(theta)    how much the data narrowed the prior

For an exact posterior, z is on average sqrt(2 / pi) ~ 0.80 when the posterior is Gaussian (the mean
of |N(0, 1)|) and E[z^2] = 1 in general; large z with large contraction is the signature of an
over-confident, biased posterior.
"""
from __future__ import annotations

import numpy as np

from tfcflow.diagnostics import _validation as v


def posterior_z_score(samples, true) -> np.ndarray:
    """Posterior z-score ``|mean - true| / std`` per simulation and dimension.

    Args:
      samples: ``[n_sims, n_draws, D]`` posterior draws (``n_draws >= 2``).
      true: ``[n_sims, D]`` true parameters.

    Returns:
      ``[n_sims, D]``; ``inf`` where the draws are all equal and differ from ``true`` (0 where they
      equal it).
    """
    samples = _draws(samples)
    true = v.float_array(true, "true", 2, "[n_sims, D]")
    v.same(true.shape[0], samples.shape[0], "true", "n_sims", "[n_sims, D]", "samples")
    v.same(true.shape[1], samples.shape[2], "true", "D", "[n_sims, D]", "samples")
    distance = np.abs(samples.mean(axis=1) - true)
    std = samples.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # a collapsed posterior (std 0) is infinitely sure: inf unless it is exactly right
        return np.where(std > 0, distance / np.where(std > 0, std, 1.0), np.where(distance > 0, np.inf, 0.0))


def posterior_contraction(samples, prior_variance) -> np.ndarray:
    """Posterior contraction ``1 - var_post / var_prior`` per simulation and dimension.

    Args:
      samples: ``[n_sims, n_draws, D]`` posterior draws (``n_draws >= 2``).
      prior_variance: the prior's marginal variance per dimension, ``[D]`` or a scalar (> 0).

    Returns:
      ``[n_sims, D]``: 1 = the posterior is a point, 0 = nothing learned, < 0 = wider than the prior.
    """
    samples = _draws(samples)
    dims = samples.shape[2]
    if np.ndim(prior_variance) == 0:
        prior_variance = np.full(dims, prior_variance)
    prior = v.float_array(prior_variance, "prior_variance", 1, f"[D] with D={dims} (or a scalar), values > 0")
    v.same(prior.size, dims, "prior_variance", "D", "[D] (or a scalar)", "samples")
    if np.any(prior <= 0):
        raise ValueError(f"prior_variance must have shape [D] (or be a scalar) with values > 0, got {prior.tolist()}")
    return 1.0 - samples.var(axis=1, ddof=1) / prior


def _draws(samples) -> np.ndarray:
    samples = v.float_array(samples, "samples", 3, "[n_sims, n_draws, D]")
    if samples.shape[1] < 2:
        raise ValueError(f"samples must have shape [n_sims, n_draws, D] with n_draws >= 2 (a variance needs "
                         f"two draws), got shape {samples.shape}")
    return samples
