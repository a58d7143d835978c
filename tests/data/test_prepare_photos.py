"""`tfcflow data prepare-photos`: a folder of photographs downscaled with antialiasing, the same for
both splits, atomic, with a manifest; bad input named."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcflow import cli
from tfcflow.data import image_folder, prepare


def _png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image))


def _jpeg(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_jpeg(image, quality=70))


@pytest.fixture()
def source(tmp_path):
    rng = np.random.default_rng(0)
    smooth = tf.image.resize(rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)[None], (41, 60)).numpy()[0]
    _jpeg(tmp_path / "src" / "train" / "a.jpg", smooth.astype(np.uint8))
    flat = np.full((80, 80, 3), 90, np.uint8)
    _png(tmp_path / "src" / "train" / "sky.png", flat)
    _png(tmp_path / "src" / "eval" / "b.png", rng.integers(0, 256, (30, 44, 3), dtype=np.uint8))
    return tmp_path / "src"


def test_photos_are_downscaled_the_same_way_in_both_splits(source, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert cli.main(["data", "prepare-photos", str(source), str(out)]) == 0
    assert "(3 photos)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    by_source = {p["source"]: p for p in manifest["photos"]}
    # 41 x 60 is centre-cropped to 40 x 60, then halved; the eval/ folder becomes test/
    assert by_source[os.path.join("train", "a.jpg")]["size"] == [20, 30]
    assert by_source[os.path.join("train", "a.jpg")]["source_size"] == [41, 60]
    assert by_source[os.path.join("eval", "b.png")]["file"] == os.path.join("test", "b.png")
    assert by_source[os.path.join("train", "sky.png")]["flat_share"] == 1.0
    # the pixels are the antialiased bicubic reduction of the photo
    b = tf.io.decode_png(tf.io.read_file(str(source / "eval" / "b.png"))).numpy()
    expected = np.clip(np.round(tf.image.resize(b.astype(np.float32), (15, 22), method="bicubic",
                                                antialias=True).numpy()), 0, 255)
    got = tf.io.decode_png(tf.io.read_file(str(out / "test" / "b.png"))).numpy()
    np.testing.assert_array_equal(got, expected.astype(np.uint8))
    # the result is an image folder of the jobs, and a function of the files
    assert [os.path.basename(f) for f in image_folder.split_files(str(out))["test"]] == ["b.png"]
    again = tmp_path / "again"
    prepare.prepare_photo_folder(str(source), str(again))
    np.testing.assert_array_equal(tf.io.decode_png(tf.io.read_file(str(again / "test" / "b.png"))).numpy(), got)


def test_bad_input_is_named_and_nothing_is_left_half_written(source, tmp_path, capsys):
    out = tmp_path / "prepared"
    (source / "train" / "broken.png").write_bytes(b"not an image")
    assert cli.main(["data", "prepare-photos", str(source), str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["src"]  # no folder, no temporary left
    os.remove(source / "train" / "broken.png")
    prepare.prepare_photo_folder(str(source), str(out))
    with pytest.raises(ValueError, match="not empty"):
        prepare.prepare_photo_folder(str(source), str(out))  # an existing result is never overwritten
    with pytest.raises(ValueError, match="does not exist"):
        prepare.prepare_photo_folder(str(tmp_path / "nowhere"), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="downscale must be an integer >= 1"):
        prepare.prepare_photo_folder(str(source), str(tmp_path / "y"), downscale=0)


def test_validation_photos_are_taken_from_the_training_photos_only(source, tmp_path):
    _png(source / "train" / "c.png", np.full((20, 20, 3), 10, np.uint8))
    manifest = prepare.prepare_photo_folder(str(source), str(tmp_path / "p"), validation=1, seed=3)
    splits = {}
    for p in manifest["photos"]:
        splits.setdefault(p["split"], []).append(p["source"])
    assert len(splits["validation"]) == 1 and len(splits["train"]) == 2
    assert splits["test"] == [os.path.join("eval", "b.png")]
    assert not set(splits["validation"]) & set(splits["train"])
    # the jobs' image folder sees train/ and test/ only
    seen = image_folder.split_files(str(tmp_path / "p"))
    assert len(seen["train"]) == 2
    assert all(os.sep + "validation" + os.sep not in f for f in seen["train"] + seen["test"])
    again = prepare.prepare_photo_folder(str(source), str(tmp_path / "q"), validation=1, seed=3)
    assert [p["source"] for p in again["photos"] if p["split"] == "validation"] == splits["validation"]
    with pytest.raises(ValueError, match="no training photo"):
        prepare.prepare_photo_folder(str(source), str(tmp_path / "r"), validation=3)
    with pytest.raises(ValueError, match="validation must be an integer >= 0"):
        prepare.prepare_photo_folder(str(source), str(tmp_path / "s"), validation=-1)
    flat = tmp_path / "flat"
    _png(flat / "a.png", np.zeros((8, 8, 3), np.uint8))
    _png(flat / "b.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="train/ and test/"):
        prepare.prepare_photo_folder(str(flat), str(tmp_path / "t"), validation=1)
