"""Base class of the Keras layers that own flow parameters.

A ``FlowLayer`` holds variables (``add_weight``) and builds a stateless ``FlowBijector`` view over
them on every call: ``layer.bijector(condition)``. The view is never stored on the layer or model:
a TFP bijector attribute hides its variables from Keras tracking (see shared STACK.md).

Calling the layer (``layer(x, condition=c)``) runs the normalizing direction and returns
``(z, log_det)`` with ``log_det = log|det dz/dx|`` of shape ``[batch]``.
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector


def event_ndims_for(input_shape) -> int:
    """Rank-2 inputs are vectors (event_ndims 1), rank-4 inputs are NHWC images (event_ndims 3)."""
    rank = len(input_shape)
    if rank == 2:
        return 1
    if rank == 4:
        return 3
    raise ValueError(f"flow layers take vectors [batch, D] or NHWC images [batch, H, W, C]; "
                     f"got an input of rank {rank} (shape {list(input_shape)})")


class FlowLayer(keras.layers.Layer):
    """Owns the variables of one bijector. Flow parameters are always float32 (mixed precision
    applies only to the networks inside coupling/injector layers)."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self._event_ndims: Optional[int] = None

    @property
    def event_ndims(self) -> int:
        if self._event_ndims is None:
            raise ValueError(f"layer {self.name!r} is not built yet")
        return self._event_ndims

    @property
    def conditional(self) -> bool:
        """True if this layer's bijector needs a condition."""
        return False

    def build(self, input_shape, condition_shape=None):
        self._event_ndims = event_ndims_for(input_shape)
        self.built = True

    def bijector(self, condition: Optional[tf.Tensor] = None) -> FlowBijector:
        raise NotImplementedError

    def data_init(self, x: tf.Tensor, condition: Optional[tf.Tensor] = None, force: bool = False) -> None:
        """Data-dependent initialization from a batch (``x`` on this layer's data side); a no-op
        except for layers with data-dependent parameters (ActNorm)."""

    def output_shape_for(self, input_shape):
        """Shape after the normalizing direction (changed only by Squeeze)."""
        return tuple(input_shape)

    def call(self, x, condition=None):
        return self.bijector(condition).inverse_and_log_det(x)
