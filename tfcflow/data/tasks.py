"""(target, condition) pipelines for image-to-image tasks from any TFDS image dataset.

``task_dataset(name, split, task, ...)`` yields batches of ``(target, condition)``:

    ===================  ===========================  ==========================================================
    task                 target                       condition
    ===================  ===========================  ==========================================================
    super_resolution     uint8 ``[H, W, C]``          uint8 ``[H/f, W/f, C]``: area (or bicubic) downsampling
    inpainting           uint8 ``[H, W, C]``          uint8 ``[H, W, C+1]``: the masked image (hole = 0) and
                                                      the mask (255 = missing); a central ``H/2 x W/2`` square
                                                      or a random rectangle per example
    colorization         uint8 ``[H, W, 3]``          uint8 ``[H, W, 1]``: the luminance (ITU-R 601)
    class_conditional    uint8 ``[H, W, C]``          float32 one-hot ``[num_classes]``
    ===================  ===========================  ==========================================================

Shuffling (seeded), batching and prefetching are applied; with the same seed the pipeline yields
the same batches in the same order (random masks are drawn from per-example stateless seeds).
Datasets are read offline (``download=False``): prepare them first (``tfcflow data ...``).
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import tensorflow as tf

from tfcflow import _random

TASKS = ("super_resolution", "inpainting", "colorization", "class_conditional")


def _builder(name: str, data_dir: Optional[str]):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        raise ValueError(f"unknown TFDS dataset {name!r} (data_dir={data_dir!r}): "
                         f"{str(e).splitlines()[0]}") from None
    if not builder.is_prepared():
        raise ValueError(f"TFDS dataset {name!r} is not prepared in data_dir={str(builder.data_dir_root)!r}; this "
                         f"machine cannot download it: prepare it offline (e.g. `tfcflow data prepare-mnist "
                         f"--source DIR --data-dir DIR` or `tfcflow data import-folder ...`)")
    return builder


def image_feature(builder) -> str:
    """The name of the dataset's (single, or 'image') image feature."""
    import tensorflow_datasets as tfds

    feats = builder.info.features
    images = [k for k, f in feats.items() if isinstance(f, tfds.features.Image)]
    if "image" in images:
        return "image"
    if len(images) == 1:
        return images[0]
    if not images:
        raise ValueError(f"dataset {builder.name!r} has no image feature; its features are {sorted(feats)}")
    raise ValueError(f"dataset {builder.name!r} has several image features {images}; none is called 'image'")


def _check_split(builder, split: str) -> None:
    names = list(builder.info.splits)
    for part in re.split(r"\+", split):
        base = part.split("[")[0].strip()
        if base not in names:
            raise ValueError(f"unknown split {split!r} of dataset {builder.name!r}; its splits are {names}")


def dataset_info(name: str, data_dir: Optional[str] = None) -> dict:
    """``{'image_shape', 'num_classes', 'splits'}`` of a prepared TFDS image dataset."""
    builder = _builder(name, data_dir)
    key = image_feature(builder)
    feats = builder.info.features
    label = feats["label"] if "label" in feats else None
    return dict(image_shape=tuple(feats[key].shape), splits={k: v.num_examples for k, v in builder.info.splits.items()},
                num_classes=getattr(label, "num_classes", None))


