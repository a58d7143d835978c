"""Session-wide test setup.

- The CPU is split into 2 logical devices before TensorFlow initializes, so MirroredStrategy tests
  have 2 replicas on this CPU-only machine (every other test runs on the first device as usual).
- every test starts from a seed of its own id (``pytest_runtest_setup``).
- ``mnist_data_dir``: the real MNIST from ../shared/data/mnist, prepared once per session through
  TFDS's own mnist builder into a temporary data_dir (set TFCFLOW_TEST_DATA_DIR to reuse one).
"""
import os
import zlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfcflow.distribute import use_logical_cpus  # noqa: E402

use_logical_cpus(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_SOURCE = os.environ.get("TFCFLOW_MNIST_SOURCE", os.path.join(ROOT, "..", "shared", "data", "mnist"))


# The suite runs in 2 workers that take whole files (--dist loadfile) in collection order: the
# longest files go first, so that the last files handed out are short and neither worker idles
# long at the end (longest-first scheduling).
LONGEST_FIRST = (  # by measured file times (2026-12-03, 045bbb0; test_ensemble moved up later that day)
    "tests/test_export.py", "tests/test_execution.py", "tests/inference/test_npe.py", "tests/test_tutorials.py",
    "tests/training/test_photo_job.py",
    "tests/training/test_image_jobs.py", "tests/bench/test_bench_smoke.py", "tests/test_distribute.py",
    "tests/test_trainer.py", "tests/test_sample_cli.py", "tests/test_bad_inputs_cli.py",
    "tests/bench/test_equal_time.py",
    "tests/bench/test_image_size_scaling.py", "tests/bench/test_ab_trees.py", "tests/models/test_vector_flow.py",
    "tests/models/test_any_resolution.py", "tests/models/test_ensemble.py", "tests/models/test_multiscale_flow.py",
    "tests/test_optim.py", "tests/bench/test_sbi_benchmark.py", "tests/training/test_sbi_job.py",
    "tests/models/test_image_models.py", "tests/test_diagnostics.py", "tests/models/test_residual.py")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Seeds Python, NumPy, TensorFlow and Keras from the test's id before its fixtures are built.
    Keras initializers without a seed draw from the global generator, so without this a model's
    initial weights depended on which tests the worker had run before (a tiny label encoder could
    come out with every ReLU dead, and a gradient test then failed on one run in many)."""
    import keras
    keras.utils.set_random_seed(zlib.crc32(item.nodeid.encode()) % 2 ** 31)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: files keep their order


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    from tfcflow.data.prepare import prepare_mnist

    data_dir = os.environ.get("TFCFLOW_TEST_DATA_DIR") or str(tmp_path_factory.mktemp("tfds"))
    if not os.path.exists(os.path.join(data_dir, "mnist")):
        prepare_mnist(MNIST_SOURCE, data_dir)
    return data_dir
