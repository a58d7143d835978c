"""Sequential rounds for one observation: ``fit(simulator=..., num_simulations=N, rounds=R, x_o=...)``.

The budget N is split into R near-equal rounds. Round 1 draws its parameters from the prior, as a
one-round fit does; every later round draws them near ``x_o`` and the estimator is trained on
all simulations so far (continuing from its weights):

- ``NLE`` (SNLE, Papamakarios et al. 2019): from the current posterior (``NLE.sample``, MCMC).
  A likelihood is learned correctly under any distribution of the parameters, so no correction
  is needed.
- ``NPE`` (TSNPE, Deistler et al. 2022): from the prior truncated to the current posterior's
  highest-density region, ``{theta: q(theta | x_o) >= t}`` with ``t`` the ``epsilon`` quantile
  (``TRUNCATION_EPSILON``) of ``log q`` over the posterior's own draws. Inside that region the
  proposal is proportional to the prior, so the usual NPE loss still learns the posterior there
  (the region holds all but ``epsilon`` of its mass) without the importance weights of SNPE-A/C.
  Draws come by rejection from the prior.

Resuming: the simulations of finished rounds are kept (``RoundState``, saved with the estimator).
A simulator that fails in round r raises an error naming the round; the estimator keeps rounds
1..r-1 (simulations and weights), and the same ``fit`` call again resumes at round r. Each
round's draws come from ``(seed, round)``: a resumed fit is the fit that was interrupted.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from tfcflow import _checks

#: TSNPE's truncation: the posterior draws' log-density quantile below which the prior is cut off
TRUNCATION_EPSILON = 1e-4
#: posterior draws that set the truncation threshold
THRESHOLD_DRAWS = 20000
#: prior draws tried per accepted draw, at most, before the truncation gives up
MAX_REJECTION = 10000


@dataclasses.dataclass
class RoundState:
    """The finished rounds of a sequential fit for the observation ``x_o``: their parameters and
    simulations (flattened ``[n_r, D]`` and ``[n_r, *x_shape]``), the plan (``rounds``,
    ``num_simulations``)."""

    x_o: np.ndarray
    rounds: int
    num_simulations: int
    theta: list = dataclasses.field(default_factory=list)
    x: list = dataclasses.field(default_factory=list)
    #: rounds whose fit is done (a round is simulated, kept, then trained on)
    trained: int = 0

    @property
    def finished(self) -> int:
        return len(self.theta)

    def sizes(self) -> list:
        """Simulations per round: ``num_simulations`` split into ``rounds`` near-equal parts."""
        base, extra = divmod(self.num_simulations, self.rounds)
        return [base + (r < extra) for r in range(self.rounds)]

    def matches(self, x_o: np.ndarray, rounds: int, num_simulations: int) -> bool:
        return (self.rounds == rounds and self.num_simulations == num_simulations and self.x_o.shape == x_o.shape
                and np.array_equal(self.x_o, x_o))

    def data(self, rounds: Optional[int] = None) -> tuple:
        """``(theta, x)`` of the first ``rounds`` rounds (default all simulated)."""
        rounds = self.finished if rounds is None else rounds
        return np.concatenate(self.theta[:rounds]), np.concatenate(self.x[:rounds])

    def to_record(self) -> dict:
        return {"x_o": self.x_o.tolist(), "rounds": self.rounds, "num_simulations": self.num_simulations,
                "finished": self.finished, "trained": self.trained}

    def arrays(self) -> dict:
        out = {}
        for r, (t, x) in enumerate(zip(self.theta, self.x)):
            out[f"theta_{r}"], out[f"x_{r}"] = t, x
        return out

    @classmethod
    def from_saved(cls, record: Optional[dict], arrays) -> Optional["RoundState"]:
        if record is None:
            return None
        state = cls(np.asarray(record["x_o"], np.float32), int(record["rounds"]), int(record["num_simulations"]))
        for r in range(int(record["finished"])):
            state.theta.append(np.asarray(arrays[f"theta_{r}"]))
            state.x.append(np.asarray(arrays[f"x_{r}"]))
        state.trained = int(record["trained"])
        return state


def round_seed(seed: int, r: int) -> int:
    """The seed of round ``r``'s draws and simulations (``r`` from 0)."""
    return int(np.random.SeedSequence([int(seed), 7919, int(r)]).generate_state(1)[0] >> 1)


def check_plan(rounds, x_o, simulator: Optional[Callable], num_simulations) -> int:
    """``rounds`` checked against the rest of a ``fit`` call."""
    rounds = _checks.check_positive_int(rounds, "rounds")
    if rounds > 1:
        if x_o is None:
            raise ValueError(f"rounds={rounds}: sequential rounds spend the budget near one observation: give x_o=")
        if simulator is None or num_simulations is None:
            raise ValueError(f"rounds={rounds}: later rounds simulate at new parameters: give simulator= and "
                             f"num_simulations= (the budget of all rounds together)")
        if num_simulations < rounds:
            raise ValueError(f"num_simulations={num_simulations} cannot be split into {rounds} rounds")
    elif x_o is not None:
        raise ValueError("x_o= is for sequential rounds (rounds > 1); a one-round fit is amortized over every x")
    return rounds


def truncated_prior_draws(npe, x_o: np.ndarray, n: int, seed: int, epsilon: float = TRUNCATION_EPSILON,
                          threshold_draws: int = THRESHOLD_DRAWS) -> tuple:
    """``(theta [n, D], info)``: draws of the prior inside the current posterior's
    ``1 - epsilon`` highest-density region (module docstring), by rejection; ``info`` holds the
    threshold and the acceptance rate."""
    rng = np.random.default_rng(seed)
    posterior = npe.sample(x_o, threshold_draws, seed=int(rng.integers(2 ** 31 - 1)))
    threshold = float(np.quantile(npe.log_prob(posterior, x_o), epsilon))
    prior = npe.space.prior_function()
    kept, tried, batch = [], 0, max(4 * n, 1000)
    while sum(len(k) for k in kept) < n:
        if tried >= MAX_REJECTION * n:
            raise RuntimeError(f"TSNPE: fewer than 1 in {MAX_REJECTION} prior draws fall in the posterior's "
                               f"highest-density region of x_o; the posterior is too narrow to sample by rejection "
                               f"from the prior (use NLE's rounds, or more simulations per round)")
        theta = prior(batch, rng)
        inside = npe.log_prob(theta, x_o) >= threshold
        kept.append(theta[inside])
        tried += batch
    accepted = sum(len(k) for k in kept)
    return np.concatenate(kept)[:n], {"threshold": threshold, "acceptance": accepted / tried}
