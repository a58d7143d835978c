"""An equally weighted mixture of K conditional flows trained side by side (a deep ensemble).

    p(x | c) = (1/K) sum_k p_k(x | c)
    log p(x | c) = logsumexp_k log p_k(x | c) - log K
    sampling:  draw r of a call from member k = (r + o) mod K, o ~ Uniform{0..K-1} per call

Why: with a simulation budget of ~10^4, one flow fits the posterior's location with an error that
varies from one initialization to the next (training stops early because the network starts to
memorize the simulations); the mixture of K independently initialized flows averages those
errors out, as sbi's ensemble posteriors and deep ensembles do. The density stays exact.

Training: ``fit`` minimizes the sum of the members' objectives on the same batches (the members
share no weights, so each learns as it would alone, from its own initialization); the reported
``nll`` is the members' mean, ``evaluate`` / validation report the mixture's. Members that see the
same data make correlated errors; ``bootstrap=True`` (bagging) weights each example's loss in
member k by a Poisson(1) count, so every member trains on its own bootstrap resample of the data.
The count is a function of the example's values (a hash of its float bits, x and condition) and of
k: the same example gets the same count in every epoch and batch, with no index needed, so it works
for arrays and datasets alike.
``fit_members`` instead trains the members one after another, each on its own train/validation
split with its own early stopping: with ~10^4 simulations it decorrelates them more.

Sampling is stratified: row r of a call (a draw) comes from member (r + o) mod K, the offset o
uniform from the seed, so each draw's member is uniform (the mixture's draws) and a call's draws
are split evenly between the members (the variance of a stratified sample, not of K random
counts). Each member samples only its own draws (a draw costs one member's flow, not K), every
member's pass over a block has a static shape (``Execution(jit_sampling=True)`` compiles it as
for a single flow), and the draws are deterministic given the seed, whatever the chunks and
sub-batches (up to float rounding), as a single model's.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow import _random
from tfcflow.holdout import fit_with_holdout, holdout_split
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.rows import WHOLE, Rows
from tfcflow.models.vector_flow import adapt_before_fit


@keras.saving.register_keras_serializable(package="tfcflow")
class FlowEnsemble(ConditionalFlowModel):
    """Mixture of ``members`` (see module docstring).

    Args:
      members: two or more models of the same x and condition shapes (typically one class and
        config with different seeds; see ``FlowEnsemble.of``). Each is used through its own
        checks, standardization and support.
      bootstrap: train each member on its own bootstrap resample (see module docstring).

    Shapes: as every member's: x ``[batch, *event_shape]``, condition ``[batch, *condition_shape]``.
    ``distribution(c)`` is a ``tfd.Mixture`` of the members' distributions.
    """

    def __init__(self, members: Sequence[ConditionalFlowModel], bootstrap: bool = False, **kwargs):
        members = [keras.saving.deserialize_keras_object(m) if isinstance(m, dict) else m for m in members]
        if len(members) < 2 or not all(isinstance(m, ConditionalFlowModel) for m in members):
            raise ValueError(f"members must be two or more tfcflow models, got {members!r}")
        first = members[0]
        for k, m in enumerate(members[1:], 1):
            if (m.event_shape, m.condition_shape) != (first.event_shape, first.condition_shape):
                raise ValueError(f"members must share x and condition shapes: member 0 has "
                                 f"{first.event_shape} / {first.condition_shape}, member {k} has "
                                 f"{m.event_shape} / {m.condition_shape}")
        super().__init__(first.event_shape, first.condition_shape, per_dim_metric=first.PER_DIM_METRIC, **kwargs)
        self.members = list(members)
        self.bootstrap = bool(bootstrap)
        self.JIT_SAMPLING = all(m.JIT_SAMPLING for m in self.members)
        self.built = True

    @classmethod
    def of(cls, model_class, size: int, *args, seed: int = 0, bootstrap: bool = False, **kwargs) -> "FlowEnsemble":
        """``size`` members ``model_class(*args, seed=seed + k, **kwargs)``: one architecture, K
        initializations."""
        if int(size) < 2:
            raise ValueError(f"an ensemble needs size >= 2, got {size}")
        return cls([model_class(*args, seed=seed + k, name=f"member{k}", **kwargs) for k in range(int(size))],
                   bootstrap=bootstrap)

    @property
    def size(self) -> int:
        return len(self.members)

    # ---- checks and per-dim metric: the members' ---------------------------------------------------
    def _check_x(self, x, name: str = "x") -> tf.Tensor:
        return self.members[0]._check_x(x, name)

    def _check_condition(self, condition) -> tf.Tensor:
        return self.members[0]._check_condition(condition)

    def per_dim(self, nll: tf.Tensor, x: Optional[tf.Tensor] = None) -> tf.Tensor:
        return self.members[0].per_dim(nll, x)

    # ---- the density ---------------------------------------------------------------------------------
    def _log_prob(self, x, condition):
        lps = tf.stack([m._log_prob(x, condition) for m in self.members], axis=0)
        return tf.reduce_logsumexp(lps, axis=0) - math.log(self.size)

    def _training_losses(self, x, condition, seed, rows: Rows = WHOLE):
        losses = [m._training_losses(x, condition, _random.fold_in(seed, k), rows) for k, m in enumerate(self.members)]
        objectives = [o for o, _ in losses]
        if self.bootstrap:
            counts = bootstrap_counts(x, condition, self.size)
            objectives = [counts[:, k] * o for k, o in enumerate(objectives)]
        return tf.add_n(objectives), tf.add_n([n for _, n in losses]) / self.size

    def _sample(self, condition, temperature, seed, rows):
        # Row r of the call (r = rows.start + i) is a draw of member (r + o) mod K, o uniform from the
        # seed: each draw's member is uniform and the call's draws are split evenly. Member k draws
        # every K-th row of the block (ceil(n / K) rows: a static shape for XLA), as its own call's
        # rows (r - r0) / K, so the draws do not depend on chunks or sub-batches.
        size = self.size
        n = condition.shape[0] if condition.shape[0] is not None else tf.shape(condition)[0]
        m = (n + size - 1) // size
        total = n if rows.total is None else rows.total
        start = tf.cast(rows.start, tf.int32)
        offset = tf.minimum(tf.cast(_random.uniform([1], _random.fold_in(seed, size))[0] * size, tf.int32), size - 1)
        draws = []
        for k, member in enumerate(self.members):
            first = tf.math.floormod(k - start - offset, size)  # the block's first row of member k
            index = tf.minimum(first + size * tf.range(m), n - 1)  # (past the block: a stand-in row)
            member_rows = Rows(start=(start + first - tf.math.floormod(k - offset, size)) // size,
                               total=(total + size - 1) // size, jit=rows.jit, size=rows.size)
            draws.append(member._sample(tf.gather(condition, index), temperature, _random.fold_in(seed, k),
                                        member_rows))
        i = tf.range(n)
        member_of_row = tf.math.floormod(i + start + offset, size)
        return tf.gather(tf.concat(draws, axis=0), member_of_row * m + i // size)

    def _data_init(self, x, condition, force):
        for m in self.members:
            m._data_init(x, condition, force)

    def distribution(self, condition) -> tfd.Distribution:
        """``tfd.Mixture`` of the members' ``distribution(condition)`` with equal weights."""
        components = [m.distribution(condition) for m in self.members]
        batch = tf.shape(self._check_condition(condition))[0]
        cat = tfd.Categorical(logits=tf.zeros(tf.stack([batch, self.size])))
        return tfd.Mixture(cat, components)

    # ---- vector models' standardization: every member learns it from the same data ------------------
    def needs_adapting(self) -> bool:
        return any(getattr(m, "needs_adapting", lambda: False)() for m in self.members)

    def adapt(self, x, condition=None, steps: Optional[int] = None) -> None:
        for m in self.members:
            if getattr(m, "needs_adapting", lambda: False)():
                m.adapt(x, condition) if steps is None else m.adapt(x, condition, steps)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras ``fit`` of all members at once; vector members first learn their standardization
        (``vector_flow.adapt_before_fit``, as ``VectorFlowModel.fit``)."""
        adapt_before_fit(self, x, y)
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    def fit_members(self, x, y, *, epochs: int = 200, batch_size: int = 256, validation_fraction: float = 0.1,
                    patience: int = 20, optimizer="adam", seed: int = 0, lr_patience: Optional[int] = None,
                    verbose="auto", first: int = 0, **compile_kwargs) -> list:
        """Trains the members one after another, each as it would be trained alone; returns their
        Keras ``History`` objects.

        Member k is fitted by ``tfcflow.holdout.fit_with_holdout`` with seed ``seed + k``: it draws
        its own split of the rows (a permutation from ``seed + k``; the first
        ``validation_fraction`` of it is held out), gets a fresh copy of ``optimizer`` compiled with
        ``compile_kwargs`` (e.g. ``clipnorm``), learns its standardization from its own training rows,
        and stops early on its own validation NLL (``patience`` epochs, best weights restored). With
        ``bootstrap=True`` its training rows are a bootstrap resample (drawn with replacement) of
        that split. Why not ``fit``: members trained together see the same split and the same
        batches, and with ~10^4 examples their early-stopping errors stay correlated, so the mixture
        gains less (docs/history.md, 2026-12-03); separate splits decorrelate them.

        Args:
          x: ``[n, *event_shape]`` array; y: ``[n, *condition_shape]`` array (the conditions).
          epochs: the most epochs per member; early stopping usually ends sooner.
          validation_fraction: in [0, 1); 0 trains every member on all rows for ``epochs``.
          seed: member k calls ``keras.utils.set_random_seed(seed + k)`` before its ``fit`` (Keras'
            shuffling), so the result is deterministic given ``seed``.
          lr_patience: ``fit_with_holdout``'s learning-rate reduction on a plateau (off by default).
          first: members ``0 .. first - 1`` are taken as trained (e.g. member 0 fitted with the
            same split while a setting was chosen) and left as they are.
        """
        if isinstance(x, tf.data.Dataset) or y is None:
            raise TypeError("fit_members splits arrays: give x [n, ...] and the conditions y [n, ...] as arrays "
                            "(for a tf.data.Dataset, use fit, which trains the members together)")
        holdout_split(len(x), validation_fraction, seed)  # refuses a bad fraction before any training
        histories = []
        for k, member in enumerate(self.members[first:], first):
            history, _ = fit_with_holdout(member, x, y, epochs=epochs, batch_size=batch_size,
                                          validation_fraction=validation_fraction, patience=patience,
                                          optimizer=optimizer, seed=seed + k, bootstrap=self.bootstrap,
                                          lr_patience=lr_patience, verbose=verbose, **compile_kwargs)
            histories.append(history)
        return histories

    def get_config(self):
        return {"name": self.name, "members": [keras.saving.serialize_keras_object(m) for m in self.members],
                "bootstrap": self.bootstrap}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


#: P(N <= n) of a Poisson(1) count for n = 0..6 (the chance of 7 or more is 8e-5: counted as 7)
_POISSON1_CDF = [math.exp(-1.0) * sum(1.0 / math.factorial(j) for j in range(n + 1)) for n in range(7)]


def _mix(h: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer hash finalizer (xor-shift-multiply), on uint32 (arithmetic wraps)."""
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))
    h = h * tf.constant(0x45D9F3B, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))
    h = h * tf.constant(0x45D9F3B, tf.uint32)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))


