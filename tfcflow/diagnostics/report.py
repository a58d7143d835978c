"""One call that runs the calibration diagnostics on a conditional model."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from tfcflow.diagnostics import _validation as v
from tfcflow.diagnostics.coverage import DEFAULT_LEVELS, calibration_error, expected_coverage
from tfcflow.diagnostics.posterior_summaries import posterior_contraction, posterior_z_score
from tfcflow.diagnostics.sbc import sbc_ranks, sbc_test


def diagnose(model, conditions, true_params, num_samples: int = 1000, seed: Optional[int] = 0,
             prior_variance=None, confidence: float = 0.95, levels=DEFAULT_LEVELS,
             batch_size: Optional[int] = None) -> dict:
    """SBC, coverage, z-score and contraction of ``model``'s posteriors over a simulated test set.

    Args:
      model: anything with ``sample(condition, num_samples=N, seed=s) -> [batch, N, D]`` (a tfcflow
        model; TF tensors or NumPy arrays).
      conditions: ``[n_sims, *condition_shape]`` observations x_i ~ p(x | theta_i).
      true_params: ``[n_sims, D]`` the theta_i drawn from the prior.
      num_samples: posterior draws per condition (the L of the SBC ranks).
      seed: seeds the draws; with ``batch_size``, chunk k is drawn with ``seed + k``.
      prior_variance: ``[D]`` or scalar prior variance; the contraction is reported only if given.
      confidence: of the SBC band test.
      levels: ``[L]`` credible levels of the coverage.
      batch_size: draw at most this many conditions per ``model.sample`` call (bounds memory).

    Returns:
      a dict of plain JSON-able values (lists, floats, bools; non-finite floats become None):
      ``n_sims``, ``num_samples``, ``ranks`` ``[n_sims][D]``, ``sbc`` (see ``SBCTestResult.to_dict``),
      ``levels`` ``[L]``, ``coverage`` ``[L][D]``, ``calibration_error`` ``[D]`` (mean absolute coverage
      error), ``mean_z_score`` ``[D]``, ``mean_contraction`` ``[D]`` or None.
    """
    true = v.float_array(true_params, "true_params", 2, "[n_sims, D]")
    n_sims, dims = true.shape
    if len(conditions) != n_sims:
        raise ValueError(f"conditions must have shape [n_sims, ...] with n_sims={n_sims} (the rows of true_params), "
                         f"got {len(conditions)} rows")
    num_samples = v.positive_int(num_samples, "num_samples", 2)
    batch_size = n_sims if batch_size is None else v.positive_int(batch_size, "batch_size", 1)
    if seed is not None:
        seed = v.positive_int(seed, "seed", 0)
    chunks = []
    for k, start in enumerate(range(0, n_sims, batch_size)):
        chunk_seed = None if seed is None else seed + k  # distinct draws per chunk, still reproducible
        drawn = model.sample(conditions[start:start + batch_size], num_samples=num_samples, seed=chunk_seed)
        chunks.append(np.asarray(drawn, dtype=np.float64))
    samples = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    if samples.shape != (n_sims, num_samples, dims):
        raise ValueError(f"model.sample returned shape {samples.shape}; expected [n_sims, num_samples, D] = "
                         f"{[n_sims, num_samples, dims]}")
    ranks = sbc_ranks(samples, true)
    levels = v.levels_array(levels)
    coverage = expected_coverage(samples, true, levels)
    contraction = None
    if prior_variance is not None:
        contraction = _floats(posterior_contraction(samples, prior_variance).mean(axis=0))
    return {
        "n_sims": n_sims,
        "num_samples": num_samples,
        "ranks": ranks.tolist(),
        "sbc": sbc_test(ranks, num_samples, confidence).to_dict(),
        "levels": _floats(levels),
        "coverage": [_floats(row) for row in coverage],
        "calibration_error": _floats(calibration_error(coverage, levels)),
        "mean_z_score": _floats(posterior_z_score(samples, true).mean(axis=0)),
        "mean_contraction": contraction,
    }


def _floats(values) -> list:
    # JSON has no NaN/inf (json.dumps would write the non-standard "Infinity")
    return [float(x) if math.isfinite(x) else None for x in np.asarray(values, dtype=np.float64).ravel()]
