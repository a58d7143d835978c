"""The shared model API (tfcflow.models.base) on both vector models."""
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import copy_model, perturb, tiny_model

KINDS = ["cinn", "rcf"]


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    m = tiny_model(request.param)
    perturb(m, seed=1)
    return m


def test_every_trainable_variable_gets_a_gradient(model, gmm_data):
    x, _, c = gmm_data
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model._training_losses(tf.constant(x[:64]), tf.constant(c[:64]), tf.constant([0, 1]))[0])
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables) > 0
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing
    zero = [v.path for v, g in zip(model.trainable_variables, grads) if not np.any(g.numpy())]
    assert not zero


def test_seeded_sampling_is_reproducible(model, gmm_data):
    _, _, c = gmm_data
    a = model.sample(c[:16], seed=7).numpy()
    b = model.sample(c[:16], seed=7).numpy()
    d = model.sample(c[:16], seed=8).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.all(np.abs(a - d) > 1e-7)
    # and in a graph, with a tensor seed
    g = tf.function(lambda cond, s: model.sample(cond, seed=s))(tf.constant(c[:16]), tf.constant([7, 0]))
    np.testing.assert_allclose(g.numpy(), a, atol=1e-5)


def test_temperature_zero_is_the_deterministic_mode_path(model, gmm_data):
    _, _, c = gmm_data
    a = model.sample(c[:8], temperature=0.0, seed=1).numpy()
    b = model.sample(c[:8], temperature=0.0, seed=2).numpy()
    np.testing.assert_array_equal(a, b)


def test_best_of_n_returns_the_argmax_of_log_prob(model, gmm_data):
    _, _, c = gmm_data
    cond = c[:4]
    best, best_lp = model.best_of_n(cond, n=5, temperature=1.0, seed=3)
    # the same draws, made by hand: row b*n + i is sample i of condition b
    tiled = np.repeat(cond, 5, axis=0)
    draws = model.sample(tiled, temperature=1.0, seed=3).numpy()
    lp = model.log_prob(draws, tiled).numpy().reshape(4, 5)
    idx = lp.argmax(axis=1)
    np.testing.assert_allclose(best.numpy(), draws.reshape(4, 5, 2)[np.arange(4), idx], atol=1e-6)
    np.testing.assert_allclose(best_lp.numpy(), lp.max(axis=1), rtol=1e-5)
    assert np.all(best_lp.numpy() >= lp.mean(axis=1))


def test_fit_reduces_the_nll(gmm_data):
    import keras
    x, _, c = gmm_data
    for kind in KINDS:
        m = tiny_model(kind)
        m.adapt(x, c)  # the standardization fit would learn: "before" is the same model, untrained
        before = -float(tf.reduce_mean(m.log_prob(x, c)))
        m.compile(optimizer=keras.optimizers.Adam(3e-3))
        hist = m.fit(x, c, batch_size=128, epochs=6, verbose=0, shuffle=False)
        after = -float(tf.reduce_mean(m.log_prob(x, c)))
        assert after < before - 1.0, (kind, before, after)
        assert set(hist.history) == {"loss", "nats_per_dim", "grad_norm", "skipped_steps"}
        assert hist.history["skipped_steps"][-1] == 0 and hist.history["grad_norm"][-1] > 0
        np.testing.assert_allclose(hist.history["nats_per_dim"][-1], hist.history["loss"][-1] / 2, rtol=1e-5)


def test_evaluate_reports_the_same_nll_as_log_prob(model, gmm_data):
    import keras
    x, _, c = gmm_data
    m = copy_model(model)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    res = m.evaluate(x, c, batch_size=128, verbose=0, return_dict=True)
    np.testing.assert_allclose(res["loss"], -np.mean(model.log_prob(x, c).numpy()), rtol=1e-4)


