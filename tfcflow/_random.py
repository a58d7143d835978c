"""Stateless random draws that give the same numbers eagerly, in graphs and under XLA.

Measured on TF 2.21: ``tf.random.stateless_normal`` / ``stateless_uniform`` return different
numbers for the same seed inside an XLA-compiled function (even with ``alg="philox"``), while the
raw Philox bits (``dtype=uint32``) agree. So every draw in tfcflow starts from those bits:

    u = ((bits >> 9) + 0.5) * 2^-23          uniform on (0, 1), 23-bit resolution
    z = sqrt(2) * erfinv(2u - 1)             standard normal (inverse CDF)

Every u is exactly representable in float32 and so is 2u - 1, strictly inside (-1, 1): with 24
bits the top value 1 - 2^-25 rounded to 1.0 and erfinv(1) = inf, one draw in 2^24 -- measured as a
training run turning NaN after ~9M padding-noise draws.

A seed is a ``[2]`` integer tensor; the same seed gives the same draws in training steps (XLA or
not), in exported SavedModels and in eager calls.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfcflow import _compat

ALG = "philox"


def seed_tensor(seed) -> tf.Tensor:
    """``None`` -> a fresh random seed; an int -> ``[seed, 0]``; a ``[2]`` int tensor as is."""
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=2**31 - 1, dtype=tf.int32)  # a fresh seed
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        return tf.stack([tf.cast(seed, tf.int32), 0])
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"seed must be an int or a [2] int tensor, got shape {seed.shape.as_list()}")
    return tf.cast(seed, tf.int32)


def _bits(shape, seed, offset=None) -> tf.Tensor:
    """uint32 Philox bits of ``shape``. With ``offset`` (an element count, int scalar): elements
    ``offset, offset + 1, ...`` of the seed's flat stream, i.e. equal to
    ``reshape(_bits([offset + size], seed)[offset:], shape)`` without drawing the first ``offset``."""
    if offset is None:
        return tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.uint32, alg=ALG)
    key, counter, alg = _compat.philox_key_counter(seed)
    # Philox gives 4 uint32 per counter value: flat element k comes from counter + k // 4, lane k % 4
    offset = tf.cast(offset, tf.uint64)
    low = counter[0] + offset // 4
    high = counter[1] + tf.cast(low < counter[0], tf.uint64)  # carry into the counter's high word
    lead = tf.cast(offset % 4, tf.int32)
    size = tf.reduce_prod(tf.cast(shape, tf.int32))
    flat = tf.raw_ops.StatelessRandomUniformFullIntV2(shape=tf.reshape(size + lead, [1]), key=key,
                                                      counter=tf.stack([low, high]), alg=alg, dtype=tf.uint32)
    return tf.reshape(flat[lead:], shape)


def uniform(shape, seed, minval=0.0, maxval=1.0, dtype=tf.float32, offset=None) -> tf.Tensor:
    """Uniform on (minval, maxval); ``offset``: see ``_bits`` (a slice of a larger draw)."""
    u = (tf.cast(tf.bitwise.right_shift(_bits(shape, seed, offset), 9), tf.float32) + 0.5) * (2.0 ** -23)
    return tf.cast(minval + (maxval - minval) * u, dtype)


def normal(shape, seed, dtype=tf.float32, offset=None) -> tf.Tensor:
    """Standard normal; ``offset``: see ``_bits`` (a slice of a larger draw)."""
    return tf.cast(math.sqrt(2.0) * tf.math.erfinv(2.0 * uniform(shape, seed, offset=offset) - 1.0), dtype)


def split(seed, num: int) -> tf.Tensor:
    """``[num, 2]``: ``num`` independent seeds derived from ``seed``."""
    return tf.bitcast(_bits([num, 2], seed), tf.int32)


def fold_in_tensor(seed, index) -> tf.Tensor:
    """The seed derived from ``seed`` for an int tensor ``index`` (e.g. a loop counter in a graph)."""
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(index, tf.int32))


def fold_in(seed, index: int) -> tf.Tensor:
    """The ``index``-th seed derived from ``seed`` (a new stream per index)."""
    return split(seed, index + 1)[index]
