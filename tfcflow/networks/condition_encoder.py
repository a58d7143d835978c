"""Condition encoder of the conditional Glow (SRFlow design, small): one feature map per level."""
from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from tfcflow.bijectors.multiscale import spatial_size


@keras.saving.register_keras_serializable(package="tfcflow")
class ConditionEncoder(keras.layers.Layer):
    """Maps a condition to the feature maps that each flow level's injectors / couplings / prior see,
    for targets of any size (every part is convolutional or broadcast).

    - Image condition ``[batch, h, w, c]`` (values in [-0.5, 0.5]): resized by ``factor`` to the
      target size ``H x W = h*factor x w*factor`` (``resize_method``; factor 1: used as it is), then
      conv3x3(channels)-act and, per level l, a stride-2 conv3x3(channels)-act, giving features at
      ``H / 2^(l+1)``; each level also gets the resized condition itself, squeezed to that
      resolution (a lossless skip path).
    - Vector condition ``[batch, d]`` (e.g. a one-hot label): Dense(channels)-act-Dense(channels)-act,
      broadcast over every level's spatial grid; the target ``size`` must be given (a label has none).

    Output: a list of ``levels`` tensors ``[batch, H / 2^(l+1), W / 2^(l+1), feature_channels(l)]``.
    """

    def __init__(self, levels: int, channels: int = 32, factor: int = 1, activation: str = "relu",
                 resize_method: str = "bicubic", **kwargs):
        super().__init__(**kwargs)
        self.levels = int(levels)
        self.channels = int(channels)
        self.factor = int(factor)
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
            # the weights do not depend on the image size: build for any
            self.stem = keras.layers.Conv2D(self.channels, 3, padding="same", activation=self.activation,
                                            dtype=policy, name="stem")
            self.stem.build((None, None, None, self._condition_channels))
            self.down = []
            for l in range(self.levels):
                conv = keras.layers.Conv2D(self.channels, 3, strides=2, padding="same",
                                           activation=self.activation, dtype=policy, name=f"down{l}")
                conv.build((None, None, None, self.channels))
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

    def feature_shapes(self, size: Optional[Sequence[Optional[int]]] = None, batch=None) -> list:
        """Shapes of the outputs, one per level, for targets of ``size`` ``(H, W)`` (None: any)."""
        h, w = size if size is not None else (None, None)
        shapes = []
        for l in range(self.levels):
            f = 2 ** (l + 1)
            extra = self._condition_channels * f * f if self._image_condition else 0
            shapes.append((batch, None if h is None else h // f, None if w is None else w // f,
                           self.channels + extra))
        return shapes

    def call(self, condition, size=None):
        """``size``: ``(H, W)`` of the targets (ints or scalar tensors); needed for vector conditions,
        implied (condition size x factor) for image conditions."""
        if not self._image_condition:
            if size is None:
                raise ValueError(f"{self.name}: a vector condition needs the target size to broadcast to")
            h, w = size
            feat = self.dense[1](self.dense[0](condition))
            return [tf.cast(tf.tile(feat[:, None, None, :], [1, h // 2 ** (l + 1), w // 2 ** (l + 1), 1]), tf.float32)
                    for l in range(self.levels)]
        image = condition
        if self.factor != 1:
            image = tf.image.resize(condition, [d * self.factor for d in spatial_size(condition)],
                                    method=self.resize_method)
        feat = self.stem(image)
        out = []
        for l, conv in enumerate(self.down):
            feat = conv(feat)
            skip = tf.nn.space_to_depth(tf.cast(image, feat.dtype), 2 ** (l + 1))
            out.append(tf.cast(tf.concat([feat, skip], axis=-1), tf.float32))
        return out

    def get_config(self):
        return {**super().get_config(), "levels": self.levels, "channels": self.channels, "factor": self.factor,
                "activation": self.activation, "resize_method": self.resize_method}
