"""``residual=True`` / ``"learned"``: the image models' flow sees y - base(c), a shift by a function of
the condition (base = up(c), or up(c) + g(c) with g a ResidualUpsampler trained by its own L1 loss)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models import ConditionalGlow
from tfcflow.networks.upsampler import ResidualUpsampler
from tests.helpers import copy_model, fresh, perturb, tiny_caflow, tiny_glow

KINDS = ["glow", "caflow"]


def _data(n=4, seed=0, channels=1, condition_channels=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 8, 8, channels)).astype(np.uint8)
    c = rng.integers(0, 256, (n, 4, 4, condition_channels)).astype(np.uint8)
    return x, c


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    m = tiny_glow("image", residual=True) if request.param == "glow" else tiny_caflow(residual=True)
    m.initialize(*_data(n=16))
    perturb(m, seed=3, scale=0.02)
    return m


def _up(c, channels=1):
    """The condition in [-0.5, 0.5], bicubic x2 to 8x8, broadcast to the target's channels."""
    u = tf.image.resize(tf.cast(c, tf.float32) / 255.0 - 0.5, [8, 8], method="bicubic")
    return tf.repeat(u, channels, axis=-1) if channels != u.shape[-1] else u


def _latent(m, c):
    return m._latent_bijector(m._features(m._check_condition(c)))


def test_log_prob_is_the_flow_density_of_the_residual(model):
    x, c = _data()
    y = (tf.cast(x, tf.float32) + 0.5) / 256.0 - 0.5 - _up(c)
    z, ld = _latent(model, c).inverse_and_log_det(fresh(y))
    expected = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), -1) + ld - 64 * math.log(256)
    np.testing.assert_allclose(model.log_prob(x, c).numpy(), expected.numpy(), rtol=1e-5)
    # the same weights without the shift give another density: the option is not a no-op
    plain = type(model).from_config({**model.get_config(), "residual": False})
    plain.set_weights(model.get_weights())
    assert np.all(np.abs(plain.log_prob(x, c).numpy() - model.log_prob(x, c).numpy()) > 1e-3)


def test_mode_sample_adds_the_upsampled_condition_back(model):
    _, c = _data()
    y0 = _latent(model, c).forward(tf.zeros([4, 64]))
    expected = np.clip(np.floor((y0 + _up(c) + 0.5).numpy() * 256.0), 0, 255) / 255.0
    np.testing.assert_allclose(model.sample(c, temperature=0.0).numpy(), expected, atol=1e-6)


def _check_distribution_view(model, seed):
    """The distribution view's density is log_prob, and its bijector round-trips a fresh tensor."""
    x, c = _data(seed=seed)
    dist = model.distribution(c)
    v = tf.cast(x, tf.float32) + 0.5
    np.testing.assert_allclose(dist.log_prob(fresh(v)).numpy(), model.log_prob(x, c).numpy(), rtol=1e-5)
    z = dist.bijector.inverse(fresh(v))
    np.testing.assert_allclose(dist.bijector.forward(fresh(z)).numpy(), v.numpy(), atol=2e-3)


def test_distribution_view_round_trip_and_density(model):
    _check_distribution_view(model, seed=0)


def test_every_trainable_variable_gets_a_gradient(model):
    x, c = _data(n=8)
    with tf.GradientTape() as tape:
        objective, _ = model._training_losses(model._check_x(x), model._check_condition(c), tf.constant([1, 2]))
        loss = tf.reduce_mean(objective)
    grads = tape.gradient(loss, model.trainable_variables)
    assert not [v.path for v, g in zip(model.trainable_variables, grads) if g is None or not np.any(g.numpy())]


def test_config_round_trip(model):
    clone = copy_model(model)
    assert clone.get_config()["residual"] == "bicubic"
    x, c = _data(seed=1)
    np.testing.assert_allclose(clone.log_prob(x, c).numpy(), model.log_prob(x, c).numpy(), rtol=1e-6)


