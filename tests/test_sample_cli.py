"""`tfcflow sample RUN INPUT... --out DIR`: a trained image model on image files. A tiny MNIST x2
super-resolution run (14x14 -> 28x28, 2 levels: 14x14 inputs are valid, 13x13 ones need --pad)
end to end; the inpainting and colorization paths with a stand-in model. Bad files get one line
each, the others are still written; exit 2 if any failed; nothing is overwritten unless asked."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcflow import cli, images, trainer
from tfcflow._runtime import DEVICE_LINE_PREFIX

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAFLOW_FAST = os.path.join(ROOT, "training", "mnist_super_resolution", "caflow_fast.json")


def _png(path, image):
    tf.io.write_file(str(path), tf.io.encode_png(np.asarray(image, np.uint8)))
    return str(path)


def _digit(h, w, channels=1, seed=0):
    """A bright stroke on a dark background, MNIST-like."""
    rng = np.random.default_rng(seed)
    im = np.zeros((h, w, channels), np.uint8)
    im[h // 4:3 * h // 4, w // 2 - 1:w // 2 + 1] = 255
    im[h // 4, w // 4:3 * w // 4] = 200
    return np.clip(im.astype(int) + rng.integers(0, 20, im.shape), 0, 255).astype(np.uint8)


def _run_cli(capsys, argv):
    """(exit code, stdout, our stderr lines but the device line); never a traceback."""
    code = cli.main(["sample", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, [line for line in err.splitlines() if line.strip() and not line.startswith(DEVICE_LINE_PREFIX)]


def _read(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


_LOADED = {}
_REAL_LOAD_RUN = trainer.load_run


@pytest.fixture(autouse=True)
def _load_each_run_once(monkeypatch):
    """The CLI loads a run for real the first time; later calls of this module reuse that model
    (a load takes seconds)."""
    def load_run(run_dir, use_ema=True):
        key = (os.path.abspath(run_dir), use_ema)
        if key not in _LOADED:
            _LOADED[key] = _REAL_LOAD_RUN(run_dir, use_ema=use_ema)
        return _LOADED[key]
    monkeypatch.setattr(trainer, "load_run", load_run)


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_data_dir):
    out = tmp_path_factory.mktemp("sample_cli") / "run"
    trainer.train(CAFLOW_FAST, str(out), ["train.steps=2", "train.steps_per_epoch=1", "data.factor=2",
                                          "eval.max_examples=16", "data.shuffle_buffer=64",
                                          f'data.data_dir="{mnist_data_dir}"'])
    return str(out)


def test_results_and_sheets_are_written(run, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _png(inputs / "one.png", _digit(14, 14))
    tf.io.write_file(str(inputs / "two.jpg"), tf.io.encode_jpeg(_digit(14, 14, seed=1), quality=95))
    out = tmp_path / "out"
    code, stdout, err = _run_cli(capsys, [run, str(inputs), "--out", str(out)])
    assert code == 0 and err == [], err
    summary = json.loads(stdout)
    assert summary["failed"] == 0 and sorted(summary["written"]) == [str(out / "one.png"), str(out / "two.png")]
    for name in ("one.png", "two.png"):
        result, sheet = _read(out / name), _read(out / "sheets" / name)
        assert result.shape == (28, 28, 1)
        assert sheet.shape == (28, 28 + 2 + 28, 1)
        np.testing.assert_array_equal(sheet[:, 30:], result)
    np.testing.assert_array_equal(_read(out / "sheets" / "one.png")[:, :28, 0],
                                  np.repeat(np.repeat(_digit(14, 14)[..., 0], 2, 0), 2, 1))
    # seeded: the same files again; best-of-n too
    code, _, _ = _run_cli(capsys, [run, str(inputs / "one.png"), "--out", str(tmp_path / "again")])
    assert code == 0
    np.testing.assert_array_equal(_read(tmp_path / "again" / "one.png"), _read(out / "one.png"))
    code, _, err = _run_cli(capsys, [run, str(inputs / "one.png"), "--out", str(tmp_path / "best"), "--best-of", "3",
                                     "--temperature", "0.7", "--seed", "5"])
    assert code == 0 and err == [] and _read(tmp_path / "best" / "one.png").shape == (28, 28, 1)


def test_bad_files_get_one_line_each_and_the_good_one_is_written(run, tmp_path, capsys):
    good = _png(tmp_path / "good.png", _digit(14, 14))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rgb = _png(tmp_path / "rgb.png", _digit(14, 14, channels=3))
    odd = _png(tmp_path / "odd.png", _digit(13, 13))
    out = tmp_path / "out"
    code, stdout, err = _run_cli(capsys, [run, str(text), good, str(broken), rgb, odd, str(tmp_path / "missing.png"),
                                          "--out", str(out)])
    assert code == 2
    assert len(err) == 5 and all(line.startswith("tfcflow sample: ") for line in err), err
    lines = {os.path.basename(line.split(": ")[1]): line for line in err}
    assert "not an image or a broken file" in lines["notes.txt"]
    assert "not an image or a broken file" in lines["broken.png"]
    assert "has 3 channels (RGB); this super-resolution model takes 1 channel (grayscale) images" in lines["rgb.png"]
    assert "13x13 is not a valid size: a 26x26 result must be divisible by 2^2 = 4" in lines["odd.png"]
    assert "pass --pad to reflection-pad it to 14x14" in lines["odd.png"]
    assert "no such file" in lines["missing.png"]
    assert sorted(os.listdir(out)) == ["good.png", "sheets"] and os.listdir(out / "sheets") == ["good.png"]
    assert json.loads(stdout)["failed"] == 5
    assert _read(out / "good.png").shape == (28, 28, 1)


def test_pad_makes_a_valid_size_and_crops_back(run, tmp_path, capsys):
    odd = _png(tmp_path / "odd.png", _digit(13, 13))
    code, _, err = _run_cli(capsys, [run, odd, "--out", str(tmp_path / "out"), "--pad"])
    assert code == 0 and err == [], err
    assert _read(tmp_path / "out" / "odd.png").shape == (26, 26, 1)
    assert _read(tmp_path / "out" / "sheets" / "odd.png").shape == (26, 54, 1)


def test_other_sizes_are_passed_to_the_model_never_resized(run, tmp_path, capsys):
    """10x10 -> 20x20 is divisible by 4: a model of any size samples it; one of its trained size
    only refuses it with one line (the input is never resized)."""
    big = _png(tmp_path / "ten.png", _digit(10, 10))
    good = _png(tmp_path / "good.png", _digit(14, 14))
    code, _, err = _run_cli(capsys, [run, big, good, "--out", str(tmp_path / "out")])
    assert _read(tmp_path / "out" / "good.png").shape == (28, 28, 1)
    if code == 0:
        assert _read(tmp_path / "out" / "ten.png").shape == (20, 20, 1)
    else:
        assert code == 2 and len(err) == 1, err
        assert "ten.png: the model cannot take this 10x10x1 condition (it was trained on 14x14x1" in err[0]
        assert not (tmp_path / "out" / "ten.png").exists()


def test_outputs_over_the_pixel_budget_are_sampled_by_tiles(run, tmp_path, capsys):
    """--max-megapixels 0 tiles every output: 36x36 -> 72x72 in tiles of 32 (overlap 8) is said
    in the summary and on stderr, deterministic given the seed; a tile larger than the output is
    the untiled result itself."""
    image = _png(tmp_path / "in.png", _digit(36, 36))
    plain = tmp_path / "plain"
    assert _run_cli(capsys, [run, image, "--out", str(plain)])[0] == 0
    results = []
    for name in ("a", "b"):
        code, stdout, err = _run_cli(capsys, [run, image, "--out", str(tmp_path / name), "--max-megapixels", "0",
                                              "--tile", "32", "--overlap", "8"])
        assert code == 0 and len(err) == 1, err
        assert "72x72 output in 9 tiles of 32x32 px (overlap 8 px)" in err[0], err
        target = str(tmp_path / name / "in.png")
        assert list(json.loads(stdout)["tiled"]) == [target] and "in 9 tiles" in json.loads(stdout)["tiled"][target]
        results.append(_read(tmp_path / name / "in.png"))
    assert results[0].shape == (72, 72, 1) and np.array_equal(results[0], results[1])
    assert not np.array_equal(results[0], _read(plain / "in.png"))
    code, stdout, err = _run_cli(capsys, [run, image, "--out", str(tmp_path / "one"), "--max-megapixels", "0",
                                          "--tile", "128"])
    assert code == 0 and "in 1 tiles" in err[0]
    assert np.array_equal(_read(tmp_path / "one" / "in.png"), _read(plain / "in.png"))
    code, _, err = _run_cli(capsys, [run, image, "--out", str(tmp_path / "bad"), "--tile", "16", "--overlap", "16"])
    assert code == 2 and err == ["tfcflow sample: overlap (16) must be smaller than the tile (16)"], err


def test_existing_results_are_kept_unless_overwrite(run, tmp_path, capsys):
    image = _png(tmp_path / "in.png", _digit(14, 14))
    out = tmp_path / "out"
    out.mkdir()
    (out / "in.png").write_bytes(b"mine")
    code, _, err = _run_cli(capsys, [run, image, "--out", str(out)])
    assert code == 2 and len(err) == 1 and "in.png exists; pass --overwrite to replace it" in err[0], err
    assert (out / "in.png").read_bytes() == b"mine" and not (out / "sheets").exists()
    code, _, err = _run_cli(capsys, [run, image, "--out", str(out), "--overwrite"])
    assert code == 0 and _read(out / "in.png").shape == (28, 28, 1)
    # two inputs of the same base name would write the same file
    (tmp_path / "other").mkdir()
    twin = _png(tmp_path / "other" / "in.png", _digit(14, 14, seed=3))
    code, _, err = _run_cli(capsys, [run, image, twin, "--out", str(tmp_path / "out2")])
    assert code == 2 and len(err) == 1 and "rename one of them" in err[0]


def test_bad_arguments_one_line(run, tmp_path, capsys):
    image = _png(tmp_path / "in.png", _digit(14, 14))
    (tmp_path / "file").write_text("x")
    cases = [([str(tmp_path), image, "--out", str(tmp_path / "o")], "is not a tfcflow run folder"),
             ([run, image, "--out", str(tmp_path / "file")], "is a file, not a folder"),
             ([run, image, "--out", str(tmp_path / "o"), "--best-of", "0"], "--best-of must be >= 1, got 0"),
             ([run, image, "--out", str(tmp_path / "o"), "--temperature", "-1"], "--temperature must be"),
             ([run, image, "--out", str(tmp_path / "o"), "--mask", image], "--mask is for inpainting runs")]
    for task, source in (("class_conditional", "tfds"), (None, "gaussian_mixture")):
        other = tmp_path / f"{source}_{task}"
        other.mkdir()
        (other / "config.json").write_text(json.dumps({"data": {"source": source, "task": task}}))
        cases.append(([str(other), image, "--out", str(tmp_path / "o")],
                      f"is a {task or source} run; sample takes image-conditioned runs"))
    for argv, needle in cases:
        code, _, err = _run_cli(capsys, argv)
        assert code == 2 and len(err) == 1 and err[0].startswith("tfcflow sample: ") and needle in err[0], err
    assert not (tmp_path / "o").exists() and (tmp_path / "file").read_text() == "x"


# ---- inpainting and colorization, with a stand-in model (no training) --------------------------------
class _StandIn:
    """The sampling API of an image model of any size: constant images."""

    def __init__(self, condition_shape, channels, value):
        self.condition_shape, self.levels, self.channels, self.value = condition_shape, 2, channels, value
        self.calls = []

    def sample(self, condition, temperature=1.0, seed=None):
        self.calls.append((np.asarray(condition), temperature, seed))
        b, h, w, _ = condition.shape
        return tf.fill([b, h, w, self.channels], self.value)


def _stand_in_run(tmp_path, monkeypatch, task, model):
    run = tmp_path / f"{task}_run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"source": "tfds", "task": task},
                                                 "eval": {"temperature": 0.25}}))
    monkeypatch.setattr(trainer, "load_run", lambda run_dir, use_ema=True: model)
    return str(run)


def test_inpainting_masks_and_known_pixels(tmp_path, capsys, monkeypatch):
    model = _StandIn((16, 16, 2), 1, 1.0)
    run = _stand_in_run(tmp_path, monkeypatch, "inpainting", model)
    image = _digit(16, 16)
    path = _png(tmp_path / "x.png", image)
    mask = np.zeros((16, 16), np.uint8)
    mask[2:6, 3:9] = 255
    code, _, err = _run_cli(capsys, [run, path, "--out", str(tmp_path / "out"), "--mask",
                                     _png(tmp_path / "mask.png", mask[..., None])])
    assert code == 0 and err == [], err
    condition, temperature, seed = model.calls[-1]
    assert condition.shape == (1, 16, 16, 2) and temperature == 0.25 and seed == 0
    holes = mask > 0
    np.testing.assert_array_equal(condition[0, ..., 1], np.where(holes, 255, 0))
    np.testing.assert_array_equal(condition[0, ..., 0], np.where(holes, 0, image[..., 0]))
    result = _read(tmp_path / "out" / "x.png")[..., 0]
    np.testing.assert_array_equal(result, np.where(holes, 255, image[..., 0]))  # known pixels kept
    # default mask: the central square, as in training; a mask of another size: one line
    _run_cli(capsys, [run, path, "--out", str(tmp_path / "central")])
    assert model.calls[-1][0][0, 4:12, 4:12, 1].min() == 255 and model.calls[-1][0][0, ..., 1].sum() == 64 * 255
    code, _, err = _run_cli(capsys, [run, path, "--out", str(tmp_path / "o2"), "--mask",
                                     _png(tmp_path / "small_mask.png", mask[:8, :, None])])
    assert code == 2 and len(err) == 1 and "the mask is 8x16 but the image is 16x16" in err[0]
    # padding pads the image and its mask alike, and crops back
    odd = _png(tmp_path / "odd.png", _digit(15, 14))
    code, _, err = _run_cli(capsys, [run, odd, "--out", str(tmp_path / "o3"), "--pad"])
    assert code == 0 and model.calls[-1][0].shape == (1, 16, 16, 2)
    assert _read(tmp_path / "o3" / "odd.png").shape == (15, 14, 1)


def test_colorization_takes_grayscale(tmp_path, capsys, monkeypatch):
    model = _StandIn((8, 8, 1), 3, 0.5)
    run = _stand_in_run(tmp_path, monkeypatch, "colorization", model)
    gray = _png(tmp_path / "gray.png", _digit(8, 12))
    rgb = _png(tmp_path / "rgb.png", _digit(8, 8, channels=3))
    code, _, err = _run_cli(capsys, [run, gray, rgb, "--out", str(tmp_path / "out"), "--temperature", "0"])
    assert code == 2 and len(err) == 1 and "rgb.png: has 3 channels (RGB); this colorization model takes 1" in err[0]
    assert model.calls[-1][1] == 0.0
    result = _read(tmp_path / "out" / "gray.png")
    assert result.shape == (8, 12, 3) and np.all(result == 128)
    assert _read(tmp_path / "out" / "sheets" / "gray.png").shape == (8, 26, 3)


def test_a_run_without_eval_temperature_samples_at_the_config_default(tmp_path, capsys, monkeypatch):
    from tfcflow.config import DEFAULTS
    model = _StandIn((8, 8, 1), 3, 0.5)
    run = tmp_path / "run_without_eval"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"source": "tfds", "task": "colorization"}}))
    monkeypatch.setattr(trainer, "load_run", lambda run_dir, use_ema=True: model)
    gray = _png(tmp_path / "gray.png", _digit(8, 8))
    code, out, err = _run_cli(capsys, [str(run), gray, "--out", str(tmp_path / "out")])
    assert code == 0 and err == [], err
    assert model.calls[-1][1] == DEFAULTS["eval"]["temperature"] == json.loads(out)["temperature"]


def test_reflect_pad_and_crop_round_trip():
    image = np.arange(5 * 7 * 2, dtype=np.uint8).reshape(5, 7, 2)
    padded, box = images.reflect_pad(image, 4)
    assert padded.shape == (8, 8, 2) and box == (1, 0, 5, 7)
    np.testing.assert_array_equal(images.crop(padded, box), image)
    np.testing.assert_array_equal(padded[0, :7], image[1])  # mirrored, not repeated
    up = images.upscale_nearest(padded, 3)
    np.testing.assert_array_equal(images.crop(up, box, scale=3), images.upscale_nearest(image, 3))
    same, box = images.reflect_pad(image[:4, :4], 4)
    assert same.shape == (4, 4, 2) and box == (0, 0, 4, 4)
    one, box = images.reflect_pad(np.ones((1, 3), np.uint8), 4)
    assert one.shape == (4, 4) and box == (1, 0, 1, 3)
