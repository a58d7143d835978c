"""Standardization: a fixed per-dimension affine map learned from data (not trained).

Math (per dimension d; ``z`` latent side, ``x`` data side; ``m``, ``s`` the data's mean and std)::

    forward  (generative):   x = z * s_d + m_d
    inverse  (normalizing):  z = (x - m_d) / s_d
    log|det dx/dz| = sum_d log s_d,   log|det dz/dx| = -sum_d log s_d

It is ActNorm's map (actnorm.py) with non-trainable parameters set once from the training data,
so a model trained on standardized values is still a density of the original ``x``: the log-det
above is part of every ``log_prob``.

A dimension whose std is 0 (or below ``min_std`` times its magnitude) gets ``s_d = 1``: it is
shifted to zero, not divided by (nearly) zero. The flow then sees a constant, which it models as
a (very narrow) density: such a dimension carries no information and should usually be dropped.
"""
from __future__ import annotations

from typing import Iterable, Union

import keras
import numpy as np
import tensorflow as tf

from tfcflow.bijectors.actnorm import ActNorm
from tfcflow.bijectors.flow_layer import FlowLayer


def moments(batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (float64) over all rows of ``batches`` (arrays ``[n, D]``), in one
    streaming pass (Chan et al.'s pairwise update, exact for any batching)."""
    count, mean, m2 = 0, None, None
    for batch in batches:
        b = (a := np.asarray(batch, np.float64)).reshape(len(a), int(np.prod(a.shape[1:])))  # empty: [0, D]
        if not len(b):
            continue
        if not np.isfinite(b).all():
            row = int(np.argmax(~np.isfinite(b).all(axis=1)))
            raise ValueError(f"standardization data contains NaN or inf values; first at row {count + row}")
        bm, bm2 = b.mean(axis=0), ((b - b.mean(axis=0)) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = len(b), bm, bm2
            continue
        total = count + len(b)
        delta = bm - mean
        mean = mean + delta * len(b) / total
        m2 = m2 + bm2 + delta ** 2 * count * len(b) / total
        count = total
    if mean is None:
        raise ValueError("standardization needs at least one example, got none")
    return mean, np.sqrt(m2 / count)


@keras.saving.register_keras_serializable(package="tfcflow")
class StandardizeLayer(FlowLayer):
    """Owns the non-trainable ``loc`` (mean) and ``log_scale`` (log std) of a standardization and
    an ``adapted`` flag, all saved with the weights (and exported). Identity until ``adapt``.

    Args:
      min_std: relative floor: a dimension with ``std <= min_std * max(1, |mean|)`` is treated as
        constant (scale 1; see module docstring).

    Shapes: vectors ``[batch, D]``.
    """

    def __init__(self, min_std: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.min_std = float(min_std)

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        if self.event_ndims != 1:
            raise ValueError(f"{self.name}: standardization takes vectors [batch, D], got shape {list(input_shape)}")
        dim = int(input_shape[-1])
        self.loc = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="loc")
        self.log_scale = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="log_scale")
        self.adapted = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="adapted")

    @property
    def is_adapted(self) -> bool:
        return bool(keras.ops.convert_to_numpy(self.adapted))

    def bijector(self, condition=None) -> ActNorm:
        return ActNorm(self.loc, self.log_scale, event_ndims=1, name=self.name)

    def adapt(self, data: Union[np.ndarray, tf.Tensor, Iterable]) -> tuple[np.ndarray, np.ndarray]:
        """Sets the mean and std from ``data``: an array ``[n, D]`` or an iterable of such batches.
        Returns ``(mean, std)`` as used (constant dimensions with std 1)."""
        batches = [data] if isinstance(data, (np.ndarray, tf.Tensor)) else data
        mean, std = moments(np.asarray(b) for b in batches)
        if mean.shape != tuple(self.loc.shape):
            raise ValueError(f"{self.name}: standardization data has {mean.shape[0]} dimensions, "
                             f"the layer {self.loc.shape[0]}")
        constant = std <= self.min_std * np.maximum(1.0, np.abs(mean))
        std = np.where(constant, 1.0, std)
        self.loc.assign(mean.astype(np.float32))
        self.log_scale.assign(np.log(std).astype(np.float32))
        self.adapted.assign(1)
        return mean, std

    def get_config(self):
        return {**super().get_config(), "min_std": self.min_std}
