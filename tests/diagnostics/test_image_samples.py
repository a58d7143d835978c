"""Image-sample diagnostics: consistency with the input, diversity and per-pixel calibration, each
checked on cases whose answer is known."""
import numpy as np
import pytest

from tfcflow.data.tasks import downsample
from tfcflow.diagnostics import image_samples as d


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_a_sample_that_downscales_to_its_input_is_consistent_and_noise_is_not():
    truth = _rng().uniform(size=(16, 16, 3))
    lr = d.downscale(truth, 4)
    assert lr.shape == (4, 4, 3)
    # a sample = truth + detail that averages out over every 4x4 block: area-consistent
    detail = np.tile(np.array([[1, -1], [-1, 1]]) * 0.02, (8, 8))[..., None]
    consistent = np.clip(truth + detail, 0, 1)[None]
    noise = _rng(1).uniform(size=(2, 16, 16, 3))
    scores = d.lr_consistency(np.concatenate([consistent, noise]), lr, factor=4)
    assert scores[0] > 45.0 and (scores[1:] < 25.0).all()
    # the library's own uint8 super-resolution inputs: within the rounding of 8 bits
    image = (truth * 255).round().astype(np.uint8)
    lr8 = downsample(image[None], 4).numpy()[0]
    assert d.lr_consistency(image[None], lr8, factor=4)[0] > 50.0
    with pytest.raises(ValueError, match=r"must be the input \[4, 4, 3\] x factor 2"):
        d.lr_consistency(consistent, lr, factor=2)
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        d.lr_consistency(truth, lr, factor=4)


def test_inpainting_and_colorization_consistency_read_only_the_known_part():
    truth = _rng().uniform(size=(8, 8, 3))
    known = np.ones((8, 8))
    known[2:6, 2:6] = 0
    sample = truth.copy()
    sample[2:6, 2:6] = 1.0 - sample[2:6, 2:6]  # changed only inside the hole
    assert d.known_consistency(sample[None], truth, known)[0] > 100.0
    assert d.known_consistency(sample[None], truth, np.ones((8, 8)))[0] < 20.0
    gray = (truth @ np.array([0.2989, 0.5870, 0.1140]))[..., None]
    recolored = truth + (np.array([0.5870, -0.2989, 0.0]) * 0.1)[None, None]  # luma unchanged
    assert d.luma_consistency(recolored[None], gray)[0] > 100.0


def test_diversity_is_the_per_pixel_spread():
    same = np.repeat(_rng().uniform(size=(1, 6, 6, 3)), 4, axis=0)
    assert d.diversity(same)["mean"] == 0.0
    spread = _rng(2).normal(0.5, 0.1, size=(400, 6, 6, 1))
    out = d.diversity(spread)
    assert out["map"].shape == (6, 6) and abs(out["mean"] - 0.1) < 0.01
    assert d.diversity((spread.clip(0, 1) * 255).astype(np.uint8))["mean"] == pytest.approx(out["mean"], abs=0.01)


def test_calibration_covers_the_nominal_share_when_the_truth_is_one_more_draw():
    rng = _rng(3)
    draws = rng.normal(size=(20, 64, 64, 3))  # 19 samples and the truth, exchangeable
    cal = d.calibration(draws[:19], draws[19])
    assert abs(cal[0.9]["coverage"] - 0.9) < 0.01 and abs(cal[0.5]["coverage"] - 0.5) < 0.015
    assert cal[0.9]["map"].shape == (64, 64)
    # over-confident samples (too narrow) cover less
    narrow = d.calibration(0.3 * draws[:19], draws[19])
    assert narrow[0.9]["coverage"] < 0.6 and narrow[0.5]["coverage"] < 0.25
    with pytest.raises(ValueError, match="order statistics of 19 samples"):
        d.calibration(draws[:10], draws[19])
    with pytest.raises(ValueError, match="levels must be among"):
        d.calibration(draws[:19], draws[19], levels=(0.8,))


def test_the_figure_is_written(tmp_path):
    draws = _rng(4).uniform(size=(20, 16, 16, 3))
    path = d.plot_image_diagnostics(draws[:19], draws[19], str(tmp_path / "diag.png"), title="x")
    assert (tmp_path / "diag.png").stat().st_size > 2000 and path.endswith("diag.png")
