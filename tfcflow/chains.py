"""Parallel chains: one batch evaluated as independent sub-batches, side by side, one per CPU core.

A flow on a CPU is a long sequence of small ops (6-48 channels at 4x4-16x16 positions). With
TensorFlow's defaults every op is split over all cores by the intra-op pool, and each op then pays a
fork and a join that the short elementwise ops cannot amortise. Splitting the batch into ``n``
sub-batches inside ONE graph gives ``n`` chains of ops that share no data until their results are
concatenated; with one thread per op (intra-op 1) and ``n`` inter-op threads the executor runs the
chains concurrently, each on its own core, with no synchronisation between them. On the 2-core
benchmark machine this made log-prob, sampling and training of the benchmark Glow 1.4-1.5x faster
(docs/benchmarks.md, "Parallel chains").

The result is the one-chain result up to float rounding (every op of a flow acts per example), and
seeded draws do not change: models draw per-example noise for the whole batch and take each
chain's rows (``ConditionalFlowModel._batch_noise``).

Use both halves together::

    import tfcflow.chains
    tfcflow.chains.configure_cpu_threads(2)            # before TensorFlow runs any op
    model = ConditionalGlow(..., parallel_chains=2)    # or model.parallel_chains = 2

On a GPU keep one chain (the default): there the sub-batches would run one after another.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Hashable, Union

import tensorflow as tf


def check_chains(n) -> int:
    """``n`` as an int >= 1 (ValueError otherwise)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"parallel_chains must be an integer >= 1, got {n!r}")
    return n


def chain_sizes(batch: Union[int, tf.Tensor], n: int):
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


def shared(key: Hashable, compute: Callable):
    """``compute()``, computed once per chained evaluation: the first chain computes what depends
    on parameters only (a 1x1 convolution's matrix and its inverse, ActNorm folded into it, ...)
    and the other chains reuse those tensors, instead of every chain repeating ~30 small ops per
    flow step. ``key`` names the computation and the variables it reads. Outside
    ``run_in_chains`` (or with one chain) it is just ``compute()``."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        return compute()
    key = (key, id(tf.compat.v1.get_default_graph()))  # never hand a tensor to another graph
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def run_in_chains(fn: Callable, n: int, *batched: tf.Tensor, on_chain: Callable = None):
    """``fn(*batched)`` computed as ``n`` chains: every tensor of ``batched`` (same leading batch
    dim) is split into ``n`` sub-batches, ``fn`` runs on each, and the outputs (any nest of
    ``[batch, ...]`` tensors) are concatenated back in order. A static batch smaller than ``n``
    runs in fewer chains; a dynamic one is padded to ``n`` rows (see below).

    ``on_chain(start, total)``, if given, is called before each chain is traced with the chain's
    first row and the batch size (how models slice per-example noise), and ``on_chain(None, None)``
    after it. While the chains are traced, ``shared`` computes parameter-only tensors once.
    """
    n = check_chains(n)
    total = batch_size(batched[0])
    if isinstance(total, int):
        n = max(1, min(n, total))  # no empty chains
    if n == 1:
        return fn(*batched)
    rows = total
    if not isinstance(total, int):
        # A batch smaller than n would leave chains empty, and TF's convolutions fail on empty
        # batches: repeat the last row up to n rows and drop the extra outputs at the end.
        total = tf.maximum(rows, n)
        index = tf.minimum(tf.range(total), rows - 1)
        batched = [tf.gather(t, index) for t in batched]
    sizes = chain_sizes(total, n)
    starts = ([sum(sizes[:i]) for i in range(n)] if isinstance(sizes, list)
              else tf.unstack(tf.cumsum(sizes, exclusive=True), num=n))
    pieces = [tf.split(t, sizes, num=n, axis=0) for t in batched]
    outs = []
    with _sharing():
        for i in range(n):
            if on_chain is not None:
                on_chain(starts[i], total)
            try:
                outs.append(fn(*[p[i] for p in pieces]))
            finally:
                if on_chain is not None:
                    on_chain(None, None)
    joined = tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *outs)
    return joined if rows is total else tf.nest.map_structure(lambda t: t[:rows], joined)


def configure_cpu_threads(chains: int) -> None:
    """TensorFlow's thread pools for ``chains`` parallel chains: 1 intra-op thread (one core per
    op) and ``chains`` inter-op threads (the chains side by side). Must run before TensorFlow
    executes its first op; raises RuntimeError naming the current setting if it is too late and
    differs."""
    chains = check_chains(chains)
    want = (1, chains)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(want[0])
        tf.config.threading.set_inter_op_parallelism_threads(want[1])
    except RuntimeError:
        have = (tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads())
        if have != want:
            raise RuntimeError(
                f"configure_cpu_threads({chains}) must run before TensorFlow executes any op: the thread "
                f"pools are already (intra-op, inter-op) = {have}, want {want}") from None

