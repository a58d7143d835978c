"""Sequential rounds (tfcflow/inference/sequential.py): TSNPE's truncated prior lies inside the
posterior's highest-density region, later rounds spend the budget near x_o, a simulator failing
in a later round keeps the finished rounds (in memory and through save / load) and the same call
resumes, SNLE draws its rounds from the MCMC posterior, and bad plans are refused."""
import numpy as np
import pytest
from tensorflow_probability import distributions as tfd

from tfcflow.inference import NLE, NPE, Training
from tfcflow.inference import sequential

NOISE = 0.15
X_O = np.array([0.8, -0.5], np.float32)
TRAINING = Training(epochs=40, batch_size=64, patience=5)


def box_prior():
    return tfd.Independent(tfd.Uniform(low=[-2.0, -2.0], high=[2.0, 2.0]), reinterpreted_batch_ndims=1)


def noisy_identity(theta, rng):
    return theta + NOISE * rng.standard_normal(theta.shape).astype(np.float32)


def estimator(cls=NPE, training=TRAINING):
    return cls(box_prior(), flow={"depth": 2, "width": 32}, ensemble=1, candidates=({},), training=training, seed=0)


@pytest.fixture(scope="module")
def two_rounds():
    npe = estimator()
    npe.fit(simulator=noisy_identity, num_simulations=1200, rounds=2, x_o=X_O, verbose=0)
    return npe


def test_rounds_split_the_budget_and_later_ones_simulate_near_x_o(two_rounds):
    state = two_rounds.round_state
    assert state.finished == state.trained == 2 and [len(t) for t in state.theta] == [600, 600]
    # round 1 is the one-round fit's draw from the prior (the same seed, the same simulations)
    first = estimator()._training_data(None, None, noisy_identity, 600)
    np.testing.assert_array_equal(state.theta[0], first[0])
    # round 2 lies in the posterior's high-density region: far closer to x_o than the prior's draws
    d1, d2 = (np.linalg.norm(t - X_O, axis=1).mean() for t in state.theta)
    assert d2 < 0.7 * d1, (d1, d2)  # (epsilon = 1e-4 keeps a generous region around a rough first posterior)
    assert two_rounds.round_info["acceptance"] < 0.5
    draws = two_rounds.sample(X_O, 2000, seed=1)
    # the posterior of x_o: near N(x_o, NOISE^2) (the box cuts nothing off: 8 sigma away)
    np.testing.assert_allclose(draws.mean(axis=0), X_O, atol=0.1)
    np.testing.assert_allclose(draws.std(axis=0), NOISE, rtol=0.35)


def test_truncated_prior_draws_lie_above_the_threshold_and_are_seeded(two_rounds):
    theta, info = sequential.truncated_prior_draws(two_rounds, X_O, 300, seed=5, threshold_draws=2000)
    assert theta.shape == (300, 2) and not two_rounds.space.outside(theta).any()
    assert (two_rounds.log_prob(theta, X_O) >= info["threshold"]).all()
    again, _ = sequential.truncated_prior_draws(two_rounds, X_O, 300, seed=5, threshold_draws=2000)
    np.testing.assert_array_equal(theta, again)
    # almost all of the posterior's own mass is inside the region
    inside = two_rounds.log_prob(two_rounds.sample(X_O, 2000, seed=9), X_O) >= info["threshold"]
    assert inside.mean() > 0.99


class FailingOnce:
    """A simulator that fails on its ``fail_on``-th call (once), counting calls."""

    def __init__(self, fail_on):
        self.calls, self.fail_on, self.failed = 0, fail_on, False

    def __call__(self, theta, rng):
        self.calls += 1
        if self.calls == self.fail_on and not self.failed:
            self.failed = True
            raise OSError("the cluster went away")
        return noisy_identity(theta, rng)


def test_a_failing_round_keeps_the_finished_ones_and_the_same_call_resumes(tmp_path, two_rounds):
    sim = FailingOnce(fail_on=2)  # round 2's only chunk
    npe = estimator(training=Training(epochs=3, batch_size=64))
    with pytest.raises(RuntimeError, match=r"sequential round 2 of 2 failed \(OSError: the cluster went away\); "
                                           r"rounds 1..1 are kept"):
        npe.fit(simulator=sim, num_simulations=1200, rounds=2, x_o=X_O, verbose=0)
    assert npe.round_state.finished == npe.round_state.trained == 1
    npe.save(str(tmp_path / "npe"))
    again = NPE.load(str(tmp_path / "npe"))
    assert again.round_state.finished == 1
    np.testing.assert_array_equal(again.round_state.theta[0], npe.round_state.theta[0])
    again.fit(simulator=sim, num_simulations=1200, rounds=2, x_o=X_O, verbose=0)
    assert sim.calls == 3 and again.round_state.trained == 2  # round 1 was not simulated again
    with pytest.raises(ValueError, match="make a new estimator for another plan"):
        again.fit(simulator=sim, num_simulations=1200, rounds=2, x_o=X_O + 1, verbose=0)


def test_bad_plans_are_refused_early():
    npe = estimator()
    with pytest.raises(ValueError, match="give x_o="):
        npe.fit(simulator=noisy_identity, num_simulations=100, rounds=2)
    with pytest.raises(ValueError, match="give simulator= and num_simulations="):
        npe.fit(np.zeros((10, 2)), np.zeros((10, 2)), rounds=2, x_o=X_O)
    with pytest.raises(ValueError, match="x_o= is for sequential rounds"):
        npe.fit(simulator=noisy_identity, num_simulations=100, x_o=X_O)
    with pytest.raises(ValueError, match="cannot be split into 3 rounds"):
        npe.fit(simulator=noisy_identity, num_simulations=2, rounds=3, x_o=X_O)
    with pytest.raises(ValueError, match="rounds must be"):
        npe.fit(simulator=noisy_identity, num_simulations=100, rounds=0, x_o=X_O)
    with pytest.raises(ValueError, match=r"x_o must be one observation of shape \[2\]"):
        npe.fit(simulator=noisy_identity, num_simulations=100, rounds=2, x_o=np.zeros(3))
    with pytest.raises(ValueError, match=r"x_o must be one observation: its i.i.d. trials \[n_trials, 2\]"):
        estimator(NLE).fit(simulator=noisy_identity, num_simulations=100, rounds=2, x_o=np.zeros((4, 3)))
    assert npe.flow is None  # nothing was trained on a refused plan


def test_snle_draws_later_rounds_from_the_mcmc_posterior():
    nle = estimator(NLE, Training(epochs=20, batch_size=64, patience=5))
    nle.fit(simulator=noisy_identity, num_simulations=1000, rounds=2, x_o=X_O[None], verbose=0)
    state = nle.round_state
    d1, d2 = (np.linalg.norm(t - X_O, axis=1).mean() for t in state.theta)
    assert d2 < 0.5 * d1, (d1, d2)
    assert "r_hat" in nle.round_info
