"""CPU execution choices (tfcflow/execution.py): a batch as independent sub-batches gives the
one-evaluation results (densities, seeded samples, best-of-n, the dequantization bound, training
updates), fused steps give the plain chain's, and neither is part of a model's config."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import execution
from tfcflow.execution import Execution
from tfcflow.data import gaussian_mixture as gm
from tfcflow.distribute import make_strategy
from tfcflow.models import ConditionalRealNVP, RelaxedConditionFlow
from tests.helpers import perturb, tiny_caflow, tiny_glow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_chain_sizes_cover_the_batch():
    assert execution.sub_batch_sizes(7, 3) == [3, 2, 2]
    assert execution.sub_batch_sizes(6, 2) == [3, 3]
    np.testing.assert_array_equal(execution.sub_batch_sizes(tf.constant(7), 3).numpy(), [3, 2, 2])
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="sub_batches must be an integer >= 1"):
            execution.check_sub_batches(bad)


def _rowwise(a, b):
    # a per-example function with a nested output; row i depends on row i only
    return {"s": tf.reduce_sum(a, axis=-1) * b[:, 0], "t": (a * 2.0, b)}


@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("batch", [1, 5, 8])
def test_run_in_chains_equals_one_evaluation(n, batch):
    a = tf.random.stateless_normal([batch, 4], [1, 2])
    b = tf.random.stateless_normal([batch, 1], [3, 4])
    expected = _rowwise(a, b)
    spans = []

    def with_span(span, a, b):
        spans.append(span)
        return _rowwise(a, b)

    got = execution.run_in_sub_batches(with_span, n, a, b, with_span=True)
    tf.nest.map_structure(lambda e, g: np.testing.assert_array_equal(e.numpy(), g.numpy()), expected, got)
    used = min(n, batch)  # a static batch smaller than n runs in fewer sub-batches, none empty
    sizes = execution.sub_batch_sizes(batch, used)
    assert spans == ([None] if used == 1 else [(sum(sizes[:i]), batch) for i in range(used)])
    got = execution.run_in_sub_batches(_rowwise, n, a, b)  # without spans: fn(*parts)
    tf.nest.map_structure(lambda e, g: np.testing.assert_array_equal(e.numpy(), g.numpy()), expected, got)
    # a dynamic batch: sizes computed in the graph, padded to n rows when smaller
    fn = tf.function(lambda a, b: execution.run_in_sub_batches(_rowwise, n, a, b),
                     input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, 1])])
    got = fn(a, b)
    tf.nest.map_structure(lambda e, g: np.testing.assert_allclose(e.numpy(), g.numpy(), rtol=1e-6), expected, got)


def test_configure_cpu_threads_is_refused_once_tensorflow_runs():
    tf.constant(1.0) + 1.0  # TensorFlow is initialized in this process: its pools are fixed
    with pytest.raises(RuntimeError, match=r"must run before TensorFlow executes any op.*want \(1, 7\)"):
        execution.configure_cpu_threads(7)


def test_configure_cpu_threads_in_a_fresh_process():
    code = ("import tensorflow as tf; from tfcflow import execution; execution.configure_cpu_threads(3);"
            "print(tf.config.threading.get_intra_op_parallelism_threads(),"
            " tf.config.threading.get_inter_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "3"]


# ---- the models -----------------------------------------------------------------------------------
def _model(kind, n, fused=False):
    keras.utils.set_random_seed(0)
    tiny_vec = dict(depth=2, width=16)
    if kind == "cinn":
        m = ConditionalRealNVP(2, 8, actnorm=True, **tiny_vec)
    elif kind == "cinn_dropout":
        m = ConditionalRealNVP(2, 8, actnorm=True, network={"dropout": 0.3}, **tiny_vec)
    elif kind == "rcf":
        m = RelaxedConditionFlow(2, 8, actnorm=True, **tiny_vec)
    elif kind == "glow":
        m = tiny_glow("label")
    else:
        m = tiny_caflow()
    m.execution = Execution(sub_batches=n, fused_steps=fused)
    return m


def _data(kind, n):
    if kind in ("cinn", "cinn_dropout", "rcf"):
        x, _, c = gm.sample(n, seed=1)
        return x, c
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    if kind == "glow":
        return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, rng.integers(0, 256, (n, 4, 4, 1)).astype(np.uint8)


def _outputs(m, x, c):
    out = dict(log_prob=m.log_prob(x, c), sample=m.sample(c, temperature=0.7, seed=3),
               best_of_n=m.best_of_n(c, 3, temperature=0.7, seed=4))
    if hasattr(m, "log_prob_bound"):
        out["bound"] = m.log_prob_bound(x, c, seed=5)
    return out


@pytest.mark.parametrize("kind", ["cinn", "rcf", "glow", "caflow"])
def test_sub_batches_and_fused_steps_give_the_plain_results(kind):
    x, c = _data(kind, 7)
    one = _model(kind, 1)
    one.initialize(x, c)
    perturb(one, seed=1, scale=0.02)
    three = _model(kind, 3, fused=True)
    three.set_weights(one.get_weights())
    drop_name = lambda cfg: {k: v for k, v in cfg.items() if k != "name"}  # noqa: E731
    assert drop_name(three.get_config()) == drop_name(one.get_config())  # execution is not config
    expected = _outputs(one, x, c)
    check = lambda e, g: np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-4)  # noqa: E731
    tf.nest.map_structure(check, expected, _outputs(three, x, c))
    # in a graph with an unknown batch size, including a batch smaller than the sub-batch count
    spec = [tf.TensorSpec((None,) + x.shape[1:], tf.as_dtype(x.dtype)),
            tf.TensorSpec((None,) + c.shape[1:], tf.as_dtype(c.dtype))]
    fn = tf.function(lambda x, c: _outputs(three, x, c), input_signature=spec)
    tf.nest.map_structure(check, expected, fn(x, c))
    tf.nest.map_structure(check, _outputs(one, x[:2], c[:2]), fn(x[:2], c[:2]))
    # a clone from the config runs plainly until asked otherwise
    clone = type(three).from_config(three.get_config())
    assert clone.execution == Execution()
    for bad in (2, None, "fast"):
        with pytest.raises(ValueError, match="execution must be a tfcflow.execution.Execution"):
            clone.execution = bad
    with pytest.raises(ValueError, match="fused_steps must be True or False"):
        Execution(fused_steps=1)


def _train(kind, n, strategy=None, steps=2):
    x, c = _data(kind, 16)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        m = _model(kind, n)
        # SGD: the update is linear in the gradient, so float rounding stays rounding (Adam divides it
        # by the tiny second moments of near-zero gradients)
        m.compile(optimizer=keras.optimizers.SGD(1e-2), clipnorm=1.0, seed=3)
    ds = tf.data.Dataset.from_tensor_slices((x, c)).batch(8).repeat()
    hist = m.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return m, hist.history


# padding noise; dropout masks in the coupling networks; two dequantization noises
@pytest.mark.parametrize("kind", ["rcf", "cinn_dropout", "caflow"])
def test_sub_batches_give_the_one_batch_training_update(kind):
    one, h1 = _train(kind, 1)
    for n, strategy in ((3, None), (2, make_strategy("mirrored"))):
        other, h2 = _train(kind, n, strategy)
        for key in ("loss", "grad_norm"):
            np.testing.assert_allclose(h2[key], h1[key], rtol=1e-4)
        for a, b in zip(one.trainable_variables, other.trainable_variables):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=2e-6)


def test_changing_execution_after_fit_retraces():
    m, _ = _train("rcf", 1, steps=1)
    m.execution = Execution(sub_batches=2)
    assert m.train_function is None
    hist = m.fit(*_data("rcf", 16), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert m.evaluate(*_data("rcf", 16), batch_size=8, verbose=0, return_dict=True)["loss"] > -1e6


def _op_types(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return [op.type for op in graph.get_operations()]


def test_sub_batches_compute_parameter_only_tensors_once():
    # the 1x1 convolutions' LU products and inverses, and ActNorm folded into them, are computed
    # by the first sub-batch and reused: as many of those ops with 3 sub-batches as with 1
    x, c = _data("glow", 6)
    one, three = _model("glow", 1), _model("glow", 3)
    for fn in (lambda m: m.log_prob(x, c), lambda m: m.sample(c, seed=1)):
        ops1, ops3 = _op_types(lambda: fn(one)), _op_types(lambda: fn(three))
        for kind in ("MatrixBandPart", "MatrixSetDiag", "MatrixTriangularSolve"):
            assert ops3.count(kind) == ops1.count(kind), kind
        assert ops1.count("MatrixBandPart") > 0
        # while the data path is traced once per chain
        assert ops3.count("Conv2D") == 3 * ops1.count("Conv2D") > 0
    assert getattr(execution._local, "cache", None) is None  # the cache lives only while sub-batches are traced


def test_fused_steps_are_asked_for_explicitly():
    from tfcflow.bijectors import ActNorm, FusedStep, InvertibleConv1x1
    m = _model("glow", 1)
    chain = m.flow.level_flows[0].bijector(m._features(tf.constant(np.eye(3, dtype=np.float32)[:2]))[0])
    assert not any(isinstance(p, FusedStep) for p in chain.parts)  # the chain of the layers' views
    kinds = {type(p) for p in chain.parts}
    assert ActNorm in kinds and InvertibleConv1x1 in kinds
    m.execution = Execution(fused_steps=True)
    chain = m.flow.level_flows[0].bijector(m._features(tf.constant(np.eye(3, dtype=np.float32)[:2]))[0])
    assert any(isinstance(p, FusedStep) for p in chain.parts)
