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

A seed's draws are one flat stream: element k comes from Philox-4x32-10 (Salmon et al. 2011) at
counter ``c + k // 4``, output lane ``k % 4``, for the ``(key, c)`` that TF derives from the seed. A
draw can start anywhere in the stream (``offset``: a scalar) or take any elements of it (``offset``:
one position per element), which rejection sampling uses to redraw scattered rows without drawing
the rows between them. For the latter the Philox rounds run here, in TF ops (a 32x32 -> 64-bit
product gives ``mulhi`` / ``mullo``)::

    round(c, k):  (c0, c1, c2, c3) -> (hi(M1 c2) ^ c1 ^ k0,  lo(M1 c2),  hi(M0 c0) ^ c3 ^ k1,  lo(M0 c0))
    10 rounds, the key bumped by (W0, W1) between rounds
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


# Philox-4x32 multipliers and Weyl key increments
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_LOW32 = 0xFFFFFFFF


def _high(v: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.bitwise.right_shift(v, tf.constant(32, tf.uint64)), tf.uint32)


def _low(v: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.bitwise.bitwise_and(v, tf.constant(_LOW32, tf.uint64)), tf.uint32)


def _counter_of(counter: tf.Tensor, position: tf.Tensor) -> tuple:
    """``(low, high)`` 64-bit words of the Philox counter that gives stream element ``position``
    (uint64): 4 uint32 per counter value, element k from counter + k // 4, lane k % 4."""
    low = counter[0] + position // 4
    return low, counter[1] + tf.cast(low < counter[0], tf.uint64)  # the carry into the high word


def _philox_at(key: tf.Tensor, counter: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
    """uint32 element ``position`` (uint64, any shape) of the flat stream of ``(key [1], counter [2])``."""
    xor = tf.bitwise.bitwise_xor
    low, high = _counter_of(counter, position)
    c = [_low(low), _high(low), _low(high), _high(high)]
    k0, k1 = _low(key[0]), _high(key[0])
    for r in range(10):
        p0 = tf.cast(c[0], tf.uint64) * tf.constant(_M0, tf.uint64)
        p1 = tf.cast(c[2], tf.uint64) * tf.constant(_M1, tf.uint64)
        c = [xor(xor(_high(p1), c[1]), k0), _low(p1), xor(xor(_high(p0), c[3]), k1), _low(p0)]
        if r < 9:
            k0, k1 = k0 + tf.constant(_W0, tf.uint32), k1 + tf.constant(_W1, tf.uint32)
    lane = tf.cast(position % 4, tf.int32)
    return tf.where(lane == 0, c[0], tf.where(lane == 1, c[1], tf.where(lane == 2, c[2], c[3])))


def _bits(shape, seed, offset=None) -> tf.Tensor:
    """uint32 Philox bits of ``shape``. With ``offset`` an int scalar (an element count): elements
    ``offset, offset + 1, ...`` of the seed's flat stream, i.e. equal to
    ``reshape(_bits([offset + size], seed)[offset:], shape)`` without drawing the first ``offset``.
    With ``offset`` an int tensor of ``shape``: element ``offset[i]`` of the stream at each ``i``
    (equal to ``tf.gather(flat, offset)`` of a draw long enough)."""
    if offset is None:
        return tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.uint32, alg=ALG)
    key, counter, alg = _compat.philox_key_counter(seed)
    offset = tf.convert_to_tensor(offset)
    if offset.shape.rank != 0:
        return tf.reshape(_philox_at(key, counter, tf.cast(offset, tf.uint64)), shape)
    offset = tf.cast(offset, tf.uint64)
    low, high = _counter_of(counter, offset)
    lead = tf.cast(offset % 4, tf.int32)
    size = tf.reduce_prod(tf.cast(shape, tf.int32))
    flat = tf.raw_ops.StatelessRandomUniformFullIntV2(shape=tf.reshape(size + lead, [1]), key=key,
                                                      counter=tf.stack([low, high]), alg=alg, dtype=tf.uint32)
    return tf.reshape(flat[lead:], shape)


def uniform(shape, seed, minval=0.0, maxval=1.0, dtype=tf.float32, offset=None) -> tf.Tensor:
    """Uniform on (minval, maxval); ``offset``: see ``_bits`` (a slice of a larger draw, or chosen
    elements of it)."""
    u = (tf.cast(tf.bitwise.right_shift(_bits(shape, seed, offset), 9), tf.float32) + 0.5) * (2.0 ** -23)
    return tf.cast(minval + (maxval - minval) * u, dtype)


def normal(shape, seed, dtype=tf.float32, offset=None) -> tf.Tensor:
    """Standard normal; ``offset``: see ``_bits`` (a slice of a larger draw, or chosen elements of it)."""
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
