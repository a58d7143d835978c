"""A TFP distribution as the prior of a posterior estimator: checks, flat parameter vectors, the
support, and how the prior is kept on disk.

Parameters as the estimator sees them: one float32 vector ``theta`` ``[D]`` per draw. A prior with
a structured event (a ``tfd.JointDistribution*``, or an event of rank > 1) is flattened part by
part, in the order of ``tf.nest.flatten`` of its event shape, each part row-major
(``PriorSpace.flatten`` / ``unflatten``).

The support comes from TFP: ``prior.experimental_default_event_space_bijector()`` maps R^D onto
it. Where that bijector acts element by element (uniform, half-bounded, Gaussian priors and their
``Independent`` / joint combinations), the support is a box, read off the bijector at -inf and
+inf, and the estimator's flow is bounded to it (``ConditionalRealNVP(bounds=...)``). A prior
whose support is not a box (a simplex, a correlation matrix) is refused.

How a prior is kept (``prior_spec`` / ``prior_from_spec``): as JSON, its TFP class name and its
constructor's parameters (``Distribution.parameters``), nested distributions the same way, arrays
as lists with their dtype. That covers priors built from numbers and other distributions (every
``tfd.Independent(tfd.Uniform(...))``, ``tfd.MultivariateNormalDiag``, a
``tfd.JointDistributionNamed`` of such parts). A prior that holds Python functions (a
``JointDistributionSequential`` whose parts are lambdas) has no spec: its saves keep a fingerprint
only (draws and their log-densities), and loading takes the prior again and checks it against the
fingerprint. A job config names a prior by the same spec, or by a dotted path ``"pkg.mod:fn"`` to
a function that returns the distribution.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfcflow.bijectors.box_support import outside_support

tfd = tfp.distributions

#: draws of the prior kept in a save to check a prior given again at load time
FINGERPRINT_DRAWS = 8
FINGERPRINT_SEED = 20261207


class PriorSpace:
    """The flat parameter space of a TFP prior (module docstring).

    Args:
      prior: a ``tfd.Distribution`` with no batch shape, a floating dtype and a box support.

    Attributes:
      dim: D, the length of a flat parameter vector.
      bounds: ``[[lower, upper], ...]`` per flat dimension (None for an open side), or None when
        the prior's support is all of R^D.
    """

    def __init__(self, prior):
        check_prior(prior)
        self.prior = prior
        self._shapes = [tuple(int(d) for d in s) for s in tf.nest.flatten(prior.event_shape)]
        self._sizes = [int(np.prod(s)) for s in self._shapes]
        self._dtypes = [tf.as_dtype(d) for d in tf.nest.flatten(prior.dtype)]
        self.dim = int(sum(self._sizes))
        self.bounds = _box_of(prior, self._shapes)

    @property
    def structured(self) -> bool:
        """Whether a draw of the prior is more than one vector (a joint distribution, or rank > 1)."""
        return len(self._shapes) > 1 or len(self._shapes[0]) != 1

    def flatten(self, theta) -> np.ndarray:
        """A draw (or a batch ``[n, ...]`` of draws) in the prior's own structure -> ``[n, D]``
        float32. An array that is already ``[n, D]`` passes through."""
        parts = tf.nest.flatten(theta)
        if len(parts) == 1:
            a = np.asarray(parts[0], np.float32)
            if len(self._shapes) == 1 or (a.ndim == 2 and a.shape[1] == self.dim):
                return a.reshape(len(a), -1) if a.ndim >= 2 else a.reshape(-1, self.dim)
        if len(parts) != len(self._shapes):
            raise ValueError(f"theta has {len(parts)} parts; the prior's draws have {len(self._shapes)}")
        arrays = [np.asarray(p, np.float32) for p in parts]
        return np.concatenate([a.reshape(len(a), -1) for a in arrays], axis=1)

    def unflatten(self, theta: np.ndarray):
        """``[..., D]`` -> the prior's structure (each part ``[..., *part_shape]``)."""
        theta = np.asarray(theta)
        lead = theta.shape[:-1]
        parts, start = [], 0
        for shape, size in zip(self._shapes, self._sizes):
            parts.append(theta[..., start:start + size].reshape(lead + shape))
            start += size
        return tf.nest.pack_sequence_as(self.prior.dtype, parts) if len(parts) > 1 else parts[0]

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``[n, D]`` float32 draws of the prior, deterministic given ``seed``."""
        return self.flatten(self.prior.sample(n, seed=_seed_pair(seed)))

    def prior_function(self):
        """The prior as ``prior(n, rng) -> [n, D]`` (tfcflow.data.simulator's contract): draws seeded
        from ``rng``, so ``simulate`` and the training jobs draw from a TFP prior too."""
        def prior(n: int, rng: np.random.Generator) -> np.ndarray:
            return self.sample(n, int(rng.integers(0, 2 ** 31 - 1)))

        prior.__qualname__ = prior.__name__ = f"tfp_prior_{type(self.prior).__name__}"
        return prior

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """``[n]`` log-densities of flat ``[n, D]`` parameters under the prior (-inf outside)."""
        return np.asarray(self.prior.log_prob(self._structure(theta)), np.float64)

    def _structure(self, theta):
        parts = tf.nest.flatten(self.unflatten(np.asarray(theta, np.float32)))
        cast = [tf.constant(p, d) for p, d in zip(parts, self._dtypes)]
        return tf.nest.pack_sequence_as(self.prior.dtype, cast) if len(cast) > 1 else cast[0]

    def outside(self, theta: np.ndarray) -> np.ndarray:
        """``[n]`` bool: rows outside the prior's support (beyond the box, or of log-density -inf / NaN)."""
        theta = np.asarray(theta, np.float32)
        out = (np.array(outside_support(self.bounds, theta)) if self.bounds is not None
               else np.zeros(len(theta), bool))
        inside = ~out
        if inside.any():
            lp = self.log_prob(theta[inside])
            out[np.flatnonzero(inside)[~np.isfinite(lp)]] = True
        return out

    def fingerprint(self) -> dict:
        """Draws of the prior and their log-densities, fixed seed (kept in saves)."""
        theta = self.sample(FINGERPRINT_DRAWS, FINGERPRINT_SEED)
        return {"theta": theta.tolist(), "log_prob": self.log_prob(theta).tolist()}

    def check_fingerprint(self, fingerprint: dict) -> None:
        """Raises unless this prior gives the saved draws the saved log-densities."""
        theta = np.asarray(fingerprint["theta"], np.float32)
        if theta.shape[1] != self.dim:
            raise ValueError(f"the prior given has {self.dim} parameters; the saved estimator's has {theta.shape[1]}")
        lp, saved = self.log_prob(theta), np.asarray(fingerprint["log_prob"])
        if not np.allclose(lp, saved, rtol=1e-4, atol=1e-4):
            raise ValueError(f"the prior given is not the one the estimator was trained with: log-densities at the "
                             f"saved draws {np.round(lp, 4).tolist()} != saved {np.round(saved, 4).tolist()}")


def check_prior(prior) -> None:
    """Clear errors for what a prior must be: a TFP distribution with sample / log_prob, no batch
    shape, floating (continuous) parameters, and a default event-space bijector (its support)."""
    if not isinstance(prior, tfd.Distribution):
        raise ValueError(f"prior must be a TensorFlow Probability distribution (tfp.distributions), got "
                         f"{type(prior).__name__}; e.g. tfd.Independent(tfd.Uniform(low, high), 1) or "
                         f"tfd.MultivariateNormalDiag(loc, scale_diag)")
    batch = tf.nest.flatten(prior.batch_shape)
    if any(tf.TensorShape(b).rank is None or tf.TensorShape(b).num_elements() != 1 for b in batch):
        raise ValueError(f"prior must describe one parameter vector (batch shape []), its batch shape is "
                         f"{prior.batch_shape}: wrap per-parameter distributions in tfd.Independent(..., "
                         f"reinterpreted_batch_ndims=1)")
    for dtype in tf.nest.flatten(prior.dtype):
        if not tf.as_dtype(dtype).is_floating:
            raise ValueError(f"prior has discrete parameters (dtype {tf.as_dtype(dtype).name}): a flow models "
                             f"continuous parameters only; marginalize the discrete ones in the simulator, or "
                             f"condition on them")
    if any(tf.TensorShape(s).rank is None or not tf.TensorShape(s).is_fully_defined()
           for s in tf.nest.flatten(prior.event_shape)):
        raise ValueError(f"prior's event shape must be fully known, got {prior.event_shape}")
    try:
        bijector = prior.experimental_default_event_space_bijector()
    except Exception as e:  # NotImplementedError, or a bijector that fails to build
        raise ValueError(f"prior {type(prior).__name__}: its support is unknown (its default event-space bijector "
                         f"fails: {type(e).__name__}: {e})") from None
    if bijector is None or None in tf.nest.flatten(bijector):
        raise ValueError(f"prior {type(prior).__name__}: its support is unknown (TFP gives it no event-space "
                         f"bijector, as for discrete distributions): a flow models continuous parameters only")


def _box_of(prior, shapes) -> Optional[list]:
    """Per flat dimension ``[lower, upper]`` (None: open), the event-space bijector's images of
    -inf and +inf; None if the support is all of R^D."""
    bijector = prior.experimental_default_event_space_bijector()
    unconstrained = [tuple(tf.TensorShape(s)) for s in
                     tf.nest.flatten(bijector.inverse_event_shape(prior.event_shape))]
    if unconstrained != [tuple(s) for s in shapes]:
        raise ValueError(f"prior {type(prior).__name__}: a support that is not a box (its event-space bijector "
                         f"{type(bijector).__name__} maps {unconstrained} to {shapes}) is not supported")

    def image(value):
        fill = [tf.fill(s, tf.constant(value, d)) for s, d in zip(shapes, tf.nest.flatten(prior.dtype))]
        ends = bijector.forward(tf.nest.pack_sequence_as(prior.dtype, fill) if len(fill) > 1 else fill[0])
        return np.concatenate([np.asarray(e, np.float64).reshape(-1) for e in tf.nest.flatten(ends)])

    box = []
    for lo, hi in zip(image(-np.inf), image(np.inf)):
        if np.isnan(lo) or np.isnan(hi):
            raise ValueError(f"prior {type(prior).__name__}: its support could not be read as a box from its "
                             f"event-space bijector {type(bijector).__name__}")
        lo, hi = min(lo, hi), max(lo, hi)
        box.append([None if math.isinf(lo) else float(lo), None if math.isinf(hi) else float(hi)])
    return None if all(lo is None and hi is None for lo, hi in box) else box


def _seed_pair(seed: int) -> tf.Tensor:
    return tf.constant([int(seed) % (2 ** 31 - 1), 0], tf.int32)


# ---- JSON spec ---------------------------------------------------------------------------------------
def prior_spec(prior) -> Optional[dict]:
    """The JSON spec of ``prior`` (module docstring), or None if it holds something else than
    numbers, arrays, dtypes and distributions (e.g. Python functions)."""
    try:
        return _spec(prior)
    except _NoSpec:
        return None


class _NoSpec(Exception):
    pass


def _spec(value) -> Any:
    if isinstance(value, tfd.Distribution):
        cls = type(value)
        if getattr(tfd, cls.__name__, None) is not cls:
            raise _NoSpec(cls.__name__)
        return {"class": cls.__name__, "parameters": {k: _spec(v) for k, v in value.parameters.items()
                                                       if v is not None}}
    if isinstance(value, tf.DType):
        return {"dtype": value.name}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return {"array": list(value), "dtype": "float32"}
        return {"list": [_spec(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": {str(k): _spec(v) for k, v in value.items()}}
    if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray, np.generic)):
        a = np.asarray(value)
        return {"array": a.tolist(), "dtype": a.dtype.name}
    raise _NoSpec(type(value).__name__)


def prior_from_spec(spec) -> tfd.Distribution:
    """A prior from ``prior_spec``'s JSON, or from a dotted path ``"pkg.mod:fn"`` to a function
    that takes no argument and returns the distribution."""
    if isinstance(spec, str):
        from tfcflow.data.simulator import load_callable
        prior = load_callable(spec)()
        check_prior(prior)
        return prior
    if not (isinstance(spec, dict) and "class" in spec):
        raise ValueError(f"a prior spec is {{'class': <tfp.distributions class>, 'parameters': {{...}}}} or "
                         f"'pkg.module:function', got {spec!r}")
    prior = _build(spec)
    check_prior(prior)
    return prior


def _build(spec) -> Any:
    if isinstance(spec, dict):
        if "class" in spec:
            cls = getattr(tfd, str(spec["class"]), None)
            if not (isinstance(cls, type) and issubclass(cls, tfd.Distribution)):
                raise ValueError(f"prior spec: {spec['class']!r} is not a tfp.distributions class")
            return cls(**{k: _build(v) for k, v in spec.get("parameters", {}).items()})
        if "dtype" in spec and "array" not in spec:
            return tf.as_dtype(spec["dtype"])
        if "array" in spec:
            return np.asarray(spec["array"], spec.get("dtype", "float32"))
        if "list" in spec:
            return [_build(v) for v in spec["list"]]
        if "dict" in spec:
            return {k: _build(v) for k, v in spec["dict"].items()}
        raise ValueError(f"prior spec: cannot read {spec!r}")
    return spec
