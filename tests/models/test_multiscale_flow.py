"""MultiScale composition, exercised through the MultiScaleFlow layer that builds it."""
import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models.multiscale_flow import MultiScaleFlow
from tests.helpers import autodiff_log_abs_det, check_bijector, fresh, perturb


def _flow(conditional, learned_prior=True, levels=2):
    flow = MultiScaleFlow(levels=levels, depth=2, width=8, learned_prior=learned_prior,
                          prior_width=4)
    conds = [(None, 4 // 2 ** l, 4 // 2 ** l, 3) for l in range(levels)] if conditional else None
    flow.build((None, 8, 8, 1), conds)
    perturb(flow, seed=3, scale=0.05)
    return flow


def _conds(batch, levels=2):
    return [tf.random.stateless_normal([batch, 4 // 2 ** l, 4 // 2 ** l, 3], [l, 9]) for l in range(levels)]


@pytest.mark.parametrize("conditional,learned_prior", [(True, True), (False, True), (False, False)])
def test_whole_two_level_flow_round_trip_and_log_det(conditional, learned_prior):
    flow = _flow(conditional, learned_prior)
    x = tf.random.stateless_normal([3, 8, 8, 1], [1, 2])
    c = _conds(3) if conditional else None
    make = lambda i=None: flow.bijector(None if c is None else (c if i is None else [t[i:i + 1] for t in c]))
    z = check_bijector(make, x, rt_tol=1e-4, ld_tol=2e-4)
    assert z.shape == (3, 64)
    assert flow.piece_shapes == [(4, 4, 2), (2, 2, 8)]


def test_one_level_log_det_matches_autodiff_on_a_4x4_input():
    flow = MultiScaleFlow(levels=1, depth=2, width=8)
    flow.build((None, 4, 4, 2), [(None, 2, 2, 3)])
    perturb(flow, seed=4, scale=0.05)
    x = tf.random.stateless_normal([1, 4, 4, 2], [1, 2])
    c = [tf.random.stateless_normal([1, 2, 2, 3], [3, 4])]
    level = flow.level_flows[0]
    _, ld = level.bijector(c[0]).inverse_and_log_det(fresh(x))
    expected = autodiff_log_abs_det(lambda t: level.bijector(c[0]).inverse(t), x)
    assert abs(float(ld[0]) - expected) < 1e-4


def test_pieces_are_the_split_off_halves():
    flow = _flow(False, learned_prior=False)
    x = tf.random.stateless_normal([2, 8, 8, 1], [1, 2])
    b = flow.bijector()
    pieces, _ = b.encode(x)
    h, _ = flow.level_flows[0].bijector().inverse_and_log_det(fresh(x))
    np.testing.assert_allclose(pieces[0].numpy(), h[..., 2:].numpy(), atol=1e-6)
    np.testing.assert_allclose(b.flatten(pieces).numpy(), b.inverse(fresh(x)).numpy(), atol=1e-6)
    for p, q in zip(b.unflatten(b.flatten(pieces)), pieces):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_data_init_normalizes_every_actnorm_input():
    flow = MultiScaleFlow(levels=2, depth=1, width=8)
    flow.build((None, 8, 8, 1))
    x = 3.0 + 2.0 * tf.random.stateless_normal([64, 8, 8, 1], [1, 2])
    flow.data_init(x)
    h, _ = flow.level_flows[0].bijector().inverse_and_log_det(fresh(x))
    # the level ends in a coupling that starts near identity (scale sigmoid(2) on half the channels)
    assert abs(float(tf.reduce_mean(h))) < 0.2
    assert all(layer.is_initialized for seq in flow.level_flows for layer in seq.steps
               if hasattr(layer, "is_initialized"))


def test_bad_shapes():
    with pytest.raises(ValueError, match="image size 12x12 is not divisible by 2\\^levels = 8"):
        MultiScaleFlow(levels=3).build((None, 12, 12, 1))
    with pytest.raises(ValueError, match="level 1 condition features must be 2x2"):
        MultiScaleFlow(levels=2, depth=1).build((None, 8, 8, 1), [(None, 4, 4, 3), (None, 4, 4, 3)])
    with pytest.raises(ValueError, match="one condition feature shape per level"):
        MultiScaleFlow(levels=2, depth=1).build((None, 8, 8, 1), [(None, 4, 4, 3)])
    flow = _flow(True)
    with pytest.raises(ValueError, match="needs a list of 2 condition feature maps"):
        flow.bijector(None)
