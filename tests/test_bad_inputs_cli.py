"""A catalogue of bad inputs to `tfcflow train / export / evaluate`: each exits 2 with one line on
stderr naming the problem, no traceback, and leaves existing runs, checkpoints and exports as they
were."""
import json
import os
import subprocess
import sys

import pytest

from tfcflow import cli, trainer
from tfcflow._runtime import DEVICE_LINE_PREFIX
from tests.helpers import checksums

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CINN_FAST = os.path.join(ROOT, "training", "gaussian_mixture", "cinn_fast.json")
CAFLOW_FAST = os.path.join(ROOT, "training", "mnist_super_resolution", "caflow_fast.json")
TINY = ["--set", "train.steps=2", "--set", "train.steps_per_epoch=1"]


def _fails(capsys, argv, *needles):
    """Runs the command in-process: exit code 2, exactly one stderr line holding every needle (besides
    the line naming the devices)."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(DEVICE_LINE_PREFIX)]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("bad_inputs") / "run"
    trainer.train(CINN_FAST, str(run), ["train.steps=2", "train.steps_per_epoch=1"])
    return run


# ---- tfcflow train: the config ----------------------------------------------------------------------
def test_missing_config_file(tmp_path, capsys):
    _fails(capsys, ["train", str(tmp_path / "nope.json")], "tfcflow train:", "nope.json", "does not exist")


def test_malformed_json(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"train": {"steps": 2,}}')
    _fails(capsys, ["train", str(tmp_path / "c.json")], "c.json", "invalid JSON", "line 1")


def test_config_that_is_not_a_mapping(tmp_path, capsys):
    (tmp_path / "c.json").write_text("[1, 2]")
    _fails(capsys, ["train", str(tmp_path / "c.json")], "a config is a mapping")


def test_set_without_equals(tmp_path, capsys):
    _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path), "--set", "train.steps"],
           "--set expects key=value, got 'train.steps'")


def test_set_with_unknown_keys(tmp_path, capsys):
    _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path), "--set", "train.stepz=3"],
           "unknown key train.stepz", "did you mean 'steps'")
    _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path), "--set", "model.nope=3"],
           "unknown key model.nope for ConditionalRealNVP")
    _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path), "--set", "trian.steps=3"], "unknown section 'trian'")
    _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path), "--set", "train.steps.x=3"],
           "'steps' is not a section")
    assert not os.listdir(tmp_path)


def test_unknown_model_class(tmp_path, capsys):
    _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path), "--set", 'model.class="RealNVP"'],
           "model.class must be one of", "'RealNVP'")


def test_bad_model_values_name_the_key_and_claim_nothing(tmp_path, capsys):
    # caught by the config (types) or by the model constructor (values); never a traceback
    cases = [("model.depth=0", "tfcflow train: model.depth: "),
             ('model.width="abc"', "tfcflow train: model.width: "),
             ("model.width=[64, 64]", "tfcflow train: model.width: "),
             ('model.coupling={"kind": "affine", "scale": "foo"}', "tfcflow train: model.coupling: scale "),
             ('model.coupling={"kind": "affine", "clamp": "big"}', "tfcflow train: model.coupling: clamp "),
             ('model.coupling={"kind": "spline", "clamp": 3}', "tfcflow train: model.coupling: clamp=3 applies "),
             ("model.actnorm=1", "tfcflow train: model.actnorm: ")]
    for item, start in cases:
        line = _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path / "run"), "--set", item] + TINY)
        assert line.startswith(start), line
        assert not (tmp_path / "run" / "config.json").exists(), item


def test_bad_values_of_the_other_sections(tmp_path, capsys):
    cases = [("data.train_size=0", "data.train_size"), ("data.sigma=0", "data.sigma"),
             ("data.factor=0", "data.factor"), ("train.decay_interval=0", "train.decay_interval"),
             ("train.warmup_steps=-1", "train.warmup_steps"), ("eval.batch_size=0", "eval.batch_size"),
             ("eval.temperature=-1", "eval.temperature"), ("eval.max_examples=0", "eval.max_examples"),
             ("train.sample_every=0", "train.sample_every")]
    for item, key in cases:
        _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path), "--set", item], f"tfcflow train: {key}")
    assert not os.listdir(tmp_path)


def test_out_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _fails(capsys, ["train", CINN_FAST, "--out", str(tmp_path / "f")] + TINY, "is a file", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "x"


# ---- tfcflow train: the data --------------------------------------------------------------------------
def test_unknown_dataset_names_the_dataset_and_the_data_dir(tmp_path, capsys):
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    line = _fails(capsys, ["train", CAFLOW_FAST, "--out", str(tmp_path / "run"), "--set", 'data.dataset="no_such_ds"',
                           "--set", f'data.data_dir="{data_dir}"'] + TINY,
                  "tfcflow train: data.dataset: ", "'no_such_ds'", str(data_dir))
    assert "Dataset no_such_ds not found" in line
    # a dataset TFDS knows but this data_dir does not hold
    _fails(capsys, ["train", CAFLOW_FAST, "--out", str(tmp_path / "run"), "--set", 'data.dataset="cifar10"',
                    "--set", f'data.data_dir="{data_dir}"'] + TINY,
           "tfcflow train: data.dataset: ", "'cifar10' is not prepared", f"data_dir='{data_dir}'")
    assert not (tmp_path / "run").exists()


def test_image_size_not_divisible_by_the_levels(tmp_path, capsys, mnist_data_dir):
    line = _fails(capsys, ["train", CAFLOW_FAST, "--out", str(tmp_path / "run"), "--set", "model.levels=3",
                           "--set", f'data.data_dir="{mnist_data_dir}"'] + TINY,
                  "tfcflow train: model.levels: ", "28x28", "2^levels = 8", "'mnist'")
    assert not (tmp_path / "run" / "config.json").exists(), line
    _fails(capsys, ["train", CAFLOW_FAST, "--out", str(tmp_path / "run"), "--set", "model.levels=-1",
                    "--set", f'data.data_dir="{mnist_data_dir}"'] + TINY, "tfcflow train: model.levels: ")
    _fails(capsys, ["train", CAFLOW_FAST, "--out", str(tmp_path / "run"), "--set", "data.factor=3",
                    "--set", f'data.data_dir="{mnist_data_dir}"'] + TINY,
           "tfcflow train: data: ", "factor 3 does not divide the image size 28x28")
    assert not (tmp_path / "run" / "config.json").exists()


def test_model_failure_in_a_fresh_process(tmp_path):
    """End to end: the process exits 2 with one `tfcflow train:` line and no traceback."""
    cmd = [sys.executable, "-m", "tfcflow", "train", CINN_FAST, "--out", str(tmp_path / "run"),
           "--set", "model.depth=0"] + TINY
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines()
            if line.startswith("tfcflow") and not line.startswith(DEVICE_LINE_PREFIX)]
    assert ours == ["tfcflow train: model.depth: must be an integer >= 1, got 0"], proc.stderr[-3000:]
    assert not (tmp_path / "run" / "config.json").exists()


# ---- tfcflow export --------------------------------------------------------------------------------
def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    _fails(capsys, ["export", str(tmp_path), "--base", str(tmp_path / "models")],
           "tfcflow export:", "is not a tfcflow run folder: config.json is missing")
    (tmp_path / "f").write_text("x")
    _fails(capsys, ["export", str(tmp_path / "f"), "--base", str(tmp_path / "models")], "is not a tfcflow run folder")
    assert not (tmp_path / "models").exists()


def test_export_of_a_run_without_checkpoints(tmp_path, capsys, trained_run):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.json"):
        (run / name).write_bytes((trained_run / name).read_bytes())
    _fails(capsys, ["export", str(run), "--base", str(tmp_path / "models")], "checkpoints holds no checkpoint")
    assert not (tmp_path / "models").exists()


def test_export_with_bad_arguments_changes_nothing(tmp_path, capsys, trained_run):
    before = checksums(trained_run)
    (tmp_path / "file").write_text("x")
    _fails(capsys, ["export", str(trained_run), "--base", str(tmp_path / "file")],
           "tfcflow export:", "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "x"
    base = tmp_path / "models"
    for args, needle in ((["--sub-batches", "0"], "sub-batches must be >= 1, got 0"),
                         (["--max-n", "0"], "max-n must be >= 1, got 0"),
                         (["--version", "0"], "version must be >= 1, got 0"),
                         (["--name", "a/b"], "a single folder name"),
                         (["--name", ".."], "a single folder name")):
        _fails(capsys, ["export", str(trained_run), "--base", str(base)] + args, "tfcflow export:", needle)
    assert not base.exists()
    # an explicit version that exists: refused, the existing export untouched
    existing = base / "run" / "1"
    existing.mkdir(parents=True)
    (existing / "saved_model.pb").write_bytes(b"an existing export")
    exports = checksums(base)
    _fails(capsys, ["export", str(trained_run), "--base", str(base), "--version", "1"],
           "already exists", "immutable")
    assert checksums(base) == exports
    assert checksums(trained_run) == before


# ---- tfcflow evaluate -------------------------------------------------------------------------------
def test_evaluate_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    _fails(capsys, ["evaluate", str(tmp_path)], "tfcflow evaluate:", "is not a tfcflow run folder")


def test_evaluate_with_a_corrupt_run_config(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{")
    _fails(capsys, ["evaluate", str(tmp_path)], "tfcflow evaluate:", "config.json", "invalid JSON")


def test_evaluate_with_bad_arguments(tmp_path, capsys, trained_run):
    before = checksums(trained_run)
    _fails(capsys, ["evaluate", str(trained_run), "--hook", str(tmp_path / "nope.py")],
           "tfcflow evaluate:", "nope.py", "does not exist")
    _fails(capsys, ["evaluate", str(trained_run), "--max-examples", "0"], "max-examples must be >= 1, got 0")
    assert checksums(trained_run) == before


def test_evaluate_of_a_run_without_checkpoints(tmp_path, capsys, trained_run):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((trained_run / "config.json").read_bytes())
    _fails(capsys, ["evaluate", str(run)], "checkpoints holds no checkpoint")
    assert json.loads((run / "config.json").read_text())["name"] == "gaussian_mixture_cinn_fast"
