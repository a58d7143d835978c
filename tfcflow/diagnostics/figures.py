"""Diagnostic figures, written as PNG files.

Needs matplotlib (imported on the first plot). Figures are built as ``matplotlib.figure.Figure``
objects and saved with the Agg renderer, never through pyplot: nothing opens a window, and the
global backend of the calling program is left alone.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from tfcflow.diagnostics import _validation as v
from tfcflow.diagnostics.sbc import ecdf_bands

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PathLike = Union[str, os.PathLike]

_PANEL = 3.0  # inches per panel side


def plot_rank_ecdf(ranks, n_draws: int, path: PathLike, names: Optional[Sequence[str]] = None,
                   confidence: float = 0.95) -> str:
    """SBC rank ECDF difference plot: F(z) - z per dimension, with the simultaneous band of
    :func:`~tfcflow.diagnostics.sbc.ecdf_bands` (an exact posterior stays inside it with
    probability ``confidence`` per panel).

    Args:
      ranks: ``[n_sims, D]`` ranks in ``0..n_draws``.
      n_draws: the number of posterior draws the ranks were computed from.
      path: the PNG to write (parent folders are created).
      names: ``[D]`` panel titles.

    Returns:
      ``path`` as a string.
    """
    n_draws = v.positive_int(n_draws, "n_draws", 1)
    ranks = v.ranks_array(ranks, n_draws)
    names = v.names_list(names, ranks.shape[1])
    band = ecdf_bands(ranks.shape[0], n_draws, confidence)
    difference = band.ecdf(ranks) - band.z[:, None]  # [K, D]
    # both ends are exact: F(0) = 0 and F(1) = 1
    z = np.concatenate([[0.0], band.z, [1.0]])
    lower = np.concatenate([[0.0], band.lower - band.z, [0.0]])
    upper = np.concatenate([[0.0], band.upper - band.z, [0.0]])
    fig, axes = _grid(1, ranks.shape[1], sharey=True)
    for d, ax in enumerate(axes[0]):
        ax.fill_between(z, lower, upper, color="tab:blue", alpha=0.2, label=f"{confidence:.0%} simultaneous band")
        ax.plot(z, np.concatenate([[0.0], difference[:, d], [0.0]]), color="black", lw=1.2)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set(title=names[d], xlabel="fractional rank z", xlim=(0, 1))
    axes[0][0].set_ylabel("ECDF(z) - z")
    axes[0][0].legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def plot_coverage(coverage, levels, path: PathLike, names: Optional[Sequence[str]] = None,
                  n_sims: Optional[int] = None) -> str:
    """Expected coverage against the credible level, one curve per dimension, with the diagonal
    (exact calibration). Below the diagonal = over-confident, above = under-confident.

    Args:
      coverage: ``[L, D]`` from :func:`~tfcflow.diagnostics.coverage.expected_coverage`.
      levels: ``[L]`` credible levels.
      path: the PNG to write.
      names: ``[D]`` legend labels.
      n_sims: if given, shades the pointwise 95% binomial band of an exact posterior
        (level +- 1.96 sqrt(level (1 - level) / n_sims)).

    Returns:
      ``path`` as a string.
    """
    coverage = v.float_array(coverage, "coverage", 2, "[L, D]")
    levels = v.levels_array(levels)
    v.same(coverage.shape[0], levels.size, "coverage", "L", "[L, D]", "levels")
    names = v.names_list(names, coverage.shape[1])
    order = np.argsort(levels)
    fig, axes = _grid(1, 1)
    ax = axes[0][0]
    if n_sims is not None:
        n_sims = v.positive_int(n_sims, "n_sims", 1)
        half = 1.96 * np.sqrt(levels[order] * (1.0 - levels[order]) / n_sims)
        ax.fill_between(levels[order], levels[order] - half, levels[order] + half, color="grey", alpha=0.25,
                        label="95% binomial band")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    for d, name in enumerate(names):
        ax.plot(levels[order], coverage[order, d], marker="o", ms=3, label=name)
    ax.set(xlabel="credible level", ylabel="expected coverage", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_pair(samples, true, path: PathLike, names: Optional[Sequence[str]] = None, bins: int = 40,
              max_points: int = 2000) -> str:
    """Pair plot of posterior draws: histograms on the diagonal, scatter plots below it.

    Args:
      samples: ``[N, D]`` draws.
      true: ``[D]`` true parameters (marked in red), or None.
      path: the PNG to write.
      names: ``[D]`` axis labels.
      bins: histogram bins.
      max_points: at most this many (evenly strided) draws per scatter plot, to keep files small.

    Returns:
      ``path`` as a string.
    """
    samples = v.float_array(samples, "samples", 2, "[N, D]")
    dims = samples.shape[1]
    if true is not None:
        true = v.float_array(true, "true", 1, f"[D] with D={dims}")
        v.same(true.size, dims, "true", "D", "[D]", "samples")
    names = v.names_list(names, dims)
    bins = v.positive_int(bins, "bins", 1)
    stride = max(1, -(-samples.shape[0] // v.positive_int(max_points, "max_points", 1)))
    fig, axes = _grid(dims, dims)
    for i in range(dims):
        for j in range(dims):
            ax = axes[i][j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                ax.hist(samples[:, i], bins=bins, color="tab:blue", alpha=0.7)
                ax.set_yticks([])
                if true is not None:
                    ax.axvline(true[i], color="tab:red", lw=1.5)
            else:
                ax.scatter(samples[::stride, j], samples[::stride, i], s=2, alpha=0.3, color="tab:blue",
                           rasterized=True)
                if true is not None:
                    ax.plot(true[j], true[i], marker="x", color="tab:red", ms=8, mew=2)
            if i == dims - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
    return _save(fig, path)


def _grid(rows: int, cols: int, sharey: bool = False):
    # imported here: the rest of tfcflow.diagnostics works without matplotlib installed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_PANEL * cols, _PANEL * rows), dpi=100)
    FigureCanvasAgg(fig)  # attaches the Agg canvas the PNG is rendered with
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey)
    return fig, axes


def _save(fig: Figure, path: PathLike) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
