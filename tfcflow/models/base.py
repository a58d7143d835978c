"""The density API shared by every tfcflow model.

A model is a Keras 3 ``Model`` of p(x | condition):

- ``log_prob(x, condition)`` -> ``[batch]`` log-density in nats;
- ``sample(condition, temperature=1.0, seed=None)`` -> one sample per condition row
  (``seed`` given -> deterministic, via stateless RNG);
- ``best_of_n(condition, n, temperature, seed)`` -> the sample of highest ``log_prob`` among n;
- ``distribution(condition)`` -> a ``tfd.Distribution`` view for TFP tooling (its event space
  is named in each model's docstring);
- ``initialize(x, condition)`` -> data-dependent (ActNorm) initialization, once, before training.

Around it, each an explicit choice: training (``compile`` / ``fit``, tfcflow/train_step.py) and CPU
execution (``model.execution``, tfcflow/execution.py). Neither is part of ``get_config``.

Subclass hooks (inputs already checked; ``x`` in the model's internal units):

    _log_prob(x, c) -> [b]                  _sample(c, temperature, seed, rows) -> x
    _data_init(x, c, force)                 distribution(c)
    _training_losses(x, c, seed, rows)      (train_step.py; default: the NLL)
    _validation_nll(x, c, rows)             (what ``evaluate`` reports; default: the NLL)

``rows`` (models/rows.py) says which rows of the call the hook evaluates: per-example noise is
drawn with ``rows.batch_noise`` for them, so seeded results do not depend on chunks, sub-batches
or replicas. Everything a traced call depends on arrives as an argument: a model holds no state
of the call in progress.
"""
from __future__ import annotations

import inspect
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _checks, _compat, _random, execution as execution_lib
from tfcflow.bijectors.actnorm import ActNormLayer
from tfcflow.bijectors.flow_chain import FlowSequence
from tfcflow.models import chunked_sampling
from tfcflow.models.rows import WHOLE, Rows
from tfcflow.train_step import FlowTrainer


#: the smallest batch ``initialize`` accepts (CAFlow initialized from 1-2 MNIST-like examples gave
#: held-out log-probs of -1e4 to -6e5 nats instead of about -1.3e3)
MIN_INIT_EXAMPLES = 4


