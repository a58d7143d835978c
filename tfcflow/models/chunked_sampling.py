"""``sample(condition, num_samples=N)``: N draws per condition row, a bounded number of rows at a time.

The draws of row b are rows ``b * N .. b * N + N - 1`` of one call's batch (the conditions
repeated N times), evaluated in chunks of at most ``batch_size`` rows; each chunk is a
``Rows(start, total)`` block of that batch (models/rows.py), so a seed gives the same draws for any
chunk size (up to float rounding). The condition's features are computed once per row and repeated:
a summary network runs once per observation, not once per draw.

Called eagerly, the chunk loop runs as one traced graph per model and option set (op-by-op eager
execution of a flow is several times slower). Under ``Execution(jit_sampling=True)`` every chunk
has exactly ``padded_rows`` rows (the last one padded by repeating the final row, its extra draws
dropped) and the model's flow passes run XLA-compiled (``ConditionalFlowModel._flow_pass``). In a
graph (a SavedModel signature) one chunk is traced and run in a ``tf.while_loop``.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfcflow import _checks
from tfcflow.models.rows import Rows

#: rows evaluated at a time by ``sample(num_samples=...)`` unless ``batch_size`` says otherwise
DEFAULT_SAMPLE_ROWS = 4096


def padded_rows(total: int, rows: int) -> int:
    """The static rows of every XLA-compiled chunk (``Execution(jit_sampling=True)``) of a call that
    samples ``total`` rows at most ``rows`` at a time: the chunks' common size rounded up to a size
    class, 2^k x (1, 1.25, 1.5 or 1.75). The classes bound how many shapes a model compiles (four
    per doubling, not one per ``num_samples``) and the padding to < 25% of the rows."""
    total, rows = max(1, int(total)), int(rows)
    size = -(-total // -(-total // rows))  # ceil(total / number of chunks)
    if size <= 4:
        return size
    step = 1 << (size.bit_length() - 3)  # a quarter of the largest power of two <= size
    return min(rows, -(-size // step) * step)


def sample_many(model, c: tf.Tensor, num_samples, temperature: tf.Tensor, seed: tf.Tensor, batch_size,
                rows: Rows) -> tf.Tensor:
    """``[batch, N, *event_shape]`` draws of ``model`` for the checked condition ``c``
    ``[batch, ...]`` (module docstring); ``rows`` carries the call's options (its ``size``)."""
    n = _checks.check_count(num_samples, "num_samples")
    chunk_rows = DEFAULT_SAMPLE_ROWS if batch_size is None else _checks.check_positive_int(batch_size, "batch_size")
    if not tf.executing_eagerly():
        return _sample_chunks(model, c, n, temperature, seed, chunk_rows, rows)
    jit = model.execution.jit_sampling
    if jit:  # static chunk shapes for the compiler, one per size class
        chunk_rows = padded_rows(int(c.shape[0]) * int(n), chunk_rows)
    graphs = model.__dict__.get("_sample_many_graphs")
    if graphs is None:
        graphs = {}
        object.__setattr__(model, "_sample_many_graphs", graphs)  # not a Keras-tracked attribute
    # one graph per call option that changes what is traced (an image size), retraced for a new
    # condition shape or chunk size only
    fn = graphs.get(rows.size)
    if fn is None:
        def chunks(c, n, temperature, seed, chunk_rows, jit):
            return _sample_chunks(model, c, n, temperature, seed, chunk_rows, dataclasses.replace(rows, jit=jit))

        fn = graphs[rows.size] = tf.function(chunks, reduce_retracing=True)
    return fn(c, tf.constant(n, tf.int32), temperature, seed, chunk_rows, jit)


def _sample_chunks(model, c, n, temperature, seed, chunk_rows: int, rows: Rows) -> tf.Tensor:
    features = model._sampling_features(c)
    tiled = tf.nest.map_structure(lambda t: tf.repeat(t, n, axis=0), features)
    total = tf.shape(tf.nest.flatten(tiled)[0])[0]

    def chunk(start):
        size = tf.minimum(chunk_rows, total - start)
        if rows.jit:
            index = tf.minimum(start + tf.range(chunk_rows), total - 1)
            part = tf.nest.map_structure(lambda t: tf.gather(t, index), tiled)
        else:
            part = tf.nest.map_structure(lambda t: t[start:start + size], tiled)
        out = model._in_sub_batches(
            lambda block, *f: model._sample_from_features(tf.nest.pack_sequence_as(part, f), temperature, seed, block),
            *tf.nest.flatten(part), rows=rows.part(start, total))
        return out[:size] if rows.jit else out

    if tf.executing_eagerly():
        x = tf.concat([chunk(tf.constant(s)) for s in range(0, int(total), chunk_rows)] or
                      [chunk(tf.constant(0))], axis=0)
    else:
        starts = tf.range(0, total, chunk_rows)
        out = tf.TensorArray(tf.float32, size=tf.size(starts), infer_shape=False,
                             element_shape=tf.TensorShape([None] * (1 + len(model.event_shape))))
        i = tf.constant(0)
        _, out = tf.while_loop(lambda i, out: i < tf.size(starts),
                               lambda i, out: (i + 1, out.write(i, chunk(starts[i]))), [i, out])
        x = out.concat()
    return tf.reshape(x, tf.concat([[tf.shape(c)[0], n], tf.shape(x)[1:]], 0))
