"""Condition encoder of the conditional Glow (SRFlow design, small): one feature map per level."""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfcflow")
class ConditionEncoder(keras.layers.Layer):
    """Maps a condition to the feature maps that each flow level's injectors / couplings / prior see.

    - Image condition ``[batch, h, w, c]`` (any size, values in [-0.5, 0.5]): resized to the target
      size ``H x W`` (``resize_method``), then conv3x3(channels)-act and, per level l, a stride-2
      conv3x3(channels)-act, giving features at ``H / 2^(l+1)``; each level also gets the resized
      condition itself, squeezed to that resolution (a lossless skip path).
    - Vector condition ``[batch, d]`` (e.g. a one-hot label): Dense(channels)-act-Dense(channels)-act,
      broadcast over every level's spatial grid.

    Output: a list of ``levels`` tensors ``[batch, H / 2^(l+1), W / 2^(l+1), feature_channels(l)]``.
    """

    def __init__(self, target_size: Sequence[int], levels: int, channels: int = 32,
                 activation: str = "relu", resize_method: str = "bicubic", **kwargs):
        super().__init__(**kwargs)
        self.target_size = tuple(int(d) for d in target_size)
        self.levels = int(levels)
        self.channels = int(channels)
        self.activation = activation
        self.resize_method = resize_method
        self._image_condition = None
        self._condition_channels = None

    def build(self, condition_shape):
        policy = self.dtype_policy
        rank = len(condition_shape)
        if rank == 4:
            self._image_condition = True
            self._condition_channels = int(condition_shape[-1])
            h, w = self.target_size
            self.stem = keras.layers.Conv2D(self.channels, 3, padding="same", activation=self.activation,
                                            dtype=policy, name="stem")
            self.stem.build((None, h, w, self._condition_channels))
            self.down = []
            for l in range(self.levels):
                conv = keras.layers.Conv2D(self.channels, 3, strides=2, padding="same",
                                           activation=self.activation, dtype=policy, name=f"down{l}")
                conv.build((None, h >> l, w >> l, self.channels))
                self.down.append(conv)
        elif rank == 2:
            self._image_condition = False
            self._condition_channels = int(condition_shape[-1])
            self.dense = [keras.layers.Dense(self.channels, activation=self.activation, dtype=policy,
                                             name=f"dense{i}") for i in range(2)]
            self.dense[0].build((None, self._condition_channels))
            self.dense[1].build((None, self.channels))
        else:
            raise ValueError(f"{self.name}: conditions are vectors [batch, d] or images [batch, h, w, c]; "
                             f"got shape {list(condition_shape)}")
        self.built = True

    def feature_shapes(self, batch=None) -> list:
        """Shapes of the outputs, one per level."""
        h, w = self.target_size
        shapes = []
        for l in range(self.levels):
            f = 2 ** (l + 1)
            extra = self._condition_channels * f * f if self._image_condition else 0
            shapes.append((batch, h // f, w // f, self.channels + extra))
        return shapes

    def call(self, condition):
        h, w = self.target_size
        if not self._image_condition:
            feat = self.dense[1](self.dense[0](condition))
            return [tf.cast(tf.tile(feat[:, None, None, :], [1, h // 2 ** (l + 1), w // 2 ** (l + 1), 1]),
                            tf.float32) for l in range(self.levels)]
        image = condition
        if tuple(condition.shape[1:3]) != (h, w):
            image = tf.image.resize(condition, (h, w), method=self.resize_method)
        feat = self.stem(image)
        out = []
        for l, conv in enumerate(self.down):
            feat = conv(feat)
            skip = tf.nn.space_to_depth(tf.cast(image, feat.dtype), 2 ** (l + 1))
            out.append(tf.cast(tf.concat([feat, skip], axis=-1), tf.float32))
        return out

    def get_config(self):
        return {**super().get_config(), "target_size": list(self.target_size), "levels": self.levels,
                "channels": self.channels, "activation": self.activation,
                "resize_method": self.resize_method}
