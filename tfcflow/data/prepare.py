"""Offline dataset preparation for air-gapped machines.

- ``prepare_mnist(source_dir, data_dir)``: runs TFDS's own ``mnist`` builder (copy, IDX parsing,
  TFRecord writing) on a local folder holding the four canonical MNIST IDX .gz files, by pointing
  the builder's download URL at that folder. Afterwards ``tfds.load('mnist', data_dir=data_dir,
  download=False)`` reads it like any prepared copy. No checksum is checked (the folder's gzip bytes
  may differ from the registered ones while the pixels are identical).
- ``import_image_folder(folder, name, data_dir)``: stores a folder of the user's own images (flat,
  or one sub-folder per class) as a TFDS dataset with ``tfds.dataset_builders.store_as_tfds_dataset``;
  ``tfds.load(name, data_dir=data_dir)`` reads it in any later process without builder code.
- ``import_arrays({split: images}, name, data_dir, ...)``: the same for in-memory uint8 arrays.
- ``skimage_photo_patches(...)``: real colour photo patches from scikit-image's bundled images.
- ``store_photos(folder, train, test)``: colour photos bundled with scikit-image, scikit-learn and
  matplotlib written as an image folder (``PHOTO_SETS``).
"""
from __future__ import annotations

import contextlib
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from tfcflow import _checks

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def prepare_mnist(source_dir: str, data_dir: str) -> str:
    """Prepares TFDS ``mnist`` in ``data_dir`` from local IDX files; returns the dataset folder."""
    import tensorflow_datasets as tfds

    source_dir = os.path.abspath(source_dir)
    missing = [f for f in MNIST_FILES if not os.path.exists(os.path.join(source_dir, f))]
    if missing:
        raise ValueError(f"{source_dir} lacks the MNIST IDX file(s) {missing}; expected {list(MNIST_FILES)}")
    builder_cls = tfds.image_classification.MNIST
    original = builder_cls.URL
    builder_cls.URL = source_dir.rstrip("/") + "/"
    try:
        builder = tfds.builder("mnist", data_dir=data_dir)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    finally:
        builder_cls.URL = original
    return str(builder.data_dir)


def import_arrays(splits: Mapping[str, np.ndarray], name: str, data_dir: str,
                  labels: Optional[Mapping[str, np.ndarray]] = None,
                  class_names: Optional[Sequence[str]] = None, description: str = "") -> str:
    """Stores uint8 images (``{split: [N, H, W, C]}``, one shape for all) and optional integer
    labels (``{split: [N]}``) as TFDS dataset ``name`` in ``data_dir``; returns its folder."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    shapes = {np.asarray(v).shape[1:] for v in splits.values()}
    for split, images in splits.items():
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"split {split!r}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if len(shapes) != 1:
        raise ValueError(f"all splits must share one image shape, got {sorted(shapes)}")
    feats = {"image": tfds.features.Image(shape=shapes.pop())}
    if labels is not None:
        if class_names is None:
            class_names = [str(i) for i in range(int(max(np.max(v) for v in labels.values())) + 1)]
        feats["label"] = tfds.features.ClassLabel(names=list(class_names))

    def dataset(split):
        data = {"image": np.asarray(splits[split])}
        if labels is not None:
            data["label"] = np.asarray(labels[split]).astype(np.int64)
        return tf.data.Dataset.from_tensor_slices(data)

    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=tfds.features.FeaturesDict(feats), data_dir=data_dir,
        description=description, split_datasets={k: dataset(k) for k in splits})
    return os.path.join(data_dir, name)


def import_image_folder(folder: str, name: str, data_dir: str, image_size: Optional[int] = None,
                        test_fraction: float = 0.0, seed: int = 0) -> str:
    """Stores a folder of images as TFDS dataset ``name``.

    Layout: images directly in ``folder`` (no labels), or one sub-folder per class (labels = sorted
    sub-folder names). With ``image_size``, each image is centre-cropped to a square and resized to
    ``image_size x image_size``; without it all images must share one shape. RGBA is dropped to RGB.
    """
    import tensorflow as tf

    if not os.path.isdir(folder):
        raise ValueError(f"image folder {folder!r} does not exist")
    entries = sorted(os.listdir(folder))
    classes = [e for e in entries if os.path.isdir(os.path.join(folder, e))]
    files, labels = [], []
    if classes:
        for k, cls in enumerate(classes):
            for f in sorted(os.listdir(os.path.join(folder, cls))):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(folder, cls, f))
                    labels.append(k)
    else:
        files = [os.path.join(folder, f) for f in entries if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder!r}")
    images = []
    for path in files:
        img = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
        if img.shape[-1] == 4:
            img = img[..., :3]
        if image_size:
            h, w = img.shape[:2]
            s = min(h, w)
            img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
            img = tf.cast(tf.round(tf.image.resize(img, (image_size, image_size), method="area")), tf.uint8).numpy()
        images.append(img)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images in {folder!r} have different shapes {sorted(shapes)[:4]}...; "
                         f"pass image_size to crop and resize them")
    _checks.check_fraction(test_fraction, "test_fraction")
    images = np.stack(images)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    parts = {"train": order[n_test:], "test": order[:n_test]} if n_test else {"train": order}
    split_labels = {k: np.asarray(labels)[v] for k, v in parts.items()} if classes else None
    return import_arrays({k: images[v] for k, v in parts.items()}, name, data_dir, split_labels,
                         classes or None, description=f"Imported from {folder}")


def require(module: str, package: str, extra: str = "experiments"):
    """``import module``, or a ValueError naming the package and the tfcflow extra that installs it
    (one line for the CLI, instead of a ModuleNotFoundError traceback)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ValueError(f"{package} is not installed; it comes with tfcflow's {extra!r} extra: "
                         f"pip install 'tfcflow[{extra}]'") from None


