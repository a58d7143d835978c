"""Fast variants of the image experiments (training/*/..._fast.json) on the real MNIST copy and
scikit-image photos: tiny models, a few steps; the loss must go down and the metrics be sane."""
import importlib.util
import os

import pytest

from tfcflow import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(config, out, data_dir, extra=()):
    return trainer.train(os.path.join(ROOT, "training", config), str(out), [f"data.data_dir=\"{data_dir}\"", *extra])


def _decreased(res):
    loss = res["history"]["loss"]
    assert len(loss) >= 2 and loss[-1] < loss[0], loss


def test_super_resolution_fast(tmp_path, mnist_data_dir):
    res = _run("mnist_super_resolution/caflow_fast.json", tmp_path, mnist_data_dir, ["train.sample_every=20"])
    _decreased(res)
    assert 0 < res["test_bits_per_dim"] < 6.0  # an untrained flow sits near 8 bits/dim
    for key in ("psnr_best_of_10", "psnr_single", "psnr_bicubic"):
        assert 5 < res[key] < 40, (key, res[key])
    assert 0 <= res["target_beats_all_10"] <= 1
    assert os.path.getsize(res["figure"]) > 1000 and os.path.getsize(res["sample_grid"]) > 1000
    # the sample grids reached TensorBoard too
    events = [f for d, _, fs in os.walk(tmp_path / "logs" / "samples") for f in fs if f.startswith("events")]
    assert events


def test_inpainting_fast(tmp_path, mnist_data_dir):
    res = _run("mnist_inpainting/caflow_fast.json", tmp_path, mnist_data_dir)
    _decreased(res)
    assert 0 < res["test_bits_per_dim"] < 6.0
    # pasting the known pixels back keeps the composite far above the hole-only PSNR
    assert res["psnr_best_of_10"] > res["psnr_hole_best_of_10"] and res["psnr_masked_mean"] > 5


def test_colorization_fast(tmp_path):
    res = _run("colorization/caflow_fast.json", tmp_path, tmp_path / "tfds")
    _decreased(res)
    assert 0 < res["test_bits_per_dim"] < 8.0 and 5 < res["psnr_best_of_10"] < 50


def test_class_conditional_latent_flow_fast(tmp_path, mnist_data_dir):
    spec = importlib.util.spec_from_file_location(
        "cc_job", os.path.join(ROOT, "training", "mnist_class_conditional", "train.py"))
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    res = job.main(["--config", os.path.join(ROOT, "training", "mnist_class_conditional", "fast.json"),
                    "--out", str(tmp_path), "--set", f"data_dir=\"{mnist_data_dir}\""])
    assert res["flow_loss_last_epoch"] < res["flow_loss_first_epoch"]
    assert res["test_accuracy"] > 0.3  # chance is 0.1; a 500-step tiny flow on a 1-epoch autoencoder
    assert os.path.getsize(res["samples"]) > 1000
    with pytest.raises(ValueError, match="unknown key"):
        job.load_config(None, ["flow_stepz=3"])
