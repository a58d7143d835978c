"""The vector models' shared options (vector_flow.py): standardization, bounds, num_samples,
summary networks. Every check is on the density's mathematics: change of variables, normalization,
agreement of samples with log_prob, invariances."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import _random
from tfcflow.bijectors.box_support import BoxSupport
from tfcflow.data import sbi_tasks
from tfcflow.execution import Execution
from tfcflow.models import ConditionalRealNVP, RelaxedConditionFlow, vector_flow
from tfcflow.models.rows import WHOLE
from tfcflow.networks import DeepSet, TimeSeriesNetwork
from tests.helpers import copy_model, perturb, tiny_glow

MODELS = {"cinn": ConditionalRealNVP, "rcf": RelaxedConditionFlow}
BOX = [[0.0, 1.0], [-1.0, 2.0]]
LO, HI = np.array([b[0] for b in BOX]), np.array([b[1] for b in BOX])


def make(kind="cinn", coupling="affine", condition_dim=3, init_seed=0, **overrides):
    keras.utils.set_random_seed(init_seed)  # Keras' initializers: the same weights on every run
    return MODELS[kind](2, condition_dim, **{"depth": 2, "width": 16, "coupling": coupling, "seed": 1, **overrides})


def regression_data(n, seed=0, condition_dim=3):
    """x [n, 2] depending nonlinearly on c [n, condition_dim] (float32)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n, condition_dim))
    x = np.stack([np.sin(c[:, 0]) + 0.3 * rng.standard_normal(n),
                  c[:, 1] * c[:, 0] + 0.5 * rng.standard_normal(n)], 1)
    return x.astype(np.float32), c.astype(np.float32)


