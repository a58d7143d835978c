"""Early, readable input checks shared by layers, models and exports.

Static problems (rank, feature size, batch mismatch known at trace time) raise ``ValueError``
before any TF op runs. Value problems (NaN/inf, dynamic batch mismatch, out-of-range values) go
through one mechanism, ``enforce``: ``ValueError`` in eager mode, ``tf.errors.InvalidArgumentError``
inside a graph (a SavedModel request, a training step); every message names the argument and what
was expected.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf


def enforce(value, ok, message: str, detail: Optional[Callable[[], str]] = None, data: Sequence = ()):
    """``value`` once ``ok`` (a bool tensor: all of it must hold) is true.

    Eagerly: ValueError(``message``, plus ``detail()`` if given, else the ``data`` values) when it is
    not. In a graph: ``value`` (a tensor or a nest of tensors) passes through an assertion that
    raises InvalidArgumentError with ``message``, then ``data`` (tensors printed after it, e.g. the
    offending size: a value known only when the graph runs), before anything uses it. Everything
    computed from the returned tensors waits for the assertion, so a bad value is reported by it,
    not by some op deep inside the flow."""
    ok = tf.reduce_all(ok)
    if tf.executing_eagerly():
        if not bool(ok):
            if detail is None and data:
                def detail():
                    return " ".join(str(np.asarray(d).tolist()) for d in data)
            raise ValueError(message if detail is None else f"{message}; {detail()}")
        return value
    with tf.control_dependencies([tf.debugging.Assert(ok, [message, *data])]):
        return tf.nest.map_structure(tf.identity, value)


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


def check_same_batch(a: tf.Tensor, name_a: str, b: tf.Tensor, name_b: str) -> tf.Tensor:
    """``a``, once its leading dim equals ``b``'s (ValueError when both are static)."""
    na, nb = a.shape[0], b.shape[0]
    message = f"{name_a} and {name_b} must have the same batch size"
    if na is not None and nb is not None:
        if na != nb:
            raise ValueError(f"{message}, got {na} and {nb}")
        return a
    return enforce(a, tf.equal(tf.shape(a)[0], tf.shape(b)[0]), message,
                   lambda: f"got {int(tf.shape(a)[0])} and {int(tf.shape(b)[0])}")


def first_nonfinite_row(x) -> int:
    """Index of the first row of ``x`` (an array or an eager tensor, ``[rows, ...]``) holding NaN or
    inf, or -1. The one place that locates a bad row: eager checks, ``fit``'s data checks and
    ``adapt`` name rows with it."""
    x = np.asarray(x)
    if x.size == 0:
        return -1
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else -1


def check_finite(x: tf.Tensor, name: str) -> tf.Tensor:
    """``x``, once it holds no NaN or inf (the eager error names the first bad row)."""
    def detail():
        bad = int(tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int32)))
        return f"{bad} value(s), first at row {first_nonfinite_row(x)}" if x.shape.rank else f"{bad} value(s)"
    return enforce(x, tf.math.is_finite(x), f"{name} contains NaN or inf values", detail)


def check_temperature(temperature) -> tf.Tensor:
    """A float >= 0 (ValueError), or a tensor (of per-level values) checked by ``enforce``."""
    if isinstance(temperature, (int, float, np.floating, np.integer)):
        if not np.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        return tf.constant(float(temperature), tf.float32)
    t = tf.cast(tf.convert_to_tensor(temperature), tf.float32)
    return enforce(t, tf.math.is_finite(t) & (t >= 0), "temperature must be >= 0",
                   lambda: f"got {t.numpy()!r}")


def check_count(n, name: str, max_n: Optional[int] = None):
    """A count such as best-of-n's ``n``: a Python int >= 1 (ValueError), or a scalar int tensor
    checked by ``enforce`` (1 <= n <= ``max_n`` if given)."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        check_positive_int(n, name)
        if max_n is not None and n > max_n:
            raise ValueError(f"{name} must be <= {max_n}, got {n}")
        return int(n)
    if isinstance(n, (bool, float)) or n is None:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    t = tf.cast(tf.convert_to_tensor(n), tf.int32)
    if tf.executing_eagerly():
        return check_count(int(t), name, max_n)
    t = enforce(t, t >= 1, f"{name} must be >= 1")
    return t if max_n is None else enforce(t, t <= max_n, f"{name} must be <= {max_n}")


def finite_samples(x: tf.Tensor) -> tf.Tensor:
    """Samples never leave as NaN/inf silently."""
    return enforce(x, tf.math.is_finite(x),
                   "sampling produced NaN or inf: the generative direction overflowed (an untrained or "
                   "diverged model, or too high a temperature)")


def check_positive(value, name: str) -> float:
    """For hyper-parameters: a finite float > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_fraction(value, name: str) -> float:
    """For shares (a dropout rate, a held-out fraction): a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an error's message (its type's name when empty), at most ``limit``
    characters: what a one-line report of a failure shows."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]

