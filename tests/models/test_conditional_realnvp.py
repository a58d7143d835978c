import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models import ConditionalRealNVP
from tfcflow.models.gaussian import standard_normal_log_prob
from tests.helpers import autodiff_log_abs_det, perturb, tiny_model


@pytest.fixture(scope="module", params=[dict(mixing="permutation"), dict(mixing="lu"),
                                        dict(mixing="lu", network="residual"),
                                        dict(mixing="lu", coupling={"kind": "spline", "bins": 4}),
                                        dict(mixing="lu", coupling="hybrid")],
                ids=["permutation", "lu", "residual", "spline", "hybrid"])
def model(request):
    m = tiny_model("cinn", actnorm=True, **request.param)
    perturb(m, seed=2)
    return m


def test_log_prob_is_the_change_of_variables_with_the_autodiff_jacobian(model, gmm_data):
    x, _, c = gmm_data
    lp = model.log_prob(x[:3], c[:3]).numpy()
    for i in range(3):
        ci = tf.constant(c[i:i + 1])
        z = model.flow.bijector(ci).inverse(tf.constant(x[i:i + 1]))
        logdet = autodiff_log_abs_det(lambda t: model.flow.bijector(ci).inverse(t), x[i:i + 1])
        expected = float(standard_normal_log_prob(z)[0]) + logdet
        assert abs(lp[i] - expected) < 1e-4


def test_round_trip_of_the_whole_model(model, gmm_data):
    x, _, c = gmm_data
    b = model.flow.bijector(tf.constant(c[:64]))
    z = b.inverse(tf.constant(x[:64]))
    x_back = model.flow.bijector(tf.constant(c[:64])).forward(tf.constant(z.numpy()))
    assert np.max(np.abs(x_back.numpy() - x[:64])) < 1e-5


def test_distribution_view_matches_log_prob_and_samples(model, gmm_data):
    x, _, c = gmm_data
    dist = model.distribution(c[:8])
    assert dist.batch_shape == [8] and dist.event_shape == [2]
    np.testing.assert_allclose(dist.log_prob(x[:8]).numpy(), model.log_prob(x[:8], c[:8]).numpy(), rtol=1e-5)
    s = dist.sample(seed=[1, 2])
    assert s.shape == (8, 2)
    assert np.all(np.isfinite(dist.log_prob(s).numpy()))


def test_condition_changes_the_density(model, gmm_data):
    x, _, c = gmm_data
    other = np.roll(c[:16], 1, axis=1)
    assert np.all(model.log_prob(x[:16], c[:16]).numpy() != model.log_prob(x[:16], other).numpy())


def test_config_round_trip(model):
    clone = ConditionalRealNVP.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()


def _assert_the_training_loss_reaches_every_variable(m, x, c):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(m._training_losses(*m._check_pair(x, c), tf.constant([1, 2]))[0])
    grads = tape.gradient(loss, m.trainable_variables)
    assert not [v.path for v, g in zip(m.trainable_variables, grads) if g is None or not np.any(g.numpy())]


@pytest.mark.parametrize("kind", ["cinn", "rcf"])
def test_lu_mixing_is_learned_and_every_variable_gets_a_gradient(kind, gmm_data):
    x, _, c = gmm_data
    m = tiny_model(kind, mixing="lu")
    # the initial matrix is a rotation that mixes every coordinate (a permutation in 2-D only swaps)
    mixers = [step for step in m.flow.steps if step.name.endswith("_mix")]
    assert len(mixers) == 2
    w = mixers[0].bijector().weight().numpy()
    assert np.count_nonzero(np.abs(w) > 1e-3) > len(w) and np.allclose(w @ w.T, np.eye(len(w)), atol=1e-5)
    perturb(m, seed=3)  # zero-initialized last layers pass no gradient back at init
    assert len([v for v in m.trainable_variables if "_mix" in v.path]) == 3 * 2  # lower, upper, log|diag|
    _assert_the_training_loss_reaches_every_variable(m, x[:32], c[:32])
    clone = type(m).from_config(m.get_config())
    assert clone.get_config()["mixing"] == "lu" and clone.count_params() == m.count_params()


@pytest.mark.parametrize("kind", ["cinn", "rcf"])
def test_residual_networks_get_a_gradient_in_every_variable_gates_included(kind, gmm_data):
    x, _, c = gmm_data
    m = tiny_model(kind, network={"kind": "residual", "hidden_layers": 2})
    perturb(m, seed=4)
    gates = [v for v in m.trainable_variables if "_gate" in v.path]
    # the cINN's networks see the condition: 2 blocks x 2 gates (kernel, bias) per network
    assert len(gates) == (2 * 2 * 4 if kind == "cinn" else 0)
    _assert_the_training_loss_reaches_every_variable(m, x[:32], c[:32])
    clone = type(m).from_config(m.get_config())
    assert clone.get_config()["network"] == "residual" and clone.count_params() == m.count_params()