def box_data(n, seed=0):
    """x inside BOX (Beta-distributed), c [n, 3]."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n, 3)).astype(np.float32)
    x = np.stack([rng.beta(2, 5, n), -1.0 + 3.0 * rng.beta(3, 2, n)], 1).astype(np.float32)
    return x, c


def grid(lo, hi, n=400):
    """Midpoint grid over [lo0, hi0] x [lo1, hi1]: (points [n*n, 2], cell area, axes)."""
    axes = [lo[d] + (hi[d] - lo[d]) * (np.arange(n) + 0.5) / n for d in range(2)]
    g0, g1 = np.meshgrid(*axes, indexing="ij")
    area = (hi[0] - lo[0]) * (hi[1] - lo[1]) / n ** 2
    return np.stack([g0.ravel(), g1.ravel()], 1).astype(np.float32), area, axes


def density_on_grid(model, condition_row, points):
    c = np.repeat(condition_row[None], len(points), 0)
    return np.exp(model.log_prob(points, c).numpy().astype(np.float64))


@pytest.fixture(scope="module", params=[("affine", "permutation", "map"), ("spline", "permutation", "map"),
                                        ("spline", "lu", "map"), ("spline", "lu", "reject")],
                ids=["affine", "spline", "spline-lu", "spline-lu-reject"])
def boxed(request):
    """A perturbed, standardized ConditionalRealNVP on BOX, adapted on data inside it; the bounds
    by the support map or by rejection (a truncated flow)."""
    coupling, mixing, method = request.param
    m = make(coupling=coupling, bounds=BOX, mixing=mixing, bounds_method=method)
    x, c = box_data(1000, seed=1)
    m.adapt(x, c)
    # 0.1: generic, yet without spikes narrower than the integration grid (0.2 gave spline densities of
    # 100+ that a 400 x 400 grid misses, and affine mass within 1e-6 of the boundary)
    perturb(m, seed=4, scale=0.1)
    return m


# ---- standardization is part of the density ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["cinn", "rcf"])
@pytest.mark.parametrize("coupling", ["affine", "spline"])
def test_standardization_is_a_change_of_variables(kind, coupling):
    x, c = regression_data(400, seed=2)
    xr, cr = x * 1000.0 + 5.0, c * 100.0 - 7.0  # large offsets and scales
    m = make(kind, coupling)
    assert m.needs_adapting()
    m.adapt(xr, cr)
    assert not m.needs_adapting()
    perturb(m, seed=5, scale=0.2)
    twin = make(kind, coupling, standardize=False)
    twin.flow.set_weights(m.flow.get_weights())

    mx, sx = xr.astype(np.float64).mean(0), xr.astype(np.float64).std(0)
    mc, sc = cr.astype(np.float64).mean(0), cr.astype(np.float64).std(0)
    np.testing.assert_allclose(m.x_standardizer.loc.numpy(), mx, rtol=1e-6)
    np.testing.assert_allclose(np.exp(m.x_standardizer.log_scale.numpy()), sx, rtol=1e-5)
    np.testing.assert_allclose(m.condition_standardizer.loc.numpy(), mc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.exp(m.condition_standardizer.log_scale.numpy()), sc, rtol=1e-5)

    lp = m.log_prob(xr[:64], cr[:64]).numpy()
    v = ((xr[:64] - mx) / sx).astype(np.float32)
    f = ((cr[:64] - mc) / sc).astype(np.float32)
    expected = twin.log_prob(v, f).numpy() - np.sum(np.log(sx))
    np.testing.assert_allclose(lp, expected, rtol=1e-5, atol=1e-4)
    # the twin's density is not a Gaussian in disguise: the flow matters
    assert np.ptp(lp - (-0.5 * np.sum(v ** 2, 1))) > 0.1


# ---- normalization ------------------------------------------------------------------------------------
def test_bounded_density_integrates_to_one(boxed):
    points, area, _ = grid(LO, HI)
    _, c = box_data(3, seed=9)
    for row in c[:2]:
        p = density_on_grid(boxed, row, points)
        assert np.all(np.isfinite(p))
        tol = 5e-3
        if boxed.bounds_method == "reject":  # Z(c) is a Monte-Carlo estimate: 3 standard errors more
            z = float(boxed.support_mass(row[None])[0])
            tol += 3 * np.sqrt((1 - z) / (z * vector_flow.SUPPORT_DRAWS))
        assert abs(p.sum() * area - 1.0) < tol, p.sum() * area


@pytest.mark.parametrize("coupling", ["affine", "spline"])
def test_unbounded_density_integrates_to_one(coupling):
    x, c = regression_data(400, seed=3)
    xr = x * np.array([3.0, 0.5], np.float32) + np.array([10.0, -4.0], np.float32)
    m = make(coupling=coupling)
    m.adapt(xr, c)
    perturb(m, seed=6, scale=0.1)
    mean, std = xr.mean(0), xr.std(0)
    points, area, _ = grid(mean - 9 * std, mean + 9 * std)
    p = density_on_grid(m, c[0], points)
    assert abs(p.sum() * area - 1.0) < 5e-3, p.sum() * area


# ---- bounds -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_samples_lie_inside_the_box(boxed, temperature):
    _, c = box_data(2000, seed=10)
    s = boxed.sample(c, temperature=temperature, seed=3).numpy()
    assert np.all(np.isfinite(s))
    assert np.all((LO <= s) & (s <= HI))
    if temperature == 1.0:  # strictly inside, and a density there
        assert np.all((LO < s) & (s < HI))
        # (200 rows: a truncated flow's log_prob draws SUPPORT_DRAWS samples per distinct condition)
        assert np.all(np.isfinite(boxed.log_prob(s[:200], c[:200]).numpy()))


def test_log_prob_outside_and_on_the_boundary_is_minus_inf(boxed):
    x, c = box_data(8, seed=11)
    bad = {1: [1.5, 0.0], 2: [0.0, 0.5], 3: [0.5, 2.0], 4: [-1e-3, 0.5], 6: [0.5, -1.0], 7: [1e6, -1e6]}
    outside = np.zeros(8, bool)
    for row, value in bad.items():
        x[row] = value
        outside[row] = True
    lp = boxed.log_prob(x, c).numpy()
    assert not np.any(np.isnan(lp))
    np.testing.assert_array_equal(lp[outside], -np.inf)
    assert np.all(np.isfinite(lp[~outside]))
    # inside rows get the same density as without the outside rows in the batch
    np.testing.assert_allclose(lp[~outside], boxed.log_prob(x[~outside], c[~outside]).numpy(), rtol=2e-5,
                               atol=1e-4)

    def loss_grads(xb, cb):
        with tf.GradientTape() as tape:
            lpb = boxed.log_prob(xb, cb)
            loss = -tf.reduce_sum(tf.where(tf.math.is_finite(lpb), lpb, 0.0))
        return tape.gradient(loss, boxed.trainable_variables)

    mixed, inside_only = loss_grads(x, c), loss_grads(x[~outside], c[~outside])
    for g_mixed, g_inside in zip(mixed, inside_only):
        assert np.all(np.isfinite(g_mixed.numpy()))
        np.testing.assert_allclose(g_mixed.numpy(), g_inside.numpy(), rtol=1e-4, atol=1e-5)
    assert any(np.any(g.numpy() != 0) for g in inside_only)


def test_training_loss_gradients_are_finite_near_the_boundary(boxed):
    x, c = box_data(64, seed=12)
    x[:4] = [[1e-6, 0.0], [1.0 - 1e-6, 0.0], [0.5, -1.0 + 1e-5], [0.5, 2.0 - 1e-5]]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(boxed._training_losses(tf.constant(x), tf.constant(c), tf.constant([0, 0]))[0])
    grads = tape.gradient(loss, boxed.trainable_variables)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


@pytest.mark.parametrize("adapted", [False, True])
def test_fit_on_x_outside_the_bounds_names_the_row(boxed, adapted):
    x, c = box_data(64, seed=13)
    x[5] = [0.5, 2.5]
    m = copy_model(boxed)  # adapted
    if not adapted:
        m = make(coupling="affine", bounds=BOX)
        assert m.needs_adapting()
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match=r"x row 5 lies outside the declared bounds"):
        m.fit(x, c, batch_size=16, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x row 5 lies outside the declared bounds"):
        m.adapt(x, c)


def test_fit_on_a_dataset_with_x_outside_the_bounds_is_an_error():
    x, c = box_data(64, seed=13)
    x[21] = [-0.5, 0.5]
    ds = tf.data.Dataset.from_tensor_slices((x, c)).batch(16)
    m = make(bounds=BOX)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match=r"x row 5 lies outside"):  # row 5 of batch 1
        m.fit(ds, epochs=1, verbose=0)


def test_fit_of_an_adapted_model_on_a_dataset_with_x_outside_the_bounds_is_an_error():
    x, c = box_data(64, seed=13)
    m = make(bounds=BOX, depth=1)
    m.adapt(x, c)
    x[21] = [-0.5, 0.5]
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    # the training step refuses the batch in-graph; fit names the problem (and where) in one line
    with pytest.raises(ValueError, match=r"^training data: x lies outside the declared bounds"):
        m.fit(tf.data.Dataset.from_tensor_slices((x, c)).batch(16), epochs=1, verbose=0)


# ---- samples follow log_prob -------------------------------------------------------------------------
def test_samples_follow_the_density(boxed):
    n = 20000
    _, c = box_data(1, seed=14)
    s = boxed.sample(np.repeat(c, n, 0), seed=5).numpy().astype(np.float64)
    points, area, axes = grid(LO, HI)
    p = density_on_grid(boxed, c[0], points) * area
    p /= p.sum()
    pts = points.astype(np.float64)
    # moments: E[f] under the samples vs the grid integral, within 5 Monte-Carlo standard errors
    for f in (lambda t: t[:, 0], lambda t: t[:, 1], lambda t: t[:, 0] ** 2, lambda t: t[:, 1] ** 2,
              lambda t: t[:, 0] * t[:, 1]):
        mc, exact = f(s).mean(), np.sum(p * f(pts))
        assert abs(mc - exact) < 5 * f(s).std() / np.sqrt(n) + 2e-3, (mc, exact)
    # 2-D histogram on 10 x 10 bins aligned with the grid cells: a chi-square test
    bins = 10
    cells = p.reshape(400, 400).reshape(bins, 40, bins, 40).sum(axis=(1, 3))
    edges = [np.linspace(LO[d], HI[d], bins + 1) for d in range(2)]
    counts, _, _ = np.histogram2d(s[:, 0], s[:, 1], bins=edges)
    expected = n * cells
    keep = expected >= 5
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)
    assert abs(counts[~keep].sum() - expected[~keep].sum()) < 5 * np.sqrt(expected[~keep].sum() + 1) + 1


# ---- bounds by rejection (bounds_method="reject") ------------------------------------------------------
@pytest.fixture(scope="module")
def leaky():
    """A truncated flow whose untruncated draws often leave BOX (unadapted, so the flow's mass
    sits around 0 and spreads past the box's lower bounds)."""
    m = make(coupling="spline", bounds=BOX, mixing="lu", bounds_method="reject", standardize=False)
    perturb(m, seed=8, scale=0.1)
    return m


def test_support_mass_is_the_flow_mass_inside_the_box(leaky):
    _, c = box_data(1, seed=20)
    points, area, _ = grid(LO, HI, n=250)
    cc = np.repeat(c, len(points), 0)
    q = np.exp(leaky._flow_log_prob(tf.constant(points), leaky._features(tf.constant(cc))).numpy().astype(np.float64))
    inside = q.sum() * area
    z = float(leaky.support_mass(c, draws=50_000)[0])
    assert 0.05 < z < 0.95, z  # the case is one where rejection matters
    assert abs(z - inside) < 3 * np.sqrt(z * (1 - z) / 50_000) + 2e-3, (z, inside)
    # log_prob is the flow's density divided by the (default) estimate of Z(c), inside the box
    lp = leaky.log_prob(points[:5], cc[:5]).numpy()
    expected = np.log(q[:5]) - np.log(float(leaky.support_mass(c)[0]))
    np.testing.assert_allclose(lp, expected, rtol=1e-4, atol=1e-4)
    # Z(c) of a row does not depend on the other rows of the batch
    _, others = box_data(4, seed=21)
    both = leaky.support_mass(np.concatenate([others[:2], c, others[2:]])).numpy()
    assert both[2] == float(leaky.support_mass(c)[0])


def test_rejection_samples_lie_inside_and_are_deterministic_in_any_chunking(leaky):
    _, c = box_data(3, seed=22)
    a = leaky.sample(c, num_samples=100, seed=4).numpy()
    b = leaky.sample(c, num_samples=100, seed=4, batch_size=37).numpy()
    assert np.all((LO < a) & (a < HI))
    np.testing.assert_allclose(a, b, atol=1e-5)
    one = leaky.sample(np.repeat(c, 100, 0), seed=4).numpy().reshape(3, 100, 2)
    np.testing.assert_allclose(a, one, atol=1e-5)  # sample i of row b = row b * N + i of one per row
    assert not np.allclose(a, leaky.sample(c, num_samples=100, seed=5).numpy())
    # an empty batch is an empty answer, not an error
    assert leaky.log_prob(np.zeros((0, 2), np.float32), np.zeros((0, 3), np.float32)).shape == (0,)


def test_a_rows_sample_is_its_first_candidate_inside_the_bounds(leaky):
    # the first draw, then the row's redraws 1, 2, ...: the sample is the first of them inside, in
    # the plain graph (one candidate per round) and compiled (several per round for the last rows)
    _, c = box_data(1, seed=25)
    n = 64
    features = leaky._features(tf.constant(np.repeat(c, n, 0)))
    seed = _random.seed_tensor(9)

    def draw(f, s, rows=WHOLE):
        return leaky._to_data_space(leaky._flow_sample(f, tf.constant(1.0), s, rows))

    candidates = np.stack([draw(features, seed).numpy()] + [
        draw(features, seed, WHOLE.redrawing(tf.range(n), tf.fill([n], t), n)).numpy() for t in range(1, 40)])
    inside = np.all((LO < candidates) & (candidates < HI), axis=-1)
    first = np.argmax(inside, axis=0)
    assert inside.any(axis=0).all() and (first > 0).sum() > 10 and first.max() > 2, first
    expected = candidates[first, np.arange(n)]
    np.testing.assert_allclose(leaky.sample(c, num_samples=n, seed=9).numpy()[0], expected, atol=1e-5)
    compiled = _jit(leaky).sample(c, num_samples=n, seed=9).numpy()[0]
    assert np.mean(np.all(np.abs(compiled - expected) < 1e-3, axis=-1)) > 0.95


def test_rejection_that_cannot_succeed_is_a_clear_error():
    m = make(bounds=[[50.0, 51.0], [50.0, 51.0]], bounds_method="reject", standardize=False)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="left draws outside the bounds after"):
        m.sample(np.zeros((2, 3), np.float32), seed=1, num_samples=1)  # (in a graph: the rounds run fast)


