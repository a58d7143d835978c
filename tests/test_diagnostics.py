"""tfcflow.diagnostics against known answers.

The reference problem is conjugate: theta ~ N(0, I_2), y | theta ~ N(theta, sigma^2 I_2), so the
exact posterior is N(y / (1 + sigma^2), sigma^2 / (1 + sigma^2) I_2). A fake model draws from it,
optionally with its std scaled (over- / under-confident) or its mean shifted (biased); the
diagnostics must pass the exact one and flag the others.
"""
import json

import numpy as np
import pytest
from matplotlib.image import imread

from tfcflow import diagnostics as dg
from tfcflow.diagnostics import sbc

SIGMA = 1.0
POST_VAR = SIGMA**2 / (1 + SIGMA**2)  # 0.5
N_SIMS, N_DRAWS, D = 500, 100, 2


class ConjugatePosterior:
    """``sample(y, num_samples, seed) -> [batch, N, 2]``: the exact posterior, with its std times
    ``scale`` and its mean moved by ``shift`` posterior stds (per dimension)."""

    def __init__(self, scale=1.0, shift=(0.0, 0.0)):
        self.scale, self.shift = scale, np.asarray(shift)

    def sample(self, condition, num_samples, seed=None):
        y = np.asarray(condition)
        std = np.sqrt(POST_VAR)
        mean = y / (1 + SIGMA**2) + self.shift * std
        noise = np.random.default_rng(seed).standard_normal((len(y), num_samples, y.shape[1]))
        return mean[:, None, :] + self.scale * std * noise


@pytest.fixture(scope="module")
def simulations():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((N_SIMS, D))
    y = theta + SIGMA * rng.standard_normal((N_SIMS, D))
    return theta, y


def _report(simulations, **posterior):
    theta, y = simulations
    report = dg.diagnose(ConjugatePosterior(**posterior), y, theta, num_samples=N_DRAWS, seed=1,
                         prior_variance=1.0)
    json.dumps(report, allow_nan=False)  # plain JSON values only
    return report


# ---- the conjugate model: calibrated vs miscalibrated ---------------------------------------------
def test_exact_posterior_is_calibrated(simulations):
    report = _report(simulations)
    # each dimension passes with probability >= 0.95 (measured: 0.97); both at once ~0.95 of seeds
    assert report["sbc"]["passed"], report["sbc"]
    assert min(report["sbc"]["p_value"]) > 0.05
    coverage, levels = np.array(report["coverage"]), np.array(report["levels"])
    assert coverage.shape == (19, D)
    # binomial noise of one level is <= sqrt(0.25 / 500) = 0.022: 0.07 is ~3 sd for the worst of
    # 19 levels x 2 dims (measured over 200 seeds: 99.5% pass), the mean absolute error < 0.04 (97%)
    assert np.all(np.abs(coverage - levels[:, None]) < 0.07)
    assert np.all(np.array(report["calibration_error"]) < 0.04)
    # |N(0, 1)| has mean sqrt(2 / pi) = 0.798
    np.testing.assert_allclose(report["mean_z_score"], np.sqrt(2 / np.pi), atol=0.08)
    # contraction = 1 - (sigma^2 / (1 + sigma^2)) / 1 = 0.5
    np.testing.assert_allclose(report["mean_contraction"], 1 - POST_VAR, atol=0.03)
    assert np.array(report["ranks"]).shape == (N_SIMS, D)


def test_over_confident_posterior_is_flagged(simulations):
    report = _report(simulations, scale=1 / 3)
    assert report["sbc"]["inside_band"] == [False, False]
    assert max(report["sbc"]["p_value"]) < 0.01
    coverage, levels = np.array(report["coverage"]), np.array(report["levels"])
    # the nominal 95% interval is +-1.96/3 true stds wide: P(|Z| < 0.65) = 0.49 (sd 0.022 over seeds)
    np.testing.assert_allclose(coverage[-1], 0.49, atol=0.08)
    assert np.all(coverage[3:] < levels[3:, None] - 0.05)
    assert np.all(np.array(report["calibration_error"]) > 0.2)
    assert np.all(np.array(report["mean_z_score"]) > 2.0)  # about 3 * 0.8
    np.testing.assert_allclose(report["mean_contraction"], 1 - POST_VAR / 9, atol=0.02)


