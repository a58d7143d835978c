"""The training jobs' data sources, by name (a job config's ``data.source``).

Each source turns a ``SourceRequest`` (the config's ``data`` section with its paths resolved, the
seed, the batch sizes) into a ``DataSource``: an endless stream of training batches ``(x, c)``,
the held-out batches and the shapes the model is built for. A new source is one function
registered with ``@register("name")``; the job, the evaluation and ``tfcflow evaluate`` find it
here. Nothing in this module reads the job config's defaults or validation (``tfcflow.config``):
problems are ``ValueError``s that start with the config key they are about.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

SOURCES: dict[str, Callable[["SourceRequest"], "DataSource"]] = {}


def register(name: str):
    """Registers ``fn(request) -> DataSource`` as the source ``name``."""
    def wrap(fn):
        SOURCES[name] = fn
        return fn
    return wrap


@dataclasses.dataclass(frozen=True)
class SourceRequest:
    """What a source is built from.

    ``data``: the job config's ``data`` section, its paths (``data_dir``, ``folder``,
    ``prepare_mnist_from``) already absolute or None; ``size_multiple``: held-out whole images are
    cropped to a multiple of it (``2**levels`` of the model); ``functions``: the simulator
    source's ``() -> (prior, simulator)``.
    """

    data: dict
    seed: int
    batch_size: int
    eval_batch_size: int
    max_examples: Optional[int] = None
    size_multiple: int = 1
    functions: Optional[Callable[[], tuple]] = None


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A built source. ``train``: repeated batches ``(x [batch, *event], c [batch, *condition])``
    in a fixed order given the seed (a resumed run skips what it consumed); ``test``: the held-out
    batches (image folders: one whole image per batch); ``shapes``: ``{event_shape,
    condition_shape}``; ``test_arrays``: the held-out arrays of the vector sources;
    ``patches``: an image folder's ``(size, batch, seed) -> stream`` of training patches."""

    train: Any
    test: Any
    shapes: dict
    test_arrays: Optional[tuple] = None
    patches: Optional[Callable] = None


def build(request: SourceRequest) -> DataSource:
    """The source ``request.data["source"]`` built; ValueError for an unknown name."""
    name = request.data["source"]
    if name not in SOURCES:
        raise ValueError(f"data.source: unknown source {name!r}; one of {sorted(SOURCES)}")
    return SOURCES[name](request)


