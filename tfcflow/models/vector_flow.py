"""What every vector model (posterior estimation, ``p(theta | y)``) shares around its flow.

A vector model works in three spaces::

    x (original units, inside ``bounds``)  --BoxSupport^-1-->  u (all of R^D)  --standardize-->  v  --flow-->  z

- ``bounds``: an optional per-dimension support (a box prior); every sample lies inside it and
  ``log_prob`` is the density on it (``-inf`` outside). Two ways, ``bounds_method``:
  ``"map"`` (default): BoxSupport (box_support.py) maps R^D onto the support, and the flow models
  its preimage u. ``"reject"`` (sbi's way): the flow models x on R^D, and the model is the flow's
  density q truncated to the support, ``p(x | c) = q(x | c) / Z(c)`` inside, with
  ``Z(c) = P_q(inside | c)``. Sampling redraws the rows that fall outside (up to
  ``REJECTION_REDRAWS`` times each); ``log_prob`` estimates ``Z(c)`` from ``SUPPORT_DRAWS`` seeded draws
  per row (``support_mass``); training and the validation loss use q's NLL (the truncated
  likelihood would need Z(c) at every step). Where a posterior is cut off by the box with its
  density still high at the bound, the map turns the edge into a far tail of u, which the flow
  fits poorly; truncation keeps the edge sharp (docs/history.md, 2026-12-04).
- ``standardize`` (on by default): the per-dimension mean and std of ``u`` and of the condition,
  learned from the training data (``adapt``; ``fit`` and ``initialize`` do it when it has not been
  done) and kept as non-trainable weights (saved, restored, exported). The user works in original
  units; ``log_prob`` includes the log-dets of both maps, so it stays a density of x.
- ``summary_network``: any Keras layer mapping a raw observation (``condition_shape``, e.g. a set
  ``[n_obs, d]`` or a series ``[T, channels]``; None dims are any size) to the vector the flow is
  conditioned on, trained with the flow (tfcflow.networks.DeepSet, TimeSeriesNetwork). Its
  inputs are not standardized (normalize inside it if needed).

Subclasses implement the flow on ``v`` given the condition features ``f``::

    _flow_log_prob(v, f) -> [b]         _flow_sample(f, temperature, seed, rows) -> v [b, D]
    _flow_data_init(v, f, force)        _flow_training_log_prob(v, f, seed, rows) (default: _flow_log_prob)

(``rows``: the block of the call being evaluated, models/rows.py.)
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _checks, _random
from tfcflow.bijectors.box_support import BoxSupport, check_bounds, outside_support
from tfcflow.bijectors.flow_chain import FlowChain
from tfcflow.bijectors.standardize import StandardizeLayer
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.rows import WHOLE, Rows
from tfcflow.models.vector_blocks import vector_size
from tfcflow.networks.dropout import training_dropout

#: batches of a dataset that ``fit`` reads to learn the standardization (a repeated dataset never ends)
ADAPT_BATCHES = 64

BOUNDS_METHODS = ("map", "reject")
#: redraws of a row in rejection sampling (``bounds_method="reject"``) before a row still outside is
#: an error: with an acceptance rate a, a row is still outside after k redraws with probability (1 - a)^k
REJECTION_REDRAWS = 200
#: (row, candidate) pairs per pass over redrawn rows under ``Execution(jit_sampling=True)``: a static
#: shape for the compiler, small against a chunk (a round usually redraws a few rows of thousands)
REDRAW_GROUP_ROWS = 256
#: draws per condition row from which a rejection-bounded ``log_prob`` estimates Z(c)
SUPPORT_DRAWS = 4096
#: the seed of those draws (fixed: log_prob is a deterministic function)
SUPPORT_SEED = (20261204, 0)

Shape = Union[int, Sequence[int]]


def summary_layer(network) -> Optional[keras.layers.Layer]:
    """A summary network given as a Keras layer, as its Keras serialization (what ``get_config``
    stores), or in a config file as ``{"class": "DeepSet", "summary_dim": 16, ...}`` (a class of
    tfcflow.networks and its arguments)."""
    if network is None or isinstance(network, keras.layers.Layer):
        return network
    if isinstance(network, dict) and "class" in network:
        from tfcflow import networks
        args = {k: v for k, v in network.items() if k != "class"}
        cls = getattr(networks, str(network["class"]), None)
        if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
            raise ValueError(f"summary_network: unknown class {network['class']!r}; tfcflow.networks has "
                             f"{sorted(networks.__all__)}")
        return cls(**args)
    if isinstance(network, dict):
        return keras.saving.deserialize_keras_object(network)
    raise ValueError(f"summary_network must be a Keras layer (or its serialization), got {type(network).__name__}")


class VectorFlowModel(ConditionalFlowModel):
    """Base of ConditionalRealNVP and RelaxedConditionFlow (see module docstring).

    Args:
      event_shape: ``D`` or ``(D,)``.
      condition_shape: ``M`` or ``(M,)``; with a ``summary_network``, the raw observation's shape
        (any rank; None = any size).
      standardize, bounds, summary_network: see module docstring. ``bounds``: one
        ``[lower, upper]`` pair per dimension, None (null) for an open side.
      bounds_method: ``"map"`` or ``"reject"`` (module docstring).
    """

    JIT_SAMPLING = True

    def __init__(self, event_shape: Shape, condition_shape: Shape, standardize: bool = True,
                 bounds=None, summary_network=None, bounds_method: str = "map", **kwargs):
        if bounds_method not in BOUNDS_METHODS:
            raise ValueError(f"bounds_method must be one of {BOUNDS_METHODS}, got {bounds_method!r}")
        event_dim = vector_size(event_shape, "event_shape")
        summary = summary_layer(summary_network)
        if summary is None:
            raw_shape = (vector_size(condition_shape, "condition_shape"),)
        else:
            raw_shape = tuple(condition_shape) if isinstance(condition_shape, (list, tuple)) else (condition_shape,)
            if not raw_shape or any(d is not None and (not isinstance(d, (int, np.integer)) or d < 1)
                                    for d in raw_shape):
                raise ValueError(f"condition_shape of a summary network's observation must be a list of sizes "
                                 f"(null = any size), got {condition_shape!r}")
        if not isinstance(standardize, bool):
            raise ValueError(f"standardize must be True or False, got {standardize!r}")
        super().__init__((event_dim,), raw_shape, **kwargs)
        self.bounds = None if bounds is None else check_bounds(bounds, event_dim)
        self.bounds_method = bounds_method
        self.summary_network = summary
        if summary is not None:
            if not summary.built:  # a deserialized network arrives built
                summary.build((None,) + raw_shape)
            out = summary.compute_output_shape((None,) + raw_shape)
            if len(out) != 2 or out[-1] is None:
                raise ValueError(f"summary_network must map an observation to a vector [batch, M], it gives "
                                 f"{tuple(out)}")
            self.feature_dim = int(out[-1])
        else:
            self.feature_dim = raw_shape[0]
        self.x_standardizer = self.condition_standardizer = None
        if standardize:
            self.x_standardizer = StandardizeLayer(name="x_standardize")
            self.x_standardizer.build((None, event_dim))
            if summary is None:  # a summary network sees raw observations
                self.condition_standardizer = StandardizeLayer(name="condition_standardize")
                self.condition_standardizer.build((None, self.feature_dim))

    def _record_config(self, arguments: dict) -> None:
        super()._record_config(arguments)
        if self.summary_network is not None:
            self._config["summary_network"] = keras.saving.serialize_keras_object(self.summary_network)

    # ---- the maps between x, u, v and the condition features -----------------------------------------
    @property
    def _rejects(self) -> bool:
        """Bounds enforced by truncation (``bounds_method="reject"``), not by the support map."""
        return self.bounds is not None and self.bounds_method == "reject"

    def _outer_bijector(self) -> Optional[FlowChain]:
        """x -> v (normalizing order): the support map, then the standardization."""
        parts = []
        if self.bounds is not None and not self._rejects:
            parts.append(BoxSupport(self.bounds))
        if self.x_standardizer is not None:
            parts.append(self.x_standardizer.bijector())
        return FlowChain(parts, event_ndims=1, name="outer") if parts else None

    def _to_flow_space(self, x):
        """``(v, log|dv/dx|, outside)``: outside rows (beyond a bound) get ``v = 0`` (a finite
        stand-in, so nothing NaN reaches a gradient) and must be given ``log_prob = -inf``."""
        outside = outside_support(self.bounds, x) if self.bounds is not None else None
        if outside is not None:
            x = tf.where(outside[:, None], self._inside_point(), x)
        outer = self._outer_bijector()  # (None: no support map and no standardization)
        if outer is None:
            return x, tf.zeros(tf.shape(x)[:1]), outside
        v, ld = outer.inverse_and_log_det(x)
        return v, ld, outside

    def _inside_point(self):
        """A point inside the support (the stand-in for outside rows)."""
        point = []
        for lo, hi in self.bounds:
            point.append(0.0 if lo is None and hi is None else
                         (lo + hi) / 2 if lo is not None and hi is not None else
                         (lo + 1.0 if lo is not None else hi - 1.0))
        return tf.constant([point], tf.float32)

    def _to_data_space(self, v):
        outer = self._outer_bijector()
        if outer is None:
            return v
        # (BoxSupport keeps samples strictly inside the support, where their density is defined)
        return outer.forward_and_log_det(v)[0]

    def _features(self, condition):
        """The vector the flow is conditioned on: ``[batch, feature_dim]``."""
        if self.summary_network is not None:
            return tf.cast(self.summary_network(condition), tf.float32)
        if self.condition_standardizer is not None:
            return self.condition_standardizer.bijector().inverse_and_log_det(condition)[0]
        return condition

    def _condition_from_features(self, features):
        """Back to the condition's units (where there is no summary network)."""
        if self.condition_standardizer is not None:
            return self.condition_standardizer.bijector().forward_and_log_det(features)[0]
        return features

    def _flow_training_log_prob(self, v, features, seed, rows: Rows):
        """What training maximizes (per example) on v; models with training noise override it."""
        return self._flow_log_prob(v, features)

    # ---- ConditionalFlowModel hooks ----------------------------------------------------------------
    def _log_prob(self, x, condition):
        v, ld, outside = self._to_flow_space(x)
        features = self._features(condition)
        lp = self._flow_log_prob(v, features) + ld
        if self._rejects:
            lp = lp - tf.math.log(self._support_mass(features, SUPPORT_DRAWS, tf.constant(SUPPORT_SEED, tf.int32)))
        return lp if outside is None else tf.where(outside, tf.constant(-np.inf, lp.dtype), lp)

    def _validation_nll(self, x, condition, rows: Rows = WHOLE):
        if not self._rejects:
            return super()._validation_nll(x, condition, rows)
        # the flow's NLL, as in training (Z(c) per validation row would cost SUPPORT_DRAWS draws each)
        nll, outside = self._flow_nll(x, condition)
        return tf.where(outside, tf.constant(np.inf, nll.dtype), nll)

    def _flow_nll(self, x, condition, seed=None, rows: Rows = WHOLE):
        """Per example ``(nll, outside)``: minus the flow's log-density of x (mapped to flow space,
        the map's log-det included, no ``log Z(c)``), with the training noise of step ``seed`` for
        the block ``rows`` if given; ``outside`` marks the rows outside ``bounds`` (None without
        bounds)."""
        v, ld, outside = self._to_flow_space(x)
        features = self._features(condition)
        if seed is None:
            lp = self._flow_log_prob(v, features)
        else:
            # the coupling networks' dropout (if any) is on here only, its masks drawn like all
            # training noise: a stream per layer, sliced by replica and sub-batch
            def masks(shape, key):
                return self._training_noise("uniform", shape, _random.fold_in_tensor(seed, key), rows)

            with training_dropout(masks):
                lp = self._flow_training_log_prob(v, features, seed, rows)
        return -(lp + ld), outside

    def support_mass(self, condition, draws: int = SUPPORT_DRAWS, seed=SUPPORT_SEED[0]) -> tf.Tensor:
        """``[batch]``: Z(c), the share of the flow's draws that fall inside ``bounds``, from
        ``draws`` draws per condition row (its standard error is ``sqrt(Z (1 - Z) / draws)``).
        Only for ``bounds_method="reject"``: ``log_prob`` subtracts ``log Z(c)``, and ``1 / Z(c)``
        is the expected number of rounds a draw takes."""
        if not self._rejects:
            raise ValueError("support_mass is the truncation constant of bounds_method='reject'; this model "
                             f"has bounds={self.bounds}, bounds_method={self.bounds_method!r}")
        return self._support_mass(self._features(self._check_condition(condition)),
                                  _checks.check_positive_int(draws, "draws"), _random.seed_tensor(seed))

    def _support_mass(self, features, draws: int, seed) -> tf.Tensor:
        if tf.executing_eagerly():
            # one traced graph (an eager loop over conditions runs the flow op by op, ~100x slower)
            fn = self.__dict__.get("_support_mass_graph")
            if fn is None:
                fn = tf.function(self._support_mass_of_rows, reduce_retracing=True)
                object.__setattr__(self, "_support_mass_graph", fn)  # not a Keras-tracked attribute
            return fn(features, draws, seed)
        return self._support_mass_of_rows(features, draws, seed)

    def _support_mass_of_rows(self, features, draws: int, seed) -> tf.Tensor:
        # once per distinct condition row, one row at a time (memory: `draws` rows), with the same
        # noise for every condition: Z(c) depends on c and the seed only, not on the batch around it
        features = tf.stop_gradient(features)
        index, unique = _distinct_rows(features)

        def mass(f):  # (these draws are not rows of the batch: a call of their own)
            x = self._to_data_space(self._flow_sample(tf.repeat(f[None], draws, axis=0), tf.constant(1.0), seed, WHOLE))
            return tf.reduce_mean(tf.cast(~outside_support(self.bounds, x), tf.float32))

        masses = tf.map_fn(mass, unique, fn_output_signature=tf.float32)
        # at least half a draw: a row none of whose draws landed inside gets a finite, large correction
        return tf.maximum(tf.gather(masses, index), 0.5 / draws)

    def _training_losses(self, x, condition, seed, rows: Rows = WHOLE):
        # (with bounds_method="reject" too: the flow's NLL, without log Z(c); module docstring)
        nll, outside = self._flow_nll(x, condition, seed, rows)
        if outside is not None:  # training data must lie inside the support (fit names the problem)
            nll = _checks.enforce(nll, ~outside, "x lies outside the declared bounds")
        return nll, nll

    def _sample(self, condition, temperature, seed, rows):
        return self._sample_from_features(self._features(condition), temperature, seed, rows)

    def _sampling_features(self, condition):
        return self._features(condition)

    def _sample_from_features(self, features, temperature, seed, rows):
        def draw(f, s, r):
            return self._to_data_space(self._flow_sample(f, temperature, s, r))

        if not self._rejects:
            return self._flow_pass(lambda f, s: draw(f, s, rows), rows, features, seed)
        # under jit_sampling the redraw rounds are part of the one compiled pass
        x = self._flow_pass(lambda f, s: self._truncated_draw(draw, f, s, rows), rows, features, seed)
        return _checks.enforce(x, ~tf.reduce_any(outside_support(self.bounds, x)),
                               f"rejection sampling (bounds_method='reject') left draws outside the bounds after "
                               f"{REJECTION_REDRAWS} redraws of a row: the posterior's mass inside the bounds is tiny "
                               f"for this condition (support_mass tells); bounds_method='map' samples inside always")

    def _truncated_draw(self, draw, features, seed, rows: Rows):
        """``draw(features, seed, rows)`` ``[block, D]`` truncated to the bounds by rejection. Each
        row's sample is the first of its draws that lies inside: the first draw, then its redraws 1,
        2, ... (candidates, ``Rows.redrawing``), so it depends only on the seed and the row's index,
        whatever the other rows and however many candidates a round evaluates. A round redraws
        the rows still outside: in the plain graph all of them in one pass, one candidate each;
        under ``jit_sampling`` (static shapes) in groups of ``REDRAW_GROUP_ROWS`` (row, candidate)
        pairs, a row taking ``REDRAW_GROUP_ROWS // count`` candidates in a round when only
        ``count`` rows are left (the last few rows need no round each). Rows still outside after
        ``REJECTION_REDRAWS`` redraws stay outside (the caller's error)."""
        x = draw(features, seed, rows)
        block = tf.shape(features)[0]
        static = rows.jit

        def redraw_round(t, x):  # t: the next candidate of every row still outside
            out = outside_support(self.bounds, x)
            count = tf.reduce_sum(tf.cast(out, tf.int32))
            if static:
                size = REDRAW_GROUP_ROWS
                per_row = tf.clip_by_value(size // count, 1, REJECTION_REDRAWS + 1 - t)
                # the rows outside, in order, first (a static-shape tf.where)
                slot = tf.where(out, tf.cumsum(tf.cast(out, tf.int32)) - 1, block)
                order = tf.scatter_nd(slot[:, None], tf.range(block), [block + 1])[:block]
            else:
                size, per_row = count, tf.constant(1)
                order = tf.cast(tf.reshape(tf.where(out), [-1]), tf.int32)
            pairs = count * per_row

            def group(g, x):  # x: [block + 1, D], its last row a sink for the pairs that change nothing
                local = tf.range(size)
                pair = tf.minimum(g * size + local, pairs - 1)  # the padding repeats the last pair
                index, candidate = tf.gather(order, pair // per_row), t + pair % per_row
                new = draw(tf.gather(features, index), seed, rows.redrawing(index, candidate, block))
                inside = (g * size + local < pairs) & ~outside_support(self.bounds, new)
                # each row's first candidate inside (rows span several pairs only in a one-group round)
                first = tf.math.unsorted_segment_min(tf.where(inside, local, size), local // per_row, size)
                found = first < size
                first = tf.minimum(first, size - 1)
                target = tf.where(found, tf.gather(index, first), block)
                return g + 1, tf.tensor_scatter_nd_update(x, target[:, None], tf.gather(new, first))

            groups = (pairs + size - 1) // size
            _, sunk = tf.while_loop(lambda g, x: g < groups, group,
                                    [tf.constant(0), tf.concat([x, tf.zeros_like(x[:1])], 0)])
            return t + per_row, tf.ensure_shape(sunk[:block], x.shape)

        _, x = tf.while_loop(lambda t, x: (t <= REJECTION_REDRAWS) & tf.reduce_any(outside_support(self.bounds, x)),
                             redraw_round, [tf.constant(1), x])
        return x

    def _data_init(self, x, condition, force):
        if self.needs_adapting():
            self.adapt(x, condition)
        v, _, _ = self._to_flow_space(x)
        self._flow_data_init(v, self._features(condition), force)

    # ---- standardization -----------------------------------------------------------------------------
    def needs_adapting(self) -> bool:
        """True while the standardization has not been learned from data."""
        return any(s is not None and not s.is_adapted for s in (self.x_standardizer, self.condition_standardizer))

    def adapt(self, x, condition=None, steps: Optional[int] = ADAPT_BATCHES) -> None:
        """Learns the standardization (mean, std) from training data, eagerly: ``x`` ``[n, D]`` and
        ``condition`` ``[n, M]`` arrays, or ``x`` a ``tf.data.Dataset`` of ``(x, condition)`` batches
        (its first ``steps`` batches; None = all of a finite one). x outside ``bounds`` is an error."""
        if self.x_standardizer is None:
            return
        if isinstance(x, tf.data.Dataset):
            from tfcflow.train_step import dataset_position, nonfinite_in_batch, unpack
            data = x if steps is None else x.take(steps)
            xs, cs = [], []
            for i, batch in enumerate(data):
                found = nonfinite_in_batch(batch)
                if found is not None:
                    raise ValueError(f"training data: {found[0]} contains NaN or inf values"
                                     f"{dataset_position(found[0], i, found[1])}; clean or filter the dataset")
                xb, cb = unpack(batch)
                xs.append(np.asarray(xb))
                cs.append(None if cb is None else np.asarray(cb))
        else:
            xs, cs = [np.asarray(x)], [None if condition is None else np.asarray(condition)]
        u = [self._unbounded(self._check_x(xb, "x")) for xb in xs]
        self.x_standardizer.adapt(u)
        if self.condition_standardizer is not None:
            if any(cb is None for cb in cs):
                raise self._missing_condition()
            self.condition_standardizer.adapt([self._check_condition(cb).numpy() for cb in cs])

    def _unbounded(self, x) -> np.ndarray:
        if self.bounds is None:
            return np.asarray(x)
        outside = outside_support(self.bounds, x).numpy()
        if outside.any():
            row = int(np.argmax(outside))
            raise ValueError(f"x row {row} lies outside the declared bounds {self.bounds}: {np.asarray(x)[row]}")
        if self._rejects:
            return np.asarray(x)
        return BoxSupport(self.bounds).inverse_and_log_det(x)[0].numpy()

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras ``fit``; first learns the standardization if it has not been (``adapt_before_fit``)."""
        adapted = adapt_before_fit(self, x, y)
        if not adapted and self.bounds is not None and y is not None and not isinstance(x, tf.data.Dataset):
            self._unbounded(np.asarray(x))  # the error names a row outside the support
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    # ---- views -------------------------------------------------------------------------------------
    def _distribution_bijector(self, flow_bijector):
        """x <- v <- flow (normalizing order), for ``distribution``."""
        if self._rejects:
            raise ValueError("distribution(c) has no TFP view of a truncated flow (bounds_method='reject'): "
                             "use sample and log_prob, or bounds_method='map'")
        outer = self._outer_bijector()
        return flow_bijector if outer is None else FlowChain(outer.parts + [flow_bijector], event_ndims=1)


def adapt_before_fit(model, x, y) -> bool:
    """What ``fit`` does first for a model with a learned standardization (``needs_adapting`` /
    ``adapt``: a vector model, an ensemble of them): array data is checked for NaN/inf (named
    before the statistics see it), then the standardization is learned if it has not been (all
    rows of arrays given with their conditions ``y``, the first ``ADAPT_BATCHES`` batches of a
    dataset). Returns whether it adapted."""
    dataset = isinstance(x, tf.data.Dataset)
    if not dataset:
        model._check_arrays(x, y)
    if model.needs_adapting() and x is not None and (dataset or y is not None):
        model.adapt(x) if dataset else model.adapt(x, y)
        return True
    return False


def _distinct_rows(t: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(index [n], distinct [u, F])`` with ``t == gather(distinct, index)``, for ``t`` ``[n, F]``
    float32. Rows are compared by a 64-bit hash of their bits (integer ops: nothing here is
    differentiated, unlike ``UniqueV2`` on floats, which has no gradient and breaks any tape that
    records the call)."""
    bits = tf.cast(tf.bitcast(t, tf.int32), tf.int64)
    # a polynomial hash over the features (int64 arithmetic wraps)
    weights = tf.constant(np.array([pow(1000003, j, 2 ** 61 - 1) for j in range(t.shape[-1])], np.int64))
    keys = tf.reduce_sum(bits * weights, axis=-1)
    distinct_keys, index = tf.unique(keys)
    first = tf.math.unsorted_segment_min(tf.range(tf.shape(t)[0]), index, tf.shape(distinct_keys)[0])
    return index, tf.gather(t, first)
