"""Simulator-driven SBI data: seeded streams, checks of user functions, cached budgets, fresh
batches that resume with skip(k), load_callable and the two reference tasks."""
import logging
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tfcflow.data import sbi_tasks
from tfcflow.data.simulator import load_callable, simulate, simulate_at, simulated_arrays, simulation_dataset


def box_prior(n, rng):
    return rng.uniform(-1.0, 1.0, (n, 2))


def noisy_features(x, rng):
    return np.stack([x.sum(1), x[:, 0] * x[:, 1], x[:, 0]], 1) + 0.1 * rng.standard_normal((len(x), 3))


def identity_simulator(x, rng):
    return x


def nan_when_large(x, rng):
    y = x.astype(np.float64).copy()
    y[x[:, 0] > 0.9, 1] = np.nan
    return y


FAIL = {"on": False}


def guarded_simulator(x, rng):
    if FAIL["on"]:
        raise RuntimeError("the simulator must not run again")
    return noisy_features(x, rng)


def batches(ds, k):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(k)]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_simulate_is_a_function_of_the_seed_and_the_chunk_grid():
    x, y = simulate(box_prior, noisy_features, 250, seed=7, chunk_size=100)
    assert x.shape == (250, 2) and y.shape == (250, 3) and x.dtype == y.dtype == np.float32
    x2, y2 = simulate(box_prior, noisy_features, 250, seed=7, chunk_size=100)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = simulate(box_prior, noisy_features, 250, seed=8, chunk_size=100)
    assert not np.allclose(x, x3)
    # chunk i only depends on (seed, i): a smaller budget is a prefix of a larger one
    xs, ys = simulate(box_prior, noisy_features, 200, seed=7, chunk_size=100)
    np.testing.assert_array_equal(xs, x[:200])
    np.testing.assert_array_equal(ys, y[:200])
    # the same stream as fresh-mode batches of that size
    fresh = batches(simulation_dataset(box_prior, noisy_features, batch_size=100, seed=7), 2)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in fresh]), xs)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in fresh]), ys)


def test_nonfinite_simulations_name_the_simulator_and_the_row(caplog):
    n, chunk = 200, 10
    x_all, _ = simulate(box_prior, identity_simulator, n, seed=5, chunk_size=chunk)  # the prior draws come first
    bad = x_all[:, 0] > 0.9
    first = int(np.argmax(bad))
    assert first >= chunk  # a global row number, not one inside its chunk
    message = rf"nan_when_large'.*row {first} \(x = {re.escape(str(x_all[first].tolist()))}"
    with pytest.raises(ValueError, match=message):
        simulate(box_prior, nan_when_large, n, seed=5, chunk_size=chunk)
    with caplog.at_level(logging.WARNING, logger="tfcflow.data.simulator"):
        x, y = simulate(box_prior, nan_when_large, n, seed=5, chunk_size=chunk, on_nonfinite="drop")
    np.testing.assert_array_equal(x, x_all[~bad])
    assert np.isfinite(y).all() and len(y) == n - bad.sum()
    assert f"in {int(bad.sum())} of {n} rows" in caplog.text
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        simulate(box_prior, nan_when_large, n, seed=5, on_nonfinite="skip")


def test_wrong_outputs_name_the_function():
    def flat_prior(n, rng):
        return rng.uniform(size=n)

    def short_simulator(x, rng):
        return x[:-1]

    def text_simulator(x, rng):
        return np.array(["a"] * len(x))

    calls = []

    def growing_simulator(x, rng):
        calls.append(1)
        return np.zeros((len(x), 1 + len(calls)))

    def nan_prior(n, rng):
        return np.full((n, 2), np.inf)

    cases = [
        (flat_prior, noisy_features, r"prior '.*flat_prior' must return x of shape \[n, D\] with n=4 rows, "
                                     r"got shape \[4\]"),
        (box_prior, short_simulator, r"simulator '.*short_simulator' must return y .* one row per row of x \[4, 2\], "
                                     r"got shape \[3, 2\]"),
        (box_prior, text_simulator, r"simulator '.*text_simulator' must return a numeric array, got dtype <U1"),
        (box_prior, growing_simulator, r"'.*growing_simulator' returned rows of shape \[3\] for rows 4..7, "
                                       r"but rows of shape \[2\] before"),
        (nan_prior, noisy_features, r"prior '.*nan_prior' returned NaN or inf in row 0"),
    ]
    for prior, simulator, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            simulate(prior, simulator, 8, seed=0, chunk_size=4)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        simulate(box_prior, noisy_features, 8, seed=-1)


