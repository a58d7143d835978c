"""The data-source registry: every source the job config accepts is registered, a request builds a
seeded stream and held-out data of the shapes the model is built for, and a new source is one
registered function."""
import numpy as np
import pytest

from tfcflow.data import sources


def _request(data, **kwargs):
    return sources.SourceRequest({"source": "gaussian_mixture", "train_size": 512, "test_size": 64, "sigma": 0.1,
                                  **data}, **{"seed": 3, "batch_size": 32, "eval_batch_size": 16, **kwargs})


def _first(ds):
    x, c = next(iter(ds))
    return x.numpy(), c.numpy()


def test_the_config_accepts_exactly_the_registered_sources():
    from tfcflow import config

    assert set(config.CHOICES[("data", "source")]) == set(sources.SOURCES) == {
        "tfds", "image_folder", "gaussian_mixture", "simulator"}


def test_an_unknown_source_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"data.source: unknown source 'nope'; one of \['gaussian_mixture'"):
        sources.build(_request({"source": "nope"}))


def test_gaussian_mixture_source_is_seeded_and_holds_its_test_arrays():
    a, b, other = (sources.build(_request({}, seed=s)) for s in (3, 3, 4))
    assert a.shapes == {"event_shape": [2], "condition_shape": [8]}
    xa, ca = _first(a.train)
    assert xa.shape == (32, 2) and ca.shape == (32, 8)
    np.testing.assert_array_equal(xa, _first(b.train)[0])
    assert not np.array_equal(xa, _first(other.train)[0])
    xt, _, ct = a.test_arrays
    assert len(xt) == 64
    x0, c0 = _first(a.test)
    np.testing.assert_array_equal(x0, xt[:16])
    np.testing.assert_array_equal(c0, ct[:16])


def test_simulator_source_takes_its_functions_from_the_request():
    def prior(n, rng):
        return rng.normal(size=(n, 2)).astype(np.float32)

    def simulator(theta, rng):
        return theta + 0.1 * rng.normal(size=theta.shape).astype(np.float32)

    data = {"source": "simulator", "simulations": 256, "test_simulations": 40, "on_nonfinite": "raise"}
    built = sources.build(_request(data, functions=lambda: (prior, simulator)))
    assert built.shapes == {"event_shape": [2], "condition_shape": [2]}
    theta, x = built.test_arrays
    assert theta.shape == (40, 2) and np.abs(x - theta).max() < 1.0  # x is theta plus small noise
    bad = {**data, "simulations": 0}
    with pytest.raises(ValueError, match=r"^data: "):
        sources.build(_request(bad, functions=lambda: (prior, simulator)))


def test_a_registered_source_is_built_by_name(monkeypatch):
    monkeypatch.setitem(sources.SOURCES, "constant", None)

    @sources.register("constant")
    def constant(request):
        import tensorflow as tf

        x = tf.fill([request.batch_size, 3], float(request.seed))
        ds = tf.data.Dataset.from_tensors((x, x)).repeat()
        return sources.DataSource(ds, ds.take(1), {"event_shape": [3], "condition_shape": [3]})

    built = sources.build(_request({"source": "constant"}, seed=7))
    assert (_first(built.train)[0] == 7.0).all() and built.shapes["event_shape"] == [3]