def test_a_one_channel_condition_is_broadcast_over_the_target_channels():
    # colorization: a grey condition, a colour target
    m = ConditionalGlow((8, 8, 3), (8, 8, 1), levels=2, depth=1, width=8,
                        conditioning={"encoder_width": 4, "prior_width": 4},
                        residual=True)
    x, c = _data(channels=3)
    c = np.repeat(np.repeat(c, 2, axis=1), 2, axis=2)  # factor 1: the condition at the target size
    m.initialize(x, c)
    y = (tf.cast(x, tf.float32) + 0.5) / 256.0 - 0.5 - tf.repeat(tf.cast(c, tf.float32) / 255.0 - 0.5, 3, -1)
    z, ld = _latent(m, c).inverse_and_log_det(fresh(y))
    expected = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), -1) + ld - 192 * math.log(256)
    np.testing.assert_allclose(m.log_prob(x, c).numpy(), expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("condition_shape, match", [((3,), "image condition"), ((4, 4, 2), "3 or 1 channels")])
def test_residual_needs_an_image_condition_with_the_target_channels_or_one(condition_shape, match):
    with pytest.raises(ValueError, match=match):
        ConditionalGlow((8, 8, 3), condition_shape, levels=2, depth=1, width=8, residual=True)


# ---- residual="learned" ------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=KINDS)
def learned(request):
    kw = dict(residual={"kind": "learned", "width": 6, "depth": 1})
    m = tiny_glow("image", **kw) if request.param == "glow" else tiny_caflow(**kw)
    m.initialize(*_data(n=16))
    perturb(m, seed=3, scale=0.02)
    perturb(m.upsampler, seed=4, scale=0.1)  # a generic g: its output layer starts at zero
    return m


def _base(m, c):
    """up(c) + g(c), computed here from g's layers directly."""
    g = m.upsampler
    h = g.conv_in(tf.cast(c, tf.float32) / 255.0 - 0.5)
    for a, b in g.blocks:
        h = h + b(a(h))
    return _up(c) + tf.nn.depth_to_space(g.conv_out(h), 2)


def test_learned_base_is_not_bicubic(learned):
    _, c = _data()
    assert np.abs((_base(learned, c) - _up(c)).numpy()).max() > 1e-2


def test_learned_log_prob_is_the_flow_density_of_x_minus_the_learned_base(learned):
    x, c = _data()
    y = (tf.cast(x, tf.float32) + 0.5) / 256.0 - 0.5 - _base(learned, c)
    z, ld = _latent(learned, c).inverse_and_log_det(fresh(y))
    expected = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), -1) + ld - 64 * math.log(256)
    np.testing.assert_allclose(learned.log_prob(x, c).numpy(), expected.numpy(), rtol=1e-5)


def test_learned_mode_sample_adds_the_learned_base_back(learned):
    _, c = _data()
    y0 = _latent(learned, c).forward(tf.zeros([4, 64]))
    expected = np.clip(np.floor((y0 + _base(learned, c) + 0.5).numpy() * 256.0), 0, 255) / 255.0
    np.testing.assert_allclose(learned.sample(c, temperature=0.0).numpy(), expected, atol=1e-6)


def test_learned_distribution_view_round_trip_and_density(learned):
    _check_distribution_view(learned, seed=2)


def test_the_base_loss_trains_g_alone_and_the_likelihood_trains_the_flow_alone(learned):
    x, c = _data(n=8)
    xs, cs = learned._check_x(x), learned._check_condition(c)
    g_vars = {id(v) for v in learned.upsampler.trainable_variables}
    with tf.GradientTape(persistent=True) as tape:
        objective, nll = learned._training_losses(xs, cs, tf.constant([1, 2]))
        base_loss = learned._base_loss(xs, cs)
        means = {"objective": tf.reduce_mean(objective), "nll": tf.reduce_mean(nll),
                 "base": tf.reduce_mean(base_loss)}
    # the base loss is the L1 of the base, summed over each image, and the objective contains it
    l1 = tf.reduce_sum(tf.abs(tf.cast(x, tf.float32) / 255.0 - 0.5 - _base(learned, c)), axis=[1, 2, 3])
    np.testing.assert_allclose(base_loss.numpy(), l1.numpy(), rtol=1e-5)
    if isinstance(learned, ConditionalGlow):  # CAFlow's objective also has its lambda log p(c) term
        np.testing.assert_allclose((objective - nll).numpy(), l1.numpy(), rtol=1e-4)
    variables = learned.trainable_variables
    reached = {}
    for name in means:
        grads = tape.gradient(means[name], variables)
        reached[name] = {id(v) for v, gr in zip(variables, grads) if gr is not None and np.any(gr.numpy())}
    # g learns from its L1 alone, every other weight from the likelihood alone, the objective reaches all
    assert reached["base"] == g_vars
    assert not reached["nll"] & g_vars
    assert reached["objective"] == {id(v) for v in variables}


