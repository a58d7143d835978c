"""Neural posterior estimation: ``NPE(prior).fit(theta, x)``, then ``sample(x_o)``.

Names. In the estimator, ``theta`` is the simulator's parameter and ``x`` its output (the
observation), as in sbi and sbibm. The flow underneath models ``p(theta | x)``: its modelled
variable (the flow models' ``x``) is theta, its condition is x. That is the one place the two
vocabularies meet::

    NPE.fit(theta, x)          ->  flow.fit(theta, x)              (flow x = theta, condition = x)
    NPE.sample(x_o)            ->  flow.sample(x_o[None], num_samples=N)
    NPE.log_prob(theta, x_o)   ->  flow.log_prob(theta, x_o)

What the estimator adds around a flow (each a part of the flow model, so the training jobs get the
same): the support of the prior (``PriorSpace.bounds``, given to the flow as ``bounds``: every draw
lies inside, and ``log_prob`` is a density on the support), the standardization of theta and x
(learned by ``fit``), an optional summary network, the held-out split with early stopping
(``tfcflow.holdout.fit_with_holdout``: best weights restored), the flow chosen on that split among
a few candidates (``DEFAULT_CANDIDATES``) and the seeds. The defaults (``DEFAULT_FLOW``,
``DEFAULT_CANDIDATES``, ``DEFAULT_ENSEMBLE``, ``Training()``) are one configuration for every task, chosen on held-out
simulations of the benchmark tasks, never on the scored observations (docs/benchmarks/sbi.md, "How the
defaults were chosen").
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from typing import Any, Callable, Optional, Union

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _checks
from tfcflow.execution import Execution
from tfcflow.inference.prior import PriorSpace, prior_from_spec, prior_spec
from tfcflow.inference.typicality import Typicality

#: the default flow: ``ConditionalRealNVP`` arguments (every one can be overridden by ``flow={...}``):
#: 6 blocks alternating affine and spline couplings (``coupling="hybrid"``: lower held-out NLL than
#: all-spline blocks on 4 of the 5 selection tasks, docs/benchmarks/sbi.md "How the defaults were chosen")
DEFAULT_FLOW = dict(coupling="hybrid", depth=6, width=128, network="mlp", mixing="lu")
#: the flows ``fit`` chooses from (``NPE(candidates=)``), each a refinement of ``DEFAULT_FLOW``:
#: member 0 is trained once per candidate on the same held-out split, the candidate with the lowest
#: held-out NLL is kept, and the other members are trained as it was. Dropout cut the held-out NLL
#: where the flows memorize the simulations (by 1.08 nats on slcp, 0.29 on bernoulli_glm) and raised
#: it where they do not (0.22 on two_moons, 0.28 on gaussian_mixture); all-affine couplings with
#: silu networks are better again on the near-Gaussian 10-D posteriors (0.35 nats on bernoulli_glm,
#: 0.12 on gaussian_linear) and far worse on the others: the held-out split tells the cases apart
#: (docs/benchmarks/sbi.md "How the defaults were chosen")
DEFAULT_CANDIDATES = (
    {"network": {"dropout": 0.0}},
    {"network": {"dropout": 0.1}},
    {"coupling": "affine", "network": {"activation": "silu", "dropout": 0.1}},
)
#: how the prior's support is kept: "truncate" (the flow truncated to the support, rejection
#: sampling; ``bounds_method="reject"``) or "map" (R^D mapped onto the support)
SUPPORTS = {"truncate": "reject", "map": "map"}
DEFAULT_SUPPORT = "truncate"
#: flows mixed by default (``NPE(ensemble=K)``): two, each trained on its own split (the mixture's
#: held-out NLL was 0.13 nats below its members' mean on gaussian_linear; docs/benchmarks/sbi.md)
DEFAULT_ENSEMBLE = 2
#: ``ConditionalRealNVP`` arguments that NPE sets itself (refused in a ``flow`` dict or a candidate)
SET_BY_NPE = ("event_shape", "condition_shape", "bounds", "bounds_method", "summary_network", "seed")
#: the save format's version (``estimator.json``)
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Training:
    """How ``fit`` trains: Adam at ``learning_rate`` with the global gradient norm clipped at
    ``clipnorm``, batches of ``batch_size``, a seeded ``validation_fraction`` held out, stopping
    after ``patience`` epochs without a better held-out NLL (best weights restored, at most
    ``epochs``), the learning rate halved after ``lr_patience`` such epochs (None: never)."""

    epochs: int = 500
    batch_size: int = 1024
    learning_rate: float = 2e-3
    clipnorm: Optional[float] = 5.0
    validation_fraction: float = 0.1
    patience: int = 20
    lr_patience: Optional[int] = 5

    def __post_init__(self):
        _checks.check_positive_int(self.epochs, "epochs")
        _checks.check_positive_int(self.batch_size, "batch_size")
        _checks.check_positive_int(self.patience, "patience")
        _checks.check_positive(self.learning_rate, "learning_rate")
        if self.clipnorm is not None:
            _checks.check_positive(self.clipnorm, "clipnorm")
        if self.lr_patience is not None:
            _checks.check_positive_int(self.lr_patience, "lr_patience")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1) (early stopping reads the held-out NLL), got "
                             f"{self.validation_fraction}")


class NPE:
    """Neural posterior estimation with a conditional flow (module docstring).

    Args:
      prior: a TFP distribution over the parameters (``tfd.Independent(tfd.Uniform(low, high), 1)``,
        ``tfd.MultivariateNormalDiag``, a ``tfd.JointDistribution*``; tfcflow/inference/prior.py).
      flow: None (the default flow, ``DEFAULT_FLOW``, sized when ``fit`` sees the data), a dict of
        ``ConditionalRealNVP`` arguments that replace the defaults' (e.g. ``{"depth": 8}``; a
        ``coupling`` or ``network`` dict without a ``kind`` refines the default's, e.g.
        ``{"network": {"dropout": 0.1}}``), or a vector flow model of your own (event ``[D]``,
        condition the observation's shape).
      summary_network: a Keras layer mapping an observation to the flow's condition vector, trained
        with the flow (tfcflow.networks.DeepSet for sets, TimeSeriesNetwork for series).
      support: ``"truncate"`` (default) or ``"map"``: how draws are kept in the prior's support
        (module ``SUPPORTS``).
      ensemble: K >= 2 trains K default flows (seeds ``seed .. seed + K - 1``) one after another,
        each with its own held-out split and early stopping, and mixes them with equal weights
        (``FlowEnsemble``: an exact density; a draw costs one member's flow); None (default):
        ``DEFAULT_ENSEMBLE`` (2) for the default flow, one flow with a summary network or a flow
        of your own; 1: one flow.
      candidates: the flows ``fit`` chooses from by held-out NLL, a sequence of dicts of
        ``ConditionalRealNVP`` arguments, each refining ``DEFAULT_FLOW`` (as a ``flow`` dict does;
        a ``flow`` dict is applied on top of every candidate, and candidates that become the same
        are trained once); None: ``DEFAULT_CANDIDATES`` (only the first with a summary network,
        which the candidates would share). Not for a flow of your own. After ``fit``,
        ``selection`` holds each candidate's held-out NLL and the chosen one.
      dropout: the default flow's dropout rate: a float sets it in every candidate; a sequence of
        rates makes the candidates the default flow at each rate. None: the candidates' own.
      training: a ``Training`` (default ``Training()``).
      seed: seeds the initial weights, the held-out split and the shuffling.
      execution: how sampling runs on this machine (tfcflow.execution); default XLA-compiled
        sampling passes where the flow allows them (the plain graph's draws, up to float
        rounding), else plain. Not part of any config.

    Shapes: theta ``[n, D]`` (or the prior's structure with a leading ``n``), x ``[n, *x_shape]``;
    ``sample`` of one observation ``x_shape`` -> ``[num_samples, D]``, of a batch
    ``[b, *x_shape]`` -> ``[b, num_samples, D]``.
    """

    def __init__(self, prior, flow: Union[None, dict, keras.Model] = None, summary_network=None, *,
                 support: str = DEFAULT_SUPPORT, ensemble: Optional[int] = None, candidates=None, dropout=None,
                 training: Optional[Training] = None, seed: int = 0, execution: Optional[Execution] = None):
        self.space = PriorSpace(prior)
        if support not in SUPPORTS:
            raise ValueError(f"support must be one of {sorted(SUPPORTS)}, got {support!r}")
        if flow is not None and not isinstance(flow, (dict, keras.Model)):
            raise ValueError(f"flow must be None, a dict of ConditionalRealNVP arguments or a tfcflow vector model, "
                             f"got {type(flow).__name__}")
        if isinstance(flow, dict):
            for key in SET_BY_NPE:
                if key in flow:
                    raise ValueError(f"flow={{{key!r}: ...}}: NPE sets {key} itself (from the prior, the data, "
                                     f"support=, summary_network= and seed=)")
        if isinstance(flow, keras.Model) and summary_network is not None:
            raise ValueError("summary_network is an argument of the flow NPE builds; a flow of your own carries "
                             "its own")
        if training is not None and not isinstance(training, Training):
            raise ValueError(f"training must be a tfcflow.inference.Training, got {type(training).__name__}")
        if ensemble is not None and ensemble != 1 and isinstance(flow, keras.Model):
            raise ValueError("ensemble= builds K default flows; a flow of your own is used as it is (make it a "
                             "tfcflow.models.FlowEnsemble yourself)")
        # a flow of your own is one model (a FlowEnsemble of yours included); with a summary network
        # the default is one flow (the members would each need their own network)
        default = 1 if (isinstance(flow, keras.Model) or summary_network is not None) else DEFAULT_ENSEMBLE
        self.ensemble = default if ensemble is None else _checks.check_positive_int(ensemble, "ensemble")
        if self.space.dim < 2:
            raise ValueError(f"NPE's coupling flows need at least 2 parameters, the prior has {self.space.dim}")
        self.prior = prior
        self.support = support
        self.candidates = self._candidates(candidates, dropout, flow)
        if summary_network is not None and len(self.candidates) > 1:
            if candidates is not None or dropout is not None:
                raise ValueError("several candidates (candidates= or dropout= rates) train one flow each; a "
                                 "summary_network would be shared (and trained) by all of them: give one")
            self.candidates = self.candidates[:1]  # as with the ensemble: one flow with a summary network
        self.selection: Optional[dict] = None
        #: the rounds of a sequential fit (sequential.py), None for an amortized one
        self.round_state = None
        self.round_info: Optional[dict] = None
        #: how typical an observation is of the training simulations (set by ``fit``)
        self.typicality: Optional[Typicality] = None
        self.training = training or Training()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self._execution = execution
        self._flow_arg = flow
        self._summary_network = summary_network
        self.flow = flow if isinstance(flow, keras.Model) else None
        self.x_shape: Optional[tuple] = None
        self.history = None

    @staticmethod
    def _candidates(candidates, dropout, flow) -> tuple:
        """The refinements of ``DEFAULT_FLOW`` that ``fit`` tries, the ``flow`` dict and ``dropout``
        applied to each, duplicates dropped (one: no choice); () for a flow of your own."""
        if isinstance(flow, keras.Model):
            for name, value in (("candidates", candidates), ("dropout", dropout)):
                if value is not None:
                    raise ValueError(f"{name}= refines the default flow; a flow of your own is used as it is")
            return ()
        network = flow.get("network") if isinstance(flow, dict) else None
        if dropout is not None and isinstance(network, dict) and "dropout" in network:
            raise ValueError("give the dropout either as dropout= or in flow={'network': {'dropout': ...}}, not both")
        if candidates is None:
            candidates = DEFAULT_CANDIDATES
            if dropout is not None and not isinstance(dropout, (int, float)):
                candidates = [{"network": {"dropout": r}} for r in _rates(dropout)]
        elif dropout is not None and not isinstance(dropout, (int, float)):
            raise ValueError("give the candidates either as candidates= or as dropout= rates, not both")
        if isinstance(candidates, dict) or not all(isinstance(c, dict) for c in candidates):
            raise ValueError(f"candidates must be a sequence of dicts of ConditionalRealNVP arguments, got "
                             f"{candidates!r}")
        one_rate = {"network": {"dropout": _rates([dropout])[0]}} if isinstance(dropout, (int, float)) else {}
        unique = []
        for candidate in candidates:
            for key in SET_BY_NPE:
                if key in candidate:
                    raise ValueError(f"candidates: NPE sets {key} itself")
            merged = _refine(_refine(_refine({}, candidate), flow if isinstance(flow, dict) else {}), one_rate)
            if merged not in unique:
                unique.append(merged)
        if not unique:
            raise ValueError("candidates= needs at least one flow")
        return tuple(unique)

    # ---- training --------------------------------------------------------------------------------
    def flow_arguments(self, x_shape, candidate: Optional[dict] = None) -> dict:
        """The ``ConditionalRealNVP`` arguments of the default flow for observations of ``x_shape``:
        ``DEFAULT_FLOW`` refined by ``candidate`` (default: the chosen one after ``fit``, else the
        first) or, with no candidates, by the ``flow`` dict."""
        if candidate is None:
            chosen = (self.selection or {}).get("chosen")
            candidate = self.candidates[chosen if isinstance(chosen, int) else 0] if self.candidates else (
                self._flow_arg if isinstance(self._flow_arg, dict) else {})
        args = _refine(dict(DEFAULT_FLOW), candidate)
        args.update(event_shape=self.space.dim, condition_shape=list(x_shape) if self._summary_network is not None
                    else int(np.prod(x_shape)), bounds=self.space.bounds,
                    bounds_method=SUPPORTS[self.support], seed=self.seed)
        return args

    @property
    def execution(self) -> Execution:
        """How sampling runs (not part of any config): the one given, else XLA-compiled passes where
        the flow allows them."""
        if self._execution is not None:
            return self._execution
        return Execution(jit_sampling=self.flow is None or bool(self.flow.JIT_SAMPLING))

    @staticmethod
    def _roles(theta, x) -> tuple:
        """``(what the flow models, its condition)`` of a simulation pair: theta given x here."""
        return theta, x

    def _new_flows(self, x_shape, candidate: dict) -> list:
        """The ``ensemble`` default flows refined by ``candidate`` (initializations ``seed + k``),
        their initial weights drawn in that order from ``seed``."""
        from tfcflow.models import ConditionalRealNVP
        if self._summary_network is None and len(x_shape) != 1:
            raise ValueError(f"observations of shape {list(x_shape)} need a summary_network (the default flow takes "
                             f"vectors [n, M])")
        if self.ensemble > 1 and self._summary_network is not None:
            raise ValueError("ensemble=K > 1 with a summary_network would share one network between the members; "
                             "train one flow, or build a FlowEnsemble of your own")
        args = self.flow_arguments(x_shape, candidate)
        keras.utils.set_random_seed(self.seed)  # the initial weights
        return [ConditionalRealNVP(summary_network=self._summary_network, **{**args, "seed": self.seed + k})
                for k in range(self.ensemble)]

    def _fit_default_flows(self, theta, x, args: dict):
        """Member 0 once per candidate (the same split; the initial weights drawn from ``seed``
        each time), the candidate of the lowest held-out NLL kept; members 1.. built as it is, each
        on its own split (seed + k: ``FlowEnsemble.fit_members(first=1)``). Returns member 0's
        history."""
        from tfcflow.holdout import fit_with_holdout
        from tfcflow.models import FlowEnsemble
        tried = []
        for candidate in self.candidates:
            members = self._new_flows(x.shape[1:], candidate)
            history, _ = fit_with_holdout(members[0], *self._roles(theta, x), seed=self.seed, **args)
            tried.append((min(history.history["val_loss"]), members, history))
        best = min(range(len(tried)), key=lambda i: (tried[i][0], i))  # a tie keeps the first candidate
        _, members, history = tried[best]
        self.selection = {"chosen": best, "flow": self.candidates[best],
                          "heldout_nll": [float(v) for v, _, _ in tried]}
        if self.ensemble == 1:
            self.flow = members[0]
            return history
        self.flow = FlowEnsemble(members)
        rest = self.flow.fit_members(*self._roles(theta, x), seed=self.seed, first=1, **args)
        history.history["members_epochs"] = [len(h.history["loss"]) for h in [history, *rest]]
        return history

    def fit(self, theta=None, x=None, *, simulator: Optional[Callable] = None, num_simulations: Optional[int] = None,
            rounds: int = 1, x_o=None, verbose="auto"):
        """Trains the posterior on simulations; returns the Keras ``History`` (of an ensemble:
        member 0's, with ``history["members_epochs"]``, every member's epoch count).

        Data, one of:
          - ``theta`` ``[n, D]`` (or the prior's structure) and ``x`` ``[n, *x_shape]`` arrays;
          - ``theta`` a ``tf.data.Dataset`` of ``(theta, x)`` pairs (batched or not), read once
            into memory (a simulation budget fits in memory);
          - ``simulator`` and ``num_simulations``: ``num_simulations`` draws of the prior, then
            ``simulator(theta, rng)`` (``theta`` float32 ``[n, D]``, ``rng`` a seeded
            ``numpy.random.Generator``; the contract of ``tfcflow.data.simulator``), seeded by ``seed``.

        Sequential rounds for ONE observation (tfcflow/inference/sequential.py): ``rounds=R`` with
        ``x_o=``, ``simulator=`` and ``num_simulations=`` (the budget of all rounds): round 1
        from the prior, later rounds near ``x_o`` (``NPE``: the prior truncated to the current
        posterior's highest-density region, TSNPE; ``NLE``: the current posterior, SNLE). The
        result is a posterior for ``x_o`` only. A simulator failing in a round raises an error
        naming it; the finished rounds are kept and the same call resumes.

        Under ``with strategy.scope():`` the flow is built and trained with that tf.distribute
        strategy, like any Keras model. Calling ``fit`` again continues from the trained weights.
        """
        from tfcflow.inference.sequential import check_plan
        if check_plan(rounds, x_o, simulator, num_simulations) > 1:
            return self._fit_rounds(simulator, num_simulations, rounds, x_o, verbose)
        theta, x = self._training_data(theta, x, simulator, num_simulations)
        return self._fit_arrays(theta, x, verbose)

    def _fit_arrays(self, theta: np.ndarray, x: np.ndarray, verbose):
        """Trains on checked simulation arrays (``fit``'s body)."""
        if self.flow is not None and self.x_shape is not None and tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(f"x has shape {list(x.shape[1:])} per simulation; this estimator was fitted on "
                             f"{list(self.x_shape)}")
        from tfcflow.holdout import fit_with_holdout
        t = self.training
        optimizer = keras.optimizers.Adam(t.learning_rate)
        compile_kwargs = {} if t.clipnorm is None else {"clipnorm": t.clipnorm}
        args = dict(epochs=t.epochs, batch_size=t.batch_size, validation_fraction=t.validation_fraction,
                    patience=t.patience, optimizer=optimizer, lr_patience=t.lr_patience, verbose=verbose,
                    **compile_kwargs)
        self._fit_typicality(x)
        if self.flow is None:
            self.history = self._fit_default_flows(theta, x, args)
            self.x_shape = tuple(int(d) for d in x.shape[1:])
            self.flow.execution = self.execution
            return self.history
        self.x_shape = tuple(int(d) for d in x.shape[1:])
        args["seed"] = self.seed
        if self.ensemble > 1 and hasattr(self.flow, "fit_members"):
            # one member after another, each with its own split and early stopping (seed + k)
            histories = self.flow.fit_members(*self._roles(theta, x), **args)
            self.history = histories[0]
            self.history.history["members_epochs"] = [len(h.history["loss"]) for h in histories]
        else:
            self.history, _ = fit_with_holdout(self.flow, *self._roles(theta, x), **args)
        self.flow.execution = self.execution
        return self.history

    def _fit_rounds(self, simulator, num_simulations: int, rounds: int, x_o, verbose):
        """``fit``'s sequential rounds (sequential.py): simulate round r, check it, keep it, train
        on every round so far; resumable at the first round not trained."""
        from tfcflow.data.simulator import simulate, simulate_at
        from tfcflow.inference.sequential import RoundState, round_seed
        x_o = np.asarray(x_o, np.float32)
        state = self.round_state
        if state is not None and not state.matches(x_o, rounds, num_simulations):
            raise ValueError(f"this estimator holds {state.finished} simulated round(s) of a sequential fit with "
                             f"another x_o, rounds or num_simulations ({state.rounds} rounds, {state.num_simulations} "
                             f"simulations): make a new estimator for another plan")
        if state is None:
            state = self.round_state = RoundState(x_o, rounds, num_simulations)
        sizes = state.sizes()
        while state.trained < rounds:
            r = state.trained
            if state.finished <= r:  # simulate round r (from the weights trained on rounds < r)
                try:
                    if r == 0:
                        theta, x = simulate(self.space.prior_function(), simulator, sizes[0], self.seed)
                    else:
                        proposal, self.round_info = self._proposal(x_o, sizes[r], round_seed(self.seed, r))
                        theta, x = simulate_at(proposal, simulator, round_seed(self.seed, r))
                except Exception as e:
                    raise RuntimeError(f"sequential round {r + 1} of {rounds} failed ({type(e).__name__}: "
                                       f"{_checks.first_line(e, 300)}); rounds 1..{r} are kept (simulations and "
                                       f"weights): call fit again to resume at round {r + 1}") from e
                theta, x = self._training_data(theta, x, None, None)
                if r == 0:
                    self._check_round_observation(x_o, x.shape[1:])
                state.theta.append(theta)
                state.x.append(x)
            # every round's fit sees all simulations so far, continuing from the weights
            self._fit_arrays(*state.data(r + 1), verbose)
            state.trained += 1
        return self.history

    def _proposal(self, x_o: np.ndarray, n: int, seed: int) -> tuple:
        """A later round's parameters: the prior truncated to the posterior's highest-density
        region (TSNPE); ``(theta [n, D], info)``."""
        from tfcflow.inference.sequential import truncated_prior_draws
        return truncated_prior_draws(self, x_o, n, seed)

    def _check_round_observation(self, x_o: np.ndarray, x_shape: tuple) -> None:
        """``x_o`` must be one observation of the simulations' shape."""
        if tuple(x_o.shape) != tuple(x_shape):
            raise ValueError(f"x_o must be one observation of shape {list(x_shape)} (the simulator's), got shape "
                             f"{list(x_o.shape)}")
        if not np.isfinite(x_o).all():
            raise ValueError("x_o has non-finite values (NaN or inf)")

    def _fit_typicality(self, x: np.ndarray) -> None:
        """The misspecification check (typicality.py): the training rows' observations, the
        threshold from the held-out rows of member 0's split (never trained on by member 0)."""
        from tfcflow.holdout import holdout_split
        train, held = holdout_split(len(x), self.training.validation_fraction, self.seed)
        self.typicality = Typicality.fit(x[train], x[held])

    def check_observation(self, x_o) -> dict:
        """How typical the observation(s) ``x_o`` are of the training simulations:
        ``{"score": [b], "threshold", "typical": [b]}`` (tfcflow/inference/typicality.py)."""
        self._fitted()
        x_o, _ = self._observations(x_o)
        if self.typicality is None:
            raise ValueError("this estimator was saved before it kept a typicality score: fit it again")
        return self.typicality.check(x_o)

    def _warn_if_atypical(self, x_o: np.ndarray) -> None:
        """A warning naming the rows of ``x_o`` ``[b, ...]`` beyond the typicality threshold."""
        if self.typicality is None:
            return
        report = self.typicality.check(x_o)
        bad = [i for i, ok in enumerate(report["typical"]) if not ok]
        if bad:
            scores = ", ".join(f"{report['score'][i]:.1f}" for i in bad[:5])
            warnings.warn(f"{type(self).__name__}: x_o {'row(s) ' + str(bad[:5]) + ' ' if len(x_o) > 1 else ''}lies "
                          f"outside the simulations it was trained on (typicality score {scores} > threshold "
                          f"{report['threshold']:.1f}, the {self.typicality.quantile:.1%} quantile of held-out "
                          f"simulations): the simulator may not describe this data, and the posterior is an "
                          f"extrapolation", RuntimeWarning, stacklevel=3)

    def _training_data(self, theta, x, simulator, num_simulations):
        if simulator is not None:
            if theta is not None or x is not None:
                raise ValueError("fit takes either (theta, x) or simulator= with num_simulations=, not both")
            if num_simulations is None:
                raise ValueError("fit(simulator=...) needs num_simulations=")
            from tfcflow.data.simulator import simulate
            n = _checks.check_positive_int(num_simulations, "num_simulations")
            theta, x = simulate(self.space.prior_function(), simulator, n, self.seed)
        elif num_simulations is not None:
            raise ValueError("num_simulations is for fit(simulator=...); with (theta, x) every row is used")
        elif isinstance(theta, tf.data.Dataset):
            if x is not None:
                raise ValueError("fit(dataset): the dataset holds (theta, x) pairs; give no x")
            theta, x = _read_pairs(theta)
        elif theta is None or x is None:
            raise ValueError("fit needs theta and x (or a tf.data.Dataset of (theta, x), or simulator= and "
                             "num_simulations=)")
        theta = self.space.flatten(theta)
        x = np.asarray(x, np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if len(theta) != len(x):
            raise ValueError(f"theta and x must have the same number of rows (one simulation each), got {len(theta)} "
                             f"and {len(x)}")
        if theta.shape[1] != self.space.dim:
            raise ValueError(f"theta has {theta.shape[1]} parameters per row; the prior has {self.space.dim}")
        for name, a in (("theta", theta), ("x", x)):
            bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))
            if len(bad):
                raise ValueError(f"{name} has non-finite values (NaN or inf) in {len(bad)} rows, e.g. rows "
                                 f"{bad[:5].tolist()}: drop those simulations (tfcflow.data.simulator.simulate("
                                 f"..., on_nonfinite='drop') does)")
        outside = np.flatnonzero(self.space.outside(theta))
        if len(outside):
            raise ValueError(f"{len(outside)} of {len(theta)} rows of theta lie outside the prior's support "
                             f"(e.g. rows {outside[:5].tolist()}: {theta[outside[0]].tolist()}): "
                             f"simulations must come from parameters the prior can draw")
        return theta, x

    # ---- the posterior -----------------------------------------------------------------------------
    def _fitted(self):
        if self.flow is None or self.x_shape is None:
            raise ValueError(f"this {type(self).__name__} has not been fitted: call fit(theta, x) (or "
                             f"fit(simulator=..., num_simulations=...)) first")
        return self.flow

    def _observations(self, x_o) -> tuple[np.ndarray, bool]:
        """``(x [b, *x_shape], single)``: one observation gets a batch axis."""
        x_o = np.asarray(x_o, np.float32)
        if x_o.shape == self.x_shape:
            x_o, single = x_o[None], True
        elif x_o.shape[1:] == self.x_shape and x_o.ndim == len(self.x_shape) + 1:
            single = False
        else:
            raise ValueError(f"x_o must be one observation of shape {list(self.x_shape)} or a batch "
                             f"[b, {', '.join(map(str, self.x_shape))}], got shape {list(x_o.shape)}")
        if not np.isfinite(x_o).all():
            raise ValueError("x_o has non-finite values (NaN or inf)")
        return x_o, single

    def sample(self, x_o, num_samples: int = 1000, seed: Optional[int] = None) -> np.ndarray:
        """Draws of the posterior p(theta | x_o): ``[num_samples, D]`` for one observation,
        ``[b, num_samples, D]`` for a batch; every draw inside the prior's support; deterministic
        given ``seed``. ``prior_space.unflatten`` gives the prior's structure back."""
        flow = self._fitted()
        num_samples = _checks.check_count(num_samples, "num_samples")
        x_o, single = self._observations(x_o)
        self._warn_if_atypical(x_o)
        draws = np.asarray(flow.sample(x_o, num_samples=num_samples, seed=seed))
        return draws[0] if single else draws

    def log_prob(self, theta, x_o) -> np.ndarray:
        """``[n]`` log p(theta | x_o) in nats (-inf outside the prior's support): theta ``[n, D]``,
        x_o one observation (for every row) or ``[n, *x_shape]``."""
        flow = self._fitted()
        theta = self.space.flatten(theta)
        x_o, single = self._observations(x_o)
        if single:
            x_o = np.repeat(x_o, len(theta), axis=0)
        return np.asarray(flow.log_prob(theta, x_o))

    def diagnose(self, *, theta, x, num_samples: int = 500, seed: int = 0, **kwargs) -> dict:
        """Simulation-based calibration and coverage on held-out simulations (``theta`` ``[n, D]``
        the true parameters, ``x`` ``[n, *x_shape]`` their simulations): tfcflow.diagnostics.diagnose,
        plus ``typicality``: the threshold and the rows of ``x`` beyond it (misspecification)."""
        from tfcflow.diagnostics import diagnose
        flow = self._fitted()
        x, _ = self._observations(x)
        res = diagnose(flow, x, self.space.flatten(theta), num_samples=num_samples, seed=seed, **kwargs)
        return {**res, "typicality": self._typicality_summary(x)}

    def _typicality_summary(self, x: np.ndarray) -> Optional[dict]:
        if self.typicality is None:
            return None
        report = self.typicality.check(x)
        return {"threshold": report["threshold"], "atypical_rows": [i for i, ok in enumerate(report["typical"])
                                                                     if not ok]}

    # ---- save, load, export ---------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Writes ``path/`` (a directory): ``estimator.json`` (prior spec or fingerprint, training,
        support, seed, observation shape) and ``flow.keras``. An existing ``path`` is replaced only
        once the new one is complete."""
        flow = self._fitted()
        spec = prior_spec(self.prior)
        record = {"format": FORMAT, "estimator": type(self).__name__, "prior": spec,
                  "prior_fingerprint": self.space.fingerprint(),
                  "support": self.support, "ensemble": self.ensemble, "candidates": list(self.candidates),
                  "selection": self.selection,
                  "rounds": None if self.round_state is None else self.round_state.to_record(),
                  "typicality": None if self.typicality is None else self.typicality.to_dict(),
                  "training": dataclasses.asdict(self.training), "seed": self.seed,
                  "x_shape": list(self.x_shape),
                  "execution": None if self._execution is None else dataclasses.asdict(self._execution)}
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".npe-", dir=parent)
        try:
            flow.save(os.path.join(tmp, "flow.keras"))
            if self.round_state is not None:  # the simulations of a sequential fit, to resume it
                np.savez(os.path.join(tmp, "rounds.npz"), **self.round_state.arrays())
            with open(os.path.join(tmp, "estimator.json"), "w") as f:
                json.dump(record, f, indent=2)
            old = None
            if os.path.exists(path):
                old = tempfile.mkdtemp(prefix=".npe-old-", dir=parent)
                os.replace(path, os.path.join(old, "previous"))
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str, prior=None) -> "NPE":
        """An estimator saved by ``save``. ``prior``: required when the prior had no JSON spec (it
        held Python functions); when given, it must give the saved draws their saved log-densities."""
        with open(os.path.join(path, "estimator.json")) as f:
            record = json.load(f)
        if record.get("format") != FORMAT:
            raise ValueError(f"{path}: estimator format {record.get('format')!r}, this tfcflow reads {FORMAT}")
        if record.get("estimator", "NPE") != cls.__name__:
            raise ValueError(f"{path} holds a {record['estimator']}; load it with {record['estimator']}.load")
        if prior is None:
            if record["prior"] is None:
                raise ValueError(f"{path}: its prior was not stored (it holds Python functions): pass it again, "
                                 f"NPE.load(path, prior=...)")
            prior = prior_from_spec(record["prior"])
        import tfcflow.models  # noqa: F401  (registers every flow class with Keras: a fresh process has none)
        flow = keras.models.load_model(os.path.join(path, "flow.keras"))
        execution = record.get("execution")
        npe = cls(prior, flow=flow, **cls._saved_arguments(record), training=Training(**record["training"]),
                  seed=record["seed"], execution=None if execution is None else Execution(**execution))
        npe.ensemble = int(record.get("ensemble", 1))  # how the saved flow was built
        npe.candidates, npe.selection = _saved_candidates(record), record.get("selection")
        npe.typicality = Typicality.from_dict(record.get("typicality"))
        if record.get("rounds") is not None:
            from tfcflow.inference.sequential import RoundState
            with np.load(os.path.join(path, "rounds.npz")) as arrays:
                npe.round_state = RoundState.from_saved(record["rounds"], arrays)
        npe.space.check_fingerprint(record["prior_fingerprint"])
        npe.x_shape = tuple(record["x_shape"])
        flow.execution = npe.execution
        return npe

    @staticmethod
    def _saved_arguments(record: dict) -> dict:
        """Constructor arguments of this estimator kind kept in ``estimator.json``."""
        return {"support": record["support"]}

    def export(self, export_dir: str, version: Optional[int] = None, model_name: str = "npe", **kwargs) -> str:
        """A SavedModel for TF Serving (tfcflow.export.save): ``sample_many`` (``condition`` = x_o
        ``[b, *x_shape]``, ``num_samples``, ``temperature`` = 1, ``seed``) serves ``sample``'s draws and
        ``log_prob`` (``x`` = theta, ``condition`` = x) its densities. Returns the version's path."""
        from tfcflow.export import save
        return save(self._fitted(), export_dir, version=version, model_name=model_name, **kwargs)

    def __repr__(self) -> str:
        state = f"fitted on x {list(self.x_shape)}" if self.x_shape is not None else "not fitted"
        return f"NPE(D={self.space.dim}, support={self.support!r}, {state})"


def _read_pairs(dataset: tf.data.Dataset) -> tuple[Any, np.ndarray]:
    """All ``(theta, x)`` of a finite dataset, batched or not, as arrays."""
    thetas, xs = [], []
    for element in dataset:
        if not (isinstance(element, (tuple, list)) and len(element) == 2):
            raise ValueError("fit(dataset): the dataset's elements must be (theta, x) pairs")
        thetas.append(np.asarray(element[0], np.float32))
        xs.append(np.asarray(element[1], np.float32))
    if not thetas:
        raise ValueError("fit(dataset): the dataset is empty")
    batched = thetas[0].ndim == 2
    join = np.concatenate if batched else np.stack
    return join(thetas), join(xs)


def _rates(rates) -> list:
    """Dropout rates, each checked to lie in [0, 1)."""
    try:
        rates = [_checks.check_fraction(r, "dropout") for r in rates]
    except TypeError:
        raise ValueError(f"dropout must be a rate in [0, 1) or a sequence of rates, got {rates!r}") from None
    if not rates:
        raise ValueError("dropout= needs at least one rate")
    return rates


def _refine(args: dict, refinement: dict) -> dict:
    """``args`` with ``refinement``'s entries: a ``coupling`` or ``network`` dict without a
    ``kind`` refines the one in ``args`` (a string is its kind); anything else replaces."""
    args = dict(args)
    for key, value in refinement.items():
        if key in ("coupling", "network") and isinstance(value, dict) and "kind" not in value:
            current = args.get(key, DEFAULT_FLOW[key])
            value = {**(current if isinstance(current, dict) else {"kind": current}), **value}
        args[key] = value
    return args


def _saved_candidates(record: dict) -> tuple:
    """The candidates of a saved estimator; one saved before them kept its dropout rates."""
    if "candidates" in record:
        return tuple(record["candidates"])
    return tuple({"network": {"dropout": r}} for r in record.get("dropout", ()))