def test_under_confident_posterior_is_flagged(simulations):
    report = _report(simulations, scale=3.0)
    assert report["sbc"]["inside_band"] == [False, False]
    coverage, levels = np.array(report["coverage"]), np.array(report["levels"])
    # the nominal 50% interval is +-3 * 0.674 true stds wide: P(|Z| < 2.02) = 0.957 with exact
    # quantiles; the noise of 100-draw quantiles lowers it (0.94 on average, 0.92-0.97 over seeds)
    assert np.all((0.88 < coverage[levels.round(2) == 0.5]) & (coverage[levels.round(2) == 0.5] < 1.0))
    assert np.all(coverage[:-1] > levels[:-1, None] + 0.03)
    assert np.all(np.array(report["calibration_error"]) > 0.2)
    assert np.all(np.array(report["mean_z_score"]) < 0.5)  # about 0.8 / 3
    assert np.all(np.array(report["mean_contraction"]) < 0)  # wider than the prior: 1 - 9 * 0.5


def test_biased_posterior_is_flagged_in_its_dimension_only(simulations):
    report = _report(simulations, shift=(1.5, 0.0))
    assert report["sbc"]["inside_band"] == [False, True]
    assert report["calibration_error"][0] > 0.1 > report["calibration_error"][1]
    assert report["mean_z_score"][0] > 1.3 > 1.0 > report["mean_z_score"][1]


def test_diagnose_in_chunks_and_model_shape_check(simulations):
    theta, y = simulations
    report = dg.diagnose(ConjugatePosterior(), y[:40], theta[:40], num_samples=20, batch_size=15)
    assert np.array(report["ranks"]).shape == (40, D) and report["mean_contraction"] is None

    class Flat:
        def sample(self, condition, num_samples, seed=None):
            return np.zeros((len(condition) * num_samples, D))

    with pytest.raises(ValueError, match=r"\[n_sims, num_samples, D\]"):
        dg.diagnose(Flat(), y[:10], theta[:10], num_samples=5)
    with pytest.raises(ValueError, match="conditions"):
        dg.diagnose(ConjugatePosterior(), y[:9], theta[:10], num_samples=5)


# ---- SBC ranks and the ECDF band ------------------------------------------------------------------
def test_sbc_ranks_by_hand():
    samples = np.array([[[0.0, 5.0], [1.0, 6.0], [2.0, 7.0]],
                        [[3.0, 1.0], [4.0, 2.0], [5.0, 3.0]]])  # [2 sims, 3 draws, 2 dims]
    true = np.array([[1.5, 4.0], [9.0, 2.5]])
    np.testing.assert_array_equal(dg.sbc_ranks(samples, true), [[2, 0], [3, 2]])
    # ties: the true value takes a uniformly random place among the 3 draws equal to it, so one draw
    # below + 0..3 tied ones -> ranks uniform on 1..4
    tied = np.ones((4000, 3, 1))
    ranks = dg.sbc_ranks(np.concatenate([np.zeros((4000, 1, 1)), tied], axis=1), np.ones((4000, 1)))
    np.testing.assert_allclose(np.bincount(ranks.ravel(), minlength=5) / 4000, [0, 0.25, 0.25, 0.25, 0.25], atol=0.03)


def test_ecdf_band_covers_uniform_ranks_at_its_confidence():
    n_sims, n_draws = 200, 50
    band = dg.ecdf_bands(n_sims, n_draws, confidence=0.95)
    assert band.z.shape == band.lower.shape == band.upper.shape == (n_draws,)
    assert np.all(band.lower <= band.z) and np.all(band.z <= band.upper)
    # simultaneous: wider than the pointwise 95% binomial interval at the middle
    middle = np.argmin(np.abs(band.z - 0.5))
    assert band.upper[middle] - band.lower[middle] > 2 * 1.96 * np.sqrt(0.25 / n_sims)
    rng = np.random.default_rng(7)
    ranks = rng.integers(0, n_draws + 1, size=(100, n_sims, 1))
    inside = [dg.sbc_test(r, n_draws).inside_band[0] for r in ranks]
    assert 0.85 <= np.mean(inside) <= 1.0
    # deterministic given the seed, and a 99% band contains the 95% one
    again = dg.ecdf_bands(n_sims, n_draws, confidence=0.95)
    np.testing.assert_array_equal(again.lower, band.lower)
    wide = dg.ecdf_bands(n_sims, n_draws, confidence=0.99)
    assert np.all(wide.lower <= band.lower) and np.all(wide.upper >= band.upper)


