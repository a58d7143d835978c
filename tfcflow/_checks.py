"""Early, readable input checks shared by layers and models.

Static problems (rank, feature size, batch mismatch known at trace time) raise ``ValueError``
before any TF op runs. Value problems (NaN/inf, dynamic batch mismatch) raise ``ValueError`` in
eager mode and ``tf.errors.InvalidArgumentError`` inside a graph; every message names the argument
and what was expected.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf


def describe_shape(expected: Sequence[Optional[int]]) -> str:
    """``(None, 28, 28, 1)`` -> ``'[batch, 28, 28, 1]'``."""
    parts = ["batch" if i == 0 and d is None else ("?" if d is None else str(d))
             for i, d in enumerate(expected)]
    return "[" + ", ".join(parts) + "]"


def as_tensor(value, name: str, dtype=tf.float32) -> tf.Tensor:
    """Converts ``value`` to a float tensor, naming ``name`` if that is impossible."""
    if value is None:
        raise ValueError(f"{name} is required but got None")
    try:
        t = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} could not be converted to a tensor: {e}") from None
    if t.dtype != dtype:
        if not (t.dtype.is_floating or t.dtype.is_integer or t.dtype == tf.bool):
            raise ValueError(f"{name} must be numeric, got dtype {t.dtype.name}")
        t = tf.cast(t, dtype)
    return t


def check_shape(x: tf.Tensor, name: str, expected: Sequence[Optional[int]]) -> None:
    """Checks rank and every known dim of ``x`` against ``expected`` (None = any size)."""
    shape = x.shape
    want = describe_shape(expected)
    if shape.rank is None:
        return
    if shape.rank != len(expected):
        raise ValueError(f"{name} must have shape {want} (rank {len(expected)}), "
                         f"got shape {shape.as_list()} (rank {shape.rank})")
    for got, exp in zip(shape.as_list(), expected):
        if exp is not None and got is not None and got != exp:
            raise ValueError(f"{name} must have shape {want}, got shape {shape.as_list()}")


def check_same_batch(a: tf.Tensor, name_a: str, b: tf.Tensor, name_b: str) -> list:
    """Raises if the leading dims differ; returns graph assertions for unknown static sizes."""
    na, nb = a.shape[0], b.shape[0]
    if na is not None and nb is not None:
        if na != nb:
            raise ValueError(f"{name_a} and {name_b} must have the same batch size, got {na} and {nb}")
        return []
    if tf.executing_eagerly():
        na, nb = int(tf.shape(a)[0]), int(tf.shape(b)[0])
        if na != nb:
            raise ValueError(f"{name_a} and {name_b} must have the same batch size, got {na} and {nb}")
        return []
    return [tf.debugging.assert_equal(tf.shape(a)[0], tf.shape(b)[0],
                                      message=f"{name_a} and {name_b} must have the same batch size")]


def check_finite(x: tf.Tensor, name: str) -> tf.Tensor:
    """Returns ``x``; raises if it holds NaN or inf (ValueError eagerly, InvalidArgumentError in graphs)."""
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            bad = int(tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int32)))
            raise ValueError(f"{name} contains {bad} NaN or inf value(s)")
        return x
    return tf.debugging.assert_all_finite(x, f"{name} contains NaN or inf values")


def check_positive(value, name: str) -> float:
    """For hyper-parameters: a finite float > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
