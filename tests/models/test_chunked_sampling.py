"""The rows of a call (models/rows.py) and chunked sampling (models/chunked_sampling.py): a traced
call depends on its arguments only, so one model sampled from several threads at once, each
thread's first call tracing its own graph, gives every call the draws it gives alone."""
import threading

import numpy as np
import tensorflow as tf

from tfcflow import _random
from tfcflow.execution import Execution
from tfcflow.models.rows import WHOLE, Rows
from tests.helpers import copy_model, perturb, tiny_glow, tiny_model

BOX = [[-1.5, 1.5], [-1.5, 1.5]]


def test_a_sub_batch_of_a_chunk_is_a_range_of_the_calls_rows():
    chunk = WHOLE.part(8, 20)
    assert chunk == Rows(start=8, total=20)
    assert chunk.part(3, 6) == Rows(start=11, total=20)  # sub-batch rows 3.. of the chunk's 6
    assert WHOLE.part(3, 6) == Rows(start=3, total=6)  # a sub-batch of a whole batch
    options = Rows(jit=True, size=(8, 8))
    assert options.part(4, 10).fresh() == options  # draws of their own keep the call's options
    redraw = chunk.redrawing("index", "candidate", 6)
    assert (redraw.start, redraw.total, redraw.redraw) == (8, 20, ("index", "candidate", 6))


def _concurrently(calls):
    """Runs every call at once (one thread each, released together); returns their results."""
    barrier, results, errors = threading.Barrier(len(calls)), [None] * len(calls), []

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call().numpy()
        except Exception as e:  # noqa: BLE001 (re-raised below, in the test's thread)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_one_vector_model_sampled_from_several_threads_on_first_calls():
    # rejection sampling (redraws), two sub-batches and several chunks: every piece of the rows
    # machinery is traced by four threads at once
    model = tiny_model("cinn", bounds=BOX, bounds_method="reject", standardize=False, coupling="spline")
    perturb(model, seed=3, scale=0.1)
    model.execution = Execution(sub_batches=2)
    alone = copy_model(model)
    alone.execution = model.execution
    c = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    calls = [(c, 7, 40, 16), (c[:2], 8, 25, 8), (c[1:], 9, 33, None), (c[:1], 10, 50, 7)]
    got = _concurrently([lambda a=a: model.sample(a[0], seed=a[1], num_samples=a[2], batch_size=a[3])
                         for a in calls])
    for (cond, seed, n, batch_size), g in zip(calls, got):
        expected = alone.sample(cond, seed=seed, num_samples=n, batch_size=batch_size).numpy()
        assert g.shape == (len(cond), n, 2) and np.all(np.abs(g) < 1.5)
        np.testing.assert_allclose(g, expected, atol=1e-5)
    # the draws differ between seeds (the comparison above can fail), and some rows were redrawn
    assert not np.allclose(got[0][:2, :25], got[1], atol=1e-2)
    first = alone._to_data_space(alone._flow_sample(tf.constant(np.repeat(c, 40, 0)), tf.constant(1.0),
                                                    _random.seed_tensor(7))).numpy()
    assert np.any(np.abs(first) >= 1.5)


def test_one_image_model_sampled_at_several_sizes_from_several_threads():
    # the size a call asks for travels with the call: threads asking for different sizes at once
    # each get their own
    model = tiny_glow("label")
    perturb(model, seed=4)
    alone = copy_model(model)
    c = np.eye(3, dtype=np.float32)
    sizes = [(8, 8), (16, 8), (8, 16), (16, 16)]
    got = _concurrently([lambda s=s: model.sample(c, seed=5, num_samples=2, size=s) for s in sizes])
    for size, g in zip(sizes, got):
        assert g.shape == (3, 2) + size + (1,)
        np.testing.assert_allclose(g, alone.sample(c, seed=5, num_samples=2, size=size).numpy(), atol=1e-6)
