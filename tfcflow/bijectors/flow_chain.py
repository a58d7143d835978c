"""Composition of flow bijectors, and the Keras layer that owns a sequence of flow layers.

Math: with parts ``b_1 .. b_n`` listed in normalizing order (data -> latent)::

    inverse  (normalizing):  z = b_n^{-1}( ... b_1^{-1}(x))
    forward  (generative):   x = b_1( ... b_n(z))
    log|det dz/dx| = sum_i log|det d b_i^{-1}|   evaluated along the way

This is ``tfb.Chain([b_1, ..., b_n])`` (same order, same result) with the fused one-pass
output-and-log-det of ``FlowBijector``, and with every part's condition bound when the view is
built, so nothing depends on Chain's name-keyed kwargs.
"""
from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_layer import FlowLayer
from tfcflow.bijectors.fused_step import fuse_steps


class FlowChain(FlowBijector):
    """Chains ``parts`` (``FlowBijector``s in normalizing order, all with the same event_ndims;
    see module docstring)."""

    def __init__(self, parts: Sequence[FlowBijector], event_ndims: Optional[int] = None,
                 validate_args: bool = False, name: str = "flow_chain"):
        self._parts = list(parts)
        ndims = {p.event_ndims for p in self._parts}
        if event_ndims is None:
            event_ndims = min(ndims, default=1)
        if ndims - {event_ndims}:
            raise ValueError(f"{name}: all parts must have event_ndims={event_ndims}, got {sorted(ndims)}")
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    @property
    def parts(self) -> list:
        return list(self._parts)

    def _inverse_and_log_det(self, y):
        total = tf.zeros(tf.shape(y)[:-self.event_ndims], y.dtype)
        for part in self._parts:
            y_next, ldj = part.inverse_and_log_det(y)
            total += ldj
            y = y_next
        return y, total

    def _forward_and_log_det(self, x):
        total = tf.zeros(tf.shape(x)[:-self.event_ndims], x.dtype)
        for part in reversed(self._parts):
            x_next, ldj = part.forward_and_log_det(x)
            total += ldj
            x = x_next
        return x, total

    def _forward_event_shape(self, input_shape):
        for part in reversed(self._parts):
            input_shape = part.forward_event_shape(input_shape)
        return input_shape

    def _inverse_event_shape(self, output_shape):
        for part in self._parts:
            output_shape = part.inverse_event_shape(output_shape)
        return output_shape

    def _forward_event_shape_tensor(self, input_shape):
        for part in reversed(self._parts):
            input_shape = part.forward_event_shape_tensor(input_shape)
        return input_shape

    def _inverse_event_shape_tensor(self, output_shape):
        for part in self._parts:
            output_shape = part.inverse_event_shape_tensor(output_shape)
        return output_shape


@keras.saving.register_keras_serializable(package="tfcflow")
class FlowSequence(FlowLayer):
    """A flow layer made of flow layers, applied in normalizing order (data -> latent).

    Every conditional part receives the same condition. Shapes: ``[batch, ...event]`` in,
    ``[batch, ...latent event]`` out (differs only if a Squeeze is inside).
    """

    def __init__(self, steps: Sequence[FlowLayer], **kwargs):
        super().__init__(**kwargs)
        self.steps = list(steps)
        #: an execution choice, not config (tfcflow/execution.py): run ActNorm -> 1x1 conv
        #: [-> coupling] as one FusedStep; set through ``model.execution``
        self.fused_steps = False

    @property
    def conditional(self) -> bool:
        return any(step.conditional for step in self.steps)

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        shape = tuple(input_shape)
        for step in self.steps:
            step.build(shape, condition_shape)
            shape = step.output_shape_for(shape)

    def output_shape_for(self, input_shape):
        shape = tuple(input_shape)
        for step in self.steps:
            shape = step.output_shape_for(shape)
        return shape

    def bijector(self, condition=None) -> FlowChain:
        """The chain of the steps' views; with ``fused_steps`` each ActNorm -> 1x1 conv [-> coupling]
        runs as one ``FusedStep`` (same map, fewer passes over the activations)."""
        parts = [step.bijector(condition if step.conditional else None) for step in self.steps]
        if self.fused_steps:
            parts = fuse_steps(parts)
        return FlowChain(parts, event_ndims=self.event_ndims, name=self.name)

    def data_init(self, x, condition=None, force: bool = False):
        """Initializes every ActNorm in order, each on the activations reaching it."""
        h = tf.convert_to_tensor(x)
        for step in self.steps:
            c = condition if step.conditional else None
            step.data_init(h, c, force=force)
            h, _ = step.bijector(c).inverse_and_log_det(h)

    def get_config(self):
        return {**super().get_config(),
                "steps": [keras.saving.serialize_keras_object(s) for s in self.steps]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["steps"] = [keras.saving.deserialize_keras_object(s) for s in config["steps"]]
        return cls(**config)