def test_learned_config_round_trip(learned):
    clone = copy_model(learned)
    cfg = clone.get_config()
    assert cfg["residual"] == {"kind": "learned", "width": 6, "depth": 1}
    # a config written before Residual grouped the learned base's settings loads the same model
    old = {**{k: v for k, v in cfg.items() if k != "residual"}, "residual": "learned", "residual_width": 6,
           "residual_depth": 1}
    again = type(learned).from_config(old)
    assert again.get_config() == cfg
    x, c = _data(seed=1)
    np.testing.assert_allclose(clone.log_prob(x, c).numpy(), learned.log_prob(x, c).numpy(), rtol=1e-6)


def test_a_fresh_learned_base_is_bicubic():
    m = tiny_glow("image", residual={"kind": "learned", "width": 4, "depth": 1})
    _, c = _data()
    np.testing.assert_allclose(m._base(m._check_condition(c), [8, 8]).numpy(), _up(c).numpy(), atol=1e-7)


def test_training_fits_a_base_better_than_bicubic():
    # targets that are the nearest-neighbour x2 of their condition: bicubic is off at every edge, g can
    # learn the difference; after a short fit the base's L1 error is well below bicubic's
    rng = np.random.default_rng(0)
    c = (rng.integers(0, 2, (256, 4, 4, 1)) * 255).astype(np.uint8)
    x = np.repeat(np.repeat(c, 2, axis=1), 2, axis=2)
    m = tiny_glow("image", residual={"kind": "learned", "width": 16, "depth": 1})
    m.initialize(x[:32], c[:32])
    m.compile(optimizer=__import__("keras").optimizers.Adam(3e-3), clipnorm=None)

    def base_l1(model):
        return float(tf.reduce_mean(model._base_loss(model._check_x(x[:64]), model._check_condition(c[:64]))))

    before = base_l1(m)
    m.fit(x, c, batch_size=32, epochs=6, verbose=0)
    after = base_l1(m)
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("kw, match", [(dict(residual="nearest"), "residual must be None, True or one of"),
                                       (dict(residual={"kind": "learned", "depth": -1}), "depth >= 0"),
                                       (dict(residual={"kind": "bicubic", "width": 8}),
                                        "residual width=8 sets the learned base g; residual is 'bicubic'"),
                                       (dict(residual="learned", residual_width=8),
                                        "residual_width: settings of the residual now")])
def test_bad_residual_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        ConditionalGlow((8, 8, 3), (4, 4, 3), levels=2, depth=1, width=8, **kw)


def test_a_learned_base_maps_any_condition_channel_count():
    # inpainting-like: a 2-channel condition (image + mask) for a 1-channel target
    m = ConditionalGlow((8, 8, 1), (8, 8, 2), levels=2, depth=1, width=8,
                        conditioning={"encoder_width": 4, "prior_width": 4},
                        residual={"kind": "learned", "width": 4, "depth": 1})
    perturb(m.upsampler, seed=0)
    c = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 2)).astype(np.uint8)
    expected = m.upsampler(tf.cast(c, tf.float32) / 255.0 - 0.5)
    np.testing.assert_allclose(m._base(m._check_condition(c), [8, 8]).numpy(), expected.numpy(), atol=1e-6)


def test_residual_upsampler_shapes_zero_start_and_config():
    g = ResidualUpsampler(3, factor=4, width=8, depth=2)
    g.build((None, 5, 7, 1))
    out = g(tf.random.normal([2, 5, 7, 1], seed=1))
    assert out.shape == (2, 20, 28, 3) and not np.any(out.numpy())
    clone = ResidualUpsampler.from_config(g.get_config())
    assert clone.get_config() == g.get_config()