def test_ecdf_band_points_and_test_consistency():
    band = dg.ecdf_bands(100, 1000, num_points=20)
    assert band.z.size == 20 and np.all(np.diff(band.z) > 0)
    np.testing.assert_allclose(band.z, np.arange(1, 21) / 21, atol=1e-3)
    # U-shaped ranks (over-confident): the test fails, and inside_band agrees with the band itself
    rng = np.random.default_rng(0)
    u_shaped = np.where(rng.random((100, 1)) < 0.5, rng.integers(0, 100, (100, 1)), rng.integers(900, 1001, (100, 1)))
    uniform = rng.integers(0, 1001, (100, 1))
    result = dg.sbc_test(np.hstack([u_shaped, uniform]), 1000, num_points=20)
    ecdf = result.band.ecdf(np.hstack([u_shaped, uniform]))
    in_band = np.all((ecdf >= band.lower[:, None]) & (ecdf <= band.upper[:, None]), axis=0)
    np.testing.assert_array_equal(result.inside_band, in_band)
    assert not result.inside_band[0] and result.p_value[0] < 0.001
    assert result.max_ecdf_deviation[0] > 0.3
    assert not result.passed
    json.dumps(result.to_dict(), allow_nan=False)


# ---- coverage, z-score, contraction by hand -------------------------------------------------------
def test_expected_coverage_and_calibration_error_by_hand():
    draws = np.tile(np.arange(101.0)[None, :, None], (4, 1, 1))  # uniform grid 0..100, 4 sims, 1 dim
    true = np.array([[50.0], [30.0], [10.0], [99.0]])
    # central 50% interval [25, 75] holds 50 and 30; the 90% one [5, 95] also holds 10
    coverage = dg.expected_coverage(draws, true, levels=[0.5, 0.9])
    np.testing.assert_allclose(coverage, [[0.5], [0.75]])
    error = np.array([[0.5, 0.2], [0.5, 0.9], [0.5, 0.7]])  # [L=3, D=2]
    levels = [0.4, 0.5, 0.9]
    np.testing.assert_allclose(dg.calibration_error(error, levels), [(0.1 + 0.0 + 0.4) / 3, (0.2 + 0.4 + 0.2) / 3])
    np.testing.assert_allclose(dg.calibration_error(error, levels, reduction="median"), [0.1, 0.2])
    np.testing.assert_allclose(dg.calibration_error(error, levels, reduction="max"), [0.4, 0.4])


