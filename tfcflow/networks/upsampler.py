"""A residual CNN that predicts the correction of a bicubic upsampling (the learned residual base)."""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfcflow")
class ResidualUpsampler(keras.layers.Layer):
    """conv3x3-relu, ``depth`` residual blocks (conv3x3-relu-conv3x3, plus the block's input), then a
    zero-initialized conv3x3 to ``output_channels * factor^2`` channels rearranged to ``factor`` times
    the input's size (depth_to_space), all at the input's resolution (cheap: the work is 1/factor^2
    of the target's pixels).

    The output is a correction added to the bicubic upsampling of the input (EDSR / ESPCN-style
    sub-pixel SR); it starts at exactly zero, so a fresh model's base is bicubic.

    Shapes: ``[batch, h, w, c_in]`` -> ``[batch, h * factor, w * factor, output_channels]`` (float32).
    """

    def __init__(self, output_channels: int, factor: int = 1, width: int = 64, depth: int = 4, **kwargs):
        super().__init__(**kwargs)
        if int(factor) < 1 or int(width) < 1 or int(depth) < 0:
            raise ValueError(f"ResidualUpsampler needs factor >= 1, width >= 1 and depth >= 0, got factor {factor}, "
                             f"width {width}, depth {depth}")
        self.output_channels, self.factor, self.width, self.depth = int(output_channels), int(factor), int(width), \
            int(depth)

        def conv(channels, name, activation=None, zero=False):
            init = dict(kernel_initializer="zeros", bias_initializer="zeros") if zero else {}
            return keras.layers.Conv2D(channels, 3, padding="same", activation=activation, name=name,
                                       dtype=self.dtype_policy, **init)

        self.conv_in = conv(self.width, "conv_in", "relu")
        self.blocks = [(conv(self.width, f"block{k}_a", "relu"), conv(self.width, f"block{k}_b"))
                       for k in range(self.depth)]
        self.conv_out = conv(self.output_channels * self.factor ** 2, "conv_out", zero=True)

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv_in.build(shape)
        hidden = shape[:3] + (self.width,)
        for a, b in self.blocks:
            a.build(hidden)
            b.build(hidden)
        self.conv_out.build(hidden)
        self.built = True

    def call(self, inputs):
        h = self.conv_in(inputs)
        for a, b in self.blocks:
            h = h + b(a(h))
        out = tf.cast(self.conv_out(h), tf.float32)
        return out if self.factor == 1 else tf.nn.depth_to_space(out, self.factor)

    def get_config(self):
        return {**super().get_config(), "output_channels": self.output_channels, "factor": self.factor,
                "width": self.width, "depth": self.depth}
