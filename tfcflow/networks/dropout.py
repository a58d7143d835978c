"""Dropout in the coupling networks while a model trains, with masks drawn from the step's seed.

Why not ``keras.layers.Dropout``: the flows' train step evaluates the bijectors directly (they
are views built per call), not through a Keras ``__call__(training=True)``, and Keras' dropout
draws from a stateful seed generator, while every draw in tfcflow is a function of (seed, step,
example position) only, the same for any number of replicas and sub-batches.

So the model opens ``training_dropout(noise)`` around the flow's training log-density (the train
step's ``_flow_nll(..., seed)``); inside it, a network's ``dropout(h, rate, name)`` multiplies the
hidden activations ``h`` ``[batch, units]`` by ``m / (1 - rate)`` with ``m = 1[u >= rate]``,
``u = noise([batch, units], layer_key(name))`` uniform on (0, 1), a stream per layer. Outside
the context (``log_prob``, ``sample``, validation, exports) it is the identity, so the flow
evaluated is the deterministic one with the trained weights (inverted dropout keeps the expected
activation equal to the evaluated one).

The context is read while a function is traced, like Keras' own call context: the train step's
graph holds the masks, the other graphs do not.
"""
from __future__ import annotations

import contextlib
import threading
import zlib
from typing import Callable, Iterator

import tensorflow as tf

_state = threading.local()

#: ``noise(shape, key) -> [rows, units]`` uniform (0, 1), a stream per ``key`` (an int >= 0)
Noise = Callable[[tf.Tensor, int], tf.Tensor]


@contextlib.contextmanager
def training_dropout(noise: Noise) -> Iterator[None]:
    """Dropout is on in the networks evaluated (traced) inside this context."""
    previous = getattr(_state, "noise", None)
    _state.noise = noise
    try:
        yield
    finally:
        _state.noise = previous


def layer_key(name: str) -> int:
    """A stable stream number for a layer's name (its masks differ from every other layer's)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def dropout(h: tf.Tensor, rate: float, name: str) -> tf.Tensor:
    """``h`` ``[batch, units]`` with inverted dropout at ``rate`` while training; else ``h``."""
    noise = getattr(_state, "noise", None)
    if noise is None or rate == 0.0:
        return h
    keep = noise(tf.shape(h), layer_key(name)) >= rate
    return h * tf.cast(keep, h.dtype) / tf.cast(1.0 - rate, h.dtype)