class ConditionalFlowModel(FlowTrainer, keras.Model):
    """Base class (see module docstring). Subclasses build their layers in ``__init__`` (so the
    model is built and its variables exist as soon as it is constructed) and implement the hooks.

    Args:
      event_shape: shape of one x, without batch.
      condition_shape: shape of one condition, without batch.
      per_dim_metric: the name of the per-dimension metric, if not the class's ``PER_DIM_METRIC``
        (a model that reports another model's metric, as an ensemble its members'); the metric
        is created with the model, so it is named here, not set afterwards.
    """

    #: name of the per-dimension NLL metric reported by fit/evaluate
    PER_DIM_METRIC = "nats_per_dim"
    #: whether ``Execution(jit_sampling=True)`` applies (models whose flow pass XLA compiles)
    JIT_SAMPLING = False

    def __init__(self, event_shape: Sequence[int], condition_shape: Sequence[int],
                 *, per_dim_metric: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        if per_dim_metric is not None:
            self.PER_DIM_METRIC = per_dim_metric
        self._event_shape = tuple(int(d) for d in event_shape)
        # a None dim (e.g. the number of observations of a set given to a summary network) is any size
        self._condition_shape = tuple(None if d is None else int(d) for d in condition_shape)
        self._execution = execution_lib.Execution()
        self._init_trainer()

    # ---- shapes ----------------------------------------------------------------------------------
    @property
    def event_shape(self) -> tuple:
        return self._event_shape

    @property
    def condition_shape(self) -> tuple:
        return self._condition_shape

    @property
    def event_size(self) -> int:
        """Number of dimensions of x (the denominator of nats/dim)."""
        return int(np.prod(self._event_shape))

    # ---- execution (not config) --------------------------------------------------------------------
    @property
    def execution(self) -> execution_lib.Execution:
        """How this model's computations run (tfcflow/execution.py); default: plainly."""
        return self._execution

    @execution.setter
    def execution(self, value: execution_lib.Execution) -> None:
        if not isinstance(value, execution_lib.Execution):
            raise ValueError(f"execution must be a tfcflow.execution.Execution, got {value!r}")
        if value.jit_sampling and not self.JIT_SAMPLING:
            raise ValueError(f"Execution(jit_sampling=True) applies to vector flows (ConditionalRealNVP, "
                             f"RelaxedConditionFlow, and ensembles of them); {type(self).__name__} samples with "
                             f"the plain graph")
        self._execution = value
        for layer in _compat.all_layers(self):
            if isinstance(layer, FlowSequence):
                layer.fused_steps = value.fused_steps
        # Keras keeps its traced step functions: drop them (and ours) so the next call retraces
        self.train_function = self.test_function = self.predict_function = None
        self.__dict__.pop("_sample_many_graphs", None)

    def _in_sub_batches(self, fn, *batched, rows: Rows = WHOLE):
        """``fn(block_rows, *parts)`` over the batch ``batched`` (the block ``rows`` of its call) in
        ``execution.sub_batches`` sub-batches, each given its own rows (models/rows.py)."""
        return execution_lib.run_in_sub_batches(
            lambda span, *parts: fn(rows if span is None else rows.part(*span), *parts),
            self._execution.sub_batches, *batched, with_span=True)

    # ---- input checks ------------------------------------------------------------------------------
    def _check_x(self, x, name: str = "x") -> tf.Tensor:
        x = _checks.as_tensor(x, name)
        _checks.check_shape(x, name, (None,) + self._event_shape)
        return _checks.check_finite(x, name)

    def _missing_condition(self):
        return ValueError(f"condition is required: {type(self).__name__} models p(x | condition) with condition "
                          f"of shape {_checks.describe_shape((None,) + self._condition_shape)}")

    def _check_condition(self, condition) -> tf.Tensor:
        if condition is None:
            raise self._missing_condition()
        c = _checks.as_tensor(condition, "condition")
        _checks.check_shape(c, "condition", (None,) + self._condition_shape)
        return _checks.check_finite(c, "condition")

    def _check_pair(self, x, condition):
        x = self._check_x(x)
        c = self._check_condition(condition)
        return _checks.check_same_batch(x, "x", c, "condition"), c

    # ---- public API ------------------------------------------------------------------------------
    def log_prob(self, x, condition) -> tf.Tensor:
        """log p(x | condition) in nats. Shapes: x ``[batch, *event_shape]``, condition
        ``[batch, *condition_shape]`` -> ``[batch]``."""
        x, c = self._check_pair(x, condition)
        return self._in_sub_batches(lambda rows, xi, ci: self._log_prob(xi, ci), x, c)

    def sample(self, condition, temperature=1.0, seed=None, num_samples=None,
               batch_size: Optional[int] = None) -> tf.Tensor:
        """Samples of p(x | condition), latents drawn at ``temperature`` (0 = the mode path).

        Without ``num_samples``: one sample per condition row, ``[batch, *condition_shape]`` ->
        ``[batch, *event_shape]``. With ``num_samples=N`` (an int >= 1, or an int tensor checked
        in-graph): N samples per row, ``[batch, N, *event_shape]`` (e.g. N posterior draws per
        observation), computed ``batch_size`` rows at a time (default ``chunked_sampling.DEFAULT_SAMPLE_ROWS``) so
        memory stays bounded. Given a ``seed`` the draws are deterministic and do not depend on
        ``batch_size`` (up to float rounding): sample i of row b equals row ``b * N + i`` of a one-per-row call on the
        conditions repeated N times.
        """
        return self._sample_call(condition, temperature, seed, num_samples, batch_size, WHOLE)

    def _sample_call(self, condition, temperature, seed, num_samples, batch_size, rows: Rows) -> tf.Tensor:
        """``sample`` with the call's options in ``rows`` (an image model's requested size)."""
        c = self._check_condition(condition)
        temperature, seed = _checks.check_temperature(temperature), _random.seed_tensor(seed)
        if num_samples is None:
            return _checks.finite_samples(
                self._in_sub_batches(lambda r, ci: self._sample(ci, temperature, seed, r), c, rows=rows))
        return _checks.finite_samples(
            chunked_sampling.sample_many(self, c, num_samples, temperature, seed, batch_size, rows))

    def _flow_pass(self, fn, rows: Rows, *args):
        """``fn(*args)``: one pass of the flow over the block ``rows``, XLA-compiled when the block
        is a ``jit_sampling`` chunk (its tensors' shapes are then static), else inline."""
        if not rows.jit:
            return fn(*args)
        # a new function per trace of the chunk: it captures the tensors of this block's rows
        return tf.function(fn, jit_compile=True, autograph=False)(*args)

    def _sampling_features(self, condition):
        """What ``_sample_from_features`` is conditioned on, computed once per condition row."""
        return condition

    def _sample_from_features(self, features, temperature, seed, rows: Rows) -> tf.Tensor:
        return self._sample(features, temperature, seed, rows)

    def best_of_n(self, condition, n, temperature=1.0, seed=None, max_n: Optional[int] = None):
        """Draws ``n`` samples per condition row and keeps the one of highest log p(x | condition).

        ``n``: a Python int >= 1, or an int tensor checked in-graph (1 <= n <= ``max_n`` if given).
        Returns ``(samples [batch, *event_shape], log_prob [batch])``.
        """
        return self._best_of_n(condition, n, temperature, seed, max_n, WHOLE)

    def _best_of_n(self, condition, n, temperature, seed, max_n, rows: Rows):
        n = _checks.check_count(n, "n", max_n)
        c = self._check_condition(condition)
        batch = tf.shape(c)[0]
        tiled = tf.repeat(c, n, axis=0)  # row b*n + i is sample i of condition b
        temperature, seed = _checks.check_temperature(temperature), _random.seed_tensor(seed)
        x = _checks.finite_samples(
            self._in_sub_batches(lambda r, ci: self._sample(ci, temperature, seed, r), tiled, rows=rows))
        # samples are in the public data format; score them exactly as log_prob would
        lp = tf.reshape(self._in_sub_batches(lambda r, xi, ci: self._log_prob(xi, ci),
                                             self._check_x(x, "samples"), tiled), [batch, n])
        best = tf.argmax(lp, axis=1, output_type=tf.int32)
        picked = tf.range(batch) * n + best
        return tf.gather(x, picked), tf.reduce_max(lp, axis=1)

    def initialize(self, x, condition, force: bool = False) -> None:
        """Data-dependent initialization (every ActNorm) from one batch; eager, once.

        Call it before ``fit`` (inside ``strategy.scope()`` when distributing) with a
        representative batch of a few hundred examples. A no-op for already initialized layers
        unless ``force``.
        """
        x, c = self._check_pair(x, condition)
        n = int(tf.shape(x)[0])
        if n < MIN_INIT_EXAMPLES:
            raise ValueError(f"initialize needs at least {MIN_INIT_EXAMPLES} examples (a few hundred are best), "
                             f"got {n}: ActNorm's statistics of so few examples are not the data's, and the model "
                             f"would start far from any sensible density")
        self._data_init(x, c, force)

    def needs_initialization(self) -> bool:
        """True while some ActNorm has not been initialized from data."""
        return any(isinstance(layer, ActNormLayer) and not layer.is_initialized for layer in _compat.all_layers(self))

    def per_dim(self, nll: tf.Tensor, x: Optional[tf.Tensor] = None) -> tf.Tensor:
        """NLL (nats) of the examples ``x`` -> the per-dimension metric (nats/dim here; bits/dim
        for image models, whose dimension count is each image's)."""
        return nll / float(self.event_size)

    def call(self, inputs, training=None):
        """``model((x, condition))`` -> log p(x | condition)."""
        x, condition = inputs
        return self.log_prob(x, condition)

    # ---- subclass hooks --------------------------------------------------------------------------
    def _training_losses(self, x: tf.Tensor, condition: tf.Tensor, seed: tf.Tensor, rows: Rows = WHOLE):
        """Per-example ``(objective, nll)`` minimized by a training step with the step's noise
        ``seed`` (drawn for the batch's ``rows``: ``_training_noise``). The objective is the NLL
        here; models with training noise or extra terms override it."""
        nll = -self._log_prob(x, condition)
        return nll, nll

    def _validation_nll(self, x: tf.Tensor, condition: tf.Tensor, rows: Rows = WHOLE) -> tf.Tensor:
        """What ``evaluate`` reports, per example (checked inputs): ``-log p(x | c)`` here."""
        return -self._log_prob(x, condition)

    def _log_prob(self, x: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _sample(self, condition: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor, rows: Rows) -> tf.Tensor:
        raise NotImplementedError

    def _data_init(self, x: tf.Tensor, condition: tf.Tensor, force: bool) -> None:
        raise NotImplementedError

    def distribution(self, condition):
        raise NotImplementedError

    # ---- config: the model's constructor arguments, nothing about how it runs -------------------
    def _record_config(self, arguments: dict) -> None:
        """Subclasses call it first in ``__init__`` with ``locals()``: the constructor's named
        arguments become the config (tuples as lists, so it is what a JSON round trip gives)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p not in ("self", "kwargs")]
        self._config = {k: _json_value(arguments[k]) for k in names}

    def get_config(self):
        return {"name": self.name, **self._config}

    @classmethod
    def migrate_config(cls, config: dict) -> dict:
        """A config written by an earlier tfcflow, its renamed arguments given today's names
        (docs/architecture.md, "Configs written before"); the job config reads model sections
        through it too. Here: unchanged."""
        return config

    @classmethod
    def from_config(cls, config):
        return super().from_config(cls.migrate_config(dict(config)))


def _json_value(value):
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