# colour photos bundled with scikit-image; the last two (coffee, a cat) are the default held-out photos
SKIMAGE_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "coffee", "chelsea")


def skimage_photo_patches(names: Sequence[str] = SKIMAGE_PHOTOS, patch_size: int = 32, stride: int = 16,
                          downscale: int = 4) -> np.ndarray:
    """Real colour photo patches from scikit-image's bundled images (no download): each image is
    area-downscaled by ``downscale`` and cut into ``patch_size`` patches every ``stride`` pixels.
    Returns uint8 ``[N, patch_size, patch_size, 3]`` (images in the order of ``names``)."""
    import tensorflow as tf

    skimage_data = require("skimage.data", "scikit-image")

    out = []
    for name in names:
        img = getattr(skimage_data, name)()[..., :3]
        h, w = img.shape[0] // downscale, img.shape[1] // downscale
        img = tf.cast(tf.round(tf.image.resize(img, (h, w), method="area")), tf.uint8).numpy()
        for i in range(0, h - patch_size + 1, stride):
            for j in range(0, w - patch_size + 1, stride):
                out.append(img[i:i + patch_size, j:j + patch_size])
    return np.stack(out)


def store_skimage_patches(name: str, data_dir: str, patch_size: int = 32, stride: int = 8, downscale: int = 2,
                          test_images: int = 2) -> str:
    """TFDS dataset ``name`` of scikit-image photo patches: ``train`` from all photos but the last
    ``test_images`` (overlapping patches every ``stride`` pixels), ``test`` from the held-out photos
    (non-overlapping), so the test split shows unseen images."""
    names = list(SKIMAGE_PHOTOS)
    if not 0 < test_images < len(names):
        raise ValueError(f"test_images must be in 1..{len(names) - 1}, got {test_images}")
    train, test = names[:-test_images], names[-test_images:]
    splits = {"train": skimage_photo_patches(train, patch_size, stride, downscale),
              "test": skimage_photo_patches(test, patch_size, patch_size, downscale)}
    return import_arrays(splits, name, data_dir,
                         description=f"scikit-image photo patches; train: {train}, test: {test}")


# real colour photographs that ship with installed packages (no download), for whole-image work.
# scikit-image's: the held-out ones (coffee, a cat) are photos of subjects no training photo shows
SKIMAGE_TRAIN_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "motorcycle")
SKIMAGE_TEST_PHOTOS = ("coffee", "chelsea")
#: named sets for ``store_photos``: (train, test). "bundled" adds scikit-learn's two sample photos
#: (a temple in China, a flower) and matplotlib's portrait of Grace Hopper to scikit-image's
PHOTO_SETS = {"skimage": (SKIMAGE_TRAIN_PHOTOS, SKIMAGE_TEST_PHOTOS),
              "bundled": (SKIMAGE_TRAIN_PHOTOS + ("china", "flower", "grace_hopper"), SKIMAGE_TEST_PHOTOS)}


