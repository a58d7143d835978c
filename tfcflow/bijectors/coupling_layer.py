"""The Keras side shared by every coupling: a layer that owns the network of one coupling.

A coupling splits its input's last axis into an untouched part and a transformed part (``flip``
swaps them); the network sees the untouched part (and the condition) and outputs the parameters
of the transformed part. Subclasses say how many parameters per transformed feature they need
(``params_per_feature``) and build their bijector view (``_view``).
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_layer import FlowLayer


def split_sizes(channels: int, flip: bool) -> tuple[int, int]:
    """``(untouched, transformed)`` sizes of a coupling's split of ``channels`` (``k = C // 2``)."""
    k = channels // 2
    untouched = channels - k if flip else k
    return untouched, channels - untouched


def split_halves(t: tf.Tensor, flip: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """``(untouched, transformed)`` parts of ``t``'s last axis (sizes: ``split_sizes``). One Split
    op: its gradient is one concat (slicing twice costs two zero-filled StridedSliceGrads and their
    sum, ~10% of a Glow training step on CPU)."""
    k = t.shape[-1] // 2
    a, b = tf.split(t, [k, t.shape[-1] - k], axis=-1)
    return (b, a) if flip else (a, b)


def merge_halves(untouched: tf.Tensor, transformed: tf.Tensor, flip: bool) -> tf.Tensor:
    """The inverse of ``split_halves``."""
    return tf.concat([transformed, untouched] if flip else [untouched, transformed], axis=-1)


class CouplingLayer(FlowLayer):
    """Owns the coupling network. Conditional when built with a ``condition_shape``.

    Args:
      network: a Keras layer taking ``[untouched, condition]`` (or ``[untouched]``), whose output
        has ``params_per_feature`` values per transformed feature; zero-initialized last layer
        so the coupling starts as the identity.
      flip: transform the first part given the second instead.
    """

    #: what the network outputs per transformed feature, for the build-time check's message
    PARAMS = "parameters"

    def __init__(self, network: keras.layers.Layer, flip: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.flip = bool(flip)
        self._conditional = False

    def params_per_feature(self) -> int:
        raise NotImplementedError

    @property
    def conditional(self) -> bool:
        return self._conditional

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        channels = int(input_shape[-1])
        if channels < 2:
            raise ValueError(f"{self.name}: a coupling needs at least 2 features/channels to split, "
                             f"got input shape {list(input_shape)}")
        untouched, transformed = split_sizes(channels, self.flip)
        self._conditional = condition_shape is not None
        shapes = [tuple(input_shape[:-1]) + (untouched,)]
        if self._conditional:
            shapes.append(tuple(condition_shape))
        if not self.network.built:  # deserialized layers arrive with their network already built
            self.network.build(shapes)
        out = getattr(self.network, "output_units", None) or getattr(self.network, "output_channels", None)
        want = self.params_per_feature() * transformed
        if out is not None and out != want:
            raise ValueError(f"{self.name}: the network must output {self.params_per_feature()} * {transformed} = "
                             f"{want} features ({self.PARAMS} of the transformed part), it outputs {out}")

    def bijector(self, condition: Optional[tf.Tensor] = None) -> FlowBijector:
        if self._conditional and condition is None:
            raise ValueError(f"{self.name}: this coupling was built with a condition; got condition=None")
        if not self._conditional and condition is not None:
            raise ValueError(f"{self.name}: this coupling was built without a condition; got one")
        return self._view(condition)

    def _view(self, condition: Optional[tf.Tensor]) -> FlowBijector:
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "network": keras.saving.serialize_keras_object(self.network),
                "flip": self.flip}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
