"""Expected coverage of central credible intervals, and its calibration error.

For a credible level a, the central interval of one simulation's posterior draws in dimension d is
[Q((1 - a) / 2), Q((1 + a) / 2)] (empirical quantiles of the draws). The expected coverage at a is
the fraction of simulations whose true value lies in that interval. An exact posterior covers at
rate a (up to binomial noise sqrt(a (1 - a) / n_sims)); an over-confident one (intervals too narrow)
covers less than a, an under-confident one more.
"""
from __future__ import annotations

import numpy as np

from tfcflow.diagnostics import _validation as v

#: default credible levels
DEFAULT_LEVELS = np.linspace(0.05, 0.95, 19)
DEFAULT_LEVELS.flags.writeable = False  # a shared default argument

_REDUCTIONS = {"mean": np.mean, "median": np.median, "max": np.max}


def expected_coverage(posterior_samples, true_params, levels=DEFAULT_LEVELS) -> np.ndarray:
    """Empirical coverage of central credible intervals, per level and dimension.

    Args:
      posterior_samples: ``[n_sims, n_draws, D]`` posterior draws per simulation.
      true_params: ``[n_sims, D]`` the true parameters.
      levels: ``[L]`` credible levels in (0, 1).

    Returns:
      ``[L, D]`` fraction of simulations whose true value lies in the central interval at each
      level (closed; its bounds are the draws' quantiles interpolated between order statistics
      at positions p (n_draws + 1), so an exact posterior covers ~a even with few draws).
    """
    samples = v.float_array(posterior_samples, "posterior_samples", 3, "[n_sims, n_draws, D]")
    true = v.float_array(true_params, "true_params", 2, "[n_sims, D]")
    levels = v.levels_array(levels)
    n_sims, n_draws, dims = samples.shape
    v.same(true.shape[0], n_sims, "true_params", "n_sims", "[n_sims, D]", "posterior_samples")
    v.same(true.shape[1], dims, "true_params", "D", "[n_sims, D]", "posterior_samples")
    if n_draws < 2:
        raise ValueError(f"posterior_samples must have shape [n_sims, n_draws, D] with n_draws >= 2, "
                         f"got shape {samples.shape}")
    probs = np.concatenate([(1.0 - levels) / 2.0, (1.0 + levels) / 2.0])
    # "weibull" puts the p-quantile at order statistic p (n_draws + 1): an exchangeable true value
    # then falls between the two bounds with probability ~a. The default (linear, p (n_draws - 1))
    # covers only ~a (n_draws - 1) / (n_draws + 1): 0.93 instead of 0.95 with 100 draws.
    bounds = np.quantile(samples, probs, axis=1, method="weibull")  # [2L, n_sims, D]
    lower, upper = bounds[: levels.size], bounds[levels.size:]
    inside = (lower <= true[None]) & (true[None] <= upper)
    return inside.mean(axis=1)


def calibration_error(coverage, levels=DEFAULT_LEVELS, reduction: str = "mean") -> np.ndarray:
    """Distance between empirical and nominal coverage, per dimension.

    Definition: ``reduction`` over levels of |coverage[l, d] - levels[l]|; the default is the
    mean absolute difference (the area between the coverage curve and the diagonal, on an even
    grid of levels). 0 = perfectly calibrated; the sign is lost, see the coverage itself for it.

    Args:
      coverage: ``[L, D]`` from :func:`expected_coverage`.
      levels: ``[L]`` the levels it was computed at.
      reduction: ``"mean"``, ``"median"`` or ``"max"`` absolute difference.

    Returns:
      ``[D]`` calibration error in [0, 1].
    """
    coverage = v.float_array(coverage, "coverage", 2, "[L, D]")
    levels = v.levels_array(levels)
    v.same(coverage.shape[0], levels.size, "coverage", "L", "[L, D]", "levels")
    if np.any(coverage < 0.0) or np.any(coverage > 1.0):
        raise ValueError("coverage must have shape [L, D] with values in [0, 1]")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {sorted(_REDUCTIONS)}, got {reduction!r}")
    return _REDUCTIONS[reduction](np.abs(coverage - levels[:, None]), axis=0)
