"""ConditionalGlow and CAFlow (all three CAFlow structures): the shared image-model checks."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models import CAFlow, ConditionalGlow
from tests.helpers import autodiff_log_abs_det, copy_model, fresh, perturb, tiny_caflow, tiny_glow

KINDS = ["glow", "glow_label", "caflow", "caflow_sigmoid", "dual_glow"]


def tiny_image_model(kind):
    if kind == "glow":
        return tiny_glow("image")
    if kind == "glow_label":
        return tiny_glow("label")
    extra = dict(caflow={}, caflow_sigmoid=dict(coupling={"kind": "affine", "scale": "sigmoid", "clamp": 1.5}),
                 dual_glow=dict(dual_glow=True))[kind]
    return tiny_caflow(**extra)


def _data(kind, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    if kind == "glow_label":
        c = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    else:
        c = rng.integers(0, 256, (n, 4, 4, 1)).astype(np.uint8)
    return x, c


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    m = tiny_image_model(request.param)
    x, c = _data(request.param, n=16)
    m.initialize(x, c)
    perturb(m, seed=5, scale=0.02)
    m.kind = request.param
    return m


def _latent_bijector(m, c):
    return m._latent_bijector(m._features(m._check_condition(c)))


def test_whole_model_round_trip_and_log_det(model):
    x, c = _data(model.kind)
    y = tf.random.stateless_uniform([4, 8, 8, 1], [1, 2], -0.5, 0.5)
    z, ld = _latent_bijector(model, c).inverse_and_log_det(fresh(y))
    y_back, fld = _latent_bijector(model, c).forward_and_log_det(fresh(z))
    assert float(tf.reduce_max(tf.abs(y_back - y))) < 1e-4
    np.testing.assert_allclose(ld.numpy(), -fld.numpy(), atol=2e-3, rtol=1e-5)
    expected = autodiff_log_abs_det(lambda t: _latent_bijector(model, c[:1]).inverse(t), y[:1])
    assert abs(expected - float(ld[0])) < 1e-3 * max(1.0, abs(expected))


def test_log_prob_is_the_latent_density_plus_dequantization(model):
    x, c = _data(model.kind)
    y = (tf.cast(x, tf.float32) + 0.5) / 256.0 - 0.5
    z, ld = _latent_bijector(model, c).inverse_and_log_det(y)
    expected = (tf.reduce_sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), -1) + ld - 64 * math.log(256))
    np.testing.assert_allclose(model.log_prob(x, c).numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(model.bits_per_dim(x, c).numpy(), -expected.numpy() / (64 * math.log(2)), rtol=1e-5)
    # uint8 and [0, 1] floats are the same images
    np.testing.assert_allclose(model.log_prob(x.astype(np.float32) / 255.0, c).numpy(),
                               model.log_prob(x, c).numpy(), rtol=1e-6)


def test_distribution_view(model):
    x, c = _data(model.kind)
    dist = model.distribution(c)
    assert dist.event_shape == [8, 8, 1] and dist.batch_shape == [4]
    np.testing.assert_allclose(dist.log_prob(tf.cast(x, tf.float32) + 0.5).numpy() - 64 * math.log(256) * 0,
                               model.log_prob(x, c).numpy(), rtol=1e-5)


def test_every_trainable_variable_gets_a_gradient(model):
    x, c = _data(model.kind, n=8)
    with tf.GradientTape() as tape:
        objective, _ = model._training_losses(model._check_x(x), model._check_condition(c), tf.constant([1, 2]))
        loss = tf.reduce_mean(objective)
    grads = tape.gradient(loss, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing
    zero = [v.path for v, g in zip(model.trainable_variables, grads) if not np.any(g.numpy())]
    assert not zero


def test_sampling(model):
    _, c = _data(model.kind)
    s = model.sample(c, temperature=0.8, seed=3).numpy()
    assert s.shape == (4, 8, 8, 1) and s.min() >= 0.0 and s.max() <= 1.0
    np.testing.assert_allclose(s * 255, np.round(s * 255), atol=1e-4)  # on the 8-bit grid
    np.testing.assert_array_equal(model.sample(c, temperature=0.8, seed=3).numpy(), s)
    a = model.sample(c, temperature=0.0, seed=1).numpy()
    np.testing.assert_array_equal(a, model.sample(c, temperature=0.0, seed=2).numpy())
    # per-scale temperatures: zero on every level is the mode path too
    np.testing.assert_array_equal(model.sample(c, temperature=[0.0, 0.0], seed=7).numpy(), a)
    assert np.any(model.sample(c, temperature=[1.0, 0.0], seed=7).numpy() != a)


def test_a_nan_sample_is_an_error_not_a_clipped_image():
    # quantize() clips values into [0, 255]; NaN must survive it and reach the finiteness check
    m = tiny_image_model("glow")
    x, c = _data("glow")
    m.initialize(x, c)
    loc = next(v for v in m.variables if v.path.endswith("loc"))
    loc.assign(np.full(loc.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="sampling produced NaN or inf"):
        m.sample(c, seed=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sampling produced NaN or inf"):
        tf.function(lambda: m.sample(c, seed=tf.constant([1, 2])))()


def test_best_of_n_returns_the_argmax_of_log_prob(model):
    _, c = _data(model.kind, n=2)
    best, best_lp = model.best_of_n(c, n=4, temperature=0.9, seed=11)
    tiled = np.repeat(c, 4, axis=0)
    draws = model.sample(tiled, temperature=0.9, seed=11).numpy()
    lp = model.log_prob(draws, tiled).numpy().reshape(2, 4)
    np.testing.assert_allclose(best.numpy(), draws.reshape(2, 4, 8, 8, 1)[np.arange(2), lp.argmax(1)])
    np.testing.assert_allclose(best_lp.numpy(), lp.max(1), rtol=1e-5)


def test_evaluate_reports_the_seeded_dequantization_bound(model):
    # validation is the training objective with a fixed noise draw: deterministic, comparable
    x, c = _data(model.kind, n=8)
    m = copy_model(model)
    m.compile()
    logs = m.evaluate(x, c, batch_size=8, verbose=0, return_dict=True)
    nll = -model.log_prob_bound(x, c, seed=0).numpy()
    np.testing.assert_allclose(logs["loss"], nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["bits_per_dim"], nll.mean() / (64 * math.log(2)), rtol=1e-5)
    # that noise draw and no other: the midpoint log_prob uses is ~0.02 nats away on average here
    midpoint = float(np.mean(-model.log_prob(x, c)))
    assert abs(logs["loss"] - nll.mean()) < 0.1 * abs(midpoint - nll.mean())


def test_fit_reduces_the_nll():
    import keras
    m = tiny_image_model("caflow")
    rng = np.random.default_rng(0)
    # structured data: a smooth blob whose brightness is set by the condition
    base = np.exp(-((np.arange(8)[:, None] - 3.5) ** 2 + (np.arange(8)[None, :] - 3.5) ** 2) / 8.0)
    gain = rng.uniform(0.3, 1.0, (128, 1, 1, 1))
    x = np.clip(255 * gain * base[None, :, :, None] + rng.normal(0, 4, (128, 8, 8, 1)), 0, 255).astype(np.uint8)
    c = np.clip(np.round(x.reshape(128, 4, 2, 4, 2, 1).mean((2, 4))), 0, 255).astype(np.uint8)
    m.initialize(x, c)
    before = float(tf.reduce_mean(m.bits_per_dim(x, c)))
    m.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = m.fit(x, c, batch_size=32, epochs=4, verbose=0, shuffle=False)
    after = float(tf.reduce_mean(m.bits_per_dim(x, c)))
    assert after < before - 0.5, (before, after)
    assert "bits_per_dim" in hist.history


@pytest.mark.parametrize("kind", ["glow", "caflow"])
def test_bad_inputs(kind):
    m = tiny_image_model(kind)
    x, c = _data(kind)
    cases = [
        (lambda: m.log_prob(x[:, :4], c), r"x must have shape \[batch, 8, 8, 1\], got shape \[4, 4, 8, 1\]"),
        (lambda: m.log_prob(x, c[:, :2]), r"condition must have shape \[batch, 4, 4, 1\], got shape \[4, 2, 4, 1\]"),
        (lambda: m.log_prob(x.astype(np.float32) * 2.0, c),
         r"x must be uint8 in \[0, 255\] or float in \[0, 1\]; got float values in \[0, 510\]"),
        (lambda: m.log_prob(x.astype(np.int32) + 300, c), r"got integer values in \[300, 555\]"),
        (lambda: m.log_prob(x, c.astype(np.float32) - 1.0),
         r"condition must be uint8 in \[0, 255\] or float in \[0, 1\]"),
        (lambda: m.log_prob(x, None), r"condition is required"),
        (lambda: m.log_prob(x[:3], c), r"x and condition must have the same batch size, got 3 and 4"),
        (lambda: m.sample(c, temperature=-1.0), r"temperature must be >= 0"),
        (lambda: m.sample(c, temperature=[1.0, 1.0, 1.0]), r"one value per level \(2\), got 3 values"),
        (lambda: m.best_of_n(c, n=0), r"n must be an integer >= 1, got 0"),
        (lambda: m.log_prob(np.where(x > 100, np.nan, x / 255.0), c), r"x contains NaN or inf"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()


def test_construction_errors():
    with pytest.raises(ValueError, match="image size 28x28 is not divisible by 2\\^levels = 8"):
        ConditionalGlow((28, 28, 1), (7, 7, 1), levels=3)
    with pytest.raises(ValueError, match="image size 12x12 is not divisible"):
        CAFlow((12, 12, 1), (3, 3, 1), levels=3)
    with pytest.raises(ValueError, match="CAFlow conditions are images"):
        CAFlow((8, 8, 1), (10,), levels=2)
    with pytest.raises(ValueError, match="regularization must be >= 0"):
        CAFlow((8, 8, 1), (4, 4, 1), levels=2, regularization=-1)


def test_caflow_function_counts():
    n = 3
    kw = dict(levels=n, depth=1, width=4)
    assert CAFlow((8, 8, 1), (8, 8, 1), **kw).num_level_functions == n * (n + 1) // 2
    assert CAFlow((8, 8, 1), (8, 8, 1), dual_glow=True, **kw).num_level_functions == n


def test_the_coupling_spec_replaces_scale_and_clamp_and_old_configs_migrate():
    m = tiny_caflow(coupling={"kind": "affine", "clamp": 3.0})
    assert m.get_config()["coupling"] == {"kind": "affine", "clamp": 3.0} and "clamp" not in m.get_config()
    assert tiny_glow().get_config()["coupling"] == "affine"
    with pytest.raises(ValueError, match="image models' flow steps are affine couplings; got 'spline'"):
        tiny_caflow(coupling="spline")
    with pytest.raises(ValueError, match=r"clamp: settings of the coupling now \(clamp -> 'clamp'\)"):
        tiny_caflow(clamp=3.0)
    # configs written before: scale / clamp fold into the coupling, weight_sharing false is dropped
    old = {**m.get_config(), "scale": "sigmoid", "clamp": 1.5, "weight_sharing": False}
    del old["coupling"]
    again = CAFlow.from_config(old)
    assert again.get_config()["coupling"] == {"kind": "affine", "scale": "sigmoid", "clamp": 1.5}
    with pytest.raises(ValueError, match="weight_sharing .* was removed"):
        CAFlow.from_config({**old, "weight_sharing": True})
    glow = tiny_glow().get_config()
    del glow["coupling"]
    assert ConditionalGlow.from_config({**glow, "clamp": 2.5}).get_config()["coupling"] == {"kind": "affine",
                                                                                             "clamp": 2.5}


def test_caflow_depth_and_width_are_per_flow_and_old_configs_migrate():
    m = tiny_caflow(depth={"target": 2}, width=6)
    cfg = m.get_config()
    assert cfg["depth"] == {"condition": 16, "target": 2, "latent": 12}
    assert cfg["width"] == {"condition": 6, "target": 6, "latent": 6}
    assert (m.condition_flow.depth, m.target_flow.depth, m._g_args["steps"]) == (16, 2, 12)
    with pytest.raises(ValueError, match=r"depth is per flow, keys .* unknown key\(s\) \['latents'\]"):
        tiny_caflow(depth={"latents": 1})
    with pytest.raises(ValueError, match=r"width\['latent'\] must be an integer >= 1, got 0"):
        tiny_caflow(width={"latent": 0})
    with pytest.raises(ValueError, match=r"conditional_width, target_depth: CAFlow takes depth= and width= per flow"):
        tiny_caflow(target_depth=1, conditional_width=4)
    # a config written before: three depths and two widths ("depth" the latent flows' alone) load
    # as the same model, the same density on a fresh tensor
    new = tiny_caflow(depth={"condition": 1, "target": 2, "latent": 1},
                      width={"condition": 8, "target": 8, "latent": 4})
    old = {k: v for k, v in new.get_config().items() if k not in ("depth", "width")}
    old.update(condition_depth=1, target_depth=2, depth=1, width=8, conditional_width=4)
    again = CAFlow.from_config(old)
    assert again.get_config() == new.get_config()
    again.set_weights(new.get_weights())
    x, c = _data("caflow")
    np.testing.assert_allclose(again.log_prob(fresh(x), fresh(c)).numpy(), new.log_prob(x, c).numpy(), rtol=1e-5)


def test_caflow_objective_adds_lambda_log_p_y():
    m = tiny_image_model("caflow")
    x, c = _data("caflow")
    seed = tf.constant([3, 4])
    obj, nll = m._training_losses(m._check_x(x), m._check_condition(c), seed)
    m.regularization = 0.0
    obj0, nll0 = m._training_losses(m._check_x(x), m._check_condition(c), seed)
    np.testing.assert_allclose(nll0.numpy(), nll.numpy())
    np.testing.assert_allclose(obj0.numpy(), nll0.numpy())
    assert np.all(obj.numpy() != nll.numpy())


def test_config_round_trip_and_save_load(model, tmp_path):
    import keras
    clone = type(model).from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    x, c = _data(model.kind)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.log_prob(x, c).numpy(), model.log_prob(x, c).numpy(), rtol=1e-6)


@pytest.mark.parametrize("kind", ["glow", "caflow"])
def test_initialization_from_too_few_examples_is_refused_and_constant_channels_stay_bounded(kind):
    m = tiny_image_model(kind)
    x, c = _data(kind, n=8)
    with pytest.raises(ValueError, match=r"initialize needs at least 4 examples \(a few hundred are best\), got 2"):
        m.initialize(x[:2], c[:2])
    assert m.needs_initialization()
    # a constant background (exactly 0 in every example): no ActNorm scale beyond 1 / epsilon
    x = np.zeros_like(x)
    x[:, 2:6, 2:6] = np.random.default_rng(0).integers(50, 256, (8, 4, 4, 1))
    c = np.zeros_like(c)
    m.initialize(x, c)
    log_scales = [v.numpy() for v in m.variables if v.path.endswith("log_scale")]
    assert min(float(s.min()) for s in log_scales) >= np.log(1e-3) - 1e-6
    assert np.all(np.isfinite(m.log_prob(x, c).numpy())) and float(np.min(m.log_prob(x, c))) > -1e5


def test_glow_conditioning_spec_groups_the_encoder_injectors_and_priors_and_old_configs_migrate():
    from tfcflow.models import Conditioning
    m = tiny_glow()
    assert m.get_config()["conditioning"] == {"kind": "srflow", "encoder_width": 4, "prior_width": 4}
    assert Conditioning.of("srflow").to_config() == "srflow" and Conditioning.of({"injector": False}).injector is False
    old = {**m.get_config(), "encoder_width": 4, "prior_width": 4, "injector": False}
    del old["conditioning"]
    again = ConditionalGlow.from_config(old)
    assert again.get_config()["conditioning"] == {"kind": "srflow", "encoder_width": 4, "injector": False,
                                                  "prior_width": 4}
    assert not again.flow.injector
    with pytest.raises(ValueError, match="encoder_width: settings of the conditioning now"):
        ConditionalGlow((8, 8, 1), (4, 4, 1), levels=2, encoder_width=4)
    with pytest.raises(ValueError, match="conditioning prior_width must be an integer >= 0"):
        Conditioning(prior_width=-1)
    with pytest.raises(ValueError, match="conditioning injector must be true or false"):
        Conditioning(injector="yes")
    with pytest.raises(ValueError, match=r"conditioning: unknown setting\(s\) \['width'\]"):
        Conditioning.of({"width": 3})
