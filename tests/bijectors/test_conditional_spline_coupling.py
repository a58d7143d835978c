import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow.bijectors import ConditionalSplineCoupling, SplineCouplingLayer
from tfcflow.bijectors.conditional_spline_coupling import spline_params
from tfcflow.models.vector_blocks import coupling_flow
from tfcflow.networks import MLPNetwork
from tests.helpers import assert_every_variable_gets_a_gradient, check_bijector, fresh, perturb

BINS = 5


def _layer(dim=4, cond_dim=3, flip=False, bins=BINS, bound=3.0, perturbed=True, seed=0):
    keras.utils.set_random_seed(seed)  # the hidden layers' initial weights too: deterministic tests
    transformed = dim - dim // 2 if not flip else dim // 2
    layer = SplineCouplingLayer(MLPNetwork((3 * bins - 1) * transformed, (16, 16)), flip=flip, bins=bins,
                                bound=bound)
    layer.build((None, dim), None if cond_dim is None else (None, cond_dim))
    if perturbed:
        # far from the identity (log-dets of several nats, checked below); much larger weights make
        # bins so lopsided that the spline's derivative reaches e^-15 and float32 cannot invert it
        perturb(layer, seed=seed, scale=0.1)
        perturb(layer.network.out, seed=seed + 1, scale=0.2)
    return layer


def _make(layer, c):
    return lambda i=None: layer.bijector(None if c is None else (c if i is None else c[i:i + 1]))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("cond_dim", [3, None])
def test_round_trip_and_log_det(flip, cond_dim):
    layer = _layer(dim=5, cond_dim=cond_dim, flip=flip)
    x = 2.0 * tf.random.stateless_normal([6, 5], [1, 2])  # covers bins and both tails
    c = None if cond_dim is None else tf.random.stateless_normal([6, cond_dim], [3, 4])
    z = check_bijector(_make(layer, c), x, ld_examples=3)
    # the spline really bends: a test on a near-identity map proves nothing
    _, ld = layer(fresh(x), condition=c)
    assert np.max(np.abs(z.numpy() - x.numpy())) > 0.3, np.max(np.abs(z.numpy() - x.numpy()))
    assert np.max(np.abs(ld.numpy())) > 0.5, ld.numpy()


def test_condition_changes_only_the_transformed_part():
    layer = _layer(dim=4)
    x = tf.random.stateless_normal([4, 4], [1, 2])
    z1, ld1 = layer(fresh(x), condition=tf.random.stateless_normal([4, 3], [3, 4]))
    z2, ld2 = layer(fresh(x), condition=tf.random.stateless_normal([4, 3], [5, 6]))
    np.testing.assert_array_equal(z1[:, :2].numpy(), x[:, :2].numpy())
    np.testing.assert_array_equal(z2[:, :2].numpy(), x[:, :2].numpy())
    assert np.all(np.abs(z1[:, 2:].numpy() - z2[:, 2:].numpy()) > 1e-4)
    assert np.all(np.abs(ld1.numpy() - ld2.numpy()) > 1e-4)


