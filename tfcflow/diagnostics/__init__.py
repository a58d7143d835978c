"""Posterior diagnostics for simulation-based inference (NumPy, SciPy, scikit-learn, matplotlib).

- SBC: :func:`sbc_ranks`, :func:`ecdf_bands` (simultaneous ECDF band), :func:`sbc_test`;
- coverage: :func:`expected_coverage` of central credible intervals, :func:`calibration_error`;
- per-simulation summaries: :func:`posterior_z_score`, :func:`posterior_contraction`;
- two-sample test: :func:`c2st`;
- figures: :func:`plot_rank_ecdf`, :func:`plot_coverage`, :func:`plot_pair`;
- :func:`diagnose`: all of the above on a model's ``sample(condition, num_samples=N)``;
- image samples (image_samples.py): :func:`lr_consistency` (and :func:`known_consistency`,
  :func:`luma_consistency`), :func:`diversity`, :func:`calibration` (per-pixel coverage of 19
  samples' 90% / 50% intervals), :func:`plot_image_diagnostics`.

Shapes: ``n_sims`` simulations (theta*, x) pairs, ``n_draws`` posterior draws each, ``D`` parameters.
"""
from tfcflow.diagnostics.c2st import c2st
from tfcflow.diagnostics.coverage import DEFAULT_LEVELS, calibration_error, expected_coverage
from tfcflow.diagnostics.figures import plot_coverage, plot_pair, plot_rank_ecdf
from tfcflow.diagnostics.image_samples import (calibration, diversity, known_consistency, lr_consistency,
                                               luma_consistency, plot_image_diagnostics)
from tfcflow.diagnostics.posterior_summaries import posterior_contraction, posterior_z_score
from tfcflow.diagnostics.report import diagnose
from tfcflow.diagnostics.sbc import EcdfBand, SBCTestResult, ecdf_bands, sbc_ranks, sbc_test

__all__ = [
    "DEFAULT_LEVELS",
    "EcdfBand",
    "SBCTestResult",
    "c2st",
    "calibration",
    "calibration_error",
    "diagnose",
    "diversity",
    "ecdf_bands",
    "expected_coverage",
    "known_consistency",
    "lr_consistency",
    "luma_consistency",
    "plot_coverage",
    "plot_image_diagnostics",
    "plot_pair",
    "plot_rank_ecdf",
    "posterior_contraction",
    "posterior_z_score",
    "sbc_ranks",
    "sbc_test",
]
