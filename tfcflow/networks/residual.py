"""Residual network with condition gating, for coupling parameters on vectors.

The conditioner of neural spline flows (Durkan et al. 2019, nflows' ``ResidualNet``): the
condition enters at the input and again in every block, through a gate::

    h = Dense(width)([u, c])
    per block:  r = Dense(width)(dropout(act(Dense(width)(act(h)))))
                h = h + r * sigmoid(Dense(width)(c))          (GLU gate; r alone without c)
    out = Dense(output_units)(act(h))                          (zero-initialized)

The gate lets the condition switch features of every block on and off multiplicatively; an MLP
on ``[u, c]`` sees the condition only once, additively, at its input. Each block's last Dense
starts near zero, so the network starts close to its input layer. ``dropout`` (as nflows'
``ResidualNet``) acts only while a model trains (networks/dropout.py).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfcflow import _checks
from tfcflow.networks.dropout import dropout as _dropout


@keras.saving.register_keras_serializable(package="tfcflow")
class ResidualNetwork(keras.layers.Layer):
    """``blocks`` condition-gated residual blocks of ``width`` units (see module docstring).

    Shapes: inputs ``[[batch, D]]`` or ``[[batch, D], [batch, M]]`` (the untouched features, then
    the condition) -> ``[batch, output_units]``, float32.
    """

    def __init__(self, output_units: int, width: int = 128, blocks: int = 2, activation: str = "relu",
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.output_units = int(output_units)
        self.dropout = _checks.check_fraction(dropout, "dropout")
        self.width = int(width)
        self.blocks = int(blocks)
        self.activation = activation
        self._act = keras.activations.get(activation)
        policy = self.dtype_policy
        self.inp = keras.layers.Dense(self.width, dtype=policy, name="in")
        small = keras.initializers.RandomUniform(-1e-3, 1e-3)
        self.first = [keras.layers.Dense(self.width, dtype=policy, name=f"block{i}_dense0")
                      for i in range(self.blocks)]
        self.second = [keras.layers.Dense(self.width, kernel_initializer=small, bias_initializer=small,
                                          dtype=policy, name=f"block{i}_dense1") for i in range(self.blocks)]
        self.gates = [keras.layers.Dense(self.width, dtype=policy, name=f"block{i}_gate") for i in range(self.blocks)]
        self.out = keras.layers.Dense(self.output_units, kernel_initializer="zeros", bias_initializer="zeros",
                                      dtype=policy, name="out")
        self._conditional = False

    def build(self, input_shapes):
        if len(input_shapes) not in (1, 2):
            raise ValueError(f"{self.name}: takes [features] or [features, condition], got {len(input_shapes)} inputs")
        self._conditional = len(input_shapes) == 2
        self.inp.build((None, sum(int(s[-1]) for s in input_shapes)))
        for first, second, gate in zip(self.first, self.second, self.gates):
            first.build((None, self.width))
            second.build((None, self.width))
            if self._conditional:
                gate.build((None, int(input_shapes[1][-1])))
        self.out.build((None, self.width))
        self.built = True

    def call(self, inputs):
        c = inputs[1] if self._conditional else None
        h = self.inp(inputs[0] if c is None else tf.concat(list(inputs), axis=-1))
        for first, second, gate in zip(self.first, self.second, self.gates):
            r = second(_dropout(self._act(first(self._act(h))), self.dropout, f"{self.name}/{first.name}"))
            if c is not None:
                r = r * tf.sigmoid(gate(c))
            h = h + r
        return tf.cast(self.out(self._act(h)), tf.float32)

    def get_config(self):
        return {**super().get_config(), "output_units": self.output_units, "width": self.width,
                "blocks": self.blocks, "activation": self.activation, "dropout": self.dropout}
