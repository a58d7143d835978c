"""tfcflow/_runtime.py: a tfcflow command keeps TensorFlow's C++ log off stderr (absl's load-time
lines, cuInit's E line on machines without a GPU) unless the user set TF_CPP_MIN_LOG_LEVEL, and
names the devices it runs on in one line."""
import os
import subprocess
import sys

import pytest

from tfcflow import _runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CINN_FAST = os.path.join(ROOT, "training", "gaussian_mixture", "cinn_fast.json")


def _run(args, level=None, timeout=300):
    """``args`` in a fresh process, with TF_CPP_MIN_LOG_LEVEL unset (as on a newcomer's machine:
    the test session sets it) or set to ``level``; returns the process."""
    env = {k: v for k, v in os.environ.items() if k != _runtime.LOG_LEVEL_VARIABLE}
    if level is not None:
        env[_runtime.LOG_LEVEL_VARIABLE] = level
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _assert_quiet(stderr):
    for needle in ("cuInit", "E0000", "I0000", "absl::InitializeLog"):
        assert needle not in stderr, stderr[-3000:]
    assert not [line for line in stderr.splitlines() if _runtime.is_tensorflow_log_line(line)], stderr[-3000:]


def test_a_command_prints_the_devices_and_no_tensorflow_log(tmp_path):
    proc = _run(["-m", "tfcflow", "evaluate", str(tmp_path / "no_run")])
    assert proc.returncode == 2, proc.stderr[-3000:]
    _assert_quiet(proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith(_runtime.DEVICE_LINE_PREFIX), proc.stderr
    assert lines[0] == _runtime.device_line() or "GPU" in lines[0]  # (this process may see other devices)
    assert lines[1].startswith("tfcflow evaluate: ") and "config.json is missing" in lines[1]


def test_a_training_job_writes_only_the_device_line_to_stderr(tmp_path):
    proc = _run(["-m", "tfcflow", "train", CINN_FAST, "--out", str(tmp_path / "run"), "--set", "train.steps=4",
                 "--set", "train.steps_per_epoch=2", "--set", "data.train_size=512", "--set", "data.test_size=256",
                 "--set", "eval.diagnostics_simulations=8", "--set", "eval.posterior_samples=20",
                 "--set", "train.verbose=0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_quiet(proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(_runtime.DEVICE_LINE_PREFIX), proc.stderr[-3000:]


def test_a_job_script_of_training_goes_through_it():
    proc = _run([os.path.join("training", "photo_super_resolution", "l1_baseline.py"), "--help"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_quiet(proc.stderr)
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [_runtime.device_line()] or \
        "GPU" in proc.stderr


def test_the_users_log_level_wins(tmp_path):
    proc = _run(["-m", "tfcflow", "evaluate", str(tmp_path / "no_run")], level="0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    # TensorFlow's own log is there (as the user asked), and so are the device line and the error
    assert any(_runtime.is_tensorflow_log_line(line) for line in proc.stderr.splitlines()), proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert any(line.startswith(_runtime.DEVICE_LINE_PREFIX) for line in lines)
    assert lines[-1].startswith("tfcflow evaluate: ")


def test_the_default_level_is_set_only_where_the_user_set_none(monkeypatch):
    monkeypatch.setenv(_runtime.LOG_LEVEL_VARIABLE, "1")
    _runtime.quiet_tensorflow()
    assert os.environ[_runtime.LOG_LEVEL_VARIABLE] == "1"
    monkeypatch.delenv(_runtime.LOG_LEVEL_VARIABLE)
    _runtime.quiet_tensorflow()
    assert os.environ[_runtime.LOG_LEVEL_VARIABLE] == _runtime.QUIET_LEVEL == "3"


def test_hidden_logs_keep_every_other_line(capfd):
    with _runtime.tensorflow_logs_hidden():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796618950.986285   28249 port.cc:153] oneDNN custom operations are on.\n"
                    b"a line of our own\n"
                    b"E0000 00:00:1796618957.098999   28249 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
                    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
                    b"with the appropriate compiler flags.\n")
        print("a Python warning", file=sys.stderr)
    err = capfd.readouterr().err
    # (pytest's stderr object does not write to the descriptor: the order of the two may differ here)
    assert sorted(err.splitlines()) == ["a Python warning", "a line of our own"], err


def test_hidden_logs_are_written_back_when_the_block_fails(capfd):
    with pytest.raises(ImportError):
        with _runtime.tensorflow_logs_hidden():
            os.write(2, b"I0000 00:00:1.5 1 port.cc:1] noise\nwhat went wrong\n")
            raise ImportError("no tensorflow")
    assert capfd.readouterr().err == "what went wrong\n"


@pytest.mark.parametrize("details, expected", [
    ([], "tfcflow: running on CPU ({cores} cores)"),
    (["NVIDIA H100 80GB HBM3"], "tfcflow: running on 1 GPU (NVIDIA H100 80GB HBM3)"),
    (["NVIDIA H100 80GB HBM3"] * 2 + ["NVIDIA A100"], "tfcflow: running on 3 GPUs (2 x NVIDIA H100 80GB HBM3, "
                                                      "NVIDIA A100)"),
])
def test_the_device_line(monkeypatch, details, expected):
    import tensorflow as tf

    gpus = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(len(details))]
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else real(kind))
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"device_name": details[int(device.name.rsplit(":", 1)[1])]})
    assert _runtime.device_line() == expected.format(cores=_runtime.cpu_cores())