def condition_shape(task: str, image_shape, factor: int = 4, num_classes: Optional[int] = None) -> tuple:
    """The per-example condition shape of ``task`` for targets of ``image_shape``."""
    h, w, c = image_shape
    if task == "super_resolution":
        return (h // factor, w // factor, c)
    if task == "inpainting":
        return (h, w, c + 1)
    if task == "colorization":
        return (h, w, 1)
    if task == "class_conditional":
        if not num_classes:
            raise ValueError("class_conditional needs a dataset with a 'label' ClassLabel feature")
        return (int(num_classes),)
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def central_mask(h: int, w: int) -> tf.Tensor:
    """1 inside the central ``h/2 x w/2`` square, else 0; ``[h, w, 1]`` float32."""
    m = np.zeros((h, w, 1), np.float32)
    m[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 1.0
    return tf.constant(m)


def random_mask(h: int, w: int, seed) -> tf.Tensor:
    """A random rectangle (sides h/4 .. h/2, anywhere inside) from a stateless ``[2]`` seed."""
    u = _random.uniform([4], seed)
    mh = tf.cast(tf.round(h / 4 + u[0] * (h / 4)), tf.int32)
    mw = tf.cast(tf.round(w / 4 + u[1] * (w / 4)), tf.int32)
    top = tf.cast(u[2] * tf.cast(h - mh, tf.float32), tf.int32)
    left = tf.cast(u[3] * tf.cast(w - mw, tf.float32), tf.int32)
    rows = tf.range(h)[:, None]
    cols = tf.range(w)[None, :]
    inside = (rows >= top) & (rows < top + mh) & (cols >= left) & (cols < left + mw)
    return tf.cast(inside, tf.float32)[..., None]


def downsample(image: tf.Tensor, factor: int, method: str = "area") -> tf.Tensor:
    """uint8 ``[..., H, W, C]`` -> uint8 ``[..., H/f, W/f, C]`` (area average or antialiased bicubic)."""
    h, w = image.shape[-3], image.shape[-2]
    small = tf.image.resize(tf.cast(image, tf.float32), (h // factor, w // factor), method=method, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(small), 0, 255), tf.uint8)


def make_condition(task: str, image: tf.Tensor, label=None, *, factor: int = 4, downsample_method: str = "area",
                   mask: str = "central", mask_seed=None, num_classes: Optional[int] = None):
    """The condition of one example (see module table)."""
    h, w = image.shape[-3], image.shape[-2]
    if task == "super_resolution":
        return downsample(image, factor, downsample_method)
    if task == "inpainting":
        m = central_mask(h, w) if mask == "central" else random_mask(h, w, mask_seed)
        masked = tf.cast(image, tf.float32) * (1.0 - m)
        return tf.cast(tf.concat([masked, 255.0 * m], axis=-1), tf.uint8)
    if task == "colorization":
        return tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)
    if task == "class_conditional":
        return tf.one_hot(label, num_classes, dtype=tf.float32)
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def task_dataset(name: str, split: str, task: str, *, data_dir: Optional[str] = None, batch_size: int = 64,
                 seed: int = 0, shuffle: bool = True, shuffle_buffer: int = 10_000, repeat: bool = False,
                 drop_remainder: bool = False, factor: int = 4, downsample_method: str = "area",
                 mask: str = "central", take: Optional[int] = None) -> tf.data.Dataset:
    """Batches of ``(target uint8 [B, H, W, C], condition)`` for ``task`` on TFDS dataset ``name``.

    Args:
      name, split: a prepared TFDS dataset and split (slicing such as ``'train[:10%]'`` works).
      task: one of ``TASKS``.
      factor, downsample_method: super-resolution factor (2, 4, ...) and ``'area'`` / ``'bicubic'``.
      mask: inpainting mask, ``'central'`` or ``'random'``.
      take: keep only the first ``take`` examples (before shuffling).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    if downsample_method not in ("area", "bicubic"):
        raise ValueError(f"downsample_method must be 'area' or 'bicubic', got {downsample_method!r}")
    if mask not in ("central", "random"):
        raise ValueError(f"mask must be 'central' or 'random', got {mask!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    builder = _builder(name, data_dir)
    _check_split(builder, split)
    key = image_feature(builder)
    shape = tuple(builder.info.features[key].shape)
    if None in shape:
        raise ValueError(f"dataset {name!r} has images of varying size {shape}; import it with a fixed "
                         f"image_size (tfcflow data import-folder --image-size N)")
    h, w, c = shape
    num_classes = None
    if task == "super_resolution" and (h % factor or w % factor):
        raise ValueError(f"super-resolution factor {factor} does not divide the image size {h}x{w}")
    if task == "colorization" and c != 3:
        raise ValueError(f"colorization needs RGB targets; dataset {name!r} has {c} channel(s)")
    if task == "class_conditional":
        label = builder.info.features["label"] if "label" in builder.info.features else None
        num_classes = getattr(label, "num_classes", None)
        if not num_classes:
            raise ValueError(f"class_conditional needs a 'label' ClassLabel feature; dataset {name!r} has "
                             f"{sorted(builder.info.features)}")

    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=1)
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
    if take:
        ds = ds.take(take)
    ds = ds.enumerate()

    def to_pair(index, example):
        image = example[key]
        mask_seed = tf.stack([tf.constant(seed, tf.int64), index])
        cond = make_condition(task, image, example.get("label"), factor=factor,
                              downsample_method=downsample_method, mask=mask, mask_seed=mask_seed,
                              num_classes=num_classes)
        return image, cond

    ds = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    if not repeat:
        # a one-pass (evaluation) iterator is short-lived, and tearing it down waits for the
        # autotuner's current sleep (its period doubles from 10 ms), up to the pass's own length
        options.autotune.enabled = False
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def condition_preview(task: str, condition: np.ndarray, image_shape) -> Optional[np.ndarray]:
    """Conditions as pictures at the target size, float in [0, 1] with the target's channels (for
    sample grids): the nearest-upsampled low-resolution image, the masked image, the grayscale image;
    None for class labels."""
    if task == "class_conditional":
        return None
    h, w, c = image_shape
    cond = np.asarray(condition, np.float32) / 255.0
    if task == "inpainting":
        cond = cond[..., :c]
    if cond.shape[1:3] != (h, w):
        cond = tf.image.resize(cond, (h, w), method="nearest").numpy()
    if cond.shape[-1] != c:
        cond = np.repeat(cond[..., :1], c, axis=-1)
    return cond
