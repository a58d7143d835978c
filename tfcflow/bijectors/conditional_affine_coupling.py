"""Conditional affine coupling (RealNVP / Glow / cINN): half the features are transformed by an
affine map whose shift and scale come from a network of the other half and the condition.

Math (``x`` latent side, ``y`` data side; split on the last axis, ``k = C // 2``)::

    y = [y_1, y_2],  y_1 = y[..., :k],  y_2 = y[..., k:]   (flip swaps the roles of the parts)
    (t, h) = NN(y_1, c);   log s = bounded(h)                 (affine_scale.py)
    inverse  (normalizing):  x_1 = y_1,  x_2 = y_2 * s + t
    forward  (generative):   y_1 = x_1,  y_2 = (x_2 - t) / s
    log|det dx/dy| = sum(log s)   over the transformed part of one event

The untouched part is the same on both sides, so the network sees the same input in both
directions: one network evaluation gives the output and its log-det. Without a condition
(``c = None``) this is the plain affine coupling.
"""
from __future__ import annotations


import keras
import tensorflow as tf

from tfcflow.bijectors import affine_scale
from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.coupling_layer import CouplingLayer, merge_halves, split_halves


class ConditionalAffineCoupling(FlowBijector):
    """Affine coupling conditioned on ``condition`` (see module docstring).

    Args:
      network: callable ``network([y_1, condition]) -> [..., 2 * dim(y_2)]`` (shift, raw scale).
      condition: conditioning tensor (vector ``[batch, Dc]`` or feature map ``[batch, H, W, Cc]``),
        or None for an unconditional coupling.
      flip: transform the first part given the second instead.
      scale: ``"sigmoid"`` or ``"exp_tanh"`` (affine_scale.py).
      clamp: bound of ``exp_tanh``.
    """

    def __init__(self, network, condition=None, flip: bool = False, scale: str = "exp_tanh",
                 clamp: float = 2.0, event_ndims: int = 1, validate_args: bool = False,
                 name: str = "conditional_affine_coupling"):
        self._network = network
        self._condition = condition
        self._flip = bool(flip)
        self._scale = affine_scale.check_scale_kind(scale)
        self._clamp = float(clamp)
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    def channel_ranges(self, channels: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((start, stop) untouched, (start, stop) transformed)`` on the last axis."""
        k = channels // 2
        first, second = (0, k), (k, channels)
        return (second, first) if self._flip else (first, second)

    def _split(self, t):
        return split_halves(t, self._flip)

    def _merge(self, untouched, transformed):
        return merge_halves(untouched, transformed, self._flip)

    def _network_output(self, untouched):
        inputs = [untouched] if self._condition is None else [untouched, self._condition]
        return tf.cast(self._network(inputs), untouched.dtype)

    def _affine_params(self, untouched):
        """``(t, s, log s)`` of the transformed part, from one network evaluation."""
        shift, raw = tf.split(self._network_output(untouched), 2, axis=-1)
        return (shift, *affine_scale.scale_and_log_scale(raw, self._scale, self._clamp))

    def inverse_from_halves(self, untouched: tf.Tensor, transformed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The normalizing direction on an input already split into its two parts (``y_1``,
        ``y_2``; see ``channel_ranges``): ``(x, log|det dx/dy|)``."""
        shift, s, log_s = self._affine_params(untouched)
        return self._merge(untouched, transformed * s + shift), self._sum_event(log_s)

    def _inverse_and_log_det(self, y):
        return self.inverse_from_halves(*self._split(y))

    def _forward_and_log_det(self, x):
        untouched, transformed = self._split(x)
        shift, s, log_s = self._affine_params(untouched)
        y = self._merge(untouched, (transformed - shift) / s)
        return y, -self._sum_event(log_s)


@keras.saving.register_keras_serializable(package="tfcflow")
class AffineCouplingLayer(CouplingLayer):
    """Owns the coupling network (coupling_layer.py). Conditional when built with a ``condition_shape``.

    Args:
      network: a Keras layer taking ``[untouched, condition]`` (or ``[untouched]``) and returning
        ``2 * dim(transformed)`` features/channels, zero-initialized last layer
        (e.g. ``MLPNetwork`` / ``ConvNetwork``).
      flip, scale, clamp: see ``ConditionalAffineCoupling``.
    """

    PARAMS = "shift and scale"

    def __init__(self, network: keras.layers.Layer, flip: bool = False, scale: str = "exp_tanh",
                 clamp: float = 2.0, **kwargs):
        super().__init__(network, flip=flip, **kwargs)
        self.scale = affine_scale.check_scale_kind(scale)
        self.clamp = float(clamp)

    def params_per_feature(self) -> int:
        return 2

    def _view(self, condition) -> ConditionalAffineCoupling:
        return ConditionalAffineCoupling(self.network, condition, flip=self.flip, scale=self.scale,
                                         clamp=self.clamp, event_ndims=self.event_ndims, name=self.name)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "clamp": self.clamp}
