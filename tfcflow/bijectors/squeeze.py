"""Squeeze (RealNVP/Glow): trade spatial resolution for channels, a pure reordering.

Math (NHWC, factor f)::

    inverse  (normalizing):  [H, W, C] -> [H/f, W/f, f*f*C]   (space_to_depth)
    forward  (generative):   [H/f, W/f, f*f*C] -> [H, W, C]   (depth_to_space)
    log|det| = 0
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_layer import FlowLayer


def check_divisible(shape, factor: int, name: str = "input") -> None:
    h, w = shape[-3], shape[-2]
    for label, size in (("height", h), ("width", w)):
        if size is not None and size % factor != 0:
            raise ValueError(f"{name}: image {label} {size} is not divisible by the squeeze factor "
                             f"{factor} (shape {list(shape)})")


class Squeeze(FlowBijector):
    """Space-to-depth reshaping of NHWC images (see module docstring)."""

    def __init__(self, factor: int = 2, validate_args: bool = False, name: str = "squeeze"):
        self._factor = int(factor)
        super().__init__(event_ndims=3, name=name, validate_args=validate_args)

    def _inverse_and_log_det(self, y):
        check_divisible(y.shape, self._factor, self.name)
        x = tf.nn.space_to_depth(y, self._factor)
        return x, tf.zeros(tf.shape(y)[:-3], y.dtype)

    def _forward_and_log_det(self, x):
        y = tf.nn.depth_to_space(x, self._factor)
        return y, tf.zeros(tf.shape(x)[:-3], x.dtype)

    def _forward_event_shape(self, input_shape):
        f = self._factor
        h, w, c = input_shape
        return tf.TensorShape([None if h is None else h * f, None if w is None else w * f,
                               None if c is None else c // (f * f)])

    def _inverse_event_shape(self, output_shape):
        f = self._factor
        h, w, c = output_shape
        return tf.TensorShape([None if h is None else h // f, None if w is None else w // f,
                               None if c is None else c * f * f])

    def _forward_event_shape_tensor(self, input_shape):
        f = self._factor
        return tf.stack([input_shape[0] * f, input_shape[1] * f, input_shape[2] // (f * f)])

    def _inverse_event_shape_tensor(self, output_shape):
        f = self._factor
        return tf.stack([output_shape[0] // f, output_shape[1] // f, output_shape[2] * f * f])


@keras.saving.register_keras_serializable(package="tfcflow")
class SqueezeLayer(FlowLayer):
    """Variable-free; a layer so that squeezes sit in flow layer lists like every other step."""

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        if self.event_ndims != 3:
            raise ValueError(f"{self.name}: squeeze works on NHWC images, got shape {list(input_shape)}")
        check_divisible(input_shape, self.factor, self.name)

    def bijector(self, condition=None) -> Squeeze:
        return Squeeze(self.factor, name=self.name)

    def output_shape_for(self, input_shape):
        b, h, w, c = input_shape
        f = self.factor
        # None: an image size known only at run time (fully convolutional flows)
        return (b, None if h is None else h // f, None if w is None else w // f, c * f * f)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
