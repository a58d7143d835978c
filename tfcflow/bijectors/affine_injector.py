"""Affine injector (SRFlow): an affine map of ALL features whose shift and scale come from the
condition only.

Math (``x`` latent side, ``y`` data side, ``c`` condition)::

    (t, h) = NN(c);   log s = bounded(h)                  (affine_scale.py)
    inverse  (normalizing):  x = y * s + t
    forward  (generative):   y = (x - t) / s
    log|det dx/dy| = sum(log s)   over one event -- a function of c alone

Because the log-det does not depend on ``y``, the injector moves information from the condition
into every feature without constraining the flow's Jacobian.
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfcflow.bijectors import affine_scale
from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_layer import FlowLayer


class AffineInjector(FlowBijector):
    """Condition-driven affine map (see module docstring).

    Args:
      network: callable ``network([condition]) -> [..., 2 * C]`` (shift, raw scale), where the
        output has the shape of one input event with doubled channels.
      condition: ``[batch, Dc]`` for vectors or ``[batch, H, W, Cc]`` for images (same H, W).
    """

    def __init__(self, network, condition, scale: str = "exp_tanh", clamp: float = 2.0,
                 event_ndims: int = 3, validate_args: bool = False, name: str = "affine_injector"):
        if condition is None:
            raise ValueError(f"{name}: AffineInjector needs a condition; got None")
        self._network = network
        self._condition = condition
        self._scale = affine_scale.check_scale_kind(scale)
        self._clamp = float(clamp)
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    def _affine_params(self, dtype):
        """``(t, s, log s)`` from one evaluation of the network on the condition."""
        shift, raw = tf.split(tf.cast(self._network([self._condition]), dtype), 2, axis=-1)
        return (shift, *affine_scale.scale_and_log_scale(raw, self._scale, self._clamp))

    def _inverse_and_log_det(self, y):
        shift, s, log_s = self._affine_params(y.dtype)
        return y * s + shift, self._sum_event(log_s)

    def _forward_and_log_det(self, x):
        shift, s, log_s = self._affine_params(x.dtype)
        return (x - shift) / s, -self._sum_event(log_s)


@keras.saving.register_keras_serializable(package="tfcflow")
class AffineInjectorLayer(FlowLayer):
    """Owns the injector network (a Keras layer taking ``[condition]`` and returning ``2 * C``
    channels/features, zero-initialized last layer)."""

    def __init__(self, network: keras.layers.Layer, scale: str = "exp_tanh", clamp: float = 2.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.scale = affine_scale.check_scale_kind(scale)
        self.clamp = float(clamp)

    @property
    def conditional(self) -> bool:
        return True

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        if condition_shape is None:
            raise ValueError(f"{self.name}: an affine injector needs a condition_shape to build")
        if self.event_ndims == 3 and tuple(condition_shape[1:3]) != tuple(input_shape[1:3]):
            raise ValueError(f"{self.name}: condition features must have the input's spatial size "
                             f"{list(input_shape[1:3])}, got condition shape {list(condition_shape)}")
        self.network.build([tuple(condition_shape)])
        out = getattr(self.network, "output_units", None) or getattr(self.network, "output_channels", None)
        if out is not None and out != 2 * int(input_shape[-1]):
            raise ValueError(f"{self.name}: the network must output 2 * {input_shape[-1]} channels, "
                             f"it outputs {out}")

    def bijector(self, condition: Optional[tf.Tensor] = None) -> AffineInjector:
        if condition is None:
            raise ValueError(f"{self.name}: AffineInjector needs a condition; got condition=None")
        return AffineInjector(self.network, condition, scale=self.scale, clamp=self.clamp,
                              event_ndims=self.event_ndims, name=self.name)

    def get_config(self):
        return {**super().get_config(), "network": keras.saving.serialize_keras_object(self.network),
                "scale": self.scale, "clamp": self.clamp}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