def test_zero_last_layer_is_the_identity():
    widths, heights, slopes = spline_params(tf.zeros([2, 3 * (3 * BINS - 1)]), BINS, 3.0)
    np.testing.assert_array_equal(slopes.numpy(), 1.0)  # exactly, not 1 - 6e-8
    np.testing.assert_array_equal(widths.numpy(), heights.numpy())
    np.testing.assert_allclose(widths.numpy().sum(-1), 6.0, rtol=1e-6)
    layer = _layer(perturbed=False)
    x = tf.constant([[0.3, -1.0, 0.1, -2.9], [2.0, 1.0, 2.99, 7.0], [0.0, 0.0, -3.0, 1e4]])
    c = tf.random.stateless_normal([3, 3], [1, 2])
    z, ld = layer(fresh(x), condition=c)
    x_back, fld = layer.bijector(c).forward_and_log_det(fresh(x))
    # the spline is the identity in exact arithmetic; TFP's formula rounds at the 1-ulp level
    np.testing.assert_allclose(z.numpy(), x.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ld.numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(fld.numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize("direction", ["inverse", "forward"])
def test_far_outside_the_interval_is_the_identity_with_finite_gradients(direction):
    layer = _layer(dim=4)
    # rows: inside, far tails (both signs), 1e30 next to an inside value
    x = tf.constant([[0.2, -0.4, 0.5, -1.5], [1.0, 0.3, 1e4, -50.0],
                     [-0.7, 1.1, -1e4, 50.0], [0.1, 0.2, 1e30, 0.5]])
    c = tf.random.stateless_normal([4, 3], [3, 4])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        bij = layer.bijector(c)
        out, ld = bij.inverse_and_log_det(x) if direction == "inverse" else bij.forward_and_log_det(x)
        loss = tf.reduce_sum(out) - tf.reduce_sum(ld)
    out, ld = out.numpy(), ld.numpy()
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(ld))
    far = np.abs(x.numpy()) >= 50.0
    np.testing.assert_array_equal(out[far], x.numpy()[far])
    np.testing.assert_array_equal(ld[1:3], 0.0)  # both transformed features in the tails
    assert abs(ld[3]) > 1e-3  # only the tail element contributes nothing
    grads = tape.gradient(loss, layer.trainable_variables + [x])
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    assert np.any(grads[-2].numpy() != 0)  # the inside elements still train the network
    np.testing.assert_array_equal(grads[-1].numpy()[far], 1.0)  # d out/dx = 1, d log-det/dx = 0 in the tails


def test_every_variable_gets_a_gradient():
    layer = _layer(dim=4)
    x = tf.random.stateless_normal([3, 4], [0, 1])
    c = tf.random.stateless_normal([3, 3], [2, 3])
    assert_every_variable_gets_a_gradient(layer, x, c, count=6)


def test_one_network_evaluation_per_log_prob():
    layer = _layer(dim=4)
    calls = []

    def counting(inputs):
        calls.append(1)
        return layer.network(inputs)

    c = tf.ones([3, 3])
    bij = ConditionalSplineCoupling(counting, c, bins=BINS)
    tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc=tf.zeros(4)), bij).log_prob(
        tf.random.stateless_normal([3, 4], [0, 1]))
    assert len(calls) == 1
    calls.clear()
    ConditionalSplineCoupling(counting, c, bins=BINS).forward_and_log_det(tf.zeros([3, 4]))
    assert len(calls) == 1


