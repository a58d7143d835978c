"""Simulation-based calibration (SBC): ranks and the simultaneous ECDF band test.

For each of ``n_sims`` simulations, theta* ~ prior, x ~ p(x | theta*), and ``n_draws`` draws
theta_1..theta_L from the approximate posterior q(theta | x). The rank of theta* among the draws,

    r = #{l : theta_l < theta*}        (ties broken uniformly at random)   in {0, ..., L},

is discrete-uniform on {0..L} for every dimension when q is the exact posterior (Talts et al. 2018).

The test is the graphical one of Säilynoja, Bürkner & Vehtari (2022, "Graphical test for discrete
uniformity and its applications in goodness-of-fit evaluation and multiple sample comparison").
The ECDF of the ranks is evaluated at K points z_j = (k_j + 1) / (L + 1) of the rank grid, where

    F(z_j) = #{i : r_i <= k_j} / N,   and under uniformity  N F(z_j) ~ Binomial(N, z_j)

exactly (N = n_sims). Pointwise binomial intervals at level 1 - gamma would be too narrow jointly,
so gamma is *adjusted* until the K intervals hold simultaneously with probability ``confidence``.
Here the adjustment is simulation-based: for M uniform replications compute

    s = 2 min_j min( P(X_j <= N F(z_j)),  P(X_j >= N F(z_j)) ),   X_j ~ Binomial(N, z_j),

(the smallest two-sided tail probability over the K points) and take gamma = the (1 - confidence)
quantile of s. The band at z_j is every count c with min(P(X_j <= c), P(X_j >= c)) >= gamma / 2,
so "the ECDF stays inside the band" is exactly "s >= gamma" for the observed ranks, and the
fraction of replications with s <= s_observed is a Monte Carlo p-value of the same test.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
from scipy import stats

from tfcflow.diagnostics import _validation as v

#: default number of uniform replications for the gamma adjustment (its Monte Carlo error on a
#: 0.05 tail is about sqrt(0.05 * 0.95 / 10000) = 0.002)
NUM_SIMULATIONS = 10_000

#: default cap on the number of ECDF evaluation points (the paper's figures use up to ~100; more
#: points widen the band for the same confidence, fewer miss narrow deviations)
MAX_POINTS = 100


def sbc_ranks(posterior_samples, true_params, seed: Optional[int] = 0) -> np.ndarray:
    """Rank of each true value among its posterior draws.

    Args:
      posterior_samples: ``[n_sims, n_draws, D]`` draws from the approximate posterior of each
        simulation.
      true_params: ``[n_sims, D]`` the parameters each simulation was generated from.
      seed: seeds the random tie-breaking (ties only occur with discrete or rounded draws).

    Returns:
      ``[n_sims, D]`` int64 ranks in ``0..n_draws``: the number of draws below the true value, plus
      a uniform share of the draws equal to it.
    """
    samples = v.float_array(posterior_samples, "posterior_samples", 3, "[n_sims, n_draws, D]")
    true = v.float_array(true_params, "true_params", 2, "[n_sims, D]")
    n_sims, _, dims = samples.shape
    v.same(true.shape[0], n_sims, "true_params", "n_sims", "[n_sims, D]", "posterior_samples")
    v.same(true.shape[1], dims, "true_params", "D", "[n_sims, D]", "posterior_samples")
    below = np.sum(samples < true[:, None, :], axis=1)
    ties = np.sum(samples == true[:, None, :], axis=1)
    if np.any(ties):
        # a tie is equally likely to rank above or below: counting them all as "below" (or none)
        # would shift the ranks of a discrete posterior even when it is exact
        below = below + np.random.default_rng(seed).integers(0, ties + 1)
    return below.astype(np.int64)


@dataclasses.dataclass(frozen=True, eq=False)  # eq on array fields would be ambiguous
class EcdfBand:
    """A simultaneous confidence band for the ECDF of ``n_sims`` discrete-uniform ranks in
    ``0..n_draws``.

    Attributes:
      z: ``[K]`` evaluation points in (0, 1): ``(k + 1) / (n_draws + 1)`` for the ranks ``k``.
      rank_cut: ``[K]`` the ranks k: ``F(z_j)`` is the fraction of ranks ``<= rank_cut[j]``.
      lower, upper: ``[K]`` band on the ECDF F(z) (fractions of ``n_sims``).
      gamma: the adjusted pointwise level (see the module docstring).
      confidence: the simultaneous coverage asked for.
    """

    z: np.ndarray
    rank_cut: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    confidence: float
    n_sims: int
    n_draws: int
    num_simulations: int

    def ecdf(self, ranks: np.ndarray) -> np.ndarray:
        """``[K, D]`` ECDF of ``ranks`` ``[n_sims, D]`` at ``z``."""
        ranks = v.ranks_array(ranks, self.n_draws)
        v.same(ranks.shape[0], self.n_sims, "ranks", "n_sims", "[n_sims, D]", "the band")
        return _counts_at(ranks, self.n_draws, self.rank_cut) / self.n_sims


def ecdf_bands(n_sims: int, n_draws: int, confidence: float = 0.95, num_points: Optional[int] = None,
               num_simulations: int = NUM_SIMULATIONS, seed: int = 0) -> EcdfBand:
    """Simultaneous ``confidence`` band for the ECDF of ``n_sims`` uniform ranks in ``0..n_draws``.

    Args:
      n_sims: N, the number of ranks (simulations) per dimension.
      n_draws: L, the number of posterior draws each rank was computed from.
      confidence: the probability that the whole ECDF of uniform ranks lies in the band.
      num_points: K, the number of evaluation points; at most ``n_draws`` (the interior points of
        the rank grid); default ``min(n_draws, 100)``.
      num_simulations: M, uniform replications for the gamma adjustment.
      seed: seeds those replications (the band is deterministic given it).

    Returns:
      an :class:`EcdfBand` (arrays of shape ``[K]``).
    """
    n_sims = v.positive_int(n_sims, "n_sims", 2)
    n_draws = v.positive_int(n_draws, "n_draws", 1)
    confidence = v.probability(confidence, "confidence")
    num_points = _num_points(num_points, n_draws)
    num_simulations = v.positive_int(num_simulations, "num_simulations", 100)
    null = _null(n_sims, n_draws, num_points, num_simulations, int(seed))
    # gamma = the (1 - confidence) quantile of s, taken from below: the fraction of uniform
    # replications with s < gamma is then at most 1 - confidence (s is discrete, ties are common)
    gamma = float(null.sorted_stats[int(np.floor((1.0 - confidence) * num_simulations))])
    tail = np.minimum(null.cdf, null.sf)  # [K, N + 1]: two-sided tail of each count
    inside = tail >= gamma / 2.0
    counts = np.arange(n_sims + 1)
    # inside[j] is one run of counts around the binomial mode (the tail is unimodal in c)
    lower = np.array([counts[row].min() for row in inside]) / n_sims
    upper = np.array([counts[row].max() for row in inside]) / n_sims
    return EcdfBand(z=null.z, rank_cut=null.rank_cut, lower=lower, upper=upper, gamma=gamma,
                    confidence=confidence, n_sims=n_sims, n_draws=n_draws, num_simulations=num_simulations)


@dataclasses.dataclass(frozen=True, eq=False)
class SBCTestResult:
    """Per-dimension outcome of :func:`sbc_test` (arrays of shape ``[D]``).

    Attributes:
      inside_band: whether the ECDF of that dimension's ranks stays inside the simultaneous band
        (True = no evidence of miscalibration at ``confidence``).
      p_value: Monte Carlo p-value of the same test: the fraction of uniform replications whose
        statistic s is at most the observed one, ``(1 + #{s_m <= s}) / (M + 1)``.
      statistic: the observed s = 2 min_j (two-sided binomial tail at z_j).
      max_ecdf_deviation: max_j |F(z_j) - z_j| (the largest vertical gap in the ECDF-difference plot).
      band: the band tested against.
    """

    inside_band: np.ndarray
    p_value: np.ndarray
    statistic: np.ndarray
    max_ecdf_deviation: np.ndarray
    band: EcdfBand

    @property
    def passed(self) -> bool:
        """True when every dimension stays inside its band (no multiple-testing correction)."""
        return bool(np.all(self.inside_band))

    def to_dict(self) -> dict:
        """Plain JSON-able values."""
        return {
            "passed": self.passed,
            "inside_band": [bool(b) for b in self.inside_band],
            "p_value": [float(p) for p in self.p_value],
            "statistic": [float(s) for s in self.statistic],
            "max_ecdf_deviation": [float(d) for d in self.max_ecdf_deviation],
            "confidence": self.band.confidence,
            "gamma": self.band.gamma,
            "num_points": int(self.band.z.size),
        }


def sbc_test(ranks, n_draws: int, confidence: float = 0.95, num_points: Optional[int] = None,
             num_simulations: int = NUM_SIMULATIONS, seed: int = 0) -> SBCTestResult:
    """Tests each dimension's ranks for discrete uniformity with the simultaneous ECDF band.

    Args:
      ranks: ``[n_sims, D]`` integer ranks in ``0..n_draws`` (from :func:`sbc_ranks`).
      n_draws: L, the number of posterior draws per simulation.
      confidence, num_points, num_simulations, seed: as in :func:`ecdf_bands`.

    Returns:
      an :class:`SBCTestResult` with one entry per dimension (each tested at ``confidence``; with
      D dimensions a calibrated posterior passes them all with probability about confidence^D).
    """
    n_draws = v.positive_int(n_draws, "n_draws", 1)
    ranks = v.ranks_array(ranks, n_draws)
    n_sims = ranks.shape[0]
    band = ecdf_bands(n_sims, n_draws, confidence, num_points, num_simulations, seed)
    null = _null(n_sims, n_draws, band.z.size, num_simulations, int(seed))
    counts = _counts_at(ranks, n_draws, band.rank_cut)  # [K, D]
    points = np.arange(band.z.size)[:, None]
    statistic = 2.0 * np.min(np.minimum(null.cdf[points, counts], null.sf[points, counts]), axis=0)
    # searchsorted(..., "right") = #{s_m <= s}
    p_value = (1.0 + np.searchsorted(null.sorted_stats, statistic, side="right")) / (num_simulations + 1.0)
    deviation = np.max(np.abs(counts / n_sims - band.z[:, None]), axis=0)
    return SBCTestResult(inside_band=statistic >= band.gamma, p_value=p_value, statistic=statistic,
                         max_ecdf_deviation=deviation, band=band)


# ---- internals -----------------------------------------------------------------------------------
def _num_points(num_points, n_draws: int) -> int:
    if num_points is None:
        return min(n_draws, MAX_POINTS)
    num_points = v.positive_int(num_points, "num_points", 1)
    if num_points > n_draws:
        # the rank grid has only n_draws interior points; more would repeat them
        raise ValueError(f"num_points must be in 1..n_draws={n_draws}, got {num_points}")
    return num_points


def _rank_cuts(n_draws: int, num_points: int) -> np.ndarray:
    """``[K]`` ranks k_j (0..n_draws-1) whose grid points (k + 1) / (L + 1) are spread evenly."""
    if num_points == n_draws:
        return np.arange(n_draws)
    # K < L: (L + 1) / (K + 1) > 1, so the rounded cuts are distinct
    j = np.arange(1, num_points + 1)
    return np.clip(np.round(j * (n_draws + 1) / (num_points + 1)).astype(np.int64) - 1, 0, n_draws - 1)


def _counts_at(ranks: np.ndarray, n_draws: int, rank_cut: np.ndarray) -> np.ndarray:
    """``[K, D]`` number of ranks ``<= rank_cut[j]`` in each column of ``ranks`` ``[N, D]``."""
    cumulative = np.stack([np.cumsum(np.bincount(col, minlength=n_draws + 1)) for col in ranks.T], axis=1)
    return cumulative[rank_cut]


@dataclasses.dataclass(frozen=True, eq=False)
class _Null:
    z: np.ndarray  # [K]
    rank_cut: np.ndarray  # [K]
    cdf: np.ndarray  # [K, N + 1]: P(X_j <= c)
    sf: np.ndarray  # [K, N + 1]: P(X_j >= c)
    sorted_stats: np.ndarray  # [M]: s of each uniform replication, ascending


@functools.lru_cache(maxsize=16)
def _null(n_sims: int, n_draws: int, num_points: int, num_simulations: int, seed: int) -> _Null:
    """The binomial tail tables and the null distribution of s (cached: sbc_test and plots ask
    for the same band once per dimension)."""
    rank_cut = _rank_cuts(n_draws, num_points)
    z = (rank_cut + 1) / (n_draws + 1)
    counts = np.arange(n_sims + 1)
    cdf = stats.binom.cdf(counts[None, :], n_sims, z[:, None])
    sf = stats.binom.sf(counts[None, :] - 1, n_sims, z[:, None])
    # uniform ranks put Multinomial(N, cell widths) counts between consecutive evaluation points:
    # sampling the K + 1 cell counts is exact and far cheaper than M x N ranks
    cells = np.diff(np.concatenate([[0.0], z, [1.0]]))
    rng = np.random.default_rng(seed)
    ecdf_counts = np.cumsum(rng.multinomial(n_sims, cells, size=num_simulations), axis=1)[:, :-1]  # [M, K]
    points = np.arange(num_points)[None, :]
    s = 2.0 * np.min(np.minimum(cdf[points, ecdf_counts], sf[points, ecdf_counts]), axis=1)
    arrays = [z, rank_cut, cdf, sf, np.sort(s)]
    for array in arrays:
        array.flags.writeable = False  # shared through the cache
    return _Null(*arrays)
