"""The API and training step shared by every tfcflow model.

A model is a Keras 3 ``Model`` of p(x | condition) with:

- ``log_prob(x, condition)`` -> ``[batch]`` log-density in nats;
- ``sample(condition, temperature=1.0, seed=None)`` -> one sample per condition row
  (``seed`` given -> deterministic, via stateless RNG);
- ``best_of_n(condition, n, temperature, seed)`` -> the sample of highest ``log_prob`` among n;
- ``distribution(condition)`` -> a ``tfd.Distribution`` view for TFP tooling;
- ``initialize(x, condition)`` -> data-dependent (ActNorm) initialization, once, before training;
- ``fit`` on ``(x, condition)`` batches with the negative log-likelihood as loss, reported also
  per dimension (``nats_per_dim``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _checks, _random, chains
from tfcflow.optim import FusedAdam


def seed_tensor(seed) -> tf.Tensor:
    """``None`` -> a fresh random seed; an int -> ``[seed, 0]``; a ``[2]`` int tensor as is."""
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=2**31 - 1, dtype=tf.int32)  # a fresh seed
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        return tf.stack([tf.cast(seed, tf.int32), 0])
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"seed must be an int or a [2] int tensor, got shape {seed.shape.as_list()}")
    return tf.cast(seed, tf.int32)


def check_temperature(temperature) -> tf.Tensor:
    """A float >= 0 (ValueError) or a tensor checked in-graph (InvalidArgumentError)."""
    if isinstance(temperature, (int, float, np.floating, np.integer)):
        if not np.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        return tf.constant(float(temperature), tf.float32)
    t = tf.cast(tf.convert_to_tensor(temperature), tf.float32)
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(t) & (t >= 0))):
            raise ValueError(f"temperature must be >= 0, got {t.numpy()!r}")
        return t
    with tf.control_dependencies([tf.debugging.assert_non_negative(
            t, message="temperature must be >= 0")]):
        return tf.identity(t)


def _finite_samples(x: tf.Tensor) -> tf.Tensor:
    """Samples never leave as NaN/inf silently: ValueError eagerly, InvalidArgumentError in graphs."""
    msg = ("sampling produced NaN or inf: the generative direction overflowed (an untrained or diverged "
           "model, or too high a temperature)")
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError(msg)
        return x
    return tf.debugging.assert_all_finite(x, msg)


def _all_reduce_flat(ctx, grads: list) -> list:
    """Sums gradients over replicas as ONE flat tensor: a single collective per step. (Letting
    all_reduce pack a long list itself gave replicas differently ordered collective instances.)"""
    flat = tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)
    flat = ctx.all_reduce(tf.distribute.ReduceOp.SUM, flat)
    parts = tf.split(flat, [int(np.prod(g.shape)) for g in grads])
    return [tf.reshape(p, g.shape) for p, g in zip(parts, grads)]


def check_n(n, max_n: Optional[int] = None):
    """``n`` of best-of-n: an int (ValueError) or a scalar int tensor (InvalidArgumentError in graphs)."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        _checks.check_positive_int(n, "n")
        if max_n is not None and n > max_n:
            raise ValueError(f"n must be <= {max_n}, got {n}")
        return int(n)
    if isinstance(n, (bool, float)) or n is None:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    t = tf.cast(tf.convert_to_tensor(n), tf.int32)
    if tf.executing_eagerly():
        return check_n(int(t), max_n)
    checks = [tf.debugging.assert_greater_equal(t, 1, message="n must be >= 1")]
    if max_n is not None:
        checks.append(tf.debugging.assert_less_equal(t, max_n, message=f"n must be <= {max_n}"))
    with tf.control_dependencies(checks):
        return tf.identity(t)