def bundled_photo(name: str) -> np.ndarray:
    """One bundled colour photo as uint8 ``[H, W, 3]``: a scikit-image image name, ``motorcycle``
    (the left view of scikit-image's stereo pair), ``china`` / ``flower`` (scikit-learn's sample
    images) or ``grace_hopper`` (matplotlib's sample data)."""
    if name in ("china", "flower"):
        datasets = require("sklearn.datasets", "scikit-learn")
        return np.asarray(datasets.load_sample_image(f"{name}.jpg"))[..., :3]
    if name == "grace_hopper":
        import tensorflow as tf
        matplotlib = require("matplotlib", "matplotlib")
        path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3).numpy()
    skimage_data = require("skimage.data", "scikit-image")
    if name == "motorcycle":  # the right view of the pair is the same scene
        return skimage_data.stereo_motorcycle()[0]
    if not hasattr(skimage_data, name):
        raise ValueError(f"unknown bundled photo {name!r}")
    return getattr(skimage_data, name)()[..., :3]


def store_photos(folder: str, train: Sequence[str] = SKIMAGE_TRAIN_PHOTOS,
                 test: Sequence[str] = SKIMAGE_TEST_PHOTOS) -> str:
    """Writes bundled colour photos (``bundled_photo`` names; ``PHOTO_SETS`` has named sets) as PNG
    files into ``folder/train`` and ``folder/test`` (an image folder for ``tfcflow.data.image_folder``;
    full resolution, no download). Refuses a folder that already holds files. Atomic: the files
    are written into a temporary sibling folder renamed to ``folder`` once complete, so a failure
    (a missing package, a full disk) leaves no half-written folder for a later run to mistake
    for the data."""
    import tensorflow as tf

    with new_folder(folder) as tmp:
        for split, names in (("train", train), ("test", test)):
            os.makedirs(os.path.join(tmp, split))
            for name in names:
                png = tf.io.encode_png(bundled_photo(name)).numpy()
                with open(os.path.join(tmp, split, f"{name}.png"), "wb") as f:
                    f.write(png)
    return folder


def check_new_folder(folder: str) -> None:
    """A ValueError unless ``folder`` is missing or an empty folder (prepared data is never
    overwritten)."""
    if os.path.isdir(folder) and os.listdir(folder) or os.path.isfile(folder):
        raise ValueError(f"{folder} already exists and is not empty; choose a new folder")


@contextlib.contextmanager
def new_folder(folder: str):
    """Yields a temporary sibling of ``folder`` to write into, renamed to ``folder`` when the block
    ends without an error and removed when it raises: a later run never finds a half-written
    folder. ``folder`` must be missing or empty (``check_new_folder``)."""
    import shutil
    import tempfile

    check_new_folder(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(folder))}-", dir=parent)
    try:
        yield tmp
        if os.path.isdir(folder):
            os.rmdir(folder)  # empty (checked above)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: the sub-folders of a photo source read as the held-out split (the Debian photo recipe names it eval/)
HELD_OUT_NAMES = ("test", "eval")
#: a block counts as flat when its pixels' standard deviation is below this (8-bit units)
FLAT_STD = 2.0


