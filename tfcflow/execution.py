"""How a model's computations run on a CPU: explicit choices, never part of a model's config.

``Execution`` gathers them; set one on a model (``model.execution = Execution(...)``) or per
training job (``train.sub_batches``, ``train.fused_steps``, ``train.jit_sampling``). The model's ``get_config``, its
``model.json`` and its SavedModel signatures' inputs and outputs do not depend on it: the same model
computes the same densities and the same seeded samples (up to float rounding) under any setting.

- ``sub_batches=n``: every evaluation (log_prob, sample, best_of_n, training and evaluation
  steps) splits the batch into ``n`` independent sub-batches inside ONE graph. A flow on a CPU is
  a long sequence of small ops (6-48 channels at 4x4-16x16 positions); with TensorFlow's default
  threads every op is split over all cores and pays a fork and a join that the short elementwise
  ops cannot amortise. With one thread per op (``configure_cpu_threads(n)``: intra-op 1, inter-op
  ``n``) the executor runs the ``n`` sub-batches side by side, one per core. On the 2-core
  benchmark machine this made log-prob, sampling and training of the benchmark Glow 1.4-1.5x
  faster (docs/benchmarks.md). Seeded draws do not change: models draw per-example noise for the
  whole batch and take each sub-batch's rows (``models.rows.batch_noise``).
- ``jit_sampling=True``: ``sample(condition, num_samples=N)``, called eagerly, runs each chunk's
  flow pass as one XLA-compiled function (vector flows: ``ConditionalRealNVP``,
  ``RelaxedConditionFlow``). A flow pass is a long chain of small ops (the spline's knots, softmax,
  cumsum, gathers per coupling); XLA fuses them. Shapes are made static for the compiler: the
  chunks are padded to a size class (``models.chunked_sampling.padded_rows``: < 25% padding, at most
  ``batch_size`` rows) and rejection sampling's redraw rounds (``bounds_method="reject"``) run
  inside the chunk's compiled pass, in groups of ``vector_flow.REDRAW_GROUP_ROWS`` (row,
  candidate) pairs, so a model compiles a few shapes once and reuses them. The draws are the
  plain graph's (same noise per row, up to float rounding). Inside a user's ``tf.function`` or a
  SavedModel signature the plain graph runs (serving an XLA function needs a server built with
  XLA). The first eager call pays the compilation (seconds).
- ``fused_steps=True``: every ActNorm -> 1x1 conv [-> affine coupling] of a ``FlowSequence`` runs as
  one ``FusedStep`` bijector (the same map with fewer passes over the activations; 1.01-1.08x on the
  benchmark Glow). Off, ``layer.bijector()`` is exactly the chain of its layers' views.

On a GPU keep the defaults (one sub-batch: there they would run one after another)::

    from tfcflow.execution import Execution, configure_cpu_threads
    configure_cpu_threads(2)                           # before TensorFlow runs any op
    model.execution = Execution(sub_batches=2, fused_steps=True)
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Callable, Union

import tensorflow as tf


def check_sub_batches(n) -> int:
    """``n`` as an int >= 1 (ValueError otherwise)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"sub_batches must be an integer >= 1, got {n!r}")
    return n