def test_rejection_trains_and_validates_on_the_flows_nll(leaky):
    # log Z(c) is left out of training and of the validation loss (SUPPORT_DRAWS draws per row and
    # step would dominate the cost); log_prob = -that NLL - log Z(c)
    x, c = box_data(6, seed=23)
    xt, ct = leaky._check_pair(x, c)
    objective, nll = leaky._training_losses(xt, ct, tf.constant([1, 2]))
    z = leaky.support_mass(c).numpy()
    np.testing.assert_allclose(-nll.numpy() - np.log(z), leaky.log_prob(x, c).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(leaky._validation_nll(xt, ct).numpy(), nll.numpy(), rtol=1e-6)
    # outside the box: -inf, even without a standardization or support map around the flow
    x[0, 0] = LO[0] - 0.5
    assert leaky.log_prob(x, c).numpy()[0] == -np.inf


def test_rejection_bounds_config_and_refusals(leaky):
    clone = type(leaky).from_config(leaky.get_config())
    assert clone.get_config()["bounds_method"] == "reject" and clone.bounds == leaky.bounds
    with pytest.raises(ValueError, match="no TFP view of a truncated flow"):
        leaky.distribution(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="bounds_method must be one of"):
        make(bounds=BOX, bounds_method="clip")
    with pytest.raises(ValueError, match="support_mass is the truncation constant"):
        make(bounds=BOX).support_mass(np.zeros((1, 3), np.float32))


# ---- sample(num_samples=...) --------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["cinn", "rcf"])
def small(request):
    m = make(request.param)
    x, c = regression_data(200, seed=7)
    m.adapt(x * 5 + 1, c * 2 - 1)
    perturb(m, seed=8, scale=0.2)
    return m


def test_num_samples_is_the_repeated_condition(small):
    _, c = regression_data(3, seed=15)
    s = small.sample(c, num_samples=5, seed=7).numpy()
    assert s.shape == (3, 5, 2)
    one_per_row = small.sample(np.repeat(c, 5, 0), seed=7).numpy()
    np.testing.assert_allclose(s, one_per_row.reshape(3, 5, 2), atol=1e-6)
    # N different draws of each row, each a sample of its own row's condition
    assert np.all(np.abs(np.diff(s, axis=1)).max(-1) > 0)
    np.testing.assert_array_equal(small.sample(c, num_samples=5, seed=7).numpy(), s)
    assert np.any(small.sample(c, num_samples=5, seed=8).numpy() != s)
    assert small.sample(c, num_samples=1, seed=7).shape == (3, 1, 2)


@pytest.mark.parametrize("batch_size", [1, 3, 7, None])
def test_num_samples_does_not_depend_on_the_batch_size(small, batch_size):
    _, c = regression_data(4, seed=16)
    reference = small.sample(c, num_samples=6, seed=9, batch_size=24).numpy()
    s = small.sample(c, num_samples=6, seed=9, batch_size=batch_size).numpy()
    np.testing.assert_allclose(s, reference, atol=1e-5)


def test_num_samples_as_a_tensor_in_a_graph(small):
    _, c = regression_data(3, seed=17)
    f = tf.function(lambda cond, n: small.sample(cond, num_samples=n, seed=11, batch_size=4))
    eager = small.sample(c, num_samples=5, seed=11).numpy()
    graph = f(tf.constant(c), tf.constant(5)).numpy()
    assert graph.shape == (3, 5, 2)
    np.testing.assert_allclose(graph, eager, atol=1e-5)
    assert f(tf.constant(c), tf.constant(2)).shape == (3, 2, 2)  # the same trace, another N
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="num_samples must be >= 1"):
        f(tf.constant(c), tf.constant(0))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_bad_num_samples(small, bad):
    _, c = regression_data(2, seed=18)
    if bad is None:
        assert small.sample(c, seed=1).shape == (2, 2)  # None = one per row
        return
    with pytest.raises(ValueError, match="num_samples must be"):
        small.sample(c, num_samples=bad, seed=1)