def _flat_share(image: np.ndarray, block: int = 32) -> float:
    """The share of ``block`` x ``block`` tiles of ``image`` whose pixel std is below ``FLAT_STD``."""
    h, w = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    if h == 0 or w == 0:
        return 0.0
    tiles = image[:h, :w].astype(np.float32).reshape(h // block, block, w // block, block, -1)
    return float((tiles.std(axis=(1, 3, 4)) < FLAT_STD).mean())


def prepare_photo_folder(source: str, folder: str, downscale: int = 2, method: str = "bicubic",
                         channels: int = 3, validation: int = 0, seed: int = 0) -> dict:
    """Prepares a folder of photographs for the image tasks (``data.source = "image_folder"``), the
    usual super-resolution preparation applied the same way to the training and the held-out photos.

    Each photo is decoded (a broken file is an error naming it), converted to ``channels``,
    centre-cropped to a multiple of ``downscale`` and downscaled by it with an antialiased filter
    (``method`` ``"bicubic"`` or ``"area"``): wallpapers and camera photos carry JPEG blocks, sensor
    noise and demosaicing artefacts at full resolution that a super-resolution model would learn as
    "detail"; a 2x antialiased reduction removes most of them. Nothing is random: the result is a
    function of the files.

    ``source``: a folder with ``train/`` and ``test/`` (or ``eval/``) sub-folders, written as
    ``folder/train`` and ``folder/test``; or a flat folder of photos, written as it is (the job's
    ``data.test_fraction`` then holds some out). ``folder`` must not exist or be empty; it appears
    only once complete (a temporary sibling renamed), so a failure leaves nothing a later run could
    mistake for the data. ``validation`` > 0 moves that many training photos (a permutation by
    ``seed`` of the sorted names) to ``folder/validation``: choices made after training (the
    sampling temperature) are made there, never on the held-out photos. The jobs' image folders
    read only ``train/`` and ``test/``. ``folder/manifest.json`` lists every photo: its source, both sizes and
    the share of flat 32 x 32 blocks (std below ``FLAT_STD``: sky, blur; training can skip flat
    patches, ``image_folder.patch_dataset(min_patch_std=...)``). Returns the manifest.
    """
    import json

    import tensorflow as tf

    from tfcflow import images as images_lib

    if not isinstance(downscale, (int, np.integer)) or isinstance(downscale, bool) or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    if method not in ("bicubic", "area"):
        raise ValueError(f"method must be 'bicubic' or 'area', got {method!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if isinstance(validation, bool) or not isinstance(validation, (int, np.integer)) or validation < 0:
        raise ValueError(f"validation must be an integer >= 0, got {validation!r}")
    if not os.path.isdir(source):
        raise ValueError(f"photo folder {source!r} does not exist")
    check_new_folder(folder)
    held_out = next((name for name in HELD_OUT_NAMES if os.path.isdir(os.path.join(source, name))), None)
    if os.path.isdir(os.path.join(source, "train")) and held_out:
        splits = {"train": os.path.join(source, "train"), "test": os.path.join(source, held_out)}
    else:
        splits = {"": source}
    listed = {}
    for split, path in splits.items():
        files, _ = images_lib.list_images([path], recursive=True)
        if not files:
            raise ValueError(f"no images ({', '.join(images_lib.IMAGE_EXTENSIONS)}) found in {path!r}")
        listed[split] = files
    if validation:
        if "train" not in listed:  # a flat folder: the jobs hold out data.test_fraction of what is written
            raise ValueError("validation needs a source with train/ and test/ (or eval/) sub-folders")
        if validation >= len(listed["train"]):
            raise ValueError(f"validation={validation} would leave no training photo (there are "
                             f"{len(listed['train'])})")
        order = np.random.default_rng(seed).permutation(len(listed["train"]))
        chosen = {listed["train"][i] for i in order[:validation]}
        listed["validation"] = sorted(chosen)
        listed["train"] = [f for f in listed["train"] if f not in chosen]
        splits["validation"] = splits["train"]
    manifest = {"source": os.path.abspath(source), "downscale": int(downscale), "method": method,
                "channels": channels, "validation": int(validation), "seed": int(seed), "photos": []}
    with new_folder(folder) as tmp:
        for split, files in listed.items():
            os.makedirs(os.path.join(tmp, split), exist_ok=True)
            names = set()
            for path in files:
                image = images_lib.convert_channels(images_lib.read_image(path), channels, path)
                source_size = [int(v) for v in image.shape[:2]]
                h, w = image.shape[0] // downscale * downscale, image.shape[1] // downscale * downscale
                if h == 0 or w == 0:
                    raise ValueError(f"{path}: {image.shape[0]}x{image.shape[1]} is smaller than downscale "
                                     f"{downscale}")
                top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
                image = image[top:top + h, left:left + w]
                if downscale > 1:
                    small = tf.image.resize(image.astype(np.float32), (h // downscale, w // downscale),
                                            method=method, antialias=True)
                    image = np.clip(np.round(small.numpy()), 0, 255).astype(np.uint8)
                name = os.path.splitext(os.path.relpath(path, splits[split]))[0].replace(os.sep, "_")
                if name in names:  # a.jpg and a.png in one folder
                    name = os.path.relpath(path, splits[split]).replace(os.sep, "_").replace(".", "_")
                names.add(name)
                with open(os.path.join(tmp, split, name + ".png"), "wb") as f:
                    f.write(tf.io.encode_png(image).numpy())
                manifest["photos"].append({"split": split or None, "file": os.path.join(split, name + ".png"),
                                           "source": os.path.relpath(path, source),
                                           "source_size": source_size,
                                           "size": [int(v) for v in image.shape[:2]],
                                           "flat_share": round(_flat_share(image), 4)})
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
    return manifest