def test_tensorflow_functions_follow_the_same_contract():
    def tf_prior(n, rng):
        return tf.random.stateless_uniform([n, 2], seed=rng.integers(0, 2**31 - 1, size=2), minval=-1.0)

    def tf_simulator(x, rng):
        return tf.reduce_sum(x, axis=1, keepdims=True) + tf.random.stateless_normal(
            [len(x), 1], seed=rng.integers(0, 2**31 - 1, size=2))

    x, y = simulate(tf_prior, tf_simulator, 12, seed=1, chunk_size=5)
    assert x.shape == (12, 2) and y.shape == (12, 1) and y.dtype == np.float32
    # in fresh mode the functions run inside tf.data (tf.numpy_function), with the same results
    fresh = batches(simulation_dataset(tf_prior, tf_simulator, batch_size=5, seed=1), 2)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in fresh]), x[:10])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in fresh]), y[:10])


def test_budget_dataset_is_epochs_of_permutations_of_the_same_simulations():
    n, b = 48, 8
    ds = simulation_dataset(box_prior, noisy_features, budget=n, batch_size=b, seed=3)
    assert ds.element_spec[0].shape == (b, 2) and ds.element_spec[1].shape == (b, 3)
    x, y = simulated_arrays(box_prior, noisy_features, n, seed=3)
    reference = np.sort(np.concatenate([x, y], 1), axis=0)
    got = batches(ds, 3 * n // b)
    epochs = [np.concatenate([np.concatenate(p, 1) for p in got[e * n // b:(e + 1) * n // b]]) for e in range(3)]
    for rows in epochs:
        np.testing.assert_array_equal(np.sort(rows, axis=0), reference)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch
    assert_same(batches(simulation_dataset(box_prior, noisy_features, budget=n, batch_size=b, seed=3).skip(7), 4),
                got[7:11])
    ordered = batches(simulation_dataset(box_prior, noisy_features, budget=n, batch_size=b, seed=3, shuffle=False), 1)
    np.testing.assert_array_equal(ordered[0][0], x[:b])
    with pytest.raises(ValueError, match="cannot fill one batch"):
        simulation_dataset(box_prior, noisy_features, budget=4, batch_size=b, seed=3)


def test_budget_is_simulated_once_and_reused_from_the_cache(tmp_path, monkeypatch):
    kwargs = dict(budget=40, batch_size=8, seed=2, cache_dir=str(tmp_path))
    first = batches(simulation_dataset(box_prior, guarded_simulator, **kwargs), 6)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and re.fullmatch(r"simulations-[0-9a-f]{16}\.npz", files[0])  # no temporary file left
    monkeypatch.setitem(FAIL, "on", True)
    assert_same(batches(simulation_dataset(box_prior, guarded_simulator, **kwargs), 6), first)
    with pytest.raises(RuntimeError, match="must not run again"):  # another seed is another cache file
        simulation_dataset(box_prior, guarded_simulator, **dict(kwargs, seed=3))


def test_fresh_batches_resume_exactly_with_skip(caplog):
    ds = simulation_dataset(box_prior, noisy_features, batch_size=16, seed=4)
    assert ds.element_spec[0].shape == (16, 2) and ds.element_spec[1].shape == (16, 3)
    run = batches(ds, 6)
    assert not np.array_equal(run[0][0], run[1][0])  # fresh simulations every batch
    # a killed job restarts with a new dataset object and skips the k batches it consumed
    resumed = simulation_dataset(box_prior, noisy_features, batch_size=16, seed=4).skip(4)
    assert_same(batches(resumed, 2), run[4:])
    assert_same(batches(simulation_dataset(box_prior, noisy_features, batch_size=16, seed=4, first_batch=4), 2),
                run[4:])
    other = batches(simulation_dataset(box_prior, noisy_features, batch_size=16, seed=5), 1)
    assert not np.array_equal(other[0][0], run[0][0])
    # "drop" tops every batch up with replacement draws; "raise" fails before training starts
    with caplog.at_level(logging.WARNING, logger="tfcflow.data.simulator"):
        dropped = batches(simulation_dataset(box_prior, nan_when_large, batch_size=64, seed=4, on_nonfinite="drop"), 3)
    assert all(x.shape == (64, 2) and np.isfinite(y).all() for x, y in dropped)
    assert "drawing replacements" in caplog.text
    with pytest.raises(ValueError, match="nan_when_large.*NaN or inf in row"):
        simulation_dataset(box_prior, nan_when_large, batch_size=64, seed=4)

    def later_nan(x, rng):  # NaN in some later batches only: the error comes from inside tf.data
        return x + (np.nan if rng.uniform() < 0.3 else 0.0)

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ValueError: simulator '.*later_nan' returned NaN "
                                                             r"or inf in row \d+ \(x = \["):
        batches(simulation_dataset(box_prior, later_nan, batch_size=8, seed=0), 50)


def test_load_callable(tmp_path):
    assert load_callable("tfcflow.data.sbi_tasks:two_moons_prior") is sbi_tasks.two_moons_prior
    assert load_callable("tfcflow.data.sbi_tasks.two_moons_simulator") is sbi_tasks.two_moons_simulator
    (tmp_path / "my_sim.py").write_text("import numpy as np\n\ndef prior(n, rng):\n    return np.zeros((n, 1))\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    fn = load_callable(f"{tmp_path}/my_sim.py:prior")
    assert fn(3, None).shape == (3, 1)
    assert load_callable("my_sim.py:prior", base_dir=str(tmp_path)) is fn  # the file is loaded once
    cases = [
        ("no_such_package.sims:prior", r"cannot load 'no_such_package.sims:prior': no module named "
                                       r"'no_such_package.sims'"),
        ("tfcflow.data.sbi_tasks:no_such_function", r"module 'tfcflow.data.sbi_tasks' has no attribute "
                                                    r"'no_such_function'"),
        ("tfcflow.data.sbi_tasks.GAUSSIAN_LINEAR_DIM", r"'GAUSSIAN_LINEAR_DIM' is a int, not a callable"),
        (f"{tmp_path}/missing.py:prior", r"missing.py'.* does not exist"),
        (f"{tmp_path}/broken.py:prior", r"broken.py' failed: RuntimeError: boom"),
        ("two_moons_prior", r"is not 'package.module:function'"),
    ]
    for path, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            load_callable(path)


def test_reference_tasks_shapes_and_statistics():
    theta, y = simulate(sbi_tasks.two_moons_prior, sbi_tasks.two_moons_simulator, 4000, seed=0)
    assert theta.shape == y.shape == (4000, 2) and np.abs(theta).max() <= 1
    # undo the parameter shift: what is left is the moon p = (r cos a + 0.25, r sin a)
    t1, t2 = theta[:, 0].astype(float), theta[:, 1].astype(float)
    p = y - np.stack([-np.abs(t1 + t2), t2 - t1], 1) / np.sqrt(2)
    r = np.hypot(p[:, 0] - 0.25, p[:, 1])
    assert abs(r.mean() - 0.1) < 0.002 and abs(r.std() - 0.01) < 0.002 and (p[:, 0] > 0.25 - 1e-6).all()

    theta, y = simulate(sbi_tasks.gaussian_linear_prior, sbi_tasks.gaussian_linear_simulator, 20000, seed=0)
    assert theta.shape == y.shape == (20000, 10)
    assert abs(theta.std() - np.sqrt(0.1)) < 0.01 and abs((y - theta).std() - np.sqrt(0.1)) < 0.01
    mean, cov = sbi_tasks.gaussian_linear_posterior(y)
    np.testing.assert_allclose(mean, y / 2, rtol=1e-6)
    np.testing.assert_allclose(cov, 0.05 * np.eye(10))
    # the simulations agree with it: E[theta | y] regressed from the pairs, and the residual variance
    slope = np.linalg.lstsq(y.astype(float), theta.astype(float), rcond=None)[0]
    np.testing.assert_allclose(slope, 0.5 * np.eye(10), atol=0.02)
    assert abs((theta - mean).var() - 0.05) < 0.003
    with pytest.raises(ValueError, match=r"y must have shape \[10\]"):
        sbi_tasks.gaussian_linear_posterior(np.zeros(3))


def test_simulate_at_given_parameters_is_seeded_per_chunk_and_drops_bad_rows():
    def sim(theta, rng):
        y = theta * 2.0 + rng.standard_normal(theta.shape)
        y[theta[:, 0] > 0.9] = np.nan
        return y

    theta = np.random.default_rng(0).uniform(size=(25, 2)).astype(np.float32)
    a = simulate_at(theta, sim, seed=[3, 1], chunk_size=10, on_nonfinite="drop")
    b = simulate_at(theta, sim, seed=[3, 1], chunk_size=10, on_nonfinite="drop")
    keep = theta[:, 0] <= 0.9
    np.testing.assert_array_equal(a[0], theta[keep])
    np.testing.assert_array_equal(a[1], b[1])
    # chunk 1 (rows 10..19) is its generator's first draw: the same as simulating those rows alone
    alone = sim(theta[10:20].copy(), np.random.default_rng([3, 1, 1]))
    np.testing.assert_array_equal(a[1][keep[:10].sum():keep[:20].sum()], alone[keep[10:20]].astype(np.float32))
    with pytest.raises(ValueError, match="returned NaN or inf in row"):
        simulate_at(theta, sim, seed=0)
    with pytest.raises(ValueError, match=r"x must be parameters \[n, D\]"):
        simulate_at(theta[0], sim, seed=0)
