"""What every vector model (posterior estimation, ``p(theta | y)``) shares around its flow.

A vector model works in three spaces::

    x (original units, inside ``bounds``)  --BoxSupport^-1-->  u (all of R^D)  --standardize-->  v  --flow-->  z

- ``bounds``: an optional per-dimension support (a box prior); every sample lies inside it and
  ``log_prob`` is the density on it (``-inf`` outside: box_support.py).
- ``standardize`` (on by default): the per-dimension mean and std of ``u`` and of the condition,
  learned from the training data (``adapt``; ``fit`` and ``initialize`` do it when it has not been
  done) and kept as non-trainable weights (saved, restored, exported). The user works in original
  units; ``log_prob`` includes the log-dets of both maps, so it stays a density of x.
- ``summary_network``: any Keras layer mapping a raw observation (``condition_shape``, e.g. a set
  ``[n_obs, d]`` or a series ``[T, channels]``; None dims are any size) to the vector the flow is
  conditioned on, trained with the flow (tfcflow.networks.DeepSet, TimeSeriesNetwork). Its
  inputs are not standardized (normalize inside it if needed).

Subclasses implement the flow on ``v`` given the condition features ``f``::

    _flow_log_prob(v, f) -> [b]         _flow_sample(f, temperature, seed) -> v [b, D]
    _flow_data_init(v, f, force)        _flow_training_log_prob(v, f, seed) (default: _flow_log_prob)
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _checks
from tfcflow.bijectors.box_support import BoxSupport, check_bounds, outside_support
from tfcflow.bijectors.flow_chain import FlowChain
from tfcflow.bijectors.standardize import StandardizeLayer
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.vector_blocks import vector_size

#: batches of a dataset that ``fit`` reads to learn the standardization (a repeated dataset never ends)
ADAPT_BATCHES = 64

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
    """

    def __init__(self, event_shape: Shape, condition_shape: Shape, standardize: bool = True,
                 bounds=None, summary_network=None, **kwargs):
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
    def _outer_bijector(self) -> Optional[FlowChain]:
        """x -> v (normalizing order): the support map, then the standardization."""
        parts = []
        if self.bounds is not None:
            parts.append(BoxSupport(self.bounds))
        if self.x_standardizer is not None:
            parts.append(self.x_standardizer.bijector())
        return FlowChain(parts, event_ndims=1, name="outer") if parts else None

    def _to_flow_space(self, x):
        """``(v, log|dv/dx|, outside)``: outside rows (beyond a bound) get ``v = 0`` (a finite
        stand-in, so nothing NaN reaches a gradient) and must be given ``log_prob = -inf``."""
        outer = self._outer_bijector()
        if outer is None:
            return x, tf.zeros(tf.shape(x)[:1]), None
        outside = outside_support(self.bounds, x) if self.bounds is not None else None
        if outside is not None:
            x = tf.where(outside[:, None], self._inside_point(), x)
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
        x = outer.forward_and_log_det(v)[0]
        if self.bounds is not None:
            # far latents round onto a bound in float32 (sigmoid(20) == 1.0): keep samples strictly
            # inside, where their density (and best_of_n's ranking) is defined
            lo = np.array([-np.inf if a is None else a for a, _ in self.bounds], np.float32)
            hi = np.array([np.inf if b is None else b for _, b in self.bounds], np.float32)
            x = tf.clip_by_value(x, np.nextafter(lo, np.float32(np.inf)), np.nextafter(hi, np.float32(-np.inf)))
        return x

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

    def _flow_training_log_prob(self, v, features, seed):
        """What training maximizes (per example) on v; models with training noise override it."""
        return self._flow_log_prob(v, features)

    # ---- ConditionalFlowModel hooks ----------------------------------------------------------------
    def _log_prob(self, x, condition):
        v, ld, outside = self._to_flow_space(x)
        lp = self._flow_log_prob(v, self._features(condition)) + ld
        return lp if outside is None else tf.where(outside, tf.constant(-np.inf, lp.dtype), lp)

    def _training_losses(self, x, condition, seed):
        v, ld, outside = self._to_flow_space(x)
        if outside is not None:  # training data must lie inside the support (fit names the problem)
            v = _checks.enforce(v, ~outside, "x lies outside the declared bounds")
        nll = -(self._flow_training_log_prob(v, self._features(condition), seed) + ld)
        return nll, nll

    def _sample(self, condition, temperature, seed):
        return self._sample_from_features(self._features(condition), temperature, seed)

    def _sampling_features(self, condition):
        return self._features(condition)

    def _sample_from_features(self, features, temperature, seed):
        return self._to_data_space(self._flow_sample(features, temperature, seed))

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
            from tfcflow.train_step import unpack
            data = x if steps is None else x.take(steps)
            xs, cs = [], []
            for i, batch in enumerate(data):
                for name, value in zip(("x", "condition"), unpack(batch)):
                    value = np.asarray(value)
                    if value.dtype.kind == "f" and not np.isfinite(value).all():
                        row = int(np.argmax(~np.isfinite(value.reshape(len(value), -1)).all(axis=1)))
                        raise ValueError(f"training data: {name} contains NaN or inf values (in {name}: batch {i}, "
                                         f"row {row} of the dataset, counted from 0); clean or filter the dataset")
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
        return BoxSupport(self.bounds).inverse_and_log_det(x)[0].numpy()

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras ``fit``; first learns the standardization if it has not been (all rows of array
        data, the first ``ADAPT_BATCHES`` batches of a dataset)."""
        if not isinstance(x, tf.data.Dataset):
            self._check_arrays(x, y)  # NaN named before the statistics see it
        if self.needs_adapting() and x is not None:
            if isinstance(x, tf.data.Dataset):
                self.adapt(x)
            elif y is not None:
                self.adapt(x, y)
        elif self.bounds is not None and y is not None and not isinstance(x, tf.data.Dataset):
            self._unbounded(np.asarray(x))  # the error names a row outside the support
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    # ---- views -------------------------------------------------------------------------------------
    def _distribution_bijector(self, flow_bijector):
        """x <- v <- flow (normalizing order), for ``distribution``."""
        outer = self._outer_bijector()
        return flow_bijector if outer is None else FlowChain(outer.parts + [flow_bijector], event_ndims=1)