def test_config_round_trip_gives_the_same_outputs():
    layer = _layer(dim=5, flip=True, bins=4, bound=2.5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, SplineCouplingLayer)
    assert (clone.flip, clone.bins, clone.bound, clone.name) == (True, 4, 2.5, layer.name)
    assert clone.built and clone.conditional  # Keras rebuilt it from the recorded build shapes
    clone.set_weights(layer.get_weights())
    x = 2.0 * tf.random.stateless_normal([4, 5], [1, 2])
    c = tf.random.stateless_normal([4, 3], [3, 4])
    for a, b in zip(layer(fresh(x), condition=c), clone(fresh(x), condition=c)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    plain = SplineCouplingLayer.from_config(layer.get_config())
    assert plain.get_config() == layer.get_config()
    plain.build((None, 5), (None, 3))
    plain.set_weights(layer.get_weights())
    np.testing.assert_array_equal(plain(fresh(x), condition=c)[0].numpy(), layer(fresh(x), condition=c)[0].numpy())


def test_bad_arguments_raise_clear_errors():
    net = MLPNetwork(14, (4,))
    for bins in (1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="bins must be an integer >= 2"):
            SplineCouplingLayer(net, bins=bins)
    for bound in (0.0, -1.0, float("inf"), float("nan"), None):
        with pytest.raises(ValueError, match="bound must be a finite number > 0"):
            SplineCouplingLayer(net, bound=bound)
    with pytest.raises(ValueError, match="too small for 8 bins"):
        SplineCouplingLayer(net, bins=8, bound=1e-3)
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        ConditionalSplineCoupling(net, bins=0)
    with pytest.raises(ValueError, match="event_ndims=1"):
        ConditionalSplineCoupling(net, event_ndims=3)
    bad = SplineCouplingLayer(MLPNetwork(20, (4,)), bins=5, name="my_spline")
    with pytest.raises(ValueError, match=r"my_spline: the network must output 14 \* 2 = 28"):
        bad.build((None, 4), (None, 3))
    with pytest.raises(ValueError, match="take vectors"):
        SplineCouplingLayer(MLPNetwork(28, (4,))).build((None, 4, 4, 4))
    with pytest.raises(ValueError, match="at least 2 features"):
        SplineCouplingLayer(MLPNetwork(14, (4,))).build((None, 1))
    with pytest.raises(ValueError, match="built with a condition; got condition=None"):
        _layer(perturbed=False).bijector(None)
    with pytest.raises(ValueError, match="built without a condition"):
        _layer(cond_dim=None, perturbed=False).bijector(tf.ones([1, 3]))


def test_density_integrates_to_one():
    """D = 2, x_1 untouched, x_2 through a strongly bent spline, N(0, I) base: the density
    p(x | c) = N(z(x)) |dz/dx| integrates to 1 over the plane (trapezoid on a grid)."""
    layer = _layer(dim=2, cond_dim=2, bound=2.0, seed=7)
    a = np.linspace(-8.0, 8.0, 161, dtype=np.float32)    # untouched: smooth in the network only
    b = np.linspace(-8.0, 8.0, 4001, dtype=np.float32)   # transformed: fine grid for the spline
    grid = np.stack(np.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)
    c = tf.tile(tf.constant([[0.5, -1.0]]), [grid.shape[0], 1])
    z, ld = layer(tf.constant(grid), condition=c)
    log_p = tfd.MultivariateNormalDiag(loc=tf.zeros(2)).log_prob(z) + ld
    p = np.exp(log_p.numpy().astype(np.float64)).reshape(a.size, b.size)
    assert np.max(np.abs(ld.numpy())) > 1.0  # not the identity
    conditional = np.trapezoid(p, b, axis=1)  # = N(x_1; 0, 1): the spline part is a density in x_2
    np.testing.assert_allclose(conditional, np.exp(-0.5 * a ** 2) / np.sqrt(2 * np.pi), atol=2e-3)
    assert abs(np.trapezoid(conditional, a) - 1.0) < 1e-2


def test_coupling_flow_with_splines_is_an_invertible_chain():
    keras.utils.set_random_seed(1)
    seq = coupling_flow(3, 2, 8, True, 0, network={"hidden_layers": 1},
                        coupling={"kind": "spline", "bins": 4, "bound": 2.0})
    couplings = [s for s in seq.steps if "coupling" in s.name]
    assert [s.name for s in couplings] == ["block0_coupling0", "block0_coupling1",
                                           "block1_coupling0", "block1_coupling1"]
    assert all(isinstance(s, SplineCouplingLayer) and s.bins == 4 for s in couplings)
    seq.build((None, 3), (None, 2))
    perturb(seq, seed=3, scale=0.1)
    x = 1.5 * tf.random.stateless_normal([4, 3], [1, 2])
    c = tf.random.stateless_normal([4, 2], [3, 4])
    z = check_bijector(lambda i=None: seq.bijector(c if i is None else c[i:i + 1]), x, rt_tol=1e-4, ld_tol=1e-3)
    assert np.max(np.abs(z.numpy() - x.numpy())) > 0.1
    with pytest.raises(ValueError, match=r"coupling must be one of \('affine', 'spline', 'hybrid'\), got 'foo'"):
        coupling_flow(3, 1, 8, False, 0, coupling="foo")
    for bad in ({"depth": 0}, {"width": 0}, {"hidden_layers": 0}):
        args = {"depth": 1, "width": 8, "hidden_layers": 1, **bad}
        with pytest.raises(ValueError, match=list(bad)[0]):
            coupling_flow(3, args["depth"], args["width"], False, 0, network={"hidden_layers": args["hidden_layers"]})
    default = coupling_flow(3, 1, 8, False, 0, network={"hidden_layers": 1})
    assert [type(s).__name__ for s in default.steps] == ["AffineCouplingLayer", "AffineCouplingLayer",
                                                         "RandomPermutationLayer"]
