"""The Keras training side of every tfcflow model: ``compile``, ``fit``, ``train_step``, ``test_step``.

``FlowTrainer`` is a mixin placed before ``keras.Model`` (as Keras' own ``Model`` inherits its
``Trainer``); the density API lives in ``models/base.py`` and reaches training through three
hooks only:

    _training_losses(x, c, seed, rows) -> (objective [b], nll [b])   what a step minimizes / reports
    _validation_nll(x, c, rows)        -> nll [b]                    what ``evaluate`` reports
    _in_sub_batches(fn, *batch)        the model's execution (execution.py); fn(rows, *parts)

A training step (``train_step``), with R replicas of a global batch of B examples::

    seed   = [compile seed, optimizer step]          noise of (seed, step, example position) only
    loss   = sum(objective) / B                      tf.nn.compute_average_loss: the GLOBAL mean
    g      = sum over replicas of d loss / d theta   ONE flat all-reduce
    g      = g * min(1, clipnorm / |g|)              clipping the GLOBAL norm (Keras would clip
                                                     each replica's part)
    apply g / R per replica (the optimizer sums replicas again); skip if non-finite when asked

Bad data is named before or at the first step: ``fit`` on arrays checks them up front (which
input, which row); a NaN reaching a traced step raises ``ValueError`` naming the input and the
step instead of Keras' graph-execution trace.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _checks, _compat


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """The flow-specific options of ``compile`` (defaults = ``compile()`` with no arguments)."""

    clipnorm: Optional[float] = None
    skip_nonfinite: bool = False
    seed: int = 0
    xla_gradients: bool = False  # XLA on the per-replica loss-and-gradient function only


def _all_reduce_flat(ctx, grads: list) -> list:
    """Sums gradients over replicas as ONE flat tensor: a single collective per step. (Letting
    all_reduce pack a long list itself gave replicas differently ordered collective instances.)"""
    flat = tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)
    flat = ctx.all_reduce(tf.distribute.ReduceOp.SUM, flat)
    parts = tf.split(flat, [int(np.prod(g.shape)) for g in grads])
    return [tf.reshape(p, g.shape) for p, g in zip(parts, grads)]


def unpack(data):
    """A training batch -> ``(x, condition)``: a pair, or a dict with ``"x"`` and ``"condition"``."""
    if isinstance(data, dict):
        return data["x"], data.get("condition")
    if isinstance(data, (tuple, list)) and len(data) >= 2:
        return data[0], data[1]
    raise ValueError("training data must be (x, condition) pairs or {'x': ..., 'condition': ...}")


def nonfinite_in_batch(batch) -> Optional[tuple]:
    """``(input name, row)`` of the first NaN/inf in a dataset batch (``"x"`` before ``"condition"``),
    or None."""
    for name, value in zip(("x", "condition"), unpack(batch)):
        if value is None:
            continue
        value = tf.convert_to_tensor(value)
        if value.dtype.is_floating:
            row = _checks.first_nonfinite_row(value)
            if row >= 0:
                return name, row
    return None


def dataset_position(name: str, batch: int, row: int) -> str:
    """How a data error names a dataset position."""
    return f" (in {name}: batch {batch}, row {row} of the dataset, counted from 0)"


# how the message of a failed _checks.enforce appears in a graph's InvalidArgumentError
_ENFORCED = re.compile(r"assertion failed: \[(.*)\]")


class FlowTrainer(_compat.SkipSymbolicBuild):
    """Mixin of ``keras.Model`` subclasses that define the hooks above (see module docstring)."""

    def _init_trainer(self) -> None:
        self._training_options = TrainingOptions()
        self._loss_and_grads_fn = self._loss_and_grads
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._per_dim_tracker = keras.metrics.Mean(name=self.PER_DIM_METRIC)
        self._grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self._skipped_tracker = keras.metrics.Sum(name="skipped_steps")

    @property
    def training_options(self) -> TrainingOptions:
        return self._training_options

    def compile(self, optimizer="adam", *, clipnorm: Optional[float] = None, skip_nonfinite: bool = False,
                seed: int = 0, jit_compile: bool = False, **kwargs):
        """Keras ``compile`` plus the flow training options.

        Args:
          optimizer: any Keras optimizer or its name (``"adam"`` is Keras' Adam; tfcflow.optim's
            ``FusedAdam`` is the same update in one kernel per variable, faster on CPUs). Wrap it
            in ``keras.optimizers.LossScaleOptimizer`` for float16. Its own ``clipnorm`` /
            ``global_clipnorm`` must stay unset: under ``tf.distribute`` Keras clips each replica's
            partial gradient before summing them.
          clipnorm: clip the global norm of the GLOBAL gradient (after the cross-replica sum).
          skip_nonfinite: skip (do not apply) steps whose loss or gradient is NaN/inf, counting
            them in the ``skipped_steps`` metric, instead of letting them reach the weights.
          seed: seed of the training noise (dequantization, padding); the noise of step t is a
            function of (seed, t, example position in the global batch) only, so it is the same
            for any replica count, any number of sub-batches and after a resume.
          jit_compile: True compiles with XLA; with several replicas only the per-replica
            loss-and-gradient function is compiled (whole-step XLA fails under MirroredStrategy).
            Off unless asked for (Keras' "auto" would turn it on): on CPU it costs a slower first
            step and more memory for no speed (docs/benchmarks.md).
        """
        if isinstance(optimizer, keras.optimizers.Optimizer):
            inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
            if inner.clipnorm or inner.global_clipnorm or inner.clipvalue:
                raise ValueError("set clipping with model.compile(clipnorm=...), not on the optimizer: "
                                 "Keras clips per replica before the cross-replica gradient sum")
        if clipnorm is not None:
            clipnorm = _checks.check_positive(clipnorm, "clipnorm")
        xla_gradients = jit_compile is True and self.distribute_strategy.num_replicas_in_sync > 1
        self._training_options = TrainingOptions(clipnorm, bool(skip_nonfinite), int(seed), xla_gradients)
        self._loss_and_grads_fn = (tf.function(self._loss_and_grads, jit_compile=True)
                                   if xla_gradients else self._loss_and_grads)
        super().compile(optimizer=optimizer, jit_compile=False if xla_gradients else jit_compile, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            o = self._training_options
            config.update(clipnorm=o.clipnorm, skip_nonfinite=o.skip_nonfinite, seed=o.seed)
        return config

    def compile_from_config(self, config):
        self.compile(**_compat.deserialize_keras_config(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self._loss_tracker, self._per_dim_tracker, self._grad_norm_tracker, self._skipped_tracker]

    # ---- fit: data-dependent initialization and readable data errors -----------------------------
    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras ``fit``. First checks array data for NaN/inf (naming the input and row), then runs
        the data-dependent (ActNorm) initialization on the first batch, eagerly and inside the
        model's strategy scope, if it has not been done."""
        if not isinstance(x, tf.data.Dataset):
            self._check_arrays(x, y)
        if self.needs_initialization():
            xb, cb = self._first_batch(x, y, batch_size)
            with self.distribute_strategy.scope():
                self.initialize(xb, cb)
        try:
            return super().fit(x, y, batch_size=batch_size, **kwargs)
        except tf.errors.InvalidArgumentError as e:
            problem = _ENFORCED.search(e.message or "")
            if problem is None:
                raise
            where = ""
            if isinstance(x, tf.data.Dataset):
                where = self._locate_nonfinite(x, int(self.optimizer.iterations.numpy()) + 8)
            raise ValueError(f"training data: {problem.group(1).strip()}{where}; clean or filter the dataset") from None

    @staticmethod
    def _locate_nonfinite(dataset: tf.data.Dataset, limit: int) -> str:
        """`` (batch i, row j, counted from 0)`` of the first non-finite value in the first ``limit``
        batches, or "" (the step that failed runs ahead of the optimizer's counter)."""
        for i, batch in enumerate(dataset.take(limit)):
            found = nonfinite_in_batch(batch)
            if found is not None:
                return dataset_position(found[0], i, found[1])
        return ""

    @staticmethod
    def _check_arrays(x, y) -> None:
        if y is None and isinstance(x, (tuple, list)) and len(x) == 2:
            x, y = x
        elif y is None and isinstance(x, dict):
            x, y = x.get("x"), x.get("condition")
        for name, value in (("x", x), ("condition", y)):
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
                row = _checks.first_nonfinite_row(value)
                raise ValueError(f"training data: {name} contains NaN or inf values; first at row {row}")

    def _first_batch(self, x, y, batch_size):
        if isinstance(x, tf.data.Dataset):
            return unpack(next(iter(x)))
        if y is None:
            return unpack(x)
        n = max(int(batch_size or 32), 256)
        return x[:n], y[:n]

    # ---- the steps ---------------------------------------------------------------------------------
    def _training_noise(self, kind: str, shape, seed, rows) -> tf.Tensor:
        """Training noise of the block ``rows`` (``shape[0]`` examples: the local batch, or one
        sub-batch of it), drawn for the whole global batch and sliced by replica and sub-batch:
        the same draws whatever the number of replicas and sub-batches (models/rows.py)."""
        from tfcflow.models.rows import batch_noise
        ctx = tf.distribute.get_replica_context()
        rid = ctx.replica_id_in_sync_group if ctx is not None else 0
        return batch_noise(kind, shape, seed, rows, self.distribute_strategy.num_replicas_in_sync, rid)

    def _loss_and_grads(self, x, condition, seed):
        with tf.GradientTape() as tape:
            objective, nll = self._in_sub_batches(lambda rows, xi, ci: self._training_losses(xi, ci, seed, rows),
                                                  x, condition)
            # Average over the GLOBAL batch: correct gradients under tf.distribute.
            loss = tf.nn.compute_average_loss(objective)
            scaled = self.optimizer.scale_loss(loss)
        return objective, nll, loss, tape.gradient(scaled, self.trainable_variables)

    def _update_metrics(self, objective, nll, x, weight=None):
        if weight is not None:
            weight = tf.fill(tf.shape(objective), weight)
        self._loss_tracker.update_state(objective, sample_weight=weight)
        self._per_dim_tracker.update_state(self.per_dim(nll, x), sample_weight=weight)
        return {m.name: m.result() for m in (self._loss_tracker, self._per_dim_tracker)}

    def train_step(self, data):
        options = self._training_options
        x, condition = self._check_pair(*unpack(data))
        seed = tf.stack([tf.constant(options.seed, tf.int32), tf.cast(self.optimizer.iterations, tf.int32)])
        objective, nll, loss, grads = self._loss_and_grads_fn(x, condition, seed)
        replicas = self.distribute_strategy.num_replicas_in_sync
        ctx = tf.distribute.get_replica_context()
        if replicas > 1 and ctx is not None:
            grads = _all_reduce_flat(ctx, grads)  # the global gradient, on every replica
        scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        norm = tf.linalg.global_norm(grads)
        if options.clipnorm:
            limit = options.clipnorm * scale
            factor = limit / tf.maximum(norm, limit)
            grads = [g * factor for g in grads]
        if replicas > 1 and ctx is not None:
            # the optimizer sums over replicas again: hand each replica 1/R of the global gradient
            grads = [g / replicas for g in grads]
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
        if options.skip_nonfinite:
            tf.cond(finite, lambda: self.optimizer.apply(grads, self.trainable_variables), lambda: None)
            # a skipped step must not turn the epoch's averages into NaN
            keep = tf.cast(finite, tf.float32)
            objective = tf.where(finite, objective, tf.zeros_like(objective))
            nll = tf.where(finite, nll, tf.zeros_like(nll))
            self._grad_norm_tracker.update_state(tf.where(finite, norm / scale, 0.0), sample_weight=keep)
        else:
            self.optimizer.apply(grads, self.trainable_variables)
            keep = None
            self._grad_norm_tracker.update_state(norm / scale)
        self._skipped_tracker.update_state(1.0 - tf.cast(finite, tf.float32))
        logs = self._update_metrics(objective, nll, x, keep)
        logs.update(grad_norm=self._grad_norm_tracker.result(), skipped_steps=self._skipped_tracker.result())
        return _compat.logs_for_keras(self.distribute_strategy, logs)

    def test_step(self, data):
        x, condition = self._check_pair(*unpack(data))
        nll = self._in_sub_batches(self._validation_nll_of_rows, x, condition)
        return _compat.logs_for_keras(self.distribute_strategy, self._update_metrics(nll, nll, x))

    def _validation_nll_of_rows(self, rows, x, condition):
        return self._validation_nll(x, condition, rows)
