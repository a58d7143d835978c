"""The equal-time benchmark's smoke mode (bench/equal_time): the driver runs the tfcflow
contestants of both parts (no PyTorch needed) for a few seconds on real MNIST and writes results
and a summary. No quality assertion: only that training ran and the test bits/dim are sane."""
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "equal_time"))


def _mnist_present() -> bool:
    import protocol

    try:
        protocol.mnist_dir()
        return True
    except FileNotFoundError:
        return False


def test_protocol_reads_mnist_pads_it_and_makes_the_condition():
    import numpy as np
    import protocol

    if not _mnist_present():
        pytest.skip("MNIST IDX files not present")
    train, test = protocol.load_mnist()
    assert train.shape == (60000, 32, 32, 1) and test.shape == (10000, 32, 32, 1) and train.dtype == np.uint8
    # the padding: 2 rows / columns of zeros on every side
    assert not train[:, :2].any() and not train[:, -2:].any()
    assert not train[:, :, :2].any() and not test[:, :, -2:].any()
    low = protocol.low_resolution(test[:3])
    assert low.shape == (3, 8, 8, 1) and low.dtype == np.uint8
    assert low[0, 3, 3, 0] == np.rint(test[0, 12:16, 12:16, 0].mean())
    # log p(y) = 0 on [-0.5, 0.5)^D (the uniform density) is 8 bits/dim: the -D log 256 term
    assert protocol.bits_per_dim(np.zeros(2), 1024) == pytest.approx([8.0, 8.0])


def test_smoke_run_of_the_tfcflow_contestants(tmp_path):
    if not _mnist_present():
        pytest.skip("MNIST IDX files not present")
    import run

    out = str(tmp_path)
    results = run.main(["--out", out, "--smoke", "--seconds", "2", "--only", "tfcflow"])
    for part in ("mnist", "sr"):
        with open(os.path.join(out, f"{part}_tfcflow.json")) as f:
            r = json.load(f)
        assert r == results[f"{part}_tfcflow"]
        assert r["steps"] > 1 and r["timed_steps"] == r["steps"] - 1 and r["train_s"] >= 2.0
        assert math.isfinite(r["test_bpd"]) and 0.0 < r["test_bpd"] < 9.0, r["test_bpd"]
        assert r["warmup_s"] > 0 and r["test_digits"] == 200
        # the curve: the warm-up point, the budget's checkpoints that the steps reached, the final
        assert r["curve"][0]["steps"] == 1 and r["curve"][-1]["train_s"] == r["train_s"]
        assert r["curve"][-1]["test_bpd_subset"] < r["curve"][0]["test_bpd_subset"]  # it trained
    text = open(os.path.join(out, "summary.md")).read()
    assert "| tfcflow |" in text and "not decided" in text  # the peers did not run
    # resumable: a second invocation finds the results and runs nothing
    again = run.main(["--out", out, "--smoke", "--seconds", "2", "--only", "tfcflow"])
    assert again["mnist_tfcflow"]["finished"] == results["mnist_tfcflow"]["finished"]


def test_log_linear_eta():
    import run

    curve = [dict(train_s=0.0, test_bpd_subset=8.0)] + [
        dict(train_s=t, test_bpd_subset=3.0 - 0.5 * math.log(t / 100)) for t in (100, 200, 400)]
    # 3 - 0.5 ln(t / 100) = 1.05 at t = 100 e^3.9
    assert run.log_linear_eta(curve, 1.05) == pytest.approx(100 * math.exp(3.9))
    assert run.log_linear_eta([dict(train_s=1, test_bpd_subset=2), dict(train_s=2, test_bpd_subset=2.1)], 1.0) is None
