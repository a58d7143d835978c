"""training/real_photos/evaluate_photos.py: the per-photo figures on models with a known answer
(the end-to-end run on a trained model is in test_photo_job.py)."""
import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "training", "real_photos", "evaluate_photos.py")


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("evaluate_photos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Calibrated:
    """A model whose samples are N(m, sigma^2) per pixel value around a centre m = truth + N(0,
    sigma^2): the truth is one more draw of the samples' law, so the intervals are calibrated by
    construction (noise well inside [0, 1]: no clipping). ``error=False`` centres the samples on
    the truth itself (over-dispersed); ``sigma`` ~ 0 returns the truth."""

    def __init__(self, truth, sigma, error=True, shift=0.0):
        truth = truth.astype(np.float64) / 255.0
        self.centre = truth + shift + (np.random.default_rng(99).normal(0, sigma, truth.shape) if error else 0)
        self.sigma = sigma

    def sample(self, condition, temperature, seed, num_samples, batch_size):
        noise = np.random.default_rng(seed).normal(0, self.sigma * temperature, (1, num_samples) + self.centre.shape)
        return tf.constant((self.centre + noise).astype(np.float32))

    def log_prob(self, x, condition):
        return tf.constant(-0.5 * ((np.asarray(x) - self.centre) ** 2).sum(axis=(1, 2, 3)) / self.sigma ** 2)


CFG = {"seed": 0, "data": {"task": "super_resolution", "factor": 4, "downsample": "area"}}


def _photo(h=64, w=96):
    rng = np.random.default_rng(1)
    coarse = rng.uniform(40, 215, (h // 8, w // 8, 3)).astype(np.float32)
    return np.clip(tf.image.resize(coarse[None], (h, w), method="bicubic")[0].numpy(), 0, 255).astype(np.uint8)


def test_a_calibrated_model_covers_the_nominal_share_and_best_of_10_is_the_likeliest(ev):
    target, cond = ev._pair(_photo(), CFG, 16, 0, 0)
    # nominal 90% / 50% intervals of 19 exchangeable draws; 8-bit ties count inside, so a little more
    wide = ev.photo_report(Calibrated(target, 0.02), CFG, target, cond, 1.0, 3, None)[0]
    assert 0.9 <= wide["coverage_90"] < 0.93 and 0.5 <= wide["coverage_50"] < 0.6
    assert abs(wide["diversity"] - 0.02) < 0.001
    rep, row = ev.photo_report(Calibrated(target, 0.005), CFG, target, cond, 1.0, 3, None)
    assert rep["psnr_oracle_best_of_10"] >= rep["psnr_best_of_10"] > rep["psnr_bicubic"]
    # the mean of 10 averages the samples' noise away, not the centre's error: 10 log10(2 / 1.1) dB above one
    assert rep["psnr_mean_of_10"] - rep["psnr_best_of_10"] == pytest.approx(10 * np.log10(2 / 1.1), abs=0.3)
    # downscaling averages 16 values of the (centre error + noise) of variance 2 sigma^2, and the
    # 8-bit input adds its rounding (variance 1 / (12 * 255^2)): over a consistent model's 45 dB
    variance = 2 * 0.005 ** 2 / 16 + 1 / (12 * 255 ** 2)
    assert rep["consistency_db"] == pytest.approx(-10 * np.log10(variance), abs=0.5)
    # a model that returns the truth: every pixel inside every interval, 0 diversity
    rep0, _ = ev.photo_report(Calibrated(target, 1e-9), CFG, target, cond, 1.0, 3, None)
    assert rep0["coverage_90"] == 1.0 and rep0["coverage_50"] == 1.0 and rep0["diversity"] < 1e-6
    # samples centred on the truth are under-confident; samples off by 2.5 sigma over-confident
    over = ev.photo_report(Calibrated(target, 0.02, error=False), CFG, target, cond, 1.0, 3, None)[0]
    assert over["coverage_90"] > 0.98 and over["coverage_50"] > 0.75
    off = ev.photo_report(Calibrated(target, 0.02, error=False, shift=0.05), CFG, target, cond, 1.0, 3, None)[0]
    assert off["coverage_90"] < 0.2


def test_inpainting_is_judged_inside_the_hole_and_colorization_against_grey_plus_mean_colour(ev):
    cfg = {"seed": 0, "data": {"task": "inpainting", "factor": 1, "downsample": "area"}}
    target, cond = ev._pair(_photo(), cfg, 16, 0, 2)
    hole = cond[..., -1] == 255
    assert 0 < hole.mean() < 1
    rep, row = ev.photo_report(Calibrated(target, 0.02), cfg, target, cond, 1.0, 0, None)
    assert {"psnr_flat_fill", "psnr_biharmonic", "coverage_90_hole"} <= set(rep)
    # biharmonic inpainting of a smooth photo beats a flat fill inside the hole
    assert rep["psnr_biharmonic"] > rep["psnr_flat_fill"]
    # the known pixels are the input's: the samples explain them at their error's PSNR (variance 2 sigma^2)
    assert rep["consistency_db"] == pytest.approx(-20 * np.log10(0.02) - 10 * np.log10(2), abs=0.6)
    cfg = {"seed": 0, "data": {"task": "colorization", "factor": 1, "downsample": "area"}}
    target, cond = ev._pair(_photo(), cfg, 16, 0, 0)
    chroma = tf.image.rgb_to_yiq(target.astype(np.float32) / 255.0).numpy()[..., 1:].reshape(-1, 2).mean(0)
    rep, _ = ev.photo_report(Calibrated(target, 0.02), cfg, target, cond, 1.0, 0, chroma)
    assert 15 < rep["psnr_grey_mean_colour"] < rep["psnr_best_of_10"]


def test_every_task_has_its_baselines_in_the_report(ev):
    for task, names in ev.BASELINES.items():
        cfg = {"seed": 0, "data": {"task": task, "factor": 4 if task == "super_resolution" else 1,
                                   "downsample": "area"}}
        target, cond = ev._pair(_photo(), cfg, 16, 0, 1)
        rep, row = ev.photo_report(Calibrated(target, 0.02), cfg, target, cond, 1.0, 0, np.zeros(2))
        assert all(f"psnr_{name}" in rep for name in names)
        assert row["baseline"].shape == target.shape


def test_the_summary_names_each_tasks_baselines(ev):
    photo = {"temperature": 0.5, "psnr_best_of_10": 30.0, "psnr_grey_mean_colour": 28.0, "coverage_90": 0.8}
    other = dict(photo, psnr_best_of_10=27.0, coverage_90=0.9)
    summary = ev.summarize([photo, other], [0.5], "colorization")["0.5"]
    assert summary["gain_over_grey_mean_colour_db"] == pytest.approx(0.5)
    assert summary["photos_above_grey_mean_colour"] == 1 and summary["photos"] == 2
    assert summary["coverage_90"] == pytest.approx(0.85)
    inpainting = [{"temperature": 1.0, "psnr_best_of_10": 20.0, "psnr_flat_fill": 15.0, "psnr_biharmonic": 21.0}]
    summary = ev.summarize(inpainting, [1.0], "inpainting")["1.0"]
    assert summary["photos_above_flat_fill"] == 1 and summary["photos_above_biharmonic"] == 0


def test_a_folder_that_is_not_a_run_is_named(ev, tmp_path):
    with pytest.raises(SystemExit, match="not a tfcflow run folder"):
        ev.main([str(tmp_path), "--split", "test"])
