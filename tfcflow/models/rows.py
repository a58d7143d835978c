"""Which rows of a call a traced evaluation computes, and the per-example noise they draw.

A model evaluates a call's batch in blocks: the chunks of ``sample(num_samples=N)``, the
sub-batches of ``Execution(sub_batches=n)``, the replicas of a distributed step, the rows that
rejection sampling redraws. Seeded noise must not depend on that split: row ``r`` of a call draws
row ``r`` of the seed's stream whatever block evaluates it. ``Rows`` says where a block sits and
travels as an argument through every hook that draws noise (``_sample``, ``_training_losses``,
``_flow_sample``, ...), so what a traced graph depends on is in its arguments, never in state
left on the model by the call around it (two threads sampling one model trace independently).

    Rows()                                   the whole batch, in one evaluation
    Rows(start=s, total=T)                   rows [s, s + b) of a batch of T rows
    rows.redrawing(index, candidate, block)  candidate t >= 1 of rows ``index`` of the block

Candidate t of row i (rejection sampling's t-th redraw of it) is row ``t * R + i`` of the stream,
R the rows of the whole batch (of all replicas): past the first draw, and a row's redraws never
depend on which other rows are redrawn with it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from tfcflow import _random


@dataclasses.dataclass(frozen=True)
class Rows:
    """Where a block of rows sits in its call (module docstring).

    Attributes:
      start: the block's first row in the call's batch (an int or an int scalar tensor).
      total: the call's rows (None: the block is the whole batch).
      redraw: ``(index [m], candidate [m], block)`` while rejection sampling redraws rows ``index``
        of a block of ``block`` rows, each its ``candidate``-th time.
      jit: the block runs inside an XLA-compiled sampling chunk (``Execution(jit_sampling=True)``;
        shapes are static), so a model compiles its flow pass (``ConditionalFlowModel._flow_pass``).
      size: ``(H, W)`` a sampling call asked for (image models of a vector condition), else None.
    """

    start: Any = 0
    total: Any = None
    redraw: Optional[tuple] = None
    jit: bool = False
    size: Optional[tuple] = None

    def part(self, start, total) -> "Rows":
        """Rows ``[start, ...)`` of a batch of ``total`` rows that is this block (a sub-batch of a
        chunk is a range of the call's rows)."""
        if self.total is None:
            return dataclasses.replace(self, start=start, total=total)
        return dataclasses.replace(self, start=self.start + start)

    def redrawing(self, index, candidate, block) -> "Rows":
        return dataclasses.replace(self, redraw=(index, candidate, block))

    def fresh(self) -> "Rows":
        """A new call's rows with this call's options (draws that are not rows of the batch: a
        support's mass, an ensemble member's own draws)."""
        return Rows(jit=self.jit, size=self.size)


#: the whole batch, in one evaluation
WHOLE = Rows()


def batch_noise(kind: str, shape, seed, rows: Rows = WHOLE, replicas: int = 1, replica=0) -> tf.Tensor:
    """Per-example noise (``"normal"`` / ``"uniform"``) of ``shape`` for the block ``rows``
    (``shape[0]``: its rows, or under ``rows.redraw`` its redrawn pairs): the block's rows of one
    draw for the whole batch of all ``replicas``, so a seed gives the same numbers for any number
    of replicas, chunks and sub-batches. The rows before the block are skipped, not drawn (a
    chunked ``sample(num_samples=N)`` stays linear in N)."""
    draw = _random.normal if kind == "normal" else _random.uniform
    shape = tf.convert_to_tensor(shape)
    whole = rows.total is None
    if whole and replicas == 1 and rows.redraw is None:
        return draw(shape, seed)
    if whole:
        start, local = 0, shape[0] if rows.redraw is None else rows.redraw[2]
    else:
        start, local = rows.start, rows.total
    first = tf.cast(replica, tf.int64) * tf.cast(local, tf.int64) + tf.cast(start, tf.int64)
    width = tf.reduce_prod(tf.cast(shape[1:], tf.int64))
    if rows.redraw is None:
        return draw(shape, seed, offset=first * width)
    index, candidate, _ = rows.redraw
    row = tf.cast(candidate, tf.int64) * (replicas * tf.cast(local, tf.int64)) + first + tf.cast(index, tf.int64)
    return draw(shape, seed, offset=tf.reshape(row[:, None] * width + tf.range(width)[None], shape))
