"""Fully connected network for coupling / injector parameters on vectors."""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from tfcflow import _checks
from tfcflow.networks.dropout import dropout as _dropout


@keras.saving.register_keras_serializable(package="tfcflow")
class MLPNetwork(keras.layers.Layer):
    """Concatenates its inputs on the last axis, then Dense(h)-act ... Dense(output_units).

    The output layer starts at zero, so a coupling or injector built on it starts as (near)
    identity. Runs in the layer's dtype policy (mixed precision allowed); the output is float32.
    ``dropout``: rate of dropout after each hidden layer while a model trains (networks/dropout.py;
    the identity in ``log_prob`` / ``sample``).

    Shapes: inputs ``[[batch, D1], [batch, D2], ...]`` -> ``[batch, output_units]``.
    """

    def __init__(self, output_units: int, hidden_units: Sequence[int] = (512, 512),
                 activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.output_units = int(output_units)
        self.dropout = _checks.check_fraction(dropout, "dropout")
        self.hidden_units = tuple(int(h) for h in hidden_units)
        self.activation = activation
        self.hidden = [keras.layers.Dense(h, activation=activation, dtype=self.dtype_policy,
                                          name=f"dense_{i}") for i, h in enumerate(self.hidden_units)]
        self.out = keras.layers.Dense(self.output_units, kernel_initializer="zeros",
                                      bias_initializer="zeros", dtype=self.dtype_policy, name="out")

    def build(self, input_shapes):
        width = sum(int(s[-1]) for s in input_shapes)
        shape = (None, width)
        for layer in self.hidden:
            layer.build(shape)
            shape = (None, layer.units)
        self.out.build(shape)
        self.built = True

    def call(self, inputs):
        h = inputs[0] if len(inputs) == 1 else tf.concat(list(inputs), axis=-1)
        for layer in self.hidden:
            h = _dropout(layer(h), self.dropout, f"{self.name}/{layer.name}")
        return tf.cast(self.out(h), tf.float32)

    def get_config(self):
        return {**super().get_config(), "output_units": self.output_units,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "dropout": self.dropout}
