"""TFDS task pipelines on the real MNIST copy (and scikit-image photos for colorization)."""
import numpy as np
import pytest
import tensorflow as tf

from tfcflow.data import tasks
from tfcflow.data.prepare import import_arrays, import_image_folder, skimage_photo_patches


def _first(ds):
    x, c = next(iter(ds))
    return x.numpy(), c.numpy()


def test_dataset_info(mnist_data_dir):
    info = tasks.dataset_info("mnist", mnist_data_dir)
    assert info == {"image_shape": (28, 28, 1), "splits": {"train": 60000, "test": 10000}, "num_classes": 10}


def test_super_resolution_pairs_are_area_downsampled(mnist_data_dir):
    x, c = _first(tasks.task_dataset("mnist", "test[:64]", "super_resolution", data_dir=mnist_data_dir,
                                     batch_size=16, shuffle=False))
    assert x.shape == (16, 28, 28, 1) and x.dtype == np.uint8 and c.shape == (16, 7, 7, 1) and c.dtype == np.uint8
    expected = np.round(x.astype(np.float64).reshape(16, 7, 4, 7, 4, 1).mean((2, 4)))
    assert np.max(np.abs(c - expected)) <= 1
    # the first test digit of MNIST is a 7: real pixels, a dark background and bright strokes
    assert x.max() == 255 and np.median(x) == 0
    _, c2 = _first(tasks.task_dataset("mnist", "test[:64]", "super_resolution", data_dir=mnist_data_dir,
                                      batch_size=16, shuffle=False, factor=2, downsample_method="bicubic"))
    assert c2.shape == (16, 14, 14, 1)


def test_inpainting_condition_is_the_masked_image_and_the_mask(mnist_data_dir):
    x, c = _first(tasks.task_dataset("mnist", "test[:32]", "inpainting", data_dir=mnist_data_dir,
                                     batch_size=8, shuffle=False))
    assert c.shape == (8, 28, 28, 2)
    mask = c[..., 1:] == 255
    assert mask.sum(axis=(1, 2, 3)).tolist() == [14 * 14] * 8
    assert np.all(mask[:, 7:21, 7:21])
    np.testing.assert_array_equal(c[..., :1][~mask], x[~mask])
    assert np.all(c[..., :1][mask] == 0)
    _, r = _first(tasks.task_dataset("mnist", "test[:32]", "inpainting", data_dir=mnist_data_dir,
                                     batch_size=8, shuffle=False, mask="random"))
    sizes = (r[..., 1] == 255).sum(axis=(1, 2))
    assert len(set(sizes.tolist())) > 1 and sizes.min() >= 7 * 7 and sizes.max() <= 14 * 14


def test_class_conditional_condition_is_the_one_hot_label(mnist_data_dir):
    ds = tasks.task_dataset("mnist", "test", "class_conditional", data_dir=mnist_data_dir, batch_size=2000,
                            shuffle=False)
    counts = np.zeros(10, int)
    for x, c in ds:
        assert c.shape[1:] == (10,) and c.dtype == tf.float32
        np.testing.assert_array_equal(c.numpy().sum(1), 1.0)
        counts += c.numpy().sum(0).astype(int)
    # the class counts of the real MNIST test set
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_seeded_pipelines_are_deterministic(mnist_data_dir):
    def batches(seed):
        ds = tasks.task_dataset("mnist", "train[:512]", "inpainting", data_dir=mnist_data_dir, batch_size=64,
                                seed=seed, mask="random")
        return [np.concatenate([x.numpy().ravel(), c.numpy().ravel()]) for x, c in ds]

    a, b, other = batches(3), batches(3), batches(4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, other))


def test_bad_requests_are_clear_errors(mnist_data_dir):
    cases = [
        (dict(name="no_such_dataset", split="train", task="inpainting"), "unknown TFDS dataset 'no_such_dataset'"),
        (dict(name="mnist", split="validation", task="inpainting"), r"unknown split 'validation'.*\['train', 'test'\]"),
        (dict(name="mnist", split="train", task="denoising"), "unknown task 'denoising'"),
        (dict(name="mnist", split="train", task="colorization"), "colorization needs RGB targets"),
        (dict(name="mnist", split="train", task="super_resolution", factor=3), "factor 3 does not divide"),
        (dict(name="mnist", split="train", task="inpainting", mask="square"), "mask must be 'central' or 'random'"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            tasks.task_dataset(data_dir=mnist_data_dir, **kwargs)
    with pytest.raises(ValueError, match="not prepared"):
        tasks.task_dataset("cifar10", "train", "inpainting", data_dir=mnist_data_dir)


def test_dataset_without_an_image_feature(tmp_path):
    import tensorflow_datasets as tfds

    tfds.dataset_builders.store_as_tfds_dataset(
        name="only_numbers", version="1.0.0", data_dir=str(tmp_path),
        features=tfds.features.FeaturesDict({"value": tfds.features.Tensor(shape=(3,), dtype=np.float32)}),
        split_datasets={"train": tf.data.Dataset.from_tensor_slices({"value": np.zeros((4, 3), np.float32)})})
    with pytest.raises(ValueError, match=r"has no image feature; its features are \['value'\]"):
        tasks.task_dataset("only_numbers", "train", "inpainting", data_dir=str(tmp_path))


def test_colorization_on_real_photo_patches_stored_as_tfds(tmp_path):
    train = skimage_photo_patches(("astronaut", "chelsea"), patch_size=32, stride=32, downscale=4)
    test = skimage_photo_patches(("coffee",), patch_size=32, stride=32, downscale=4)
    import_arrays({"train": train, "test": test}, "photo_patches", str(tmp_path))
    x, c = _first(tasks.task_dataset("photo_patches", "test", "colorization", data_dir=str(tmp_path),
                                     batch_size=4, shuffle=False))
    assert x.shape == (4, 32, 32, 3) and c.shape == (4, 32, 32, 1)
    lum = np.round(x.astype(np.float64) @ np.array([0.2989, 0.587, 0.114]))
    assert np.max(np.abs(c[..., 0] - lum)) <= 1
    assert x.std() > 10  # real photo content, not a flat image
    assert tasks.dataset_info("photo_patches", str(tmp_path))["splits"] == {"train": len(train), "test": len(test)}


def test_import_image_folder_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            tf.io.write_file(str(tmp_path / "imgs" / cls / f"{i}.png"), tf.io.encode_png(img))
    import_image_folder(str(tmp_path / "imgs"), "pets", str(tmp_path / "tfds"), image_size=16)
    info = tasks.dataset_info("pets", str(tmp_path / "tfds"))
    assert info["image_shape"] == (16, 16, 3) and info["num_classes"] == 2 and info["splits"] == {"train": 6}
    x, c = _first(tasks.task_dataset("pets", "train", "class_conditional", data_dir=str(tmp_path / "tfds"),
                                     batch_size=6, shuffle=False))
    assert sorted(c.argmax(1).tolist()) == [0, 0, 0, 1, 1, 1]
    tf.io.write_file(str(tmp_path / "imgs" / "dogs" / "big.png"), tf.io.encode_png(np.zeros((30, 30, 3), np.uint8)))
    with pytest.raises(ValueError, match="different shapes"):
        import_image_folder(str(tmp_path / "imgs"), "pets2", str(tmp_path / "tfds"))
    with pytest.raises(ValueError, match="does not exist"):
        import_image_folder(str(tmp_path / "missing"), "x", str(tmp_path / "tfds"))
