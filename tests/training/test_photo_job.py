"""The image-folder source in training jobs (data.source = "image_folder"): random patches of a
folder of image files for training, the held-out files evaluated whole, resume, and the errors of
a bad folder; on small generated PNG files (the photo experiment's fast config, pointed at them)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcflow import config as config_lib, trainer
from tfcflow.data import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = os.path.join(ROOT, "training", "photo_super_resolution", "caflow_fast.json")


def _smooth_image(rng, h, w):
    """A smooth colour image (low-frequency content, as photos have), uint8 [h, w, 3]."""
    coarse = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    return tf.cast(tf.image.resize(coarse[None], (h, w), method="bicubic")[0], tf.uint8).numpy().clip(0, 255)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, sizes in (("train", [(40, 56), (48, 40), (64, 64)]), ("test", [(36, 52)]),
                         ("validation", [(40, 40)])):  # validation/: evaluate_photos' temperature choice
        os.makedirs(folder / split)
        for i, (h, w) in enumerate(sizes):
            (folder / split / f"im{i}.png").write_bytes(tf.io.encode_png(_smooth_image(rng, h, w)).numpy())
    return folder


def _train(out, folder, *extra):
    sets = [f'data.folder="{folder}"', "data.prepare_photos=null", "train.steps_per_epoch=4",
            "train.deterministic=true",
            *extra]
    return trainer.train(FAST, str(out), sets)


# a learned residual base trained alone first (train.base_steps, on its own larger patches), then
# frozen: the runs below cover that path too (one set of runs: each costs traces and a photo evaluation)
LEARNED = ['model.residual={"kind": "learned", "width": 8, "depth": 1}', "train.base_steps=6",
           "train.base_patch_size=32", "train.base_batch_size=4", "train.ema=0.9"]


def test_patch_training_resumes_and_evaluates_whole_held_out_images(tmp_path, photos, capsys):
    straight = _train(tmp_path / "straight", photos, "train.steps=8", *LEARNED)
    assert straight["steps"] == 8 and np.isfinite(straight["test_bits_per_dim"])
    assert straight["base_training"]["steps"] == 6 and len(straight["base_training"]["l1"]) == 2
    first = _train(tmp_path / "resumed", photos, "train.steps=4", *LEARNED)
    resumed = _train(tmp_path / "resumed", photos, "train.steps=8", *LEARNED)
    assert first["steps"] == 4 and resumed["resumed_from"].endswith("ckpt-4")
    # the patch stream continues where it stopped: bit-identical to the uninterrupted run, and the
    # base is not trained again
    assert resumed["weights_sha256"] == straight["weights_sha256"] and resumed["base_training"] is None
    # a loaded run holds the trained, frozen g (an optimizer built with g would swap in its EMA)
    loaded = trainer.load_run(str(tmp_path / "straight"))
    g = [v.numpy() for v in loaded.upsampler.weights]
    assert np.abs(g[-2]).max() > 0 and not loaded.upsampler.trainable  # conv_out starts at zero
    for v, w in zip(trainer.load_run(str(tmp_path / "resumed")).upsampler.weights, g):
        np.testing.assert_array_equal(v.numpy(), w)
    # the held-out 36x52 image is evaluated whole (its size is a multiple of 2^levels = 4 and of the
    # factor 4: no crop), per photo, with the bicubic baseline and both temperatures
    (photo,) = straight["photos"]
    assert (photo["height"], photo["width"]) == (36, 52)
    assert 0 < photo["bits_per_dim"] < 9 and 5 < photo["psnr_bicubic"] < 60
    for t in ("0.5", "0.8"):
        assert photo[f"psnr_oracle_best_of_10_T{t}"] >= photo[f"psnr_best_of_10_T{t}"]
        assert photo[f"psnr_oracle_best_of_10_T{t}"] >= photo[f"psnr_single_T{t}"]
    assert os.path.getsize(straight["sample_grid"]) > 500
    # the figure's columns: low-res, bicubic, ground truth, best of 10, a sample: the samples are
    # images like the others (not black), on the same [0, 255] scale
    figure = tf.io.decode_png(open(straight["photo_figure"], "rb").read()).numpy().astype(float)
    third = figure.shape[1] // 5
    assert figure[:, 3 * third:].mean() > 0.5 * figure[:, 2 * third:3 * third].mean()
    saved = config_lib.load(os.path.join(tmp_path, "straight", "config.json"))
    assert saved["data"]["source"] == "image_folder" and saved["data"]["patch_size"] == 16
    # train on a photo folder, then super-resolve a photo file with `tfcflow sample`
    from tfcflow import cli
    photo_file = tmp_path / "mine.png"
    photo_file.write_bytes(tf.io.encode_png(_smooth_image(np.random.default_rng(5), 12, 20)).numpy())
    code = cli.main(["sample", str(tmp_path / "straight"), str(photo_file), "--out", str(tmp_path / "sr"),
                     "--seed", "1"])
    assert code == 0
    sr = tf.io.decode_png(tf.io.read_file(str(tmp_path / "sr" / "mine.png"))).numpy()
    assert sr.shape == (48, 80, 3) and sr.std() > 0
    # sample diagnostics of the held-out photo (19 samples): consistency, diversity, calibration
    import json
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "straight"), "--sample-diagnostics", "1"]) == 0
    diag = json.loads(capsys.readouterr().out)
    assert diag["sample_diagnostics.images"] == 1 and diag["sample_diagnostics.samples_per_image"] == 19
    assert 0 <= diag["sample_diagnostics.coverage_50"] <= diag["sample_diagnostics.coverage_90"] <= 1
    assert diag["sample_diagnostics.diversity"] > 0 and 10 < diag["sample_diagnostics.consistency_db"] < 100
    assert os.path.getsize(tmp_path / "straight" / "sample_diagnostics" / "image_0.png") > 2000
    assert cli.main(["evaluate", str(tmp_path / "straight"), "--sample-diagnostics", "-1"]) == 2
    _real_photo_evaluation(tmp_path / "straight", photos)


def _real_photo_evaluation(run, photos):
    """training/real_photos/evaluate_photos.py on the trained run: the temperature chosen on the
    validation photos, then the held-out ones scored with it; each photo's result kept, so that a
    second call samples nothing."""
    import importlib.util
    import json
    spec = importlib.util.spec_from_file_location(
        "evaluate_photos", os.path.join(ROOT, "training", "real_photos", "evaluate_photos.py"))
    ev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ev)
    assert ev.main([str(run), "--split", "validation", "--crop", "32", "--temperatures", "0.5", "0.8"]) == 0
    chosen = json.loads((run / "photo_eval" / "temperature.json").read_text())
    validation = json.loads((run / "photo_eval" / "validation.json").read_text())["by_temperature"]
    assert chosen["temperature"] == max((0.5, 0.8), key=lambda t: validation[str(t)]["psnr_best_of_10"])
    assert ev.main([str(run), "--split", "test"]) == 0
    record = json.loads((run / "photo_eval" / "test.json").read_text())
    (scores,) = record["by_temperature"].values()
    assert list(record["by_temperature"]) == [str(chosen["temperature"])] and scores["photos"] == 1
    assert 0 <= scores["coverage_50"] <= scores["coverage_90"] <= 1 and scores["diversity"] > 0
    assert scores["psnr_oracle_best_of_10"] >= scores["psnr_best_of_10"] and 10 < scores["consistency_db"] < 100
    assert os.path.getsize(record["figure"]) > 5000
    ev.photo_report = None  # resumed: every photo's figures are read back, nothing is sampled again
    assert ev.main([str(run), "--split", "test"]) == 0
    assert json.loads((run / "photo_eval" / "test.json").read_text())["by_temperature"] == record["by_temperature"]
    # bench/photo_throughput.py in smoke mode on the same run: float32 and mixed_bfloat16 workers
    spec = importlib.util.spec_from_file_location("photo_throughput",
                                                  os.path.join(ROOT, "bench", "photo_throughput.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main([str(run), "--smoke", "--crop", "32", "--out", str(run / "throughput.json")])
    assert out["temperature"] == chosen["temperature"]
    assert [r["precision"] for r in out["results"]] == ["float32", "mixed_bfloat16"]
    for r in out["results"]:
        assert r["train_mp_per_s"] > 0 and r["sample_mp_per_s"] > 0 and r["sample_ops"] and r["train_ops"]
    # the same weights in bf16: the same model up to rounding
    assert abs(out["bf16_bits_per_dim_change"]) < 0.1


def test_config_errors_of_the_image_folder_source(tmp_path, photos):
    with pytest.raises(config_lib.ConfigError, match="data.folder"):
        trainer.train(FAST, str(tmp_path / "a"), ["data.folder=null"])
    with pytest.raises(config_lib.ConfigError, match="data.patch_size .18. must be a multiple of data.factor"):
        _train(tmp_path / "b", photos, "data.patch_size=18")
    with pytest.raises(config_lib.ConfigError, match="class_conditional"):
        _train(tmp_path / "c", photos, 'data.task="class_conditional"')
    with pytest.raises(config_lib.ConfigError, match="data: image folder .* does not exist"):
        _train(tmp_path / "d", tmp_path / "nowhere")
    broken = tmp_path / "broken"
    os.makedirs(broken / "train")
    os.makedirs(broken / "test")
    (broken / "train" / "bad.png").write_bytes(b"not a png")
    (broken / "test" / "ok.png").write_bytes((photos / "test" / "im0.png").read_bytes())
    with pytest.raises(config_lib.ConfigError, match="bad.png"):
        _train(tmp_path / "e", broken)
    too_small = _train  # a patch larger than a training image is named with its size
    with pytest.raises(config_lib.ConfigError, match="smaller than patch_size 48"):
        too_small(tmp_path / "f", photos, "data.patch_size=48")
    assert not os.path.exists(tmp_path / "b" / "config.json")  # nothing claimed by a failed start
    with pytest.raises(config_lib.ConfigError, match="train.base_steps .* needs model.residual 'learned'"):
        _train(tmp_path / "g", photos, "train.base_steps=2")
    with pytest.raises(config_lib.ConfigError, match="train.base_patch_size .18. must be a multiple"):
        _train(tmp_path / "h", photos, *LEARNED[:2], "train.base_patch_size=18")


def test_skimage_photos_are_written_once(tmp_path):
    folder = prepare.store_photos(str(tmp_path / "p"), train=("astronaut",), test=("chelsea",))
    assert sorted(os.listdir(os.path.join(folder, "test"))) == ["chelsea.png"]
    image = tf.io.decode_png(open(os.path.join(folder, "train", "astronaut.png"), "rb").read()).numpy()
    assert image.shape == (512, 512, 3)
    with pytest.raises(ValueError, match="not empty"):
        prepare.store_photos(folder)


def test_a_missing_extra_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import builtins
    import sys

    from tfcflow import cli

    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):
        if name == "skimage" or name.startswith("skimage."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "skimage" or m.startswith("skimage.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_skimage)
    with pytest.raises(ValueError, match=r"^scikit-image is not installed; .*pip install 'tfcflow\[experiments\]'"):
        prepare.store_photos(str(tmp_path / "p"), train=("astronaut",), test=("chelsea",))
    assert os.listdir(tmp_path) == []  # nothing half-written (the temporary folder is gone too)
    # the job: one line on stderr, exit 2, no run folder and no photo folder left behind
    capsys.readouterr()
    code = cli.main(["train", FAST, "--out", str(tmp_path / "run"), "--set",
                     f'data.folder="{tmp_path / "photos"}"', "--set", "train.steps=1"])
    err = capsys.readouterr().err
    assert code == 2 and "scikit-image is not installed" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "photos") and not os.path.exists(tmp_path / "run" / "checkpoints")


def test_the_bundled_photo_set_loads_every_photo_offline():
    train, test = prepare.PHOTO_SETS["bundled"]
    assert set(prepare.PHOTO_SETS["skimage"][0]) < set(train) and not set(train) & set(test)
    shapes = {name: prepare.bundled_photo(name).shape for name in ("china", "flower", "grace_hopper")}
    assert shapes == {"china": (427, 640, 3), "flower": (427, 640, 3), "grace_hopper": (600, 512, 3)}
    with pytest.raises(ValueError, match="unknown bundled photo 'lena'"):
        prepare.bundled_photo("lena")