def tfds_data_dir(configured: Optional[str]) -> str:
    """The TFDS data_dir: the configured one, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return configured or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


@register("gaussian_mixture")
def gaussian_mixture_source(r: SourceRequest) -> DataSource:
    """The 2-D mixture of 8 Gaussians given its one-hot component (data/gaussian_mixture.py)."""
    import tensorflow as tf
    from tfcflow.data import gaussian_mixture as gm

    d = r.data
    x, _, onehot = gm.sample(d["train_size"], seed=r.seed, sigma=d["sigma"])
    test_arrays = gm.sample(d["test_size"], seed=r.seed + 10_000, sigma=d["sigma"])
    train = (tf.data.Dataset.from_tensor_slices((x, onehot))
             .shuffle(min(len(x), 200_000), seed=r.seed, reshuffle_each_iteration=True)
             .repeat().batch(r.batch_size, drop_remainder=True))
    xt, _, ct = test_arrays
    test = tf.data.Dataset.from_tensor_slices((xt, ct)).batch(r.eval_batch_size)
    return DataSource(train, test, dict(event_shape=[2], condition_shape=[8]), test_arrays=test_arrays)


@register("simulator")
def simulator_source(r: SourceRequest) -> DataSource:
    """Training batches from the simulator (a fixed budget simulated once, or fresh every batch)
    and held-out simulations of another seed (data/simulator.py)."""
    import tensorflow as tf
    from tfcflow.data import simulator as sim

    d = r.data
    prior, simulator = r.functions()
    try:
        train = sim.simulation_dataset(prior, simulator, batch_size=r.batch_size, seed=r.seed,
                                       budget=d["simulations"], on_nonfinite=d["on_nonfinite"])
        test_arrays = sim.simulated_arrays(prior, simulator, d["test_simulations"], seed=r.seed + 10_000,
                                           on_nonfinite=d["on_nonfinite"])
    except ValueError as e:
        raise ValueError(f"data: {e}") from None
    xt, yt = test_arrays
    test = tf.data.Dataset.from_tensor_slices((xt, yt)).batch(r.eval_batch_size)
    shapes = dict(event_shape=[int(xt.shape[1])], condition_shape=[int(n) for n in yt.shape[1:]])
    return DataSource(train, test, shapes, test_arrays=test_arrays)


@register("image_folder")
def image_folder_source(r: SourceRequest) -> DataSource:
    """Random patches of the training images (flips, the task applied per patch) and the held-out
    images whole, one per batch (data/image_folder.py)."""
    from tfcflow.data import image_folder, tasks

    d = r.data
    folder = d["folder"]
    if d["prepare_photos"] and not os.path.exists(folder):
        from tfcflow.data.prepare import PHOTO_SETS, store_photos
        store_photos(folder, *PHOTO_SETS[d["prepare_photos"]])
    common = dict(downsample_method=d["downsample"], mask=d["mask"], test_fraction=d["test_fraction"],
                  split_seed=d["split_seed"])

    def patches(size, batch, stream_seed):
        return image_folder.patch_dataset(folder, d["task"], size, batch, stream_seed, d["factor"], flips=d["flips"],
                                          scales=d["scales"], min_patch_std=d.get("min_patch_std", 0.0), **common)

    try:
        train = patches(d["patch_size"], r.batch_size, r.seed)
        test = image_folder.whole_images(folder, d["task"], d["factor"], split="test", multiple=r.size_multiple,
                                         seed=r.seed, **common)
    except ValueError as e:
        raise ValueError(f"data: {e}") from None
    channels = int(train.element_spec[0].shape[-1])
    p = d["patch_size"]
    shapes = dict(event_shape=[p, p, channels],
                  condition_shape=list(tasks.condition_shape(d["task"], (p, p, channels), d["factor"])))
    return DataSource(train, test, shapes, patches=patches)


@register("tfds")
def tfds_source(r: SourceRequest) -> DataSource:
    """A TFDS image dataset with the task applied per example (data/tasks.py); MNIST is imported
    from ``prepare_mnist_from`` and scikit-image's photos stored as a dataset when missing."""
    from tfcflow.data import tasks

    d = r.data
    data_dir = tfds_data_dir(d["data_dir"])
    missing = not os.path.exists(os.path.join(data_dir, d["dataset"]))
    if d["prepare_mnist_from"] and d["dataset"] == "mnist" and missing:
        from tfcflow.data.prepare import prepare_mnist
        prepare_mnist(d["prepare_mnist_from"], data_dir)
    if d["prepare_skimage_patches"] and missing:
        from tfcflow.data.prepare import store_skimage_patches
        store_skimage_patches(d["dataset"], data_dir)
    try:
        info = tasks.dataset_info(d["dataset"], data_dir)
    except ValueError as e:
        raise ValueError(f"data.dataset: {e}") from None
    common = dict(data_dir=data_dir, factor=d["factor"], downsample_method=d["downsample"], mask=d["mask"])
    try:
        train = tasks.task_dataset(d["dataset"], d["train_split"], d["task"], batch_size=r.batch_size, seed=r.seed,
                                   shuffle_buffer=d["shuffle_buffer"], repeat=True, drop_remainder=True, **common)
        test = tasks.task_dataset(d["dataset"], d["test_split"], d["task"], batch_size=r.eval_batch_size,
                                  shuffle=False, take=r.max_examples, **common)
        condition_shape = tasks.condition_shape(d["task"], info["image_shape"], d["factor"], info["num_classes"])
    except ValueError as e:
        raise ValueError(f"data: {e}") from None
    return DataSource(train, test, dict(event_shape=list(info["image_shape"]), condition_shape=list(condition_shape)))
