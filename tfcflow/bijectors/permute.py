"""Fixed permutation of the last axis (features of vectors, channels of images).

Math::

    forward:  y[..., i] = x[..., p[i]]
    inverse:  x[..., j] = y[..., q[j]],  q = argsort(p)
    log|det| = 0
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_layer import FlowLayer


class Permute(FlowBijector):
    """Reorders the last axis by ``permutation`` (an int vector holding each index once)."""

    def __init__(self, permutation, event_ndims: int = 1, validate_args: bool = False,
                 name: str = "permute"):
        self._permutation = tf.convert_to_tensor(permutation, tf.int32)
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    def _zeros(self, t):
        return tf.zeros(tf.shape(t)[:-self.event_ndims], t.dtype)

    def _forward_and_log_det(self, x):
        return tf.gather(x, self._permutation, axis=-1), self._zeros(x)

    def _inverse_and_log_det(self, y):
        return tf.gather(y, tf.argsort(self._permutation), axis=-1), self._zeros(y)


@keras.saving.register_keras_serializable(package="tfcflow")
class RandomPermutationLayer(FlowLayer):
    """A random permutation fixed by ``seed``, stored as a (non-trainable) weight so it is saved
    and restored with the model."""

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed = int(seed)

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        n = int(input_shape[-1])
        perm = np.random.default_rng(self.seed).permutation(n).astype(np.int32)
        self.permutation = self.add_weight(shape=(n,), dtype="int32", trainable=False,
                                           initializer=keras.initializers.Constant(perm),
                                           name="permutation")

    def bijector(self, condition=None) -> Permute:
        return Permute(self.permutation, event_ndims=self.event_ndims, name=self.name)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