# ---- Execution(jit_sampling=True) -----------------------------------------------------------------------
def _jit(model):
    """A copy of ``model`` that samples XLA-compiled (a shared fixture keeps its execution)."""
    clone = copy_model(model)
    clone.execution = Execution(jit_sampling=True)
    return clone


def test_jit_sampling_gives_the_plain_draws(small):
    _, c = regression_data(3, seed=19)
    jit = _jit(small)
    # 3 x 7 = 21 rows: one chunk padded to 24; with batch_size 8, three chunks of 7 (no padding)
    for batch_size in (None, 8, 5):  # 5: five chunks of 5, the last one 1 row and 4 padding
        plain = small.sample(c, num_samples=7, seed=12, batch_size=batch_size).numpy()
        compiled = jit.sample(c, num_samples=7, seed=12, batch_size=batch_size).numpy()
        assert compiled.shape == (3, 7, 2)
        # the same noise per row; XLA's erfinv and fusions differ from the plain kernels in the last bits
        np.testing.assert_allclose(compiled, plain, rtol=1e-4, atol=1e-4)
    assert not np.allclose(jit.sample(c, num_samples=7, seed=13).numpy(), plain, atol=1e-2)
    # with sub-batches each sub-batch's pass is compiled and draws its own rows' noise
    jit.execution = Execution(jit_sampling=True, sub_batches=2)
    np.testing.assert_allclose(jit.sample(c, num_samples=7, seed=12, batch_size=5).numpy(), plain,
                               rtol=1e-4, atol=1e-4)
    # in a graph of the user's (as in a SavedModel signature) the plain graph runs, with the same draws
    graph = tf.function(lambda cond: jit.sample(cond, num_samples=7, seed=12))(tf.constant(c)).numpy()
    np.testing.assert_allclose(graph, small.sample(c, num_samples=7, seed=12).numpy(), atol=1e-5)


