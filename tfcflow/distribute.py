"""Strategy selection for training: one place that knows each strategy's constraints.

- ``default``: no distribution (TF's default strategy).
- ``one_device``: ``OneDeviceStrategy`` on the first GPU, else the CPU.
- ``mirrored``: ``MirroredStrategy`` over all local GPUs (or the logical CPUs made with
  ``use_logical_cpus``, which is how the 2-replica tests run on a CPU-only machine).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` from the ``TF_CONFIG`` environment variable;
  create it before any other TensorFlow op in the process.
- ``tpu``: ``TPUStrategy`` on the TPU named by ``tpu`` (``""`` = the local / Colab TPU).
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


def use_logical_cpus(count: int) -> None:
    """Splits the CPU into ``count`` logical devices (must run before TensorFlow initializes)."""
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)


def make_strategy(name: str = "default", tpu: str = "") -> tf.distribute.Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # Logical CPUs: the default CPU cross-device ops are collective ops whose per-device
        # instance order can differ between replicas at run time (observed: "Shape mismatch in the
        # collective instance" on the second step); a reduction through one device has no order.
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' needs the TF_CONFIG environment variable "
                             "(cluster spec and this worker's task); see the README")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief() -> bool:
    """True on the process that writes checkpoints, logs and results: the "chief" task if the
    cluster has one, else worker 0 (or a single process without TF_CONFIG)."""
    cfg = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = cfg.get("task", {})
    if "chief" in cfg.get("cluster", {}):
        return task.get("type") == "chief"
    return int(task.get("index", 0)) == 0
