"""Training on patches of a folder of images (PNG / JPEG, any sizes), for the image tasks.

``patch_dataset(folder, task, patch_size, batch_size, seed, ...)`` yields endless batches of
``(target uint8 [B, P, P, C], condition)``: each example is a random ``P x P`` crop of a random
training image (uniform over images, then over the crop positions inside it), randomly flipped
(``flips``; ``'dihedral'`` adds transposes: the 8 symmetries of the square), optionally taken from
the image area-downscaled by a random factor in ``scales`` (more content per patch and new scales
of texture from few images: SR training sets are augmented this way), and its condition is
``tfcflow.data.tasks.make_condition`` of the patch (super-resolution: the area-downsampled patch;
colorization: its luminance; inpainting: the patch with a random rectangle, or the central square,
masked out).

Determinism: example ``j`` (batch ``j // B``) is drawn from the stateless seed ``(seed, j)`` only;
no state carries from one batch to the next. The same arguments give the same batches on any
machine, and ``patch_dataset(...).skip(k)`` (or the cheaper ``start_batch=k``) yields exactly the
batches ``k, k + 1, ...`` of a fresh pipeline: a resumed run continues the same stream.

``whole_images(folder, task, factor, ...)`` serves the held-out images whole, one per batch (each
its own size, centre-cropped to a multiple of ``multiple`` and of the super-resolution factor),
with deterministic conditions: for evaluation.

Held-out images: the sub-folders ``train/`` and ``test/`` when ``folder`` has both; otherwise a
``test_fraction`` of the files (a permutation by ``split_seed`` of the sorted names, at least one
file when the fraction is > 0 and there are two or more). Both functions must be given the same
``test_fraction`` and ``split_seed`` (``split_files`` lists the two parts).

Images are decoded once and kept in memory (uint8); all are converted to ``channels`` (default:
RGB if any image is colour, else grayscale; alpha is dropped). A file that cannot be decoded, or
one smaller than a patch, is an error naming it.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfcflow import _checks, _random, images as images_lib
from tfcflow.data import tasks
from tfcflow.data.options import FLIPS, check_scales

PATCH_TASKS = ("super_resolution", "inpainting", "colorization")
#: how many times a flat patch is drawn again (``patch_dataset(min_patch_std=...)``)
FLAT_REDRAWS = 8


def image_files(folder: str) -> List[str]:
    """Image files under ``folder`` (recursively, sorted; hidden files and folders skipped)."""
    if not os.path.isdir(folder):
        raise ValueError(f"image folder {folder!r} does not exist")
    files, _ = images_lib.list_images([folder], recursive=True)
    if not files:
        raise ValueError(f"no images ({', '.join(images_lib.IMAGE_EXTENSIONS)}) found in {folder!r}")
    return files


def split_files(folder: str, test_fraction: float = 0.1, split_seed: int = 0) -> Dict[str, List[str]]:
    """``{'train': [...], 'test': [...]}``: ``folder/train`` and ``folder/test`` when both exist,
    else a seeded ``test_fraction`` of the sorted files (see the module docstring)."""
    train_dir, test_dir = os.path.join(folder, "train"), os.path.join(folder, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        return {"train": image_files(train_dir), "test": image_files(test_dir)}
    _checks.check_fraction(test_fraction, "test_fraction")
    files = image_files(folder)
    n_test = int(round(len(files) * test_fraction))
    if test_fraction > 0 and n_test == 0 and len(files) > 1:
        n_test = 1
    order = np.random.default_rng(split_seed).permutation(len(files))
    test = sorted(files[i] for i in order[:n_test])
    held_out = set(test)
    return {"train": [f for f in files if f not in held_out], "test": test}


def load_images(files: Sequence[str], channels: Optional[int] = None) -> List[np.ndarray]:
    """Decodes ``files`` (``ImageError`` naming a broken one) into uint8 ``[H, W, channels]``."""
    raw = [images_lib.read_image(f) for f in files]
    if channels is None:
        channels = 3 if any(im.shape[-1] >= 3 for im in raw) else 1
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return [images_lib.convert_channels(im, channels, f) for im, f in zip(raw, files)]


def _check_task(task, factor, downsample_method, mask, flips=None):
    if task not in PATCH_TASKS:
        raise ValueError(f"task must be one of {PATCH_TASKS} for an image folder, got {task!r}")
    if task == "super_resolution" and (not isinstance(factor, (int, np.integer)) or factor < 1):
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if downsample_method not in ("area", "bicubic"):
        raise ValueError(f"downsample_method must be 'area' or 'bicubic', got {downsample_method!r}")
    if mask not in ("central", "random"):
        raise ValueError(f"mask must be 'central' or 'random', got {mask!r}")
    if flips is not None and flips not in FLIPS:
        raise ValueError(f"flips must be one of {FLIPS}, got {flips!r}")


def _check_colour(task, images, files):
    if task == "colorization" and images and images[0].shape[-1] != 3:
        raise ValueError(f"colorization needs RGB images; {files[0]} (and the others) are grayscale")


def example_seed(seed: int, index) -> tf.Tensor:
    """The stateless ``[2]`` seed of example ``index`` (an int64 scalar) of stream ``seed``."""
    lo_hi = tf.bitcast(tf.cast(index, tf.int64), tf.int32)  # [2]: the index's low and high words
    return tf.stack([lo_hi[0], tf.bitwise.bitwise_xor(lo_hi[1], tf.constant(int(seed) & 0x7FFFFFFF, tf.int32))])


def patch_dataset(folder: str, task: str, patch_size: int, batch_size: int, seed: int, factor: int = 4, *,
                  downsample_method: str = "area", mask: str = "random", flips: str = "horizontal",
                  channels: Optional[int] = None, test_fraction: float = 0.1, split_seed: int = 0,
                  start_batch: int = 0, scales: Optional[Sequence[float]] = None,
                  min_patch_std: float = 0.0) -> tf.data.Dataset:
    """Endless batches ``(target uint8 [B, P, P, C], condition)`` of random patches of the training
    images of ``folder`` (see the module docstring).

    Args:
      task: ``'super_resolution'`` (``factor`` must divide ``patch_size``), ``'colorization'`` or
        ``'inpainting'`` (``mask``: ``'random'`` rectangles or the ``'central'`` square).
      flips: ``'horizontal'`` (default), ``'both'`` (also upside down), ``'dihedral'`` (also
        transposed) or ``'none'``.
      scales: ``(min, max)`` in (0, 1]: each patch is cut from its image area-downscaled by a factor
        ``s`` uniform in ``[min, max]`` (a ``ceil(P / s)`` crop resized to ``P``; at most the
        image's shorter side); None (default): full resolution only.
      start_batch: begin at batch ``k`` (the same as ``.skip(k)``, without computing the skipped
        batches).
      min_patch_std: a patch whose pixels' standard deviation (8-bit units) is below this is
        flat (sky, a blurred background: nothing to super-resolve) and is drawn again, up to
        ``FLAT_REDRAWS`` times from keys of its own (the last draw is kept); 0 (default): every
        draw is kept, the stream of earlier versions.
    """
    _check_task(task, factor, downsample_method, mask, flips)
    scales = check_scales(scales)
    if isinstance(min_patch_std, bool) or not isinstance(min_patch_std, (int, float)) or min_patch_std < 0:
        raise ValueError(f"min_patch_std must be a number >= 0, got {min_patch_std!r}")
    p = int(patch_size)
    if p < 1 or batch_size < 1:
        raise ValueError(f"patch_size and batch_size must be >= 1, got {patch_size} and {batch_size}")
    if task == "super_resolution" and p % factor:
        raise ValueError(f"super-resolution factor {factor} does not divide patch_size {p}")
    files = split_files(folder, test_fraction, split_seed)["train"]
    if not files:
        raise ValueError(f"no training images left in {folder!r} (test_fraction={test_fraction})")
    images = load_images(files, channels)
    _check_colour(task, images, files)
    for f, im in zip(files, images):
        if im.shape[0] < p or im.shape[1] < p:
            raise ValueError(f"{f}: {im.shape[0]}x{im.shape[1]} is smaller than patch_size {p}")
    c = images[0].shape[-1]
    sizes = np.array([im.shape[0] * im.shape[1] * c for im in images], np.int64)
    offsets = tf.constant(np.concatenate([[0], np.cumsum(sizes)[:-1]]), tf.int64)
    heights = tf.constant([im.shape[0] for im in images], tf.int32)
    widths = tf.constant([im.shape[1] for im in images], tf.int32)
    pixels = tf.constant(np.concatenate([im.ravel() for im in images]))
    n = len(images)

    def draw(key):
        """One flipped patch of a random image, from ``key``."""
        u = _random.uniform([5], key)
        i = tf.minimum(tf.cast(u[0] * n, tf.int32), n - 1)
        h, w = heights[i], widths[i]
        # the options' draws come from a key of their own, so the default stream stays as it was
        v = _random.uniform([2], _random.fold_in_tensor(key, 1)) if scales or flips == "dihedral" else None
        q = p  # the crop's side before resizing
        if scales:
            s = scales[0] + (scales[1] - scales[0]) * v[0]
            q = tf.minimum(tf.cast(tf.math.ceil(p / s), tf.int32), tf.minimum(h, w))
        top = tf.minimum(tf.cast(u[1] * tf.cast(h - q + 1, tf.float32), tf.int32), h - q)
        left = tf.minimum(tf.cast(u[2] * tf.cast(w - q + 1, tf.float32), tf.int32), w - q)
        size = tf.cast(h * w * c, tf.int64)
        image = tf.reshape(tf.slice(pixels, offsets[i:i + 1], tf.reshape(size, [1])), tf.stack([h, w, c]))
        patch = image[top:top + q, left:left + q]
        if scales:
            patch = tf.cast(tf.round(tf.image.resize(patch, [p, p], method="area")), tf.uint8)
        patch = tf.ensure_shape(patch, [p, p, c])
        if flips != "none":
            patch = tf.where(u[3] < 0.5, tf.reverse(patch, [1]), patch)
        if flips in ("both", "dihedral"):
            patch = tf.where(u[4] < 0.5, tf.reverse(patch, [0]), patch)
        if flips == "dihedral":
            patch = tf.where(v[1] < 0.5, tf.transpose(patch, [1, 0, 2]), patch)
        return patch

    def flat(patch):
        return tf.math.reduce_std(tf.cast(patch, tf.float32)) < min_patch_std

    def example(j):
        keys = _random.split(example_seed(seed, j), 2)
        patch = draw(keys[0])
        if min_patch_std > 0:  # redraws from keys of their own: draw 0 is the default stream's
            def redraw(t, patch):
                return t + 1, draw(_random.fold_in_tensor(keys[0], 100 + t))
            _, patch = tf.while_loop(lambda t, patch: tf.logical_and(t <= FLAT_REDRAWS, flat(patch)), redraw,
                                     (tf.constant(1), patch))
        cond = tasks.make_condition(task, patch, factor=factor, downsample_method=downsample_method, mask=mask,
                                    mask_seed=keys[1])
        return patch, cond

    ds = tf.data.Dataset.range(int(start_batch) * batch_size, np.iinfo(np.int64).max)
    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def whole_images(folder: str, task: str, factor: int = 4, *, split: str = "test", multiple: int = 1,
                 mask: str = "random", seed: int = 0, downsample_method: str = "area",
                 channels: Optional[int] = None, test_fraction: float = 0.1,
                 split_seed: int = 0) -> tf.data.Dataset:
    """The ``split`` images (``'test'``: held out; ``'train'``; ``'all'``) whole, one per batch:
    ``(target uint8 [1, H, W, C], condition [1, ...])`` in file order. Each image is centre-cropped
    to a multiple of ``multiple`` (e.g. ``2**levels`` of a model) and, for super-resolution, of
    ``factor``; inpainting masks are drawn from ``(seed, image index)`` (or the central square)."""
    _check_task(task, factor, downsample_method, mask)
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    parts = split_files(folder, test_fraction, split_seed)
    files = parts["train"] + parts["test"] if split == "all" else parts[split]
    if not files:
        raise ValueError(f"no {split} images in {folder!r} (test_fraction={test_fraction}); hold some out with "
                         f"test_fraction > 0 or a {folder}/test folder")
    images = load_images(files, channels)
    _check_colour(task, images, files)
    m = int(multiple)
    if task == "super_resolution":
        m = m * int(factor) // math.gcd(m, int(factor))
    pairs = []
    for index, (f, im) in enumerate(zip(files, images)):
        h, w = (im.shape[0] // m) * m, (im.shape[1] // m) * m
        if not h or not w:
            raise ValueError(f"{f}: {im.shape[0]}x{im.shape[1]} is smaller than the size multiple {m}")
        top, left = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
        target = tf.constant(im[top:top + h, left:left + w])
        cond = tasks.make_condition(task, target, factor=factor, downsample_method=downsample_method, mask=mask,
                                    mask_seed=tf.constant([int(seed) & 0x7FFFFFFF, index], tf.int32))
        pairs.append((target.numpy()[None], cond.numpy()[None]))
    c = images[0].shape[-1]
    cond_c = pairs[0][1].shape[-1]
    signature = (tf.TensorSpec([1, None, None, c], tf.uint8), tf.TensorSpec([1, None, None, cond_c], tf.uint8))
    ds = tf.data.Dataset.from_generator(lambda: iter(pairs), output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(len(pairs)))  # a known length: Keras evaluates it whole
