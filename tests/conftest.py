"""Session-wide test setup.

- The CPU is split into 2 logical devices before TensorFlow initializes, so MirroredStrategy tests
  have 2 replicas on this CPU-only machine (every other test runs on the first device as usual).
- ``mnist_data_dir``: the real MNIST from ../shared/data/mnist, prepared once per session through
  TFDS's own mnist builder into a temporary data_dir (set TFCFLOW_TEST_DATA_DIR to reuse one).
"""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfcflow.distribute import use_logical_cpus  # noqa: E402

use_logical_cpus(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_SOURCE = os.environ.get("TFCFLOW_MNIST_SOURCE", os.path.join(ROOT, "..", "shared", "data", "mnist"))


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    from tfcflow.data.prepare import prepare_mnist

    data_dir = os.environ.get("TFCFLOW_TEST_DATA_DIR") or str(tmp_path_factory.mktemp("tfds"))
    if not os.path.exists(os.path.join(data_dir, "mnist")):
        prepare_mnist(MNIST_SOURCE, data_dir)
    return data_dir
