"""Neural likelihood estimation: ``NLE(prior).fit(theta, x)``, then ``sample(x_o)`` by MCMC.

The flow models the simulator, ``q(x | theta)`` (the flow's modelled variable is x, its condition
theta), trained like ``NPE``'s (the same default flow, choice among candidates, ensemble, held-out split
and early stopping; ``NPE`` is its base class). The posterior of an observation is then

    log p(theta | x_o) = sum_i log q(x_o,i | theta) + log p(theta) + const,

the sum over the observation's i.i.d. trials ``x_o`` ``[n_trials, *x_shape]``: a model trained
on single trials serves any number of them without retraining. ``log_prob`` is this sum, without
the constant: an *unnormalized* log-density.

Sampling (``sample``): TensorFlow Probability's No-U-Turn sampler with dual-averaging step-size
adaptation, ``chains`` chains in one vectorized graph, in the prior's unconstrained space (its
``experimental_default_event_space_bijector``: the chains never leave the support, and the
Jacobian of the map is part of the target). The graph is compiled once per flow and chain length
(XLA where ``execution.jit_sampling``, the default for the vector flows: 3.4x faster steps on
slcp's default flow), so later observations skip the compilation. The chains start at prior
draws, so on a multimodal posterior different chains can settle in different modes: each chain
is then right about its mode, the pooled draws weight the modes by how many chains found them
(more draws asked for, more chains: ``DRAWS_PER_CHAIN``), and the split R-hat is far above 1.
``sample`` warns when the R-hat of any parameter exceeds ``RHAT_WARNING`` (``strict=True`` raises
instead) and reports R-hat and the effective sample size with ``report=True``. Draws are
deterministic given ``seed``.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfcflow import _checks
from tfcflow.inference.npe import DEFAULT_SUPPORT, NPE

#: the split R-hat above which ``sample`` warns (Vehtari et al. 2021 suggest 1.01 for final
#: inferences; 1.1 is the classic threshold for "the chains disagree")
RHAT_WARNING = 1.1
#: ``sample``'s default chains: one per ``DRAWS_PER_CHAIN`` draws asked for, within
#: ``CHAIN_RANGE``. On a multimodal posterior the modes are weighted by the chains that found
#: them, so more draws get more chains (slcp's four equal modes: quadrant weights 0.17 from the
#: exact 1/4 in total variation with 16 chains, 0.11 with 64; docs/benchmarks/sbi.md "Likelihood
#: estimation"), and a few draws keep the cost of few chains
DRAWS_PER_CHAIN = 150
CHAIN_RANGE = (16, 64)
#: warm-up (adaptation) steps of every chain
DEFAULT_WARMUP = 400


def default_chains(num_samples: int) -> int:
    """``sample``'s chains for ``num_samples`` draws (``DRAWS_PER_CHAIN``, ``CHAIN_RANGE``)."""
    low, high = CHAIN_RANGE
    return int(min(high, max(low, num_samples // DRAWS_PER_CHAIN)))


class NLE(NPE):
    """Neural likelihood estimation with a conditional flow (module docstring).

    Args: as ``NPE``'s (``prior``, ``flow``, ``ensemble``, ``candidates``, ``dropout``, ``training``, ``seed``,
    ``execution``); the flow models x (``[n, M]`` vectors) given theta, so there is no
    summary network and no support to keep (the prior's support bounds theta, the condition).

    Shapes: ``fit(theta [n, D], x [n, M])``; ``sample(x_o [n_trials, M] or [M])`` ->
    ``[num_samples, D]``; ``log_prob(theta [k, D], x_o)`` -> ``[k]``. Unlike ``NPE``, the leading
    axis of ``x_o`` holds the i.i.d. trials of ONE observation, not a batch of observations.
    """

    def __init__(self, prior, flow=None, *, ensemble: Optional[int] = None, candidates=None, dropout=None,
                 training=None, seed: int = 0, execution=None):
        super().__init__(prior, flow, None, support=DEFAULT_SUPPORT, ensemble=ensemble, candidates=candidates,
                         dropout=dropout, training=training, seed=seed, execution=execution)
        if self.space.structured:
            raise ValueError("NLE samples in the prior's unconstrained space, of flat parameter vectors: give a "
                             "prior whose draws are one vector (event shape [D])")
        self._chain_runners = {}  # the compiled samplers (_chain_runner)

    @staticmethod
    def _roles(theta, x) -> tuple:
        return x, theta  # the flow models x given theta

    @staticmethod
    def _saved_arguments(record: dict) -> dict:
        return {}

    def flow_arguments(self, x_shape, candidate: Optional[dict] = None) -> dict:
        """The ``ConditionalRealNVP`` arguments of the default flow of x ``[M]`` given theta."""
        if len(x_shape) != 1:
            raise ValueError(f"NLE models vector observations [n, M]; got simulations of shape {list(x_shape)}")
        args = super().flow_arguments(x_shape, candidate)
        args.update(event_shape=int(x_shape[0]), condition_shape=self.space.dim, bounds=None, bounds_method="map")
        return args

    def _proposal(self, x_o: np.ndarray, n: int, seed: int) -> tuple:
        """A later round's parameters: draws of the current posterior (SNLE), with the sampler's
        report as the round's info."""
        draws, report = self.sample(x_o, n, seed, report=True)
        return draws, report

    def _check_round_observation(self, x_o: np.ndarray, x_shape: tuple) -> None:
        """``x_o`` must be one observation's trials ``[n_trials, M]`` (or one trial ``[M]``)."""
        self._trials(x_o, tuple(x_shape))

    # ---- the posterior ---------------------------------------------------------------------------
    def _trials(self, x_o, x_shape: Optional[tuple] = None) -> np.ndarray:
        """One observation as its trials ``[n_trials, M]`` (a single trial may come as ``[M]``);
        ``x_shape``: ``(M,)``, default the fitted one."""
        x_shape = self.x_shape if x_shape is None else x_shape
        x_o = np.asarray(x_o, np.float32)
        if x_o.shape == x_shape:
            x_o = x_o[None]
        if x_o.ndim != 2 or x_o.shape[1:] != x_shape or len(x_o) == 0:
            raise ValueError(f"x_o must be one observation: its i.i.d. trials [n_trials, {x_shape[0]}] (one "
                             f"trial: [{x_shape[0]}] or [1, {x_shape[0]}]), got shape {list(x_o.shape)}")
        if not np.isfinite(x_o).all():
            raise ValueError("x_o has non-finite values (NaN or inf)")
        return x_o

    def check_observation(self, x_o) -> dict:
        """How typical each trial of the observation ``x_o`` is of the training simulations:
        ``{"score": [n_trials], "threshold", "typical": [n_trials]}`` (typicality.py)."""
        self._fitted()
        if self.typicality is None:
            raise ValueError("this estimator was saved before it kept a typicality score: fit it again")
        return self.typicality.check(self._trials(x_o))

    def _warn_if_atypical_trials(self, trials: np.ndarray) -> None:
        """Warns when more trials lie beyond the threshold than chance explains: each simulated
        trial does with probability ``1 - quantile``, so k of n is suspicious when the binomial
        tail P(K >= k) is below 1e-3 (one trial beyond it, alone, is enough)."""
        if self.typicality is None:
            return
        from scipy.stats import binom
        report = self.typicality.check(trials)
        k, n = report["typical"].count(False), len(trials)
        if k and binom.sf(k - 1, n, 1.0 - self.typicality.quantile) <= 1e-3:
            warnings.warn(f"NLE: {k} of {n} trials of x_o lie outside the simulations it was trained on (typicality "
                          f"score above {report['threshold']:.1f}, the {self.typicality.quantile:.1%} quantile of "
                          f"held-out simulations): the simulator may not describe this data, and the posterior is an "
                          f"extrapolation", RuntimeWarning, stacklevel=3)

    def _log_likelihood(self, theta: tf.Tensor, trials: tf.Tensor) -> tf.Tensor:
        """``[k]`` sum over the trials of log q(x_i | theta_k): theta ``[k, D]``, trials ``[T, M]``."""
        k, t = tf.shape(theta)[0], tf.shape(trials)[0]
        # a sampler's trajectory can diverge to inf: such a state has likelihood 0 (log -inf), not
        # an error from the flow's input checks
        finite = tf.reduce_all(tf.math.is_finite(theta), axis=1)
        theta = tf.where(finite[:, None], theta, tf.zeros_like(theta))
        x = tf.tile(trials, [k, 1])
        c = tf.repeat(theta, t, axis=0)
        ll = tf.reduce_sum(tf.reshape(self.flow.log_prob(x, c), [k, t]), axis=1)
        return tf.where(finite & ~tf.math.is_nan(ll), ll, tf.constant(-np.inf, ll.dtype))

    def log_prob(self, theta, x_o) -> np.ndarray:
        """``[k]`` unnormalized log-posterior ``sum_i log q(x_o,i | theta) + log p(theta)`` of
        theta ``[k, D]`` given one observation's trials ``x_o`` (-inf outside the support)."""
        self._fitted()
        theta = self.space.flatten(theta)
        trials = self._trials(x_o)
        prior = self.space.log_prob(theta)
        inside = np.isfinite(prior)
        out = np.full(len(theta), -np.inf)
        if inside.any():
            like = self._log_likelihood(tf.constant(theta[inside]), tf.constant(trials)).numpy()
            out[inside] = like + prior[inside]
        return out

    def sample(self, x_o, num_samples: int = 1000, seed: Optional[int] = None, *, chains: Optional[int] = None,
               warmup: int = DEFAULT_WARMUP, strict: bool = False, report: bool = False):
        """Draws of the posterior given one observation's trials ``x_o`` (module docstring):
        ``[num_samples, D]``, pooled over ``chains`` chains (default: ``num_samples /
        DRAWS_PER_CHAIN`` within ``CHAIN_RANGE``) after ``warmup`` adaptation steps each.

        With ``report=True`` returns ``(draws, report)``: ``r_hat`` and ``ess`` ``[D]`` (split
        R-hat and the effective sample size over all chains), ``step_size`` (mean), ``chains``,
        ``draws_per_chain``. R-hat above ``RHAT_WARNING`` warns (``strict=True``: raises).
        """
        self._fitted()
        num_samples = _checks.check_count(num_samples, "num_samples")
        chains = default_chains(num_samples) if chains is None else _checks.check_positive_int(chains, "chains")
        warmup = _checks.check_positive_int(warmup, "warmup")
        trials = self._trials(x_o)
        self._warn_if_atypical_trials(trials)
        trials = tf.constant(trials)
        per_chain = math.ceil(num_samples / chains)
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1) if seed is None else int(seed)
        bijector = self.prior.experimental_default_event_space_bijector()
        start = bijector.inverse(tf.constant(self.space.sample(chains, seed)))
        draws, step_size = self._run_chains(trials, start, per_chain, warmup, seed)
        theta = bijector.forward(draws).numpy()  # [per_chain, chains, D]
        r_hat = tfp.mcmc.potential_scale_reduction(theta, split_chains=per_chain >= 4).numpy() \
            if chains > 1 and per_chain >= 2 else np.full(self.space.dim, np.nan)
        ess = tfp.mcmc.effective_sample_size(theta, cross_chain_dims=1 if chains > 1 else None).numpy()
        worst = float(np.nanmax(r_hat)) if np.isfinite(r_hat).any() else float("nan")
        if worst > RHAT_WARNING:
            message = (f"NLE.sample: split R-hat {worst:.3f} > {RHAT_WARNING}: the {chains} chains disagree (a "
                       f"multimodal posterior whose modes the chains found in different numbers, or too few warm-up "
                       f"steps: warmup={warmup}); the draws pool every chain")
            if strict:
                raise RuntimeError(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        out = theta.reshape(per_chain * chains, -1)[:num_samples]  # step-major: every chain in the first draws
        if not report:
            return out
        return out, {"r_hat": r_hat.tolist(), "ess": ess.tolist(), "step_size": float(step_size),
                     "chains": chains, "draws_per_chain": per_chain, "warmup": warmup}

    def _run_chains(self, trials, start, per_chain: int, warmup: int, seed: int):
        """``(draws [per_chain, chains, D] in the unconstrained space, mean adapted step size)``."""
        run = self._chain_runner(per_chain, warmup)
        draws, step_sizes = run(trials, start, tf.constant([seed % (2 ** 31 - 1), 20261207], tf.int32))
        return draws, float(tf.reduce_mean(step_sizes[-1]))

    def _chain_runner(self, per_chain: int, warmup: int):
        """The sampler as one compiled function of ``(trials, start, seed)``, built once per flow
        and chain length: tracing the NUTS graph of a default flow costs about a minute, which
        later calls (other observations, other seeds) skip. XLA-compiled where the estimator's
        ``execution`` asks for compiled sampling (``Execution.jit_sampling``)."""
        jit = bool(self.execution.jit_sampling)
        key = (id(self.flow), per_chain, warmup, jit)
        runners = self._chain_runners
        if key not in runners:
            runners.clear()  # another flow or length: the old graphs are not needed again
            prior, bijector = self.prior, self.prior.experimental_default_event_space_bijector()

            def run(trials, start, seed):
                def target(z):
                    theta = bijector.forward(z)
                    return (self._log_likelihood(theta, trials) + prior.log_prob(theta)
                            + bijector.forward_log_det_jacobian(z, event_ndims=1))

                kernel = tfp.mcmc.NoUTurnSampler(target, step_size=tf.fill([tf.shape(start)[0], 1], 0.1))
                kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(kernel, num_adaptation_steps=int(0.8 * warmup),
                                                                  target_accept_prob=0.8)
                return tfp.mcmc.sample_chain(per_chain, start, kernel=kernel, num_burnin_steps=warmup, seed=seed,
                                             trace_fn=lambda _, results: results.new_step_size)

            runners[key] = tf.function(run, autograph=False, jit_compile=jit)
        return runners[key]

    def diagnose(self, *, theta, x, num_samples: int = 200, seed: int = 0, **kwargs) -> dict:
        """Simulation-based calibration and coverage of the MCMC posteriors of held-out
        simulations (one trial each: ``theta`` ``[n, D]``, ``x`` ``[n, M]``): one chain run per
        simulation, so keep ``n`` and ``num_samples`` small. tfcflow.diagnostics.diagnose."""
        from tfcflow.diagnostics import diagnose
        self._fitted()
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1:] != self.x_shape:
            raise ValueError(f"x must be [n, {self.x_shape[0]}] (one trial per simulation), got {list(x.shape)}")
        estimator = self

        class _Posterior:  # what diagnose draws from: one MCMC run per observation
            @staticmethod
            def sample(condition, num_samples, seed=None):
                rows = np.asarray(condition, np.float32)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return np.stack([estimator.sample(row, num_samples, seed=(seed or 0) + i)
                                     for i, row in enumerate(rows)])

        res = diagnose(_Posterior(), x, self.space.flatten(theta), num_samples=num_samples, seed=seed, **kwargs)
        return {**res, "typicality": self._typicality_summary(x)}

    def __repr__(self) -> str:
        state = f"fitted on x {list(self.x_shape)}" if self.x_shape is not None else "not fitted"
        return f"NLE(D={self.space.dim}, {state})"
