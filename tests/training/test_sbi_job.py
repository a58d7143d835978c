"""The simulation-based-inference job (training/sbi_two_moons, fast variant): simulator data from
dotted paths, posterior diagnostics and figures, export of the posterior sampler, bad simulators."""
import json
import os
import shutil

import numpy as np
import pytest

from tfcflow import cli, evaluation, trainer
from tfcflow.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = os.path.join(ROOT, "training", "sbi_two_moons", "cinn_fast.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbi") / "run"
    return str(out), trainer.train(FAST, str(out))


def test_fast_run_learns_a_calibrated_enough_posterior(run):
    out, res = run
    # the prior is uniform on [-1, 1]^2: log density -log 4 = -1.386 nats; a posterior must beat it
    assert res["test_loss"] < -np.log(4.0) - 0.0, res["test_loss"]
    diag = res["diagnostics"]
    assert diag["n_sims"] == 50 and diag["num_samples"] == 100
    assert all(0 <= e < 0.3 for e in diag["calibration_error"]), diag
    assert all(c > 0.2 for c in diag["mean_contraction"]), diag  # the data informs the posterior
    for path in diag["figures"]:
        assert os.path.getsize(path) > 5_000
    with open(os.path.join(out, "diagnostics", "diagnostics.json")) as f:
        saved = json.load(f)
    assert len(saved["coverage"]) == len(saved["levels"])
    # the model's config describes the model: bounds, spline couplings, standardization
    with open(os.path.join(out, "model.json")) as f:
        spec = json.load(f)["config"]
    assert spec["bounds"] == [[-1.0, 1.0], [-1.0, 1.0]] and spec["coupling"] == "spline" and spec["standardize"]


def test_samples_of_the_restored_run_lie_inside_the_prior(run):
    out, _ = run
    model = trainer.load_run(out)
    assert not model.needs_adapting()  # the standardization came back with the checkpoint
    y = np.array([[0.1, -0.2], [0.0, 0.3]], np.float32)
    s = model.sample(y, num_samples=2000, seed=3).numpy()
    assert s.shape == (2, 2000, 2) and np.all(np.abs(s) <= 1.0)
    # chunks of 333 rows: the same draws (up to float rounding of differently sized matmuls)
    np.testing.assert_allclose(s, model.sample(y, num_samples=2000, seed=3, batch_size=333).numpy(), atol=1e-5)


def test_evaluate_writes_the_diagnostics(run, capsys):
    out, _ = run
    os.remove(os.path.join(out, "diagnostics", "coverage.png"))
    assert cli.main(["evaluate", out]) == 0
    assert os.path.exists(os.path.join(out, "diagnostics", "coverage.png"))
    assert "test_loss" in capsys.readouterr().out


def test_jit_sampling_evaluates_with_the_plain_graphs_draws(run, tmp_path):
    # train.jit_sampling (an execution choice, changeable on a finished run): evaluate's posterior
    # draws run XLA-compiled, the same seeded draws, so the same diagnostics up to float rounding
    out, _ = run
    jit = tmp_path / "jit"
    shutil.copytree(out, jit)
    with open(jit / "config.json") as f:
        cfg = json.load(f)
    cfg["train"]["jit_sampling"] = True
    with open(jit / "config.json", "w") as f:
        json.dump(cfg, f)
    assert trainer.load_run(str(jit)).execution.jit_sampling and not trainer.load_run(out).execution.jit_sampling
    plain, compiled = (evaluation.evaluate_run(str(d))["diagnostics"] for d in (out, jit))
    for key in ("mean_z_score", "mean_contraction"):  # (continuous in the draws, unlike rank counts)
        np.testing.assert_allclose(compiled[key], plain[key], atol=1e-3, err_msg=key)
    assert compiled["n_sims"] == plain["n_sims"] and compiled["num_samples"] == plain["num_samples"]


def _sim_file(tmp_path, body):
    path = tmp_path / "my_sim.py"
    path.write_text("import numpy as np\n\n"
                    "def prior(n, rng):\n    return rng.uniform(-1, 1, size=(n, 2))\n\n" + body)
    return str(path)


def test_bad_simulators_are_named(tmp_path):
    tiny = ["train.steps=2", "train.steps_per_epoch=1", "data.simulations=300", "data.test_simulations=50"]
    nan = _sim_file(tmp_path, "def simulator(x, rng):\n    y = x + 0.1\n    y[7] = np.nan\n    return y\n")
    with pytest.raises(ConfigError, match=r"simulator.*row 7"):
        trainer.train(FAST, str(tmp_path / "a"), tiny + [f'data.simulator="{nan}:simulator"',
                                                          f'data.prior="{nan}:prior"'])
    assert not (tmp_path / "a").exists()
    with pytest.raises(ConfigError, match=r"^data.simulator: .*no_such"):
        trainer.train(FAST, str(tmp_path / "b"), tiny + ['data.simulator="tfcflow.data.sbi_tasks:no_such"'])
    with pytest.raises(ConfigError, match=r"^data.prior: data.source 'simulator' needs"):
        trainer.train(FAST, str(tmp_path / "c"), tiny + ["data.prior=null"])
    shape = _sim_file(tmp_path, "def simulator(x, rng):\n    return x[:-1]\n")
    with pytest.raises(ConfigError, match=r"simulator"):
        trainer.train(FAST, str(tmp_path / "d"), tiny + [f'data.simulator="{shape}:simulator"'])


def test_a_job_names_its_prior_as_a_tfp_spec_and_takes_the_support_from_it(tmp_path):
    # data.prior: a TFP prior's JSON spec (tfcflow/inference/prior.py) instead of a prior(n, rng)
    # path; no model.bounds typed: the prior's box becomes them, as NPE does
    with open(FAST) as f:
        cfg = json.load(f)
    cfg["data"]["prior"] = {"class": "Independent", "parameters": {
        "distribution": {"class": "Uniform", "parameters": {"low": {"array": [-1.0, -1.0]},
                                                            "high": {"array": [1.0, 1.0]}}},
        "reinterpreted_batch_ndims": 1}}
    cfg["model"].pop("bounds", None)
    cfg["train"]["steps"] = 20
    cfg["train"]["steps_per_epoch"] = 10
    cfg["eval"]["diagnostics_simulations"] = 10
    path = tmp_path / "tfp_prior.json"
    path.write_text(json.dumps(cfg))
    out = str(tmp_path / "run")
    trainer.train(str(path), out)
    with open(os.path.join(out, "model.json")) as f:
        assert json.load(f)["config"]["bounds"] == [[-1.0, 1.0], [-1.0, 1.0]]
    model = trainer.load_run(out)
    s = model.sample(np.array([[0.1, -0.2]], np.float32), num_samples=500, seed=0).numpy()
    assert np.all(np.abs(s) < 1.0)
    bad = dict(cfg, data=dict(cfg["data"], prior={"class": "Independent", "parameters": {
        "distribution": {"class": "Bernoulli", "parameters": {"probs": {"array": [0.5, 0.5]}}},
        "reinterpreted_batch_ndims": 1}}))
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="data.prior: prior has discrete parameters"):
        trainer.train(str(path), str(tmp_path / "bad"))
