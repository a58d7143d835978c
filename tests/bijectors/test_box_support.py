import math

import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors.box_support import BoxSupport, check_bounds, outside_support
from tests.helpers import check_bijector, fresh

BOUNDS = [[0, 1], [-2, None], [None, 3], [None, None]]
LO = np.array([0.0, -2.0, -np.inf, -np.inf])
HI = np.array([1.0, np.inf, 3.0, np.inf])


def _inside(n=16, seed=0):
    """Points strictly inside the support, some close to a bound."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.uniform(0.02, 0.98, n), -2.0 + rng.exponential(1.0, n) + 1e-2,
                  3.0 - rng.exponential(1.0, n) - 1e-2, 4.0 * rng.standard_normal(n)], 1)
    return x.astype(np.float32)


def test_check_bijector_inside_the_support():
    x = _inside()
    check_bijector(lambda i=None: BoxSupport(BOUNDS), x, rt_tol=1e-4, ld_examples=4)


def test_inverse_and_log_det_formulas():
    x = _inside(n=5, seed=1).astype(np.float64)
    u, ild = BoxSupport(BOUNDS).inverse_and_log_det(fresh(x.astype(np.float32)))
    expected_u = np.stack([np.log(x[:, 0] / (1 - x[:, 0])), np.log(np.expm1(x[:, 1] + 2)),
                           np.log(np.expm1(3 - x[:, 2])), x[:, 3]], 1)
    np.testing.assert_allclose(u.numpy(), expected_u, rtol=1e-4, atol=1e-5)
    # d u / d x per dimension: 1/(x(1-x)), e^t/(e^t-1) with t the distance to the bound, 1
    dudx = np.stack([1 / (x[:, 0] * (1 - x[:, 0])), 1 / -np.expm1(-(x[:, 1] + 2)),
                     1 / -np.expm1(-(3 - x[:, 2])), np.ones(5)], 1)
    np.testing.assert_allclose(ild.numpy(), np.log(dudx).sum(1), rtol=1e-4, atol=1e-5)


def test_two_sided_bound_with_width():
    b = BoxSupport([[-1.0, 3.0], [2.0, 2.5]])
    x = np.array([[0.0, 2.1], [2.9, 2.49], [-0.99, 2.25]], np.float32)
    check_bijector(lambda i=None: BoxSupport([[-1.0, 3.0], [2.0, 2.5]]), x, rt_tol=1e-4, ld_examples=3)
    _, fld = b.forward_and_log_det(fresh(np.zeros((1, 2), np.float32)))
    # at u = 0: dx/du = (b - a) / 4 per dimension
    np.testing.assert_allclose(fld.numpy(), [math.log(4 / 4) + math.log(0.5 / 4)], rtol=1e-6)


def test_both_bounds_are_resolved_alike_with_finite_gradients_next_to_them():
    # points 1e-6 .. 1e-3 inside either bound of [-1, 3]: the round trip is exact to float32 at
    # both ends (the forward map starts from the nearer bound) and the gradients are finite
    d = np.array([1e-6, 1e-5, 1e-4, 1e-3])
    for x in ((-1.0 + d).astype(np.float32), (3.0 - d).astype(np.float32)):
        xt = tf.constant(x.reshape(-1, 1))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            u, ild = BoxSupport([[-1.0, 3.0]]).inverse_and_log_det(xt)
            total = tf.reduce_sum(u) + tf.reduce_sum(ild)
        assert np.all(np.isfinite(tape.gradient(total, xt).numpy()))
        back = BoxSupport([[-1.0, 3.0]]).forward(fresh(u)).numpy()[:, 0]
        np.testing.assert_array_max_ulp(back, x, maxulp=2)


def test_unbounded_dimensions_are_the_identity():
    x = np.random.default_rng(2).standard_normal((6, 3)).astype(np.float32) * 50
    u, ld = BoxSupport([[None, None]] * 3).inverse_and_log_det(fresh(x))
    np.testing.assert_array_equal(u.numpy(), x)
    np.testing.assert_array_equal(ld.numpy(), np.zeros(6))


@pytest.mark.parametrize("value", [-30.0, -10.0, 0.0, 10.0, 30.0, 90.0, -90.0])
def test_forward_of_extreme_latents_stays_in_the_support(value):
    u = np.full((1, 4), value, np.float32)
    u[0, 3] = 0.0
    x, ld = BoxSupport(BOUNDS).forward_and_log_det(fresh(u))
    x = x.numpy()[0]
    assert np.all(np.isfinite(x))
    # strictly inside, even where float32 rounding alone would land on a bound
    assert np.all(LO < x) and np.all(x < HI), x
    assert np.isfinite(float(ld[0]))


def test_forward_log_det_is_stable_for_large_latents():
    # log sigma(u) + log sigma(-u) ~ -|u| for large |u|: finite and accurate, no log(0)
    b = BoxSupport([[0.0, 1.0]])
    _, ld = b.forward_and_log_det(fresh(np.array([[60.0], [-60.0]], np.float32)))
    np.testing.assert_allclose(ld.numpy(), [-60.0, -60.0], rtol=1e-5)
    b = BoxSupport([[0.0, None]])
    _, ld = b.forward_and_log_det(fresh(np.array([[-60.0]], np.float32)))
    np.testing.assert_allclose(ld.numpy(), [-60.0], rtol=1e-5)


def test_inverse_is_stable_far_from_a_one_sided_bound():
    # log(expm1(t)) for t = 50 is t up to e^-50: no overflow
    u, ld = BoxSupport([[0.0, None], [None, 0.0]]).inverse_and_log_det(fresh(np.array([[50.0, -50.0]],
                                                                                     np.float32)))
    np.testing.assert_allclose(u.numpy(), [[50.0, 50.0]], rtol=1e-6)
    np.testing.assert_allclose(ld.numpy(), [0.0], atol=1e-6)


def test_outside_support_flags_exactly_the_rows_outside():
    x = _inside(n=9, seed=3)
    expected = np.zeros(9, bool)
    edits = {1: (0, 0.0), 2: (0, 1.0), 3: (0, 1.5), 4: (1, -2.0), 5: (1, -7.0), 6: (2, 3.0), 7: (2, 3.01)}
    for row, (d, value) in edits.items():
        x[row, d] = value
        expected[row] = True
    x[8, 3] = -1e6  # an unbounded dimension is never outside
    np.testing.assert_array_equal(outside_support(BOUNDS, tf.constant(x)).numpy(), expected)
    np.testing.assert_array_equal(outside_support(BOUNDS, x[:0]).numpy(), np.zeros(0, bool))


def test_inverse_outside_is_nan_not_a_silent_number():
    # the models rely on outside_support; the bijector itself must not return a plausible value
    u, _ = BoxSupport(BOUNDS).inverse_and_log_det(fresh(np.array([[1.5, 0.0, 0.0, 0.0]], np.float32)))
    assert np.isnan(u.numpy()[0, 0])


@pytest.mark.parametrize("bounds, pattern", [
    ([[1, 0], [None, None]], r"bounds\[0\]: lower bound 1.0 must be < upper bound 0.0"),
    ([[None, None], [2, 2]], r"bounds\[1\]: lower bound 2.0 must be < upper bound 2.0"),
    ([[0, 1]], r"one \[lower, upper\] pair per dimension \(2\), got 1"),
    ([[0, 1], [0, 1], [0, 1]], r"one \[lower, upper\] pair per dimension \(2\), got 3"),
    ([[0, 1], 5], r"bounds\[1\] must be a \[lower, upper\] pair"),
    ([[0, 1], [0, 1, 2]], r"bounds\[1\] must be a \[lower, upper\] pair"),
    ([[0, np.inf], [0, 1]], r"bounds\[0\]: bounds must be finite numbers or null"),
    ([[0, 1], [-np.inf, None]], r"bounds\[1\]: bounds must be finite numbers or null"),
    ([[0, 1], [np.nan, None]], r"bounds\[1\]: bounds must be finite numbers or null"),
])
def test_check_bounds_errors_name_the_dimension(bounds, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_bounds(bounds, 2)


def test_check_bounds_normalizes():
    assert check_bounds([(0, 1), [None, 3]], 2) == [[0.0, 1.0], [None, 3.0]]
