import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors.standardize import StandardizeLayer, moments
from tests.helpers import check_bijector, fresh


def _data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    mean = np.array([5.0, -300.0, 0.01])
    std = np.array([2.0, 40.0, 1e-3])
    return mean + std * rng.standard_normal((n, 3)), mean, std


def _layer(dim=3, **kwargs):
    layer = StandardizeLayer(**kwargs)
    layer.build((None, dim))
    return layer


@pytest.mark.parametrize("cuts", [[], [1], [7, 8, 250], [1, 2, 3, 499], [100, 100, 400]])
def test_moments_equal_numpy_for_any_batching(cuts):
    x, _, _ = _data()
    batches = np.split(x, cuts)  # uneven chunks, some of one row, some empty
    mean, std = moments(batches)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-10)


def test_moments_of_a_generator_and_of_tensors():
    x, _, _ = _data(seed=1)
    mean, std = moments(tf.constant(x[i:i + 37]) for i in range(0, len(x), 37))
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-10)


def test_moments_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one example"):
        moments([np.zeros((0, 3))])


def test_identity_before_adapt():
    layer = _layer()
    assert not layer.is_adapted
    x, _, _ = _data(n=8)
    x = x.astype(np.float32)
    z, ld = layer.bijector().inverse_and_log_det(fresh(x))
    np.testing.assert_array_equal(z.numpy(), x)
    np.testing.assert_array_equal(ld.numpy(), np.zeros(8))


def test_adapt_makes_the_data_zero_mean_unit_std():
    x, true_mean, true_std = _data(n=4000, seed=2)
    layer = _layer()
    mean, std = layer.adapt(x)
    assert layer.is_adapted
    assert np.all(np.abs(mean - true_mean) < 4 * true_std / np.sqrt(4000))
    np.testing.assert_allclose(std, true_std, rtol=0.05)
    z, _ = layer.bijector().inverse_and_log_det(fresh(x.astype(np.float32)))
    z = z.numpy().astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-3)


def test_log_det_is_minus_sum_log_std_and_the_autodiff_jacobian():
    x, _, _ = _data(n=300, seed=3)
    layer = _layer()
    _, std = layer.adapt(x)
    x32 = x[:5].astype(np.float32)
    z = check_bijector(lambda i=None: layer.bijector(), x32, rt_tol=1e-3, ld_examples=3)
    np.testing.assert_allclose(z.numpy(), (x[:5] - x.mean(0)) / x.std(0), atol=2e-3)
    _, ld = layer.bijector().inverse_and_log_det(fresh(x32))
    np.testing.assert_allclose(ld.numpy(), -np.sum(np.log(std)) * np.ones(5), rtol=1e-5)
    _, fld = layer.bijector().forward_and_log_det(fresh(z))
    np.testing.assert_allclose(fld.numpy(), np.sum(np.log(std)) * np.ones(5), rtol=1e-5)


def test_adapt_on_a_list_of_batches_equals_adapt_on_all():
    x, _, _ = _data(n=300, seed=4)
    a, b = _layer(), _layer()
    a.adapt(x)
    b.adapt([x[:11], x[11:200], x[200:]])
    np.testing.assert_allclose(a.loc.numpy(), b.loc.numpy(), rtol=1e-6)
    np.testing.assert_allclose(a.log_scale.numpy(), b.log_scale.numpy(), rtol=1e-5, atol=1e-6)


def test_constant_dimension_gets_scale_one_and_stays_finite():
    x, _, _ = _data(n=200, seed=5)
    x[:, 1] = 1234.5  # std exactly 0
    layer = _layer()
    mean, std = layer.adapt(x)
    assert std[1] == 1.0 and mean[1] == 1234.5
    np.testing.assert_allclose(layer.log_scale.numpy()[1], 0.0)
    np.testing.assert_allclose(layer.loc.numpy()[1], 1234.5)
    z, ld = layer.bijector().inverse_and_log_det(fresh(x[:10].astype(np.float32)))
    assert np.all(np.isfinite(z.numpy())) and np.all(np.isfinite(ld.numpy()))
    np.testing.assert_allclose(z.numpy()[:, 1], 0.0)
    # the constant dimension adds nothing to the log-det
    np.testing.assert_allclose(ld.numpy(), -np.sum(np.log(std[[0, 2]])), rtol=1e-5)


def test_nearly_constant_dimension_below_min_std_gets_scale_one():
    x = np.stack([np.linspace(0, 1, 50), 1e6 + 1e-3 * np.linspace(-1, 1, 50)], 1)  # std 5.8e-4 < 1e-6 * 1e6
    layer = _layer(dim=2)
    _, std = layer.adapt(x)
    assert std[1] == 1.0 and std[0] != 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_data_is_an_error_naming_the_row(bad):
    x, _, _ = _data(n=50, seed=6)
    x[17, 2] = bad
    layer = _layer()
    with pytest.raises(ValueError, match="NaN or inf values; first at row 17"):
        layer.adapt(x)
    with pytest.raises(ValueError, match="first at row 17"):
        layer.adapt([x[:10], x[10:30], x[30:]])  # the row counts across batches
    assert not layer.is_adapted


def test_wrong_dimension_is_an_error():
    with pytest.raises(ValueError, match="2 dimensions, the layer 3"):
        _layer().adapt(np.zeros((5, 2)))


def test_weights_are_not_trainable():
    layer = _layer()
    assert layer.trainable_variables == []
    assert len(layer.non_trainable_variables) == 3
    # and gradients do not flow to them through the model's optimizer view
    x = fresh(np.ones((2, 3), np.float32))
    with tf.GradientTape() as tape:
        z, ld = layer(x)
        loss = tf.reduce_sum(z) + tf.reduce_sum(ld)
    assert tape.gradient(loss, layer.trainable_variables) == []


def test_config_round_trip_and_weights():
    layer = _layer(min_std=1e-3, name="stdz")
    x, _, _ = _data(n=100, seed=7)
    layer.adapt(x)
    config = layer.get_config()
    assert config["min_std"] == 1e-3 and config["name"] == "stdz"
    clone = StandardizeLayer.from_config(config)
    clone.build((None, 3))
    assert clone.min_std == 1e-3 and not clone.is_adapted
    clone.set_weights(layer.get_weights())
    assert clone.is_adapted
    v = fresh(x[:4].astype(np.float32))
    np.testing.assert_array_equal(clone(v)[0].numpy(), layer(v)[0].numpy())


def test_vectors_only():
    with pytest.raises(ValueError, match="takes vectors"):
        StandardizeLayer().build((None, 4, 4, 1))
