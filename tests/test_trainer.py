"""The training job: resume after SIGKILL, divergence handling, config refusal, outputs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfcflow import trainer
from tfcflow.callbacks import TrainingDiverged
from tfcflow.config import ConfigError
from tests.helpers import checksums

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RCF_FAST = os.path.join(ROOT, "training", "gaussian_mixture", "rcf_fast.json")
# the full recipe (warmup, step decay, EMA, clipping) on the fast model, deterministic kernels
RECIPE = ["train.steps=300", "train.steps_per_epoch=50", "train.warmup_steps=60", "train.decay_gamma=0.9",
          "train.decay_interval=20", "train.ema=0.99", "train.clipnorm=5.0", "train.deterministic=true"]


def _cmd(out):
    args = [sys.executable, "-m", "tfcflow", "train", RCF_FAST, "--out", str(out)]
    for item in RECIPE:
        args += ["--set", item]
    return args


def _run(out):
    proc = subprocess.run(_cmd(out), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    reference = _run(tmp_path / "reference")
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    state = out / "checkpoints" / "checkpoint"
    deadline = time.time() + 240
    while time.time() < deadline and not (state.exists() and "ckpt-100" in state.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-epoch 3 (steps 101..150), possibly mid-write
    proc.wait()
    assert state.exists(), "the job never reached its second checkpoint"
    resumed = _run(out)
    assert resumed["resumed_from"] is not None and resumed["resumed_from"].endswith(("ckpt-100", "ckpt-150"))
    assert resumed["steps"] == reference["steps"] == 300
    # step counter, optimizer moments, EMA, schedule and data position all restored: bit-identical
    assert resumed["weights_sha256"] == reference["weights_sha256"]
    assert resumed["test_loss"] == reference["test_loss"]


def test_resume_with_a_conflicting_config_is_refused(tmp_path):
    trainer.train(RCF_FAST, str(tmp_path), ["train.steps=20", "train.steps_per_epoch=10"])
    before = checksums(tmp_path)
    assert any(k.startswith("checkpoints") for k in before)
    with pytest.raises(ConfigError, match=r"refusing to resume it with: model.depth: 4 -> 3"):
        trainer.train(RCF_FAST, str(tmp_path), ["train.steps=20", "train.steps_per_epoch=10", "model.depth=3"])
    # a bad value of a key that also conflicts: refused the same way, before anything is built
    with pytest.raises(ConfigError, match=r"refusing to resume it with: model.depth: 4 -> 0"):
        trainer.train(RCF_FAST, str(tmp_path), ["train.steps=20", "train.steps_per_epoch=10", "model.depth=0"])
    assert checksums(tmp_path) == before  # checkpoints, config.json, model.json: untouched
    # more steps is a legitimate continuation
    res = trainer.train(RCF_FAST, str(tmp_path), ["train.steps=30", "train.steps_per_epoch=10"])
    assert res["steps"] == 30 and res["resumed_from"].endswith("ckpt-20")
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["train"]["steps"] == 30


def test_a_failed_model_build_claims_no_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"^model.depth: must be an integer >= 1, got 0$"):
        trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1", "model.depth=0"])
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "model.json").exists()
    with pytest.raises(ConfigError, match=r"^model.coupling: scale must be one of .*got 'foo'$"):
        trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1",
                                                'model.coupling={"kind": "affine", "scale": "foo"}'])
    # the corrected command runs in the same folder
    res = trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1", "model.depth=2"])
    assert res["steps"] == 2 and res["resumed_from"] is None
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["model"]["depth"] == 2


def test_a_never_trained_folder_is_reused_with_another_config(tmp_path):
    # a run that stopped before its first checkpoint: config.json, no checkpoint
    with pytest.raises(TrainingDiverged):
        trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1", "data.sigma=1e30"])
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["data"]["sigma"] == 1e30
    res = trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1", "model.depth=2"])
    assert res["steps"] == 2 and res["resumed_from"] is None
    with open(tmp_path / "config.json") as f:
        saved = json.load(f)
    assert saved["data"]["sigma"] == 0.2 and saved["model"]["depth"] == 2  # the old config.json replaced


def test_a_run_folder_whose_config_cannot_be_read(tmp_path):
    trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1"])
    (tmp_path / "config.json").write_text("{")
    before = checksums(tmp_path)
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON.*refusing"):
        trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1"])
    assert checksums(tmp_path) == before


def test_divergence_stops_with_the_step_and_keeps_no_bad_checkpoint(tmp_path):
    # sigma = 1e30: finite data whose log-likelihood overflows at the first step
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 1: the loss is NaN or inf.*"
                                               r"last good checkpoint is None"):
        trainer.train(RCF_FAST, str(tmp_path), ["train.steps=20", "train.steps_per_epoch=10", "data.sigma=1e30"])
    assert not os.path.exists(tmp_path / "checkpoints" / "checkpoint")


def test_outputs_of_a_run(tmp_path):
    res = trainer.train(RCF_FAST, str(tmp_path), ["train.steps=20", "train.steps_per_epoch=10"])
    for name in ("config.json", "results.json", "posterior_samples.npz", "checkpoints/ckpt-20.index"):
        assert (tmp_path / name).exists(), name
    assert any(f.startswith("events") for _, _, files in os.walk(tmp_path / "logs") for f in files)
    assert np.isfinite(res["test_loss"]) and res["steps"] == 20 and len(res["weights_sha256"]) == 64


def test_sub_batches_job_trains_like_one_batch(tmp_path):
    # a fresh process (the thread pools are set before TensorFlow runs) against this process's run
    args = ["train.steps=20", "train.steps_per_epoch=10"]
    cmd = [sys.executable, "-m", "tfcflow", "train", RCF_FAST, "--out", str(tmp_path / "chains")]
    for item in args + ["train.sub_batches=2", "train.fused_steps=true", "train.optimizer=\"fused_adam\""]:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "chains" / "results.json") as f:
        chained = json.load(f)
    assert chained["execution"] == {"sub_batches": 2, "fused_steps": True, "jit_sampling": False}
    assert chained["threads"] == {"intra_op": 1, "inter_op": 2}
    one = trainer.train(RCF_FAST, str(tmp_path / "one"), args)
    assert one["execution"] == {"sub_batches": 1, "fused_steps": False, "jit_sampling": False}
    # the saved model config describes the model, not how the machine ran it
    with open(tmp_path / "chains" / "model.json") as f, open(tmp_path / "one" / "model.json") as g:
        chained_spec, one_spec = json.load(f), json.load(g)
    for spec in (chained_spec, one_spec):
        spec["config"].pop("name")  # Keras numbers the names of models built in one process
    assert chained_spec == one_spec
    np.testing.assert_allclose(chained["history"]["loss"], one["history"]["loss"], rtol=1e-4)
    np.testing.assert_allclose(chained["test_loss"], one["test_loss"], rtol=1e-4)


def test_a_run_saved_before_model_json_loads_without_setting_up_its_data(tmp_path, monkeypatch):
    trainer.train(RCF_FAST, str(tmp_path), ["train.steps=2", "train.steps_per_epoch=1"])
    model = trainer.load_run(str(tmp_path))
    os.remove(tmp_path / "model.json")  # as runs written before model.json existed
    monkeypatch.setattr(trainer.Job, "_setup_data", lambda self: pytest.fail("load_run set up the training data"))
    again = trainer.load_run(str(tmp_path))
    config = lambda m: {k: v for k, v in m.get_config().items() if k != "name"}  # noqa: E731
    assert config(again) == config(model)
    x = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    c = np.eye(8, dtype=np.float32)[:4]
    np.testing.assert_array_equal(again.log_prob(x, c).numpy(), model.log_prob(x, c).numpy())
