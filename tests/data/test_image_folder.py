"""Patch training data from a folder of image files (tfcflow/data/image_folder.py), on real PNG
files of different sizes: seeded and resumable, crops inside the images, flips, the task's
conditions, the held-out images whole, broken files named."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcflow.data import image_folder, tasks

SIZES = {"a.png": (20, 24), "b.png": (17, 30), "c.png": (32, 21), "d.png": (26, 26), "e.png": (19, 23)}
P = 8


def _write_png(path, image):
    tf.io.write_file(str(path), tf.io.encode_png(image))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five RGB noise images (every 8x8 window unique, so a patch tells where it came from)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        _write_png(root / name, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root


def _images(folder):
    return {name: tf.io.decode_png(tf.io.read_file(str(folder / name))).numpy() for name in SIZES}


def _batches(ds, k):
    return [(x.numpy(), c.numpy()) for x, c in ds.take(k)]


def _locate(patch, images):
    """(image name, flipped) of the window ``patch`` is a copy of, or None."""
    p = patch.shape[0]
    for name, im in images.items():
        windows = np.lib.stride_tricks.sliding_window_view(im, (p, p, im.shape[2]))[:, :, 0]
        for flipped, variant in ((False, patch), (True, patch[:, ::-1])):
            if np.any(np.all(windows == variant, axis=(2, 3, 4))):
                return name, flipped
    return None


def test_split_is_seeded_and_disjoint(folder):
    parts = image_folder.split_files(str(folder), test_fraction=0.2, split_seed=0)
    assert len(parts["train"]) == 4 and len(parts["test"]) == 1
    assert not set(parts["train"]) & set(parts["test"])
    assert parts == image_folder.split_files(str(folder), test_fraction=0.2, split_seed=0)
    assert image_folder.split_files(str(folder), test_fraction=0.0)["test"] == []


def test_same_seed_same_batches_and_skip_resumes_exactly(folder):
    def make(seed, **kw):
        return image_folder.patch_dataset(str(folder), "super_resolution", P, 6, seed, factor=2,
                                          test_fraction=0.2, **kw)

    first = _batches(make(3), 5)
    again = _batches(make(3), 5)
    for (x1, c1), (x2, c2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(c1, c2)
    other = _batches(make(4), 1)
    assert not np.array_equal(other[0][0], first[0][0])
    # batch k depends on (seed, k) only: skip(k) and start_batch=k resume the very same stream
    for resumed in (_batches(make(3).skip(2), 3), _batches(make(3, start_batch=2), 3)):
        for (x1, c1), (x2, c2) in zip(first[2:], resumed):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(c1, c2)


def test_patches_are_crops_of_training_images_flipped_at_random(folder):
    parts = image_folder.split_files(str(folder), test_fraction=0.2, split_seed=0)
    train = {os.path.basename(f) for f in parts["train"]}
    ds = image_folder.patch_dataset(str(folder), "super_resolution", P, 32, 0, factor=2, test_fraction=0.2)
    (x, c), = _batches(ds, 1)
    assert x.shape == (32, P, P, 3) and x.dtype == np.uint8
    assert c.shape == (32, P // 2, P // 2, 3) and c.dtype == np.uint8
    found = [_locate(patch, _images(folder)) for patch in x]
    assert all(f is not None for f in found), "a patch that is no crop of any image"
    assert {name for name, _ in found} <= train, "a held-out image was used for training"
    assert len({name for name, _ in found}) >= 3
    flips = [flipped for _, flipped in found]
    assert 0 < sum(flips) < len(flips)
    # the condition is the task's, of the (flipped) patch
    np.testing.assert_array_equal(c, tasks.make_condition("super_resolution", tf.constant(x), factor=2).numpy())
    # no flips asked: none
    ds = image_folder.patch_dataset(str(folder), "super_resolution", P, 32, 0, factor=2, test_fraction=0.2,
                                    flips="none")
    (x, _), = _batches(ds, 1)
    assert not any(_locate(patch, _images(folder))[1] for patch in x)


def test_dihedral_flips_add_transposes_and_scales_crop_downscaled_images(folder):
    def make(**kw):
        return image_folder.patch_dataset(str(folder), "super_resolution", P, 32, 0, factor=2, test_fraction=0.2,
                                          **kw)

    (both, _), = _batches(make(flips="both"), 1)
    (dihedral, c), = _batches(make(flips="dihedral"), 1)
    # the same crops and flips as 'both', some of them transposed (a draw of their own)
    transposed = [not np.array_equal(d, b) for d, b in zip(dihedral, both)]
    assert 0 < sum(transposed) < len(transposed)
    for d, b, t in zip(dihedral, both, transposed):
        np.testing.assert_array_equal(d, np.transpose(b, (1, 0, 2)) if t else b)
    np.testing.assert_array_equal(c, tasks.make_condition("super_resolution", tf.constant(dihedral), factor=2).numpy())
    # scales (1, 1) is the full resolution: the very patches of the default stream
    (default, _), = _batches(make(), 1)
    (full, _), = _batches(make(scales=(1.0, 1.0)), 1)
    np.testing.assert_array_equal(full, default)
    # scale 1/2: every patch is the area-downscaled 2P x 2P crop of a training image
    (half, _), = _batches(make(scales=(0.5, 0.5), flips="none"), 1)
    images = _images(folder)
    downscaled = {}
    for name, im in images.items():
        windows = np.lib.stride_tricks.sliding_window_view(im, (2 * P, 2 * P, 3))[:, :, 0].astype(np.float64)
        pooled = windows.reshape(windows.shape[:2] + (P, 2, P, 2, 3)).mean(axis=(3, 5))
        downscaled[name] = np.round(pooled)
    for patch in half:
        assert any(np.any(np.all(np.abs(d - patch) <= 1, axis=(2, 3, 4))) for d in downscaled.values()), \
            "a patch that is no downscaled crop of any image"
    assert not np.array_equal(half, default)
    # random scales in [0.5, 1]: deterministic given the seed
    first, again = _batches(make(scales=(0.5, 1.0)), 2), _batches(make(scales=(0.5, 1.0)), 2)
    for (x1, _), (x2, _) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
    for bad in ((0.0, 1.0), (0.8, 0.5), (0.5, 1.5), (0.5,), "half"):
        with pytest.raises(ValueError, match="scales"):
            make(scales=bad)


def test_colorization_and_inpainting_conditions(folder):
    ds = image_folder.patch_dataset(str(folder), "colorization", P, 16, 1, test_fraction=0.2)
    (x, c), = _batches(ds, 1)
    np.testing.assert_array_equal(c, tasks.make_condition("colorization", tf.constant(x)).numpy())
    assert c.shape == (16, P, P, 1)
    ds = image_folder.patch_dataset(str(folder), "inpainting", 16, 16, 1, test_fraction=0.2)
    (x, c), = _batches(ds, 1)
    assert c.shape == (16, 16, 16, 4)
    holes = c[..., 3] == 255
    assert set(np.unique(c[..., 3])) <= {0, 255}
    np.testing.assert_array_equal(c[..., :3][~holes], x[~holes])
    assert np.all(c[..., :3][holes] == 0)
    for m in holes:  # a random rectangle with sides h/4 .. h/2
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        assert 4 <= len(rows) <= 8 and 4 <= len(cols) <= 8 and m.sum() == len(rows) * len(cols)
    assert len({m.tobytes() for m in holes}) > 8  # masks differ between examples


def test_whole_images_of_the_held_out_split(folder):
    parts = image_folder.split_files(str(folder), test_fraction=0.2, split_seed=0)
    held_out = _images(folder)[os.path.basename(parts["test"][0])]
    ds = image_folder.whole_images(str(folder), "super_resolution", 2, multiple=4, test_fraction=0.2)
    pairs = _batches(ds, 10)
    assert len(pairs) == 1
    x, c = pairs[0]
    h, w = held_out.shape[0] // 4 * 4, held_out.shape[1] // 4 * 4
    assert x.shape == (1, h, w, 3) and c.shape == (1, h // 2, w // 2, 3)
    top, left = (held_out.shape[0] - h) // 2, (held_out.shape[1] - w) // 2
    np.testing.assert_array_equal(x[0], held_out[top:top + h, left:left + w])
    np.testing.assert_array_equal(c, tasks.make_condition("super_resolution", tf.constant(x), factor=2).numpy())
    # every image, each its own size, with deterministic inpainting masks
    ds = image_folder.whole_images(str(folder), "inpainting", split="all", test_fraction=0.2, seed=5)
    shapes = [x.shape[1:3] for x, _ in _batches(ds, 10)]
    assert sorted(shapes) == sorted(SIZES.values())
    masks = [c[..., 3] for _, c in _batches(ds, 10)]
    again = [c[..., 3] for _, c in _batches(ds, 10)]
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))


def test_train_and_test_sub_folders(tmp_path):
    rng = np.random.default_rng(1)
    for part, n in (("train", 2), ("test", 1)):
        (tmp_path / part).mkdir()
        for i in range(n):
            _write_png(tmp_path / part / f"{i}.png", rng.integers(0, 256, (12, 16, 1), dtype=np.uint8))
    parts = image_folder.split_files(str(tmp_path), test_fraction=0.5)
    assert [os.path.basename(os.path.dirname(f)) for f in parts["train"] + parts["test"]] == ["train"] * 2 + ["test"]
    (x, c), = _batches(image_folder.patch_dataset(str(tmp_path), "super_resolution", 8, 4, 0, factor=4), 1)
    assert x.shape == (4, 8, 8, 1) and c.shape == (4, 2, 2, 1)
    with pytest.raises(ValueError, match="colorization needs RGB images"):
        image_folder.patch_dataset(str(tmp_path), "colorization", 8, 4, 0)


def test_bad_files_are_named(tmp_path):
    rng = np.random.default_rng(2)
    _write_png(tmp_path / "good.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=r"broken\.png: not an image or a broken file"):
        image_folder.patch_dataset(str(tmp_path), "super_resolution", 8, 4, 0, test_fraction=0.0)
    os.remove(tmp_path / "broken.png")
    _write_png(tmp_path / "small.png", rng.integers(0, 256, (6, 20, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"small\.png: 6x20 is smaller than patch_size 8"):
        image_folder.patch_dataset(str(tmp_path), "super_resolution", 8, 4, 0, test_fraction=0.0)
    with pytest.raises(ValueError, match="factor 3 does not divide patch_size 8"):
        image_folder.patch_dataset(str(tmp_path), "super_resolution", 8, 4, 0, factor=3)
    with pytest.raises(ValueError, match="does not exist"):
        image_folder.patch_dataset(str(tmp_path / "nope"), "colorization", 8, 4, 0)


def test_flat_patches_are_drawn_again(tmp_path):
    """Half of the image is flat grey: with min_patch_std the patches come from the textured half
    (up to FLAT_REDRAWS redraws), draw 0 is the default stream's, and the stream stays seeded."""
    rng = np.random.default_rng(1)
    image = np.full((32, 64, 3), 128, np.uint8)
    image[:, 32:] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _write_png(tmp_path / "half.png", image)

    def patches(**kw):
        ds = image_folder.patch_dataset(str(tmp_path), "super_resolution", P, 32, 3, factor=2, test_fraction=0.0,
                                        flips="none", **kw)
        return np.concatenate([x for x, _ in _batches(ds, 2)])

    plain, picky = patches(), patches(min_patch_std=5.0)
    stds = lambda xs: xs.reshape(len(xs), -1).astype(np.float32).std(axis=1)  # noqa: E731
    assert (stds(plain) < 5.0).mean() > 0.3 and (stds(picky) < 5.0).mean() < 0.02
    textured = stds(plain) >= 5.0  # those were kept as drawn
    np.testing.assert_array_equal(picky[textured], plain[textured])
    np.testing.assert_array_equal(picky, patches(min_patch_std=5.0))
    with pytest.raises(ValueError, match="min_patch_std must be a number >= 0"):
        patches(min_patch_std=-1)