@dataclasses.dataclass(frozen=True)
class Execution:
    """CPU execution choices of a model (see module docstring). Defaults: TensorFlow's plain
    execution, one evaluation per batch, the layers' own bijector views."""

    sub_batches: int = 1
    fused_steps: bool = False
    jit_sampling: bool = False

    def __post_init__(self):
        check_sub_batches(self.sub_batches)
        for name in ("fused_steps", "jit_sampling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


def sub_batch_sizes(batch: Union[int, tf.Tensor], n: int):
    """Sizes of the ``n`` sub-batches of a batch (the first ``batch % n`` one larger): Python ints
    for a static batch, else an int32 ``[n]`` tensor."""
    if isinstance(batch, int):
        return [batch // n + (1 if i < batch % n else 0) for i in range(n)]
    batch = tf.cast(batch, tf.int32)
    return batch // n + tf.cast(tf.range(n) < batch % n, tf.int32)


def batch_size(t: tf.Tensor) -> Union[int, tf.Tensor]:
    """The leading dim of ``t``: an int if static, else a scalar tensor."""
    return t.shape[0] if t.shape[0] is not None else tf.shape(t)[0]


_local = threading.local()


@contextlib.contextmanager
def _sharing():
    outer = getattr(_local, "cache", None)
    _local.cache = {} if outer is None else outer
    try:
        yield
    finally:
        _local.cache = outer


def shared(key: str, variables: tuple, compute: Callable):
    """``compute()``, computed once per evaluation in sub-batches: the first sub-batch computes what
    depends on parameters only (a 1x1 convolution's matrix and its inverse, ActNorm folded into it,
    ...) and the others reuse those tensors, instead of each repeating ~30 small ops per flow step.
    ``key`` names the computation, ``variables`` are the variables it reads (the cache, which lives
    only while ``run_in_sub_batches`` traces, holds them, so their ids cannot be reused). Outside
    ``run_in_sub_batches`` (or with one sub-batch) it is just ``compute()``."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        return compute()
    # never hand a tensor to another graph
    full_key = (key, tuple(id(v) for v in variables), id(tf.compat.v1.get_default_graph()))
    if full_key not in cache:
        cache[full_key] = (variables, compute())
    return cache[full_key][1]


def run_in_sub_batches(fn: Callable, n: int, *batched: tf.Tensor, with_span: bool = False):
    """``fn(*batched)`` computed in ``n`` sub-batches: every tensor of ``batched`` (same leading batch
    dim) is split into ``n`` parts, ``fn`` runs on each, and the outputs (any nest of
    ``[batch, ...]`` tensors) are concatenated back in order. A static batch smaller than ``n``
    runs in fewer sub-batches; a dynamic one is padded to ``n`` rows (see below).

    ``with_span=True``: ``fn(span, *parts)``, ``span`` the ``(first row, batch size)`` of the
    sub-batch, or None when the whole batch is one evaluation (how models slice per-example noise:
    models/rows.py). While the sub-batches are traced, ``shared`` computes parameter-only tensors
    once.
    """
    n = check_sub_batches(n)
    total = batch_size(batched[0])
    if isinstance(total, int):
        n = max(1, min(n, total))  # no empty sub-batches
    if n == 1:
        return fn(None, *batched) if with_span else fn(*batched)
    rows = total
    if not isinstance(total, int):
        # A batch smaller than n would leave sub-batches empty, and TF's convolutions fail on empty
        # batches: repeat the last row up to n rows and drop the extra outputs at the end.
        total = tf.maximum(rows, n)
        index = tf.minimum(tf.range(total), rows - 1)
        batched = [tf.gather(t, index) for t in batched]
    sizes = sub_batch_sizes(total, n)
    starts = ([sum(sizes[:i]) for i in range(n)] if isinstance(sizes, list)
              else tf.unstack(tf.cumsum(sizes, exclusive=True), num=n))
    pieces = [tf.split(t, sizes, num=n, axis=0) for t in batched]
    outs = []
    with _sharing():
        for i in range(n):
            parts = [p[i] for p in pieces]
            outs.append(fn((starts[i], total), *parts) if with_span else fn(*parts))
    joined = tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *outs)
    return joined if rows is total else tf.nest.map_structure(lambda t: t[:rows], joined)


def configure_cpu_threads(sub_batches: int) -> None:
    """TensorFlow's thread pools for ``sub_batches`` parallel sub-batches: 1 intra-op thread (one
    core per op) and ``sub_batches`` inter-op threads (the sub-batches side by side). Must run
    before TensorFlow executes its first op; raises RuntimeError naming the current setting if it is
    too late and differs."""
    sub_batches = check_sub_batches(sub_batches)
    want = (1, sub_batches)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(want[0])
        tf.config.threading.set_inter_op_parallelism_threads(want[1])
    except RuntimeError:
        have = (tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads())
        if have != want:
            raise RuntimeError(
                f"configure_cpu_threads({sub_batches}) must run before TensorFlow executes any op: the thread "
                f"pools are already (intra-op, inter-op) = {have}, want {want}") from None

