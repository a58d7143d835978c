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

    _log_prob(x, c) -> [b]            _sample(c, temperature, seed) -> x
    _data_init(x, c, force)           distribution(c)
    _training_losses(x, c, seed)      (train_step.py; default: the NLL)
    _validation_nll(x, c)             (what ``evaluate`` reports; default: the NLL)
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
from tfcflow.train_step import FlowTrainer


#: rows evaluated at a time by ``sample(num_samples=...)`` unless ``batch_size`` says otherwise
DEFAULT_SAMPLE_ROWS = 4096


def padded_rows(total: int, rows: int) -> int:
    """The static rows of every XLA-compiled chunk (``Execution(jit_sampling=True)``) of a call that
    samples ``total`` rows at most ``rows`` at a time: the chunks' common size rounded up to a size
    class, 2^k x (1, 1.25, 1.5 or 1.75). The classes bound how many shapes a model compiles (four
    per doubling, not one per ``num_samples``) and the padding to < 25% of the rows."""
    total, rows = max(1, int(total)), int(rows)
    size = -(-total // -(-total // rows))  # ceil(total / number of chunks)
    if size <= 4:
        return size
    step = 1 << (size.bit_length() - 3)  # a quarter of the largest power of two <= size
    return min(rows, -(-size // step) * step)


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
        self._sub_batch_rows = None  # (first row, batch size) of the sub-batch being traced, else None
        self._chunk_rows = None  # the same for the chunk of ``sample(num_samples=...)`` being evaluated
        self._redraw_rows = None  # (rows, candidates, block size) while some rows of a block are redrawn
        self._jit_sampling = False  # True while an XLA-compiled sample(num_samples=...) graph is traced
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
                             f"RelaxedConditionFlow); {type(self).__name__} samples with the plain graph")
        self._execution = value
        for layer in _compat.all_layers(self):
            if isinstance(layer, FlowSequence):
                layer.fused_steps = value.fused_steps
        # Keras keeps its traced step functions: drop them (and ours) so the next call retraces
        self.train_function = self.test_function = self.predict_function = None
        self.__dict__.pop("_sample_many_graphs", None)

    def _in_sub_batches(self, fn, *batched):
        """``fn(*batched)`` in ``execution.sub_batches`` sub-batches; while one is traced,
        ``_batch_noise`` knows which rows it holds."""
        def on_sub_batch(start, total):
            self._sub_batch_rows = self._rows_of(start, total)
        return execution_lib.run_in_sub_batches(fn, self._execution.sub_batches, *batched, on_sub_batch=on_sub_batch)

    def _rows_of(self, start, total):
        """While a chunk of rows [chunk start, ...) of a larger batch is evaluated (``sample`` with
        ``num_samples``), sub-batch rows are rows of that larger batch."""
        if start is None or self._chunk_rows is None:
            return None if start is None else (start, total)
        return (self._chunk_rows[0] + start, self._chunk_rows[1])

    def _batch_noise(self, kind: str, shape, seed, replicas: int = 1, replica=0) -> tf.Tensor:
        """Per-example noise (``"normal"`` / ``"uniform"``) of ``shape`` for the rows being
        evaluated (``shape[0]``: the batch, or the sub-batch of it being traced), drawn for the
        whole batch of all ``replicas`` and sliced to this replica's and sub-batch's rows: a seed
        gives the same numbers for any number of replicas and sub-batches.

        While ``_redraw_rows = (index, candidate, block)`` is set (rejection sampling redrawing some
        rows of a block of ``block`` rows), ``shape[0]`` is ``len(index)`` pairs: for each, row
        ``index`` of the block, its ``candidate``-th redraw (>= 1). Candidate t of row i is row
        ``t * R + i`` of the seed's stream, R the rows of the whole batch: past the first draw,
        and a row's redraws never depend on which other rows are redrawn with it."""
        draw = _random.normal if kind == "normal" else _random.uniform
        shape = tf.convert_to_tensor(shape)
        rows = self._sub_batch_rows if self._sub_batch_rows is not None else self._chunk_rows
        redraw = self._redraw_rows
        if rows is None and replicas == 1 and redraw is None:
            return draw(shape, seed)
        start, local = rows if rows is not None else (0, shape[0] if redraw is None else redraw[2])
        # this block's rows of the one draw for all replicas' rows, drawn from its first row on: the
        # rows before it are skipped, not drawn (a chunked sample(num_samples=N) stays linear in N)
        first = tf.cast(replica, tf.int64) * tf.cast(local, tf.int64) + tf.cast(start, tf.int64)
        width = tf.reduce_prod(tf.cast(shape[1:], tf.int64))
        if redraw is None:
            return draw(shape, seed, offset=first * width)
        index, candidate, _ = redraw
        row = tf.cast(candidate, tf.int64) * (replicas * tf.cast(local, tf.int64)) + first + tf.cast(index, tf.int64)
        return draw(shape, seed, offset=tf.reshape(row[:, None] * width + tf.range(width)[None], shape))

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
        return self._in_sub_batches(self._log_prob, x, c)

    def sample(self, condition, temperature=1.0, seed=None, num_samples=None,
               batch_size: Optional[int] = None) -> tf.Tensor:
        """Samples of p(x | condition), latents drawn at ``temperature`` (0 = the mode path).

        Without ``num_samples``: one sample per condition row, ``[batch, *condition_shape]`` ->
        ``[batch, *event_shape]``. With ``num_samples=N`` (an int >= 1, or an int tensor checked
        in-graph): N samples per row, ``[batch, N, *event_shape]`` (e.g. N posterior draws per
        observation), computed ``batch_size`` rows at a time (default ``DEFAULT_SAMPLE_ROWS``) so
        memory stays bounded. Given a ``seed`` the draws are deterministic and do not depend on
        ``batch_size`` (up to float rounding): sample i of row b equals row ``b * N + i`` of a one-per-row call on the
        conditions repeated N times.
        """
        c = self._check_condition(condition)
        temperature, seed = _checks.check_temperature(temperature), _random.seed_tensor(seed)
        if num_samples is None:
            return _checks.finite_samples(self._in_sub_batches(lambda ci: self._sample(ci, temperature, seed), c))
        n = _checks.check_count(num_samples, "num_samples")
        rows = DEFAULT_SAMPLE_ROWS if batch_size is None else _checks.check_positive_int(batch_size, "batch_size")
        if tf.executing_eagerly():
            # one traced graph for the chunk loop (op-by-op eager execution of a flow is several
            # times slower), retraced only for a new condition shape or batch_size; one graph per
            # `_sample_graph_key` (Python state a subclass reads while tracing)
            graphs = self.__dict__.get("_sample_many_graphs")
            if graphs is None:
                graphs = {}
                object.__setattr__(self, "_sample_many_graphs", graphs)  # not a Keras-tracked attribute
            fn = graphs.get(self._sample_graph_key())
            if fn is None:
                fn = graphs[self._sample_graph_key()] = tf.function(self._sample_many, reduce_retracing=True)
            jit = self._execution.jit_sampling
            if jit:  # static chunk shapes for the compiler, one per size class
                rows = padded_rows(int(c.shape[0]) * int(n), rows)
            return _checks.finite_samples(fn(c, tf.constant(n, tf.int32), temperature, seed, rows, jit))
        return _checks.finite_samples(self._sample_many(c, n, temperature, seed, rows))

    def _sample_many(self, c, n, temperature, seed, rows: int, jit: bool = False) -> tf.Tensor:
        """``[batch, n, *event_shape]``: n samples of each condition row, ``rows`` at a time
        (sample i of row b is row ``b * n + i`` of the chunks). The condition's features are
        computed once per row and repeated (a summary network runs once per observation, not once
        per sample). ``jit`` (``Execution(jit_sampling=True)``):
        every chunk has exactly ``rows`` rows (the last one padded by repeating the final row, its
        extra draws dropped) and the model's flow passes run XLA-compiled (``_flow_pass``)."""
        features = self._sampling_features(c)
        tiled = tf.nest.map_structure(lambda t: tf.repeat(t, n, axis=0), features)
        total = tf.shape(tf.nest.flatten(tiled)[0])[0]

        def chunk(start):
            size = tf.minimum(rows, total - start)
            if jit:
                index = tf.minimum(start + tf.range(rows), total - 1)
                part = tf.nest.map_structure(lambda t: tf.gather(t, index), tiled)
            else:
                part = tf.nest.map_structure(lambda t: t[start:start + size], tiled)
            self._chunk_rows, self._jit_sampling = (start, total), jit
            try:
                out = self._in_sub_batches(lambda *f: self._sample_from_features(
                    tf.nest.pack_sequence_as(part, f), temperature, seed), *tf.nest.flatten(part))
            finally:
                self._chunk_rows, self._jit_sampling = None, False
            return out[:size] if jit else out

        if tf.executing_eagerly():
            x = tf.concat([chunk(tf.constant(s)) for s in range(0, int(total), rows)] or
                          [chunk(tf.constant(0))], axis=0)
        else:
            # in a graph (a SavedModel signature): one chunk traced, run in a loop
            starts = tf.range(0, total, rows)
            out = tf.TensorArray(tf.float32, size=tf.size(starts), infer_shape=False,
                                 element_shape=tf.TensorShape([None] * (1 + len(self.event_shape))))
            i = tf.constant(0)
            _, out = tf.while_loop(lambda i, out: i < tf.size(starts),
                                   lambda i, out: (i + 1, out.write(i, chunk(starts[i]))), [i, out])
            x = out.concat()
        return tf.reshape(x, tf.concat([[tf.shape(c)[0], n], tf.shape(x)[1:]], 0))

    def _sample_graph_key(self):
        """Python state that changes what ``_sample_many`` traces (hashable; None: none)."""
        return None

    def _flow_pass(self, fn, *args):
        """``fn(*args)``: one pass of the flow over a block of rows (noise drawn inside by
        ``_batch_noise``), XLA-compiled while a ``jit_sampling`` chunk is traced (its tensors'
        shapes are then static), else inline."""
        if not self._jit_sampling:
            return fn(*args)
        # a new function per trace of the chunk: it reads the Python state set for this trace (the
        # chunk's rows, the redrawn rows) and captures the tensors it holds
        return tf.function(fn, jit_compile=True, autograph=False)(*args)

    def _sampling_features(self, condition):
        """What ``_sample_from_features`` is conditioned on, computed once per condition row."""
        return condition

    def _sample_from_features(self, features, temperature, seed) -> tf.Tensor:
        return self._sample(features, temperature, seed)

    def best_of_n(self, condition, n, temperature=1.0, seed=None, max_n: Optional[int] = None):
        """Draws ``n`` samples per condition row and keeps the one of highest log p(x | condition).

        ``n``: a Python int >= 1, or an int tensor checked in-graph (1 <= n <= ``max_n`` if given).
        Returns ``(samples [batch, *event_shape], log_prob [batch])``.
        """
        n = _checks.check_count(n, "n", max_n)
        c = self._check_condition(condition)
        batch = tf.shape(c)[0]
        tiled = tf.repeat(c, n, axis=0)  # row b*n + i is sample i of condition b
        temperature, seed = _checks.check_temperature(temperature), _random.seed_tensor(seed)
        x = _checks.finite_samples(self._in_sub_batches(lambda ci: self._sample(ci, temperature, seed), tiled))
        # samples are in the public data format; score them exactly as log_prob would
        lp = tf.reshape(self._in_sub_batches(self._log_prob, self._check_x(x, "samples"), tiled), [batch, n])
        best = tf.argmax(lp, axis=1, output_type=tf.int32)
        rows = tf.range(batch) * n + best
        return tf.gather(x, rows), tf.reduce_max(lp, axis=1)

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

    def per_dim(self, nll: tf.Tensor) -> tf.Tensor:
        """NLL (nats) -> the per-dimension metric (nats/dim here; bits/dim for image models)."""
        return nll / float(self.event_size)

    def call(self, inputs, training=None):
        """``model((x, condition))`` -> log p(x | condition)."""
        x, condition = inputs
        return self.log_prob(x, condition)

    # ---- subclass hooks --------------------------------------------------------------------------
    def _training_losses(self, x: tf.Tensor, condition: tf.Tensor, seed: tf.Tensor):
        """Per-example ``(objective, nll)`` minimized by a training step with the step's noise
        ``seed``. The objective is the NLL here; models with training noise or extra terms override it."""
        nll = -self._log_prob(x, condition)
        return nll, nll

    def _validation_nll(self, x: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        """What ``evaluate`` reports, per example (checked inputs): ``-log p(x | c)`` here."""
        return -self._log_prob(x, condition)

    def _log_prob(self, x: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _sample(self, condition: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
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


def _json_value(value):
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