def test_jit_sampling_with_rejection_redraws_the_plain_rows(leaky):
    _, c = box_data(2, seed=24)
    plain = leaky.sample(c, num_samples=300, seed=6).numpy()
    outside = ~np.all((LO < plain) & (plain < HI), axis=-1)
    # the untruncated first draws that left the box: more than one redraw group of rows
    first = leaky._to_data_space(leaky._flow_sample(leaky._features(tf.constant(np.repeat(c, 300, 0))),
                                                    tf.constant(1.0), _random.seed_tensor(6))).numpy()
    redrawn = ~np.all((LO < first) & (first < HI), axis=-1)
    assert not outside.any() and redrawn.sum() > vector_flow.REDRAW_GROUP_ROWS, redrawn.sum()
    compiled = _jit(leaky).sample(c, num_samples=300, seed=6).numpy()
    assert np.all((LO < compiled) & (compiled < HI))
    # a row whose redraw lands near the box's edge may be accepted in one and redrawn in the
    # other; all but a handful of the 600 rows agree
    close = np.all(np.abs(compiled - plain) < 1e-3, axis=-1).ravel()
    assert close.mean() > 0.99 and close[redrawn].mean() > 0.98, (close.mean(), close[redrawn].mean())


def test_jit_sampling_is_asked_for_on_models_that_have_it():
    from tfcflow.models import FlowEnsemble
    from tfcflow.models.chunked_sampling import padded_rows
    with pytest.raises(ValueError, match="jit_sampling must be True or False"):
        Execution(jit_sampling=1)
    with pytest.raises(ValueError, match="jit_sampling=True\\) applies to vector flows"):
        FlowEnsemble([tiny_glow(), tiny_glow()]).execution = Execution(jit_sampling=True)
    # an ensemble of vector flows compiles its members' passes (tests/models/test_ensemble.py)
    FlowEnsemble.of(ConditionalRealNVP, 2, event_shape=2, condition_shape=3, depth=1, width=8).execution = \
        Execution(jit_sampling=True)
    # chunks of the common size rounded up to 2^k x (1, 1.25, 1.5, 1.75): < 25% padding, few shapes
    cases = {(1, 4096): 1, (3, 4096): 3, (21, 4096): 24, (10_000, 4096): 3584, (10_000, 16384): 10240,
             (4096, 4096): 4096, (4097, 4096): 2560, (10 ** 6, 4096): 4096, (12, 8): 6}
    assert {k: padded_rows(*k) for k in cases} == cases
    for total in range(1, 3000, 7):
        size = padded_rows(total, 1024)
        chunks = -(-total // size)
        assert size <= 1024 and chunks == -(-total // 1024) and chunks * size < 1.25 * total + 4 * chunks


# ---- fit learns the standardization ------------------------------------------------------------------
def _two_moons(n, seed):
    rng = np.random.default_rng(seed)
    theta = sbi_tasks.two_moons_prior(n, rng)
    return theta, sbi_tasks.two_moons_simulator(theta, rng)


def test_fit_adapts_and_learns_two_moons():
    theta, y = _two_moons(2000, seed=0)
    theta_test, y_test = _two_moons(1000, seed=1)
    assert np.all(np.abs(theta) < 1) and np.all(np.abs(theta_test) < 1)
    keras.utils.set_random_seed(0)
    m = ConditionalRealNVP(2, 2, depth=2, width=32, bounds=[[-1, 1], [-1, 1]], seed=0)
    before = copy_model(m)
    assert m.needs_adapting()
    m.compile(optimizer=keras.optimizers.Adam(5e-3))
    hist = m.fit(theta, y, batch_size=100, epochs=6, verbose=0)
    assert not m.needs_adapting()
    # what fit learned is the statistics of the unbounded training x and of the condition
    u = BoxSupport([[-1, 1], [-1, 1]]).inverse(theta).numpy().astype(np.float64)
    np.testing.assert_allclose(m.x_standardizer.loc.numpy(), u.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.exp(m.x_standardizer.log_scale.numpy()), u.std(0), rtol=1e-5)
    np.testing.assert_allclose(m.condition_standardizer.loc.numpy(), y.astype(np.float64).mean(0), atol=1e-6)
    np.testing.assert_allclose(np.exp(m.condition_standardizer.log_scale.numpy()), y.astype(np.float64).std(0),
                               rtol=1e-5)
    assert np.all(np.isfinite(hist.history["loss"]))
    before.adapt(theta, y)  # the same model with the same standardization, untrained
    nll_before = -np.mean(before.log_prob(theta_test, y_test).numpy())
    nll_after = -np.mean(m.log_prob(theta_test, y_test).numpy())
    assert nll_after < nll_before - 0.5, (nll_before, nll_after)


def test_fit_on_a_dataset_adapts_first():
    x, c = regression_data(600, seed=4)
    xr, cr = x * 50 + 3, c * 0.01
    ds = tf.data.Dataset.from_tensor_slices((xr, cr)).batch(64)  # 10 batches, the last of 24
    m = make("rcf")
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    hist = m.fit(ds, epochs=1, verbose=0)
    assert not m.needs_adapting()
    assert np.isfinite(hist.history["loss"][-1])
    np.testing.assert_allclose(m.x_standardizer.loc.numpy(), xr.astype(np.float64).mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.exp(m.x_standardizer.log_scale.numpy()), xr.astype(np.float64).std(0), rtol=1e-5)
    np.testing.assert_allclose(np.exp(m.condition_standardizer.log_scale.numpy()), cr.astype(np.float64).std(0),
                               rtol=1e-5)


def test_adapt_on_a_dataset_reads_the_first_steps_batches():
    x, c = regression_data(600, seed=5)
    ds = tf.data.Dataset.from_tensor_slices((x, c)).batch(50)
    m = make()
    m.adapt(ds, steps=3)
    np.testing.assert_allclose(m.x_standardizer.loc.numpy(), x[:150].astype(np.float64).mean(0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.exp(m.condition_standardizer.log_scale.numpy()), c[:150].std(0), rtol=1e-5)
    m.adapt(ds, steps=None)
    np.testing.assert_allclose(m.x_standardizer.loc.numpy(), x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)


def test_constant_condition_dimension_trains():
    x, c = regression_data(256, seed=6)
    c[:, 1] = 5.0
    m = make()
    m.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = m.fit(x, c, batch_size=64, epochs=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    np.testing.assert_allclose(m.condition_standardizer.loc.numpy()[1], 5.0)
    np.testing.assert_allclose(m.condition_standardizer.log_scale.numpy()[1], 0.0)
    lp = m.log_prob(x, c).numpy()
    assert np.all(np.isfinite(lp))
    assert np.all(np.isfinite(m.sample(c[:8], seed=1).numpy()))


# ---- summary networks ---------------------------------------------------------------------------------
def _set_model():
    keras.utils.set_random_seed(0)
    m = ConditionalRealNVP(2, [None, 2], depth=2, width=16, summary_network=DeepSet(8, width=16), seed=0)
    rng = np.random.default_rng(20)
    theta = rng.standard_normal((64, 2)).astype(np.float32)
    sets = (theta[:, None, :] + 0.5 * rng.standard_normal((64, 10, 2))).astype(np.float32)
    return m, theta, sets


def _series_model():
    keras.utils.set_random_seed(0)
    m = ConditionalRealNVP(2, [None, 1], depth=2, width=16,
                           summary_network=TimeSeriesNetwork(8, filters=8, kernel_size=3, depth=2), seed=0)
    rng = np.random.default_rng(21)
    theta = rng.standard_normal((64, 2)).astype(np.float32)
    t = np.arange(16)
    series = (theta[:, :1, None] * np.sin(t)[None, :, None] + theta[:, 1:, None] * 0.1 * t[None, :, None]
              + 0.1 * rng.standard_normal((64, 16, 1))).astype(np.float32)
    return m, theta, series


@pytest.fixture(scope="module", params=["deepset", "series"])
def summarized(request):
    m, theta, obs = {"deepset": _set_model, "series": _series_model}[request.param]()
    m.adapt(theta * 3 + 1, obs)
    perturb(m, seed=22, scale=0.2)
    return m, theta * 3 + 1, obs


def test_summary_log_prob_is_the_flow_on_the_summary(summarized):
    m, x, obs = summarized
    assert m.condition_standardizer is None and not m.needs_adapting()
    lp = m.log_prob(x[:8], obs[:8]).numpy()
    assert np.all(np.isfinite(lp))
    # = the same flow conditioned on the summary network's output, with the standardization's log-det
    v = m.x_standardizer.bijector().inverse(tf.constant(x[:8]))
    features = m.summary_network(tf.constant(obs[:8]))
    z, ld = m.flow.bijector(features).inverse_and_log_det(v)
    expected = (-0.5 * np.sum(z.numpy() ** 2, 1) - np.log(2 * np.pi) + ld.numpy()
                - np.sum(m.x_standardizer.log_scale.numpy()))
    np.testing.assert_allclose(lp, expected, rtol=1e-5, atol=1e-4)
    # the observation matters
    assert np.all(lp != m.log_prob(x[:8], obs[8:16]).numpy())


def test_deepset_log_prob_is_permutation_invariant():
    m, theta, sets = _set_model()
    perturb(m, seed=23, scale=0.2)
    perm = np.random.default_rng(0).permutation(10)
    lp = m.log_prob(theta[:16], sets[:16]).numpy()
    np.testing.assert_allclose(m.log_prob(theta[:16], sets[:16, perm]).numpy(), lp, rtol=1e-5, atol=1e-5)
    # a set of another size works (None dim) and changes the density
    assert np.all(np.isfinite(m.log_prob(theta[:16], sets[:16, :4]).numpy()))


def test_summary_sample_num_samples(summarized):
    m, _, obs = summarized
    s = m.sample(obs[:3], num_samples=4, seed=2, batch_size=5).numpy()
    assert s.shape == (3, 4, 2)
    np.testing.assert_allclose(s, m.sample(np.repeat(obs[:3], 4, 0), seed=2).numpy().reshape(3, 4, 2), atol=1e-5)
    # compiled: the summary network runs once per observation outside XLA, the flow passes inside
    np.testing.assert_allclose(_jit(m).sample(obs[:3], num_samples=4, seed=2, batch_size=5).numpy(), s,
                               rtol=1e-4, atol=1e-4)


def test_summary_every_variable_gets_a_gradient(summarized):
    m, x, obs = summarized
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(m.log_prob(x[:32], obs[:32]))
    grads = tape.gradient(loss, m.trainable_variables)
    summary_ids = {id(v) for v in m.summary_network.trainable_variables}
    flow_ids = {id(v) for v in m.flow.trainable_variables}
    assert summary_ids and flow_ids and {id(v) for v in m.trainable_variables} == summary_ids | flow_ids
    for v, g in zip(m.trainable_variables, grads):
        assert g is not None and np.any(g.numpy() != 0), v.path


def test_summary_save_load_round_trip(summarized, tmp_path):
    m, x, obs = summarized
    path = str(tmp_path / "summary.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.summary_network) is type(m.summary_network)
    np.testing.assert_array_equal(loaded.log_prob(x[:16], obs[:16]).numpy(), m.log_prob(x[:16], obs[:16]).numpy())
    np.testing.assert_array_equal(loaded.sample(obs[:4], num_samples=3, seed=4).numpy(),
                                  m.sample(obs[:4], num_samples=3, seed=4).numpy())


def test_summary_config_round_trip(summarized):
    m, x, obs = summarized
    config = m.get_config()
    net = config["summary_network"]
    assert isinstance(net, dict) and net["class_name"] == type(m.summary_network).__name__
    assert net["config"]["summary_dim"] == 8
    clone = ConditionalRealNVP.from_config(config)
    assert type(clone.summary_network) is type(m.summary_network)
    assert clone.summary_network is not m.summary_network
    assert clone.summary_network.get_config() == m.summary_network.get_config()
    assert clone.get_config() == config
    clone.set_weights(m.get_weights())
    np.testing.assert_allclose(clone.log_prob(x[:8], obs[:8]).numpy(), m.log_prob(x[:8], obs[:8]).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_summary_condition_of_the_wrong_shape(summarized):
    m, x, obs = summarized
    with pytest.raises(ValueError, match="condition must have shape"):
        m.log_prob(x[:4], obs[:4, :, 0])  # rank 2
    with pytest.raises(ValueError, match="condition must have shape"):
        m.log_prob(x[:4], obs[:4, None])  # rank 4
    with pytest.raises(ValueError, match="condition must have shape"):
        m.sample(np.concatenate([obs[:4], obs[:4]], -1), seed=0)  # feature size


def test_summary_network_from_a_config_file_dict():
    m = ConditionalRealNVP(2, [None, 2], depth=1, width=8, summary_network={"class": "DeepSet", "summary_dim": 4,
                                                                            "width": 8})
    assert isinstance(m.summary_network, DeepSet) and m.feature_dim == 4
    with pytest.raises(ValueError, match="unknown class"):
        ConditionalRealNVP(2, [None, 2], summary_network={"class": "Nope"})


# ---- RelaxedConditionFlow.infer_condition in the condition's units ------------------------------------
def test_infer_condition_is_in_the_condition_units():
    x, c = regression_data(300, seed=8)
    xr, cr = x * 10 + 2, c * 100 + 7
    m = make("rcf")
    m.adapt(xr, cr)
    perturb(m, seed=24, scale=0.2)
    mx, sx = xr.astype(np.float64).mean(0), xr.astype(np.float64).std(0)
    mc, sc = cr.astype(np.float64).mean(0), cr.astype(np.float64).std(0)
    inferred = m.infer_condition(xr[:16]).numpy()
    assert inferred.shape == (16, 3)
    # by hand: v = (x - m) / s, [z, c~] = f^-1([v, 0]), c = c~ * s_c + m_c
    v = ((xr[:16] - mx) / sx).astype(np.float32)
    latent = m.flow.bijector().inverse(tf.constant(np.concatenate([v, np.zeros((16, 3), np.float32)], 1)))
    c_tilde = latent.numpy()[:, m.latent_dim:].astype(np.float64)
    np.testing.assert_allclose(inferred, c_tilde * sc + mc, rtol=1e-4, atol=1e-3)
    # a twin without standardization, same flow: infers c~ in standardized units
    twin = make("rcf", standardize=False)
    twin.flow.set_weights(m.flow.get_weights())
    np.testing.assert_allclose(inferred, twin.infer_condition(v).numpy() * sc + mc, rtol=1e-4, atol=1e-3)
    # with padding noise: the same map of c~, the noise in the padding slots
    x0 = m.padding_noise * _random.normal(tf.constant([16, 3]), _random.seed_tensor(5))
    latent = m.flow.bijector().inverse(tf.concat([tf.constant(v), x0], 1))
    np.testing.assert_allclose(m.infer_condition(xr[:16], padding_seed=5).numpy(),
                               latent.numpy()[:, m.latent_dim:] * sc + mc, rtol=1e-4, atol=1e-3)
    # sampling is the way back: at temperature 0, z = 0 and c~ = the standardized condition, and the
    # sample is the first D entries of f([0, c~]) in x's units
    f = ((cr[:16] - mc) / sc).astype(np.float32)
    padded = m.flow.bijector().forward(tf.constant(np.concatenate([np.zeros((16, m.latent_dim), np.float32), f], 1)))
    np.testing.assert_allclose(m.sample(cr[:16], temperature=0.0, seed=0).numpy(),
                               padded.numpy()[:, :2] * sx + mx, rtol=1e-4, atol=1e-3)


# ---- save / load keeps the standardization ------------------------------------------------------------
def test_save_load_keeps_standardization_and_bounds(tmp_path):
    m = make(coupling="spline", bounds=BOX)
    x, c = box_data(500, seed=2)
    m.adapt(x, c * 30 + 4)
    perturb(m, seed=25, scale=0.2)
    path = str(tmp_path / "std.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is ConditionalRealNVP and loaded.bounds == m.bounds
    assert loaded.get_config() == m.get_config()
    for name in ("x_standardizer", "condition_standardizer"):
        a, b = getattr(m, name), getattr(loaded, name)
        assert b.is_adapted
        np.testing.assert_array_equal(b.loc.numpy(), a.loc.numpy())
        np.testing.assert_array_equal(b.log_scale.numpy(), a.log_scale.numpy())
    assert not loaded.needs_adapting()
    xt = x[:32].copy()
    xt[0] = [1.5, 0.0]  # outside: -inf in both
    lp = loaded.log_prob(xt, c[:32] * 30 + 4).numpy()
    np.testing.assert_array_equal(lp, m.log_prob(xt, c[:32] * 30 + 4).numpy())
    assert lp[0] == -np.inf and np.all(np.isfinite(lp[1:]))
    np.testing.assert_array_equal(loaded.sample(c[:8], seed=3).numpy(), m.sample(c[:8], seed=3).numpy())
