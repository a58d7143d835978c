"""Golden values: fixed-seed ``log_prob`` and ``sample`` of a tiny model of every class (and of two
short ``fit`` runs) equal those stored in tests/golden/golden.npz, which tests/golden/make_golden.py
computed with the code before a behaviour-preserving refactoring. A difference means the numbers
changed: intended changes rewrite the file (``python -m tests.golden.make_golden``) in their commit."""
import numpy as np
import pytest

from tests.golden import make_golden


@pytest.fixture(scope="module")
def values():
    return make_golden.compute()


@pytest.fixture(scope="module")
def golden():
    with np.load(make_golden.PATH) as f:
        return {k: f[k] for k in f.files}


def test_every_golden_value_is_computed(values, golden):
    assert sorted(values) == sorted(golden)
    # every model class is covered
    names = {k.split("/")[0] for k in golden}
    assert {"cinn_affine", "cinn_spline", "cinn_bounds_map", "cinn_bounds_reject", "rcf", "ensemble", "glow",
            "glow_label", "caflow", "ensemble_glow"} <= names


@pytest.mark.parametrize("key", sorted(np.load(make_golden.PATH).files))
def test_values_equal_the_golden_ones(values, golden, key):
    np.testing.assert_allclose(values[key], golden[key], rtol=0, atol=1e-6, err_msg=key)