def test_saved_and_loaded_model_gives_the_same_log_prob(model, gmm_data, tmp_path):
    import keras
    x, _, c = gmm_data
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.log_prob(x[:32], c[:32]).numpy(),
                               model.log_prob(x[:32], c[:32]).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs_fail_early_with_clear_messages(kind, gmm_data):
    m = tiny_model(kind)
    x, _, c = gmm_data
    x, c = x[:4], c[:4]
    cases = [
        (lambda: m.log_prob(x[:, :1], c), r"x must have shape \[batch, 2\], got shape \[4, 1\]"),
        (lambda: m.log_prob(x[None], c), r"x must have shape \[batch, 2\] \(rank 2\), got shape \[1, 4, 2\]"),
        (lambda: m.log_prob(x, None), r"condition is required.*\[batch, 8\]"),
        (lambda: m.sample(None), r"condition is required"),
        (lambda: m.log_prob(x, c[:, :5]), r"condition must have shape \[batch, 8\], got shape \[4, 5\]"),
        (lambda: m.log_prob(x, c[:3]), r"x and condition must have the same batch size, got 4 and 3"),
        (lambda: m.log_prob(np.where(np.eye(4, 2) > 0, np.nan, x), c),
         r"x contains NaN or inf values; 2 value\(s\), first at row 0"),
        (lambda: m.log_prob(x, np.where(np.eye(4, 8) > 0, np.inf, c)),
         r"condition contains NaN or inf values; 4 value\(s\), first at row 0"),
        (lambda: m.sample(c, temperature=-0.5), r"temperature must be >= 0, got -0.5"),
        (lambda: m.best_of_n(c, n=0), r"n must be an integer >= 1, got 0"),
        (lambda: m.sample(c, seed=[1, 2, 3]), r"seed must be an int or a \[2\] int tensor"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()


def test_nan_inside_a_graph_is_an_invalid_argument_error(model, gmm_data):
    x, _, c = gmm_data
    f = tf.function(lambda a, b: model.log_prob(a, b))
    bad = x[:4].copy()
    bad[0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="x contains NaN or inf"):
        f(tf.constant(bad), tf.constant(c[:4]))


def test_nan_in_training_data_stops_fit_with_a_message(gmm_data):
    import keras
    x, _, c = gmm_data
    m = tiny_model("cinn")
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    bad = x.copy()
    bad[100, 1] = np.nan
    # arrays: refused before anything runs, naming the input and the row
    with pytest.raises(ValueError, match=r"^training data: x contains NaN or inf values; first at row 100$"):
        m.fit(bad, c, batch_size=64, epochs=1, verbose=0, shuffle=False)
    assert int(m.optimizer.iterations.numpy()) == 0
    # a dataset: one line naming the input and the step, not a graph-execution trace
    ds = tf.data.Dataset.from_tensor_slices((bad, c)).batch(64)
    with pytest.raises(ValueError, match=r"^training data: x contains NaN or inf values \(in x: batch 1, row 36 of the "
                                         r"dataset, counted from 0\); clean or filter the dataset$"):
        m.fit(ds, epochs=1, verbose=0)
    bad_c = c.copy()
    bad_c[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"^training data: condition contains NaN or inf values; first at row 3$"):
        m.fit(x, bad_c, batch_size=64, epochs=1, verbose=0)


@pytest.mark.parametrize("standardize", [True, False])
def test_a_nan_in_a_dataset_is_named_alike_by_adapt_and_by_the_failed_step(standardize, gmm_data):
    # with standardization the statistics find it (adapt), without it the traced step does and fit
    # locates it: one message either way
    import keras
    x, _, c = gmm_data
    m = tiny_model("cinn", standardize=standardize)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    bad = x[:256].copy()
    bad[100, 1] = np.nan
    ds = tf.data.Dataset.from_tensor_slices((bad, c[:256])).batch(64)
    with pytest.raises(ValueError, match=r"^training data: x contains NaN or inf values \(in x: batch 1, row 36 of the "
                                         r"dataset, counted from 0\); clean or filter the dataset$"):
        m.fit(ds, epochs=1, verbose=0)


def test_a_chunk_draws_only_its_own_rows_noise(monkeypatch):
    # sample(num_samples=N) in chunks: each chunk's noise is its rows of the one N-row draw, and it
    # draws only those rows (drawing all N rows per chunk made the cost quadratic in N)
    from tfcflow import _random
    from tfcflow.models.rows import Rows, batch_noise
    seed = tf.constant([4, 2])
    whole = batch_noise("normal", [50, 3], seed).numpy()
    drawn = []
    bits = _random._bits

    def spy(shape, s, offset=None):
        drawn.append([int(d) for d in np.asarray(shape)])
        return bits(shape, s, offset)

    monkeypatch.setattr(_random, "_bits", spy)
    for start, size in ((0, 16), (16, 16), (32, 16), (48, 2)):
        part = batch_noise("normal", tf.constant([size, 3]), seed, Rows(start=start, total=50)).numpy()
        np.testing.assert_array_equal(part, whole[start:start + size])
    assert drawn == [[16, 3], [16, 3], [16, 3], [2, 3]]