class ConditionalFlowModel(keras.Model):
    """Base class (see module docstring). Subclasses build their layers in ``__init__`` (so the
    model is built and its variables exist as soon as it is constructed) and implement
    ``_log_prob``, ``_sample``, ``_data_init`` and ``distribution``.

    Args:
      event_shape: shape of one x, without batch.
      condition_shape: shape of one condition, without batch.
      parallel_chains: evaluate every batch as this many independent sub-batches (``log_prob``,
        ``sample``, ``best_of_n``, training and evaluation steps); with
        ``tfcflow.chains.configure_cpu_threads(n)`` they run side by side, one per CPU core
        (tfcflow/chains.py). Same results up to float rounding; same seeded samples.
    """

    def __init__(self, event_shape: Sequence[int], condition_shape: Sequence[int], parallel_chains: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        self._event_shape = tuple(int(d) for d in event_shape)
        self._condition_shape = tuple(int(d) for d in condition_shape)
        self._parallel_chains = chains.check_chains(parallel_chains)
        self._chain_rows = None  # (first row, batch size) of the chain being traced, else None
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._per_dim_tracker = keras.metrics.Mean(name=self.PER_DIM_METRIC)
        self._grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self._skipped_tracker = keras.metrics.Sum(name="skipped_steps")

    #: name of the per-dimension NLL metric reported by fit/evaluate
    PER_DIM_METRIC = "nats_per_dim"

    # ---- shapes and validation -------------------------------------------------------------------
    @property
    def event_shape(self) -> tuple:
        return self._event_shape

    @property
    def condition_shape(self) -> tuple:
        return self._condition_shape

    @property
    def parallel_chains(self) -> int:
        """Independent sub-batches per evaluation (see ``__init__``)."""
        return self._parallel_chains

    @parallel_chains.setter
    def parallel_chains(self, n: int) -> None:
        self._parallel_chains = chains.check_chains(n)
        # Keras keeps its traced step functions: drop them so the next fit/evaluate retraces
        self.train_function = self.test_function = self.predict_function = None

    def _in_chains(self, fn, *batched):
        """``fn(*batched)`` over ``parallel_chains`` sub-batches (``chains.run_in_chains``); while a
        chain is traced, ``_batch_noise`` / ``_training_noise`` know which rows it holds."""
        def on_chain(start, total):
            self._chain_rows = None if start is None else (start, total)
        return chains.run_in_chains(fn, self._parallel_chains, *batched, on_chain=on_chain)

    def _batch_noise(self, kind: str, shape, seed, replicas: int = 1, replica=0) -> tf.Tensor:
        """Per-example noise (``"normal"`` / ``"uniform"``) of ``shape`` for the rows being
        evaluated (``shape[0]``: the batch, or the chain of it being traced), drawn for the whole
        batch of all ``replicas`` and sliced to this replica's and chain's rows: a seed gives the
        same numbers for any number of replicas and ``parallel_chains``."""
        draw = _random.normal if kind == "normal" else _random.uniform
        shape = tf.convert_to_tensor(shape)
        if self._chain_rows is None and replicas == 1:
            return draw(shape, seed)
        start, local = self._chain_rows if self._chain_rows is not None else (0, shape[0])
        full = draw(tf.concat([[local * replicas], shape[1:]], 0), seed)
        start = tf.cast(replica, tf.int32) * local + start
        return full[start:start + shape[0]]

    @property
    def event_size(self) -> int:
        """Number of dimensions of x (the denominator of nats/dim)."""
        return int(np.prod(self._event_shape))

    def _check_x(self, x, name: str = "x") -> tf.Tensor:
        x = _checks.as_tensor(x, name)
        _checks.check_shape(x, name, (None,) + self._event_shape)
        return _checks.check_finite(x, name)

    def _check_condition(self, condition) -> tf.Tensor:
        if condition is None:
            raise ValueError(f"condition is required: {type(self).__name__} models p(x | condition) "
                             f"with condition of shape {_checks.describe_shape((None,) + self._condition_shape)}")
        c = _checks.as_tensor(condition, "condition")
        _checks.check_shape(c, "condition", (None,) + self._condition_shape)
        return _checks.check_finite(c, "condition")

    def _check_pair(self, x, condition):
        x = self._check_x(x)
        c = self._check_condition(condition)
        deps = _checks.check_same_batch(x, "x", c, "condition")
        if deps:
            with tf.control_dependencies(deps):
                x = tf.identity(x)
        return x, c

    # ---- public API ------------------------------------------------------------------------------
    def log_prob(self, x, condition) -> tf.Tensor:
        """log p(x | condition) in nats. Shapes: x ``[batch, *event_shape]``, condition
        ``[batch, *condition_shape]`` -> ``[batch]``."""
        x, c = self._check_pair(x, condition)
        return self._in_chains(self._log_prob, x, c)

    def sample(self, condition, temperature=1.0, seed=None) -> tf.Tensor:
        """One sample per condition row, latents drawn at ``temperature`` (0 = the mode path).
        Shapes: condition ``[batch, *condition_shape]`` -> ``[batch, *event_shape]``."""
        c = self._check_condition(condition)
        temperature, seed = check_temperature(temperature), seed_tensor(seed)
        return _finite_samples(self._in_chains(lambda ci: self._sample(ci, temperature, seed), c))

    def best_of_n(self, condition, n, temperature=1.0, seed=None, max_n: Optional[int] = None):
        """Draws ``n`` samples per condition row and keeps the one of highest log p(x | condition).

        ``n``: a Python int >= 1, or an int tensor checked in-graph (1 <= n <= ``max_n`` if given).
        Returns ``(samples [batch, *event_shape], log_prob [batch])``.
        """
        n = check_n(n, max_n)
        c = self._check_condition(condition)
        batch = tf.shape(c)[0]
        tiled = tf.repeat(c, n, axis=0)  # row b*n + i is sample i of condition b
        temperature, seed = check_temperature(temperature), seed_tensor(seed)
        x = _finite_samples(self._in_chains(lambda ci: self._sample(ci, temperature, seed), tiled))
        # samples are in the public data format; score them exactly as log_prob would
        lp = tf.reshape(self._in_chains(self._log_prob, self._check_x(x, "samples"), tiled), [batch, n])
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
        self._data_init(x, c, force)

    def per_dim(self, nll: tf.Tensor) -> tf.Tensor:
        """NLL (nats) -> the per-dimension metric (nats/dim here; bits/dim for image models)."""
        return nll / float(self.event_size)

    # ---- Keras -----------------------------------------------------------------------------------
    def call(self, inputs, training=None):
        """``model((x, condition))`` -> log p(x | condition)."""
        x, condition = inputs
        return self.log_prob(x, condition)

    def compile(self, optimizer="adam", *, clipnorm: Optional[float] = None, skip_nonfinite: bool = False,
                seed: int = 0, jit_compile: bool = False, **kwargs):
        """Keras ``compile`` plus the flow training options.

        Args:
          optimizer: any Keras optimizer ("adam": tfcflow's ``FusedAdam`` with Keras' defaults;
            wrap it in ``keras.optimizers.LossScaleOptimizer`` for float16); its own
            ``clipnorm`` / ``global_clipnorm`` must stay unset: under
            ``tf.distribute`` Keras clips each replica's partial gradient before summing them.
          clipnorm: clip the global norm of the GLOBAL gradient (after the cross-replica sum).
          skip_nonfinite: skip (do not apply) steps whose loss or gradient is NaN/inf, counting
            them in the ``skipped_steps`` metric, instead of letting them reach the weights.
          seed: seed of the training noise (dequantization, padding); the noise of step t is a
            function of (seed, t, example position in the global batch) only, so it is the same
            for any replica count and after a resume.
          jit_compile: True compiles with XLA; with several replicas only the per-replica
            loss-and-gradient function is compiled (whole-step XLA fails under MirroredStrategy).
            Off unless asked for (Keras' "auto" would turn it on): on CPU it costs a slower first
            step and more memory for no speed (docs/benchmarks.md).
        """
        if isinstance(optimizer, str) and optimizer.lower() == "adam":
            optimizer = FusedAdam()
        if isinstance(optimizer, keras.optimizers.Optimizer):
            inner = getattr(optimizer, "inner_optimizer", optimizer)
            if inner.clipnorm or inner.global_clipnorm or inner.clipvalue:
                raise ValueError("set clipping with model.compile(clipnorm=...), not on the optimizer: "
                                 "Keras clips per replica before the cross-replica gradient sum")
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.skip_nonfinite = bool(skip_nonfinite)
        self._train_seed = int(seed)
        replicas = self.distribute_strategy.num_replicas_in_sync
        self._xla_gradients = jit_compile is True and replicas > 1
        self._loss_and_grads_fn = (tf.function(self._loss_and_grads, jit_compile=True)
                                   if self._xla_gradients else self._loss_and_grads)
        super().compile(optimizer=optimizer, jit_compile=False if self._xla_gradients else jit_compile,
                        **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            config.update(clipnorm=self.clipnorm, skip_nonfinite=self.skip_nonfinite, seed=self._train_seed)
        return config

    def compile_from_config(self, config):
        from keras.src.saving import serialization_lib

        config = serialization_lib.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self._loss_tracker, self._per_dim_tracker, self._grad_norm_tracker, self._skipped_tracker]

    def _unpack(self, data):
        if isinstance(data, dict):
            return data["x"], data.get("condition")
        if isinstance(data, (tuple, list)) and len(data) >= 2:
            return data[0], data[1]
        raise ValueError("training data must be (x, condition) pairs or {'x': ..., 'condition': ...}")

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras ``fit``; first runs the data-dependent (ActNorm) initialization on the first
        batch, eagerly and inside the model's strategy scope, if it has not been done."""
        if self._needs_data_init():
            xb, cb = self._first_batch(x, y, batch_size)
            with self.distribute_strategy.scope():
                self.initialize(xb, cb)
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds models symbolically from a first batch before fit/evaluate. Under
        # MultiWorkerMirroredStrategy that reduction of a PerReplica batch fails
        # (keras-team/keras#20585). tfcflow models are fully built in __init__, so only the
        # optimizer can still need building: do just that, without touching the data.
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def _needs_data_init(self) -> bool:
        from tfcflow.bijectors.actnorm import ActNormLayer
        return any(isinstance(layer, ActNormLayer) and not layer.is_initialized
                   for layer in self._flatten_layers())

    def _first_batch(self, x, y, batch_size):
        if isinstance(x, tf.data.Dataset):
            return self._unpack(next(iter(x)))
        if y is None:
            return self._unpack(x)
        n = max(int(batch_size or 32), 256)
        return x[:n], y[:n]

    def _training_noise(self, kind: str, shape, seed) -> tf.Tensor:
        """Training noise of the rows being evaluated (``shape[0]`` examples: the local batch, or
        one chain of it), drawn for the whole global batch and sliced by replica and chain: the
        same draws whatever the number of replicas and chains."""
        ctx = tf.distribute.get_replica_context()
        rid = ctx.replica_id_in_sync_group if ctx is not None else 0
        return self._batch_noise(kind, shape, seed, self.distribute_strategy.num_replicas_in_sync, rid)

    def _training_losses(self, x, condition, seed):
        """Per-example ``(objective, nll)`` minimized by train_step, with the step's noise ``seed``.
        The objective is the NLL here; models with training noise or extra terms override it."""
        nll = -self._log_prob(x, condition)
        return nll, nll

    def _loss_and_grads(self, x, condition, seed):
        with tf.GradientTape() as tape:
            objective, nll = self._in_chains(lambda xi, ci: self._training_losses(xi, ci, seed), x, condition)
            # Average over the GLOBAL batch: correct gradients under tf.distribute.
            loss = tf.nn.compute_average_loss(objective)
            scaled = self.optimizer.scale_loss(loss)
        return objective, nll, loss, tape.gradient(scaled, self.trainable_variables)

    def _update_metrics(self, objective, nll, weight=None):
        if weight is not None:
            weight = tf.fill(tf.shape(objective), weight)
        self._loss_tracker.update_state(objective, sample_weight=weight)
        self._per_dim_tracker.update_state(self.per_dim(nll), sample_weight=weight)
        return {m.name: m.result() for m in (self._loss_tracker, self._per_dim_tracker)}

    def _logs_for_keras(self, logs: dict) -> dict:
        # Keras reduces every log with strategy.reduce(MEAN, value, axis=0) under
        # MultiWorkerMirroredStrategy, which fails on scalars ("Invalid reduction dimension 0 for
        # input with 0 dimensions"); a leading axis of size 1 reduces to the same scalar.
        strategy = self.distribute_strategy
        extended = getattr(strategy, "extended", None)
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and getattr(extended, "_in_multi_worker_mode", lambda: False)()):
            return {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def train_step(self, data):
        x, condition = self._unpack(data)
        x, condition = self._check_pair(x, condition)
        seed = tf.stack([tf.constant(getattr(self, "_train_seed", 0), tf.int32),
                         tf.cast(self.optimizer.iterations, tf.int32)])
        objective, nll, loss, grads = getattr(self, "_loss_and_grads_fn", self._loss_and_grads)(x, condition, seed)
        replicas = self.distribute_strategy.num_replicas_in_sync
        ctx = tf.distribute.get_replica_context()
        if replicas > 1 and ctx is not None:
            grads = _all_reduce_flat(ctx, grads)  # the global gradient, on every replica
        scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        norm = tf.linalg.global_norm(grads)
        clipnorm = getattr(self, "clipnorm", None)
        if clipnorm:
            limit = clipnorm * scale
            factor = limit / tf.maximum(norm, limit)
            grads = [g * factor for g in grads]
        if replicas > 1 and ctx is not None:
            # the optimizer sums over replicas again: hand each replica 1/R of the global gradient
            grads = [g / replicas for g in grads]
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
        if getattr(self, "skip_nonfinite", False):
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
        logs = self._update_metrics(objective, nll, keep)
        logs.update(grad_norm=self._grad_norm_tracker.result(), skipped_steps=self._skipped_tracker.result())
        return self._logs_for_keras(logs)

    def test_step(self, data):
        x, condition = self._unpack(data)
        nll = self._in_chains(self._validation_nll, *self._check_pair(x, condition))
        return self._logs_for_keras(self._update_metrics(nll, nll))

    # ---- subclass hooks --------------------------------------------------------------------------
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

    def get_config(self):
        return {"name": self.name, "parallel_chains": self._parallel_chains}
