"""Tiled sampling and log-prob (tfcflow/tiling.py): one tile is the untiled draw itself, tiles
draw their noise from the seed and their position, seams are convex blends, and the tiled
log-prob is the sum over a partition."""
import numpy as np
import pytest

from tests.helpers import perturb, tiny_caflow, tiny_glow
from tfcflow import tiling
from tfcflow.tiling import Tiling, log_prob_tiled, sample_tiled


@pytest.fixture(scope="module")
def model():
    m = tiny_caflow()  # 2 levels, factor 2: tiles are multiples of lcm(4, 2) = 4 target pixels
    rng = np.random.default_rng(0)
    m.log_prob(rng.uniform(size=(2, 8, 8, 1)).astype(np.float32), rng.uniform(size=(2, 4, 4, 1)).astype(np.float32))
    perturb(m, seed=1, scale=0.3)  # not the initialization's near-identity, whose density factorizes over tiles
    return m


def _condition(h, w, seed=0):
    return np.random.default_rng(seed).uniform(size=(h, w, 1)).astype(np.float32)


def test_an_image_that_fits_in_one_tile_is_the_untiled_draw(model):
    c = _condition(6, 10)  # output 12 x 20
    tiled = sample_tiled(model, c, Tiling(tile=32, overlap=4), temperature=0.7, seed=5)
    whole = np.asarray(model.sample(c[None], temperature=0.7, seed=5))[0]
    np.testing.assert_array_equal(tiled, whole)


def test_tiles_take_their_noise_from_the_seed_and_their_position(model):
    c = _condition(12, 16)  # output 24 x 32, tiles of 8 with overlap 4: starts 0, 4, ..
    t = Tiling(tile=8, overlap=4)
    a = sample_tiled(model, c, t, seed=3)
    np.testing.assert_array_equal(a, sample_tiled(model, c, t, seed=3))
    assert a.shape == (24, 32, 1) and np.all((a >= 0) & (a <= 1))
    np.testing.assert_allclose(a * 255, np.round(a * 255), atol=1e-4)  # on the 8-bit grid
    assert not np.array_equal(a, sample_tiled(model, c, t, seed=4))
    # the top-left tile's own pixels (no neighbour's weight there) are its draw from (seed, 0, 0)
    first = np.asarray(model.sample(c[None, :4, :4], seed=tiling.tile_seed(3, 0, 0)))[0]
    np.testing.assert_allclose(a[:4, :4], first[:4, :4], atol=1e-6)


class _Constant:
    """A stand-in image model whose draw of a tile is one value per tile (looked up by its seed)."""
    levels, factor, _image_condition = 1, 1, True

    def __init__(self, values):
        self.values = values

    def sample(self, condition, temperature=1.0, seed=None):
        h, w = condition.shape[1:3]
        return np.full((1, h, w, 1), self.values[seed], np.float32)


def test_seams_are_linear_blends_and_the_weights_sum_to_one():
    plan = tiling.plan(_Constant({}), (6, 10), Tiling(tile=6, overlap=2))
    assert plan.rows == (0,) and plan.cols == (0, 4) and plan.count == 2
    values = {tiling.tile_seed(1, 0, 0): 0.0, tiling.tile_seed(1, 0, 4): 1.0}
    out = sample_tiled(_Constant(values), np.zeros((6, 10, 1), np.float32), Tiling(tile=6, overlap=2), seed=1)
    row = out[0, :, 0]
    np.testing.assert_array_equal(row[:4], 0.0)   # only the first tile
    np.testing.assert_array_equal(row[6:], 1.0)   # only the second
    # the 2 shared pixels: weights (0.25, 0.75) of the second tile rising, (0.75, 0.25) of the first falling
    np.testing.assert_allclose(row[4:6], np.round(np.array([0.25, 0.75]) * 255) / 255)
    assert np.all(out == out[:1])  # the same in every row


def test_grid_covers_the_output_with_tiles_of_one_size():
    assert tiling.starts(24, 8, 4) == [0, 4, 8, 12, 16]
    assert tiling.starts(26, 8, 2) == [0, 6, 12, 18]
    assert tiling.starts(5, 8, 2) == [0]
    for length, tile, overlap in ((100, 16, 4), (64, 64, 8), (37, 10, 3)):
        s = tiling.starts(length, tile, overlap)
        assert s[0] == 0 and s[-1] + tile == max(length, tile)
        assert all(b - a <= tile - overlap for a, b in zip(s, s[1:]))


def test_tiled_log_prob_is_the_sum_over_a_partition(model):
    c = _condition(6, 8, seed=1)
    x = np.random.default_rng(2).integers(0, 256, size=(12, 16, 1)).astype(np.float32) / 255.0
    whole = float(np.asarray(model.log_prob(x[None], c[None]))[0])
    assert log_prob_tiled(model, x, c, tile=64) == pytest.approx(whole, rel=1e-6)
    parts = sum(float(np.asarray(model.log_prob(x[None, i:i + 8, j:j + 8], c[None, i // 2:(i + 8) // 2,
                                                                          j // 2:(j + 8) // 2]))[0])
                for i in (0, 8) for j in (0, 8))
    assert log_prob_tiled(model, x, c, tile=8) == pytest.approx(parts, rel=1e-6)
    assert log_prob_tiled(model, x, c, tile=8) != pytest.approx(whole, rel=1e-6)


def test_bad_tilings_and_inputs_are_refused(model):
    with pytest.raises(ValueError, match="overlap .* must be smaller than the tile"):
        Tiling(tile=8, overlap=8)
    with pytest.raises(ValueError, match="overlap must be an integer >= 0"):
        Tiling(overlap=-1)
    with pytest.raises(ValueError, match="rounds to 8, not smaller than the tile 8"):
        tiling.plan(model, (8, 8), Tiling(tile=8, overlap=5))
    with pytest.raises(ValueError, match="takes one condition"):
        sample_tiled(model, np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="needs a model conditioned on an image"):
        tiling.plan(tiny_glow("label"), (8, 8))
    with pytest.raises(ValueError, match="not divisible by 4"):
        tiling.plan(model, (5, 4))