def test_z_score_and_contraction_by_hand():
    draws = np.array([[[1.0, 0.0], [3.0, 0.0]], [[0.0, 2.0], [0.0, 2.0]]])  # [2 sims, 2 draws, 2 dims]
    true = np.array([[4.0, 0.0], [0.0, 1.0]])
    # sim 0 dim 0: mean 2, std (ddof 1) sqrt(2) -> |2 - 4| / sqrt(2); constant draws: 0 if exact, inf if not
    np.testing.assert_allclose(dg.posterior_z_score(draws, true), [[np.sqrt(2), 0.0], [0.0, np.inf]])
    np.testing.assert_allclose(dg.posterior_contraction(draws, [4.0, 1.0]), [[0.5, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(dg.posterior_contraction(draws, 2.0), [[0.0, 1.0], [1.0, 1.0]])


# ---- C2ST -----------------------------------------------------------------------------------------
def test_c2st_known_answers_and_determinism():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((500, 2)), rng.standard_normal((500, 2))
    same = dg.c2st(a, b, seed=0)
    assert 0.4 < same < 0.6
    assert dg.c2st(a, b, seed=0) == same
    # N(0, 1) vs N(3, 1) per dim: the Bayes classifier is right with probability Phi(3 sqrt(2) / 2) = 0.983
    assert dg.c2st(a, b + 3.0, seed=0) > 0.9
    # z-scoring with samples_a's statistics: the units of the parameters do not matter
    assert dg.c2st(1e3 * a, 1e3 * (b + 3.0), seed=0) > 0.9


def test_c2st_input_checks():
    a = np.zeros((20, 2))
    with pytest.raises(ValueError, match="samples_a.*NaN"):
        dg.c2st(np.where(np.eye(20, 2) > 0, np.nan, a), a)
    with pytest.raises(ValueError, match="samples_b.*NaN"):
        dg.c2st(a, np.full((20, 2), np.inf))
    with pytest.raises(ValueError, match=r"samples_b must have shape \[m, D\].*D is 3"):
        dg.c2st(a, np.zeros((20, 3)))
    with pytest.raises(ValueError, match="samples_a must have shape"):
        dg.c2st(np.zeros(20), a)
    with pytest.raises(ValueError, match="at least folds=5 rows"):
        dg.c2st(a[:3], a)


# ---- figures --------------------------------------------------------------------------------------
def test_figures_are_valid_pngs(tmp_path, simulations):
    theta, y = simulations
    samples = ConjugatePosterior().sample(y[:60], 50, seed=0)
    ranks = dg.sbc_ranks(samples, theta[:60])
    coverage = dg.expected_coverage(samples, theta[:60])
    paths = [
        dg.plot_rank_ecdf(ranks, 50, tmp_path / "ranks.png", names=["a", "b"]),
        dg.plot_coverage(coverage, dg.DEFAULT_LEVELS, str(tmp_path / "sub" / "coverage.png"), n_sims=60),
        dg.plot_pair(samples[0], theta[0], tmp_path / "pair.png"),
        dg.plot_pair(samples[0, :, :1], None, tmp_path / "pair1.png", names=["only"]),
    ]
    for path in paths:
        assert isinstance(path, str)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0  # something was drawn
    with pytest.raises(ValueError, match="names must have one entry per dimension"):
        dg.plot_rank_ecdf(ranks, 50, tmp_path / "x.png", names=["a"])
    with pytest.raises(ValueError, match=r"true must have shape \[D\]"):
        dg.plot_pair(samples[0], theta[0, :1], tmp_path / "x.png")


# ---- input checks ---------------------------------------------------------------------------------
_S = np.zeros((10, 5, 2))
_T = np.zeros((10, 2))
_R = np.zeros((10, 2), np.int64)


@pytest.mark.parametrize("call, message", [
    (lambda: dg.sbc_ranks(_S[0], _T), r"posterior_samples must have shape \[n_sims, n_draws, D\]"),
    (lambda: dg.sbc_ranks(_S, _T[:9]), r"true_params must have shape \[n_sims, D\].*n_sims is 9"),
    (lambda: dg.sbc_ranks(_S, np.zeros((10, 3))), r"true_params must have shape \[n_sims, D\].*D is 3"),
    (lambda: dg.sbc_ranks(np.where(_S == 0, np.nan, _S), _T), r"posterior_samples \(shape .*NaN"),
    (lambda: dg.sbc_test(_R + 6, 5), r"ranks must have shape \[n_sims, D\] with integer values in 0..n_draws=5"),
    (lambda: dg.sbc_test(_R - 1, 5), "ranks must have shape"),
    (lambda: dg.sbc_test(_R + 0.5, 5), "non-integer"),
    (lambda: dg.sbc_test(_R[:, 0], 5), r"ranks must have shape \[n_sims, D\]"),
    (lambda: dg.sbc_test(_R, 5, confidence=1.0), r"confidence must be a float in \(0, 1\)"),
    (lambda: dg.ecdf_bands(10, 5, num_points=6), "num_points must be in 1..n_draws=5"),
    (lambda: dg.ecdf_bands(1, 5), "n_sims must be an int >= 2"),
    (lambda: dg.expected_coverage(_S, _T, levels=[0.5, 1.0]), r"levels must have shape \[L\] with values in"),
    (lambda: dg.expected_coverage(_S, _T.T), r"true_params must have shape \[n_sims, D\]"),
    (lambda: dg.calibration_error(np.zeros((3, 2)), [0.1, 0.5]), r"coverage must have shape \[L, D\].*L is 3"),
    (lambda: dg.calibration_error(np.zeros((2, 2)), [0.1, 0.5], reduction="sum"), "reduction must be one of"),
    (lambda: dg.posterior_z_score(_S, _T[:, :1]), r"true must have shape \[n_sims, D\]"),
    (lambda: dg.posterior_z_score(_S[:, :1], _T), "n_draws >= 2"),
    (lambda: dg.posterior_contraction(_S, [1.0, 2.0, 3.0]), r"prior_variance must have shape \[D\]"),
    (lambda: dg.posterior_contraction(_S, 0.0), "values > 0"),
    (lambda: dg.posterior_contraction(_S, [1.0, np.nan]), "prior_variance.*NaN"),
])
def test_bad_inputs_name_the_argument_and_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_band_cache_is_read_only():
    null = sbc._null(50, 10, 10, 1000, 0)
    with pytest.raises(ValueError):
        null.sorted_stats[0] = 1.0