def bootstrap_counts(x: tf.Tensor, condition: Optional[tf.Tensor], size: int) -> tf.Tensor:
    """``[batch, size]`` Poisson(1) counts, a fixed function of each example's values: the float32
    bits of x (and the condition) hashed, then one count per member from the hash and its index."""
    parts = [tf.reshape(tf.cast(t, tf.float32), [tf.shape(t)[0], -1]) for t in (x, condition) if t is not None]
    bits = tf.bitcast(tf.concat(parts, axis=1), tf.uint32)
    # position-dependent odd multipliers, so permuted values hash differently
    positions = tf.range(tf.shape(bits)[1], dtype=tf.int32)
    odd = tf.bitcast(positions * 2 + 1, tf.uint32) * tf.constant(0x9E3779B1, tf.uint32)
    h = _mix(tf.reduce_sum(_mix(bits) * odd[None, :], axis=1))
    members = tf.bitcast(tf.range(1, size + 1, dtype=tf.int32), tf.uint32) * tf.constant(0x85EBCA6B, tf.uint32)
    hashed = _mix(tf.bitwise.bitwise_xor(h[:, None], members[None, :]))
    u = (tf.cast(tf.bitwise.right_shift(hashed, tf.constant(8, tf.uint32)), tf.float32) + 0.5) * (2.0 ** -24)
    return tf.add_n([tf.cast(u > p, tf.float32) for p in _POISSON1_CDF])
