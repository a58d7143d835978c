"""NLE: a likelihood flow sampled by MCMC; the posterior of i.i.d. trials checked against the
conjugate Gaussian's, the unnormalized log-density against its definition, disagreeing chains
reported, and bad input refused."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow.inference import NLE, NPE, Training
from tfcflow.inference.nle import default_chains

#: one candidate: no choice of flow (NPE's candidate choice has its own tests)
ONE_FLOW = ({},)

NOISE = 0.5
FLOW = {"depth": 2, "width": 32, "coupling": "affine"}


def gaussian_prior():
    return tfd.MultivariateNormalDiag(loc=[0.0, 0.0], scale_diag=[1.0, 1.0])


def noisy_identity(theta, rng):
    return theta + NOISE * rng.standard_normal(theta.shape).astype(np.float32)


@pytest.fixture(scope="module")
def nle():
    nle = NLE(gaussian_prior(), flow=FLOW, ensemble=1, candidates=ONE_FLOW,
              training=Training(epochs=200, batch_size=128, learning_rate=2e-3), seed=0)
    nle.fit(simulator=noisy_identity, num_simulations=4000, verbose=0)
    return nle


@pytest.mark.parametrize("n_trials", [1, 10, 100])
def test_the_posterior_of_iid_trials_is_the_conjugate_gaussians(nle, n_trials):
    """With a N(0, I) prior and x_i = theta + N(0, s^2 I), the posterior of n trials is
    N(sum x_i / (s^2 + n), s^2 / (s^2 + n) I): the model was trained on single trials only."""
    rng = np.random.default_rng(n_trials)
    theta_true = np.array([0.4, -0.7], np.float32)
    trials = noisy_identity(np.repeat(theta_true[None], n_trials, axis=0), rng)
    draws, report = nle.sample(trials, num_samples=800, seed=1, chains=8, warmup=200, report=True)
    assert draws.shape == (800, 2)
    mean = trials.sum(axis=0) / (NOISE ** 2 + n_trials)
    std = NOISE / np.sqrt(NOISE ** 2 + n_trials)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 0.25 * std + 0.02)
    ratio = draws.std(axis=0) / std
    assert ((ratio > 0.8) & (ratio < 1.25)).all(), ratio
    assert max(report["r_hat"]) < 1.05 and min(report["ess"]) > 200
    np.testing.assert_array_equal(nle.sample(trials, num_samples=800, seed=1, chains=8, warmup=200), draws)


def test_log_prob_is_the_summed_likelihood_plus_the_prior(nle):
    trials = np.array([[0.1, 0.2], [0.3, -0.1], [0.0, 0.5]], np.float32)
    theta = np.array([[0.2, 0.1], [-1.0, 2.0]], np.float32)
    expected = [sum(float(nle.flow.log_prob(trials[i:i + 1], theta[k:k + 1])[0]) for i in range(3))
                + float(gaussian_prior().log_prob(theta[k])) for k in range(2)]
    np.testing.assert_allclose(nle.log_prob(theta, trials), expected, rtol=1e-5, atol=1e-4)
    # one trial: [M] or [1, M]
    np.testing.assert_allclose(nle.log_prob(theta, trials[0]), nle.log_prob(theta, trials[:1]), rtol=1e-6)


def test_chains_that_disagree_are_reported():
    """x = theta^2 + noise: x_o near (1, 1) has four posterior modes (+-1, +-1) that chains
    started at prior draws do not cross: the split R-hat is far above 1."""
    def squared(theta, rng):
        return theta ** 2 + 0.1 * rng.standard_normal(theta.shape).astype(np.float32)

    est = NLE(gaussian_prior(), flow={"depth": 2, "width": 32}, ensemble=1, candidates=ONE_FLOW,
              training=Training(epochs=40, batch_size=256), seed=0)
    est.fit(simulator=squared, num_simulations=3000, verbose=0)
    x_o = np.array([1.0, 1.0], np.float32)
    with pytest.warns(RuntimeWarning, match="chains disagree"):
        draws, report = est.sample(x_o, num_samples=160, seed=0, warmup=50, report=True)
    assert max(report["r_hat"]) > 1.1 and report["chains"] == 16  # the default for few draws
    assert (np.abs(np.abs(draws) - 1.0) < 0.5).mean() > 0.8  # the draws sit at the modes
    with pytest.raises(RuntimeError, match="chains disagree"):
        est.sample(x_o, num_samples=40, seed=0, chains=8, warmup=20, strict=True)
    # the default chains follow the draws asked for: more chains weigh the modes more finely
    assert [default_chains(n) for n in (1, 2400, 3000, 9600, 10_000)] == [16, 16, 20, 64, 64]


def test_trials_unlike_the_simulations_are_flagged(nle):
    import warnings

    rng = np.random.default_rng(3)
    trials = noisy_identity(np.repeat(np.array([[0.3, 0.1]], np.float32), 100, axis=0), rng)
    with warnings.catch_warnings(record=True) as caught:  # (a short run may warn about its R-hat)
        warnings.simplefilter("always", RuntimeWarning)
        nle.sample(trials, num_samples=64, seed=0, chains=4, warmup=20)
    assert not [w for w in caught if "outside the simulations" in str(w.message)]
    assert np.mean(nle.check_observation(trials)["typical"]) > 0.95
    with pytest.warns(RuntimeWarning, match=r"100 of 100 trials of x_o lie outside the simulations"):
        nle.sample(trials + 6.0, num_samples=64, seed=0, chains=4, warmup=20)


def test_bad_input_gets_a_clear_early_error(nle, tmp_path):
    with pytest.raises(ValueError, match="NLE has not been fitted"):
        NLE(gaussian_prior()).sample(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"x_o must be one observation: its i.i.d. trials \[n_trials, 2\]"):
        nle.sample(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="num_samples"):
        nle.sample(np.zeros(2, np.float32), num_samples=0)
    with pytest.raises(ValueError, match="chains"):
        nle.sample(np.zeros(2, np.float32), chains=0)
    with pytest.raises(ValueError, match="non-finite"):
        nle.log_prob(np.zeros((1, 2), np.float32), np.array([np.nan, 0.0], np.float32))
    structured = tfd.JointDistributionNamed({"a": tfd.Normal(0.0, 1.0), "b": tfd.Normal(0.0, 1.0)})
    with pytest.raises(ValueError, match="one vector"):
        NLE(structured)
    nle.save(str(tmp_path / "nle"))
    with pytest.raises(ValueError, match="holds a NLE; load it with NLE.load"):
        NPE.load(str(tmp_path / "nle"))
    again = NLE.load(str(tmp_path / "nle"))
    theta = np.array([[0.2, 0.1]], np.float32)
    np.testing.assert_allclose(again.log_prob(theta, np.zeros(2, np.float32)),
                               nle.log_prob(theta, np.zeros(2, np.float32)), rtol=1e-6)
    assert tf.is_tensor(nle.flow.log_prob(np.zeros((1, 2), np.float32), theta))