def test_coupling_settings_are_grouped_refused_where_they_do_not_apply_and_old_configs_load():
    from tfcflow.models import Coupling

    assert Coupling.of("spline") == Coupling("spline", bins=8, bound=3.0)
    assert Coupling("spline", bins=8).to_config() == "spline"
    assert Coupling.of({"kind": "hybrid", "clamp": 3.0}).to_config() == {"kind": "hybrid", "clamp": 3.0}
    with pytest.raises(ValueError, match=r"^coupling scale='sigmoid' applies to 'affine' and 'hybrid' couplings, "
                                         r"not 'spline'"):
        Coupling("spline", scale="sigmoid")
    with pytest.raises(ValueError, match=r"^coupling bins=4 applies to 'spline' and 'hybrid'"):
        tiny_model("cinn", coupling={"kind": "affine", "bins": 4})
    with pytest.raises(ValueError, match=r"^coupling bins must be an integer >= 2"):
        Coupling("spline", bins=1)
    with pytest.raises(ValueError, match=r"^coupling must be one of"):
        Coupling("quadratic")
    with pytest.raises(ValueError, match=r"^spline_bins: settings of the coupling now"):
        tiny_model("cinn", coupling="spline", spline_bins=4)
    # a config saved before the grouping: its spline settings fold into the coupling, the affine
    # settings a spline model recorded (and never used) are dropped
    m = tiny_model("cinn", coupling={"kind": "spline", "bins": 4, "bound": 2.5})
    old = {k: v for k, v in m.get_config().items() if k != "coupling"}
    old.update(coupling="spline", spline_bins=4, spline_bound=2.5, scale="exp_tanh", clamp=2.0)
    clone = ConditionalRealNVP.from_config(old)
    assert clone.get_config() == m.get_config()
    clone.set_weights(m.get_weights())
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    c = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    np.testing.assert_array_equal(clone.log_prob(x, c).numpy(), m.log_prob(x, c).numpy())


def test_hybrid_blocks_alternate_affine_then_spline_couplings():
    from tfcflow.bijectors import AffineCouplingLayer, SplineCouplingLayer

    m = tiny_model("cinn", coupling="hybrid", depth=3)
    kinds = [type(step) for step in m.flow.steps if "_coupling" in step.name]
    assert kinds == [AffineCouplingLayer] * 2 + [SplineCouplingLayer] * 2 + [AffineCouplingLayer] * 2


def test_unknown_network_is_refused():
    with pytest.raises(ValueError, match="network must be one of"):
        tiny_model("cinn", network="transformer")


@pytest.mark.parametrize("kind", ["cinn", "rcf"])
def test_network_settings_are_grouped_checked_and_old_configs_load(kind):
    from tfcflow.models import Network

    m = tiny_model(kind, network=Network(kind="residual", hidden_layers=1, activation="silu"))
    assert m.get_config()["network"] == {"kind": "residual", "hidden_layers": 1, "activation": "silu"}
    nets = [s.network for s in m.flow.steps if hasattr(s, "network")]
    assert nets and all(n.activation == "silu" for n in nets)
    assert tiny_model(kind).get_config()["network"] == "mlp"  # defaults: the kind alone
    with pytest.raises(ValueError, match=r"^network hidden_layers must be"):
        tiny_model(kind, network={"hidden_layers": 0})
    with pytest.raises(ValueError, match=r"^network: unknown setting\(s\) \['width'\]"):
        tiny_model(kind, network={"width": 8})
    with pytest.raises(ValueError, match=r"^dropout: settings of the coupling networks now"):
        tiny_model(kind, dropout=0.1)
    # a config saved before the grouping: its network settings fold into network
    m = tiny_model(kind, network={"hidden_layers": 1, "dropout": 0.2})
    old = {k: v for k, v in m.get_config().items() if k != "network"}
    old.update(network="mlp", hidden_layers=1, activation="relu", dropout=0.2)
    clone = type(m).from_config(old)
    assert clone.get_config() == m.get_config()
    clone.set_weights(m.get_weights())
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    c = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    np.testing.assert_array_equal(clone.log_prob(x, c).numpy(), m.log_prob(x, c).numpy())


def test_unknown_mixing_is_refused():
    with pytest.raises(ValueError, match="mixing must be one of"):
        tiny_model("cinn", mixing="householder")


@pytest.mark.parametrize("kind", ["cinn", "rcf"])
def test_dropout_acts_in_the_training_loss_only_seeded_by_the_step(kind, gmm_data):
    x, _, c = gmm_data
    m, plain = tiny_model(kind, network={"dropout": 0.3}), tiny_model(kind)
    perturb(m, seed=5, scale=0.3)
    plain.set_weights(m.get_weights())
    xb, cb = m._check_pair(x[:64], c[:64])
    # log_prob and sampling evaluate the deterministic flow: the rate changes nothing there
    np.testing.assert_allclose(m.log_prob(xb, cb).numpy(), plain.log_prob(xb, cb).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(m.sample(cb, seed=1).numpy(), plain.sample(cb, seed=1).numpy())

    def loss(model, seed):
        return model._training_losses(xb, cb, tf.constant(seed))[1].numpy()

    a, b, other = loss(m, [1, 2]), loss(m, [1, 2]), loss(m, [1, 3])
    np.testing.assert_array_equal(a, b)  # the same step's masks
    assert np.abs(a - other).max() > 1e-3 and np.abs(a - loss(plain, [1, 2])).max() > 1e-3
    _assert_the_training_loss_reaches_every_variable(m, x[:32], c[:32])
    clone = type(m).from_config(m.get_config())
    assert clone.get_config()["network"] == {"kind": "mlp", "dropout": 0.3}
    assert all(n.dropout == 0.3 for n in (s.network for s in clone.flow.steps if hasattr(s, "network")))
