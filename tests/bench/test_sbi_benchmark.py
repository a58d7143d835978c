"""The SBI benchmark's smoke mode (bench/sbi_benchmark/run.py --smoke) so its plumbing never rots:
no torch environment, one tfcflow contestant on two_moons, a tiny model for 2 epochs. Accuracy is
not asserted (the smoke 'reference' is a rejection-ABC sample), only that a result with a C2ST
in [0, 1] and the summary appear, and that a rerun skips what is done."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "bench", "sbi_benchmark", "run.py")
CONTESTANT = "tfcflow_cinn_affine"


def _smoke(out):
    cmd = [sys.executable, RUN, "--smoke", "--out", str(out), "--contestants", CONTESTANT]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbi_smoke")
    return out, _smoke(out)


def test_smoke_writes_a_result_and_the_summary(smoke_run):
    out, stdout = smoke_run
    r = json.loads((out / "results" / f"two_moons__{CONTESTANT}.json").read_text())
    assert r["smoke"] and r["task"] == "two_moons" and r["contestant"] == CONTESTANT
    assert set(r["c2st"]) == {"1"} and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in r["c2st"].values())
    assert 0.0 <= r["c2st_mean"] <= 1.0 and r["train_seconds"] > 0 and r["samples_per_second"] > 0
    # run.py's default: five timed sampling passes (no retries in smoke mode), the rate from the median
    runs = r["sampling_runs"]
    assert r["sampling_clean_runs"] + r["sampling_dirty_runs"] == 5 and 1 <= len(runs) <= 5
    assert r["samples_per_second"] == pytest.approx(r["sample_seconds"] ** -1 * 300)
    assert r["command"] and r["versions"]["tfcflow"] and r["git_revision"]
    assert len(r["best_val_loss"]) == 1 and math.isfinite(r["best_val_loss"][0])
    summary = (out / "summary.md").read_text()
    assert f"| {CONTESTANT} |" in summary and "SMOKE RUN" in summary
    assert "SMOKE" in stdout


def test_a_rerun_skips_the_done_task_and_contestant(smoke_run):
    out, _ = smoke_run
    result = out / "results" / f"two_moons__{CONTESTANT}.json"
    mtime = result.stat().st_mtime_ns
    again = _smoke(out)
    started = [line for line in again.splitlines() if line.startswith("$ ")]
    assert f"skip two_moons {CONTESTANT}" in again and not any("ours.py" in line for line in started)
    assert result.stat().st_mtime_ns == mtime


def test_ours_samples_xla_compiled_on_request(smoke_run):
    # --jit-sampling: the same model and seeds as the plain run's, sampled by XLA-compiled passes
    out, _ = smoke_run
    script = os.path.join(os.path.dirname(RUN), "ours.py")
    dest = out / "jit" / "two_moons"
    smoke = ["--num-samples", "300", "--epochs", "2", "--depth", "2", "--width", "16", "--batch-size", "128",
             "--patience", "1", "--verbose", "0"]
    base = [sys.executable, script, "--out", str(out), "--task", "two_moons", "--contestant", "tfcflow_cinn_spline",
            *smoke]
    for extra in ([], ["--jit-sampling", "--sample-batch-size", "64", "--sample-sub-batches", "2"]):
        proc = subprocess.run(base + ["--dest", f"{dest}{len(extra)}", *extra], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plain, jit = (json.loads(open(f"{dest}{k}.json").read()) for k in (0, 5))
    assert not plain["settings"]["jit_sampling"] and jit["settings"]["jit_sampling"]
    assert plain["settings"]["sample_sub_batches"] == 1
    assert jit["settings"]["sample_batch_size"] == 64 and jit["first_sample_seconds"] > 0
    assert jit["settings"]["sample_sub_batches"] == 2
    import numpy as np
    # the same draws, compiled in two sub-batches per chunk (the library's Execution tests cover each alone)
    np.testing.assert_allclose(np.load(f"{dest}5.npz")["samples"], np.load(f"{dest}0.npz")["samples"], atol=1e-3)


def _run_module():
    return _bench_module("run.py")


def _bench_module(script: str):
    """A script of bench/sbi_benchmark imported by path (another test file's bench script may
    already be imported under the same name, e.g. "run")."""
    import importlib.util

    name = "sbi_benchmark_" + script.removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(RUN), script))
    module = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        # the scripts put their folder first on sys.path: left there, another bench's "import run"
        # in this worker would find this one (bench/equal_time/run.py has the same module name)
        sys.path[:] = path
    return module


def test_the_spline_ensemble_contestant_trains_its_members_one_after_another(smoke_run):
    import numpy as np

    run = _run_module()
    out, _ = smoke_run
    dest = out / "ensemble_check"
    cmd = [sys.executable, os.path.join(ROOT, "bench", "sbi_benchmark", "ours.py"), "--out", str(out), "--task",
           "two_moons", "--contestant", "tfcflow_cinn_spline_ensemble", "--dest", str(dest), "--ensemble", "2",
           *run.SMOKE_OURS]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "ensemble_check.json").read_text())
    assert r["settings"]["coupling"] == "spline" and r["settings"]["ensemble"] == 2
    assert r["settings"]["model"] == "FlowEnsemble of 2 ConditionalRealNVP"
    assert 2 <= r["epochs"] <= 4  # the two members' epochs (at most 2 each)
    assert len(r["best_val_loss"]) == 2 and all(math.isfinite(v) for v in r["best_val_loss"])
    samples = np.load(out / "ensemble_check.npz")["samples"]
    assert samples.shape[1:] == (300, 2) and np.isfinite(samples).all()


def test_scoring_resumes_from_the_observations_already_scored_on_the_same_samples(smoke_run):
    import hashlib

    import numpy as np

    out, _ = smoke_run
    score = os.path.join(ROOT, "bench", "sbi_benchmark", "score.py")
    samples = np.load(out / "samples" / f"two_moons__{CONTESTANT}.npz")["samples"]
    digest = hashlib.sha256(np.ascontiguousarray(samples).tobytes()).hexdigest()
    result = out / "results" / f"two_moons__{CONTESTANT}.json"
    partial = out / "results" / f"two_moons__{CONTESTANT}.partial.json"
    cmd = [sys.executable, score, "--out", str(out), "--task", "two_moons", "--contestant", CONTESTANT,
           "--metric", "tfcflow"]

    def rescore(sha):
        # a planted score no classifier returns: kept only when the partial file matches the samples
        partial.write_text(json.dumps(dict(samples_sha256=sha, metric="tfcflow", metric_seed=0, c2st={"0": 0.123})))
        assert f"| {CONTESTANT} |" in _run_module().summary(str(out))  # a partial file is not a result
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert not partial.exists()
        return json.loads(result.read_text())["c2st"]["1"], proc.stdout

    kept, stdout = rescore(digest)
    assert kept == 0.123 and "resuming, 1 of 1" in stdout
    redone, stdout = rescore("0" * 64)
    assert redone != 0.123 and "resuming" not in stdout and 0.0 <= redone <= 1.0


def test_the_posterior_profile_splits_sampling_and_the_training_step(tmp_path):
    script = os.path.join(os.path.dirname(RUN), "profile_posterior.py")
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, script, "--smoke", "--json", str(out)], check=True, capture_output=True)
    record = json.loads(out.read_text())
    assert record["draws"] == 100 and record["samples_per_second"] > 0 and record["variables"] == 15
    assert set(record["train_step_ms"]) == {"loss and gradients", "optimizer update", "Keras fit step (all of it)"}
    assert all(v > 0 for v in record["train_step_ms"].values())


def test_the_sampling_speed_bench_times_plain_and_compiled_sampling(tmp_path):
    script = os.path.join(os.path.dirname(RUN), "sampling_speed.py")
    out = tmp_path / "speed.json"
    env = {**os.environ, "BENCH_MAX_WAIT": "0"}  # no waiting for a quiet machine in CI
    subprocess.run([sys.executable, script, "--smoke", "--json", str(out)], check=True, capture_output=True, env=env)
    record = json.loads(out.read_text())
    (row,) = record["sizes"]
    assert (row["width"], row["depth"], row["hidden_layers"]) == (8, 1, 2) and record["draws"] == 100
    assert row["plain"]["median"] > 0 and row["jit"]["median"] > 0 and row["jit_first_call_seconds"] > 0


def test_sampling_is_timed_on_repeated_passes_after_the_kept_one():
    import numpy as np

    common = _run_module().common
    calls = []

    def sample_all():
        calls.append(len(calls))
        return np.full((2, 3, 1), float(len(calls)))

    samples, record = common.timed_sampling(sample_all, 3, patience=0)
    assert np.all(samples == 1.0) and len(calls) == 4
    assert record["sampling_clean_runs"] + record["sampling_dirty_runs"] == 3  # (the rates: the clean ones)
    assert record["samples_per_second"] == pytest.approx(6 / record["sample_seconds"])
    assert min(record["sampling_runs"]) <= record["samples_per_second"] <= max(record["sampling_runs"])
    with pytest.raises(SystemExit, match="sample-repeats"):
        common.timed_sampling(sample_all, -1)
    # repeats=0 (MCMC contestants): the one call that gives the samples is the one timed
    calls.clear()
    samples, record = common.timed_sampling(sample_all, 0, patience=0)
    assert np.all(samples == 1.0) and len(calls) == 1 and record["sampling_runs"] == 1
    assert record["samples_per_second"] == pytest.approx(6 / record["sample_seconds"])


def test_the_nle_contestant_samples_by_mcmc_and_reports_its_chains(smoke_run):
    import numpy as np

    run = _run_module()
    out, _ = smoke_run
    dest = out / "nle_check"
    cmd = [sys.executable, os.path.join(ROOT, "bench", "sbi_benchmark", "ours.py"), "--out", str(out), "--task",
           "two_moons", "--contestant", "tfcflow_nle", "--dest", str(dest), *run.SMOKE_OURS, "--num-samples", "64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "nle_check.json").read_text())
    assert r["settings"]["estimator"] == "NLE (smoke: tiny)" and r["sampling_runs"] == 1
    (report,) = r["settings"]["mcmc"]  # one per observation (the smoke cache has one)
    assert report["chains"] == 16 and report["draws_per_chain"] == 4 and len(report["r_hat"]) == 2
    samples = np.load(out / "nle_check.npz")["samples"]
    assert samples.shape == (1, 64, 2) and np.isfinite(samples).all() and np.all(np.abs(samples) < 1)


def test_the_nle_table_compares_with_sbi_nle_and_names_the_goals():
    run = _run_module()
    results = {("slcp", "tfcflow_nle"): {"c2st_mean": 0.78, "train_seconds": 100.0, "samples_per_second": 50.0},
               ("slcp", "sbi_nle"): {"c2st_mean": 0.75, "train_seconds": 300.0, "samples_per_second": 20.0},
               ("two_moons", "tfcflow_nle"): {"c2st_mean": 0.6, "train_seconds": 90.0, "samples_per_second": 40.0}}
    text = "\n".join(run.nle_section(results, ["two_moons", "slcp", "bernoulli_glm"]))
    assert "| tfcflow NLE (defaults) | 0.600 | 0.780 |" in text  # tasks without an NLE result left out
    assert "| slcp | 0.780 | 0.750 | NO | <= 0.80 | yes |" in text
    assert "| two_moons | 0.600 | - | - | - | - |" in text
    assert run.nle_section({("slcp", "sbi_maf"): {}}, ["slcp"]) == []


def test_timing_replays_the_table_records_settings():
    # run.settings_args turns a result record back into ours.py options: parsed by ours.py, they
    # give the record's settings (the timing then trains exactly the model behind the table's C2ST)
    run = _run_module()
    path = list(sys.path)
    try:
        sys.path.insert(0, os.path.dirname(RUN))
        import ours
    finally:
        sys.path[:] = path
        sys.modules.pop("ours", None)
    settings = {"depth": 4, "width": 96, "hidden_layers": 3, "network": "residual", "activation": "silu",
                "dropout": 0.1, "epochs": 50, "batch_size": 128, "lr": 0.001, "schedule": "cosine",
                "weight_decay": 0.01, "clipnorm": 2.0, "validation_fraction": 0.2, "patience": 7, "lr_patience": 0,
                "mixing": "permutation", "bounds_method": "reject", "spline_bins": 6, "spline_bound": 4.0,
                "ensemble": 3, "sample_batch_size": 10000, "sample_sub_batches": 2, "rcf_padding_noise": 0.5,
                "rcf_epsilon": 0.2, "jit_sampling": True,
                "bounds": None, "model": "ConditionalRealNVP", "coupling": "spline"}
    args = run.settings_args({"settings": settings, "seed": 5})
    a = ours.parser().parse_args(["--task", "slcp", "--contestant", "tfcflow_cinn_spline", *args])
    for key in run.SETTING_FLAGS + run.SETTING_SWITCHES:
        assert getattr(a, key) == settings[key], key
    assert a.no_bounds and a.seed == 5
    settings["jit_sampling"] = False
    a = ours.parser().parse_args(["--task", "slcp", "--contestant", "tfcflow_cinn_spline",
                                  *run.settings_args({"settings": settings})])
    assert a.jit_sampling is False
    # an older record without some settings: ours.py's defaults stand, as they did for that run
    a = ours.parser().parse_args(["--task", "slcp", "--contestant", "tfcflow_cinn_spline",
                                  *run.settings_args({"settings": {"width": 64, "bounds": [[-3.0, 3.0]] * 5}})])
    assert a.width == 64 and a.dropout == 0.0 and not a.no_bounds and a.seed == 0
    assert not a.jit_sampling and a.sample_batch_size is None


def test_a_timing_run_of_some_tasks_keeps_the_other_tasks_results(tmp_path):
    # run_timing medians each contestant's rounds; a later run of one task replaces that task's
    # results and keeps the others (each task names the command that measured it)
    import types

    run = _run_module()
    rates = {}

    class FakeRunner:
        a = types.SimpleNamespace(out=str(tmp_path))

        def simulate(self, tasks):
            return True

        def train(self, task, contestant, dest=None, table_settings=False):
            rate = rates[task, contestant].pop(0)
            with open(dest + ".json", "w") as f:
                json.dump({"train_seconds": 10.0, "epochs": 5, "samples_per_second": rate}, f)
            return True

    rates.update({("a", "ours"): [500.0, 700.0, 600.0], ("a", "peer"): [100.0, 300.0, 200.0],
                  ("b", "ours"): [50.0] * 3, ("b", "peer"): [10.0] * 3})
    os.makedirs(tmp_path / "timing")
    run.run_timing(FakeRunner(), ["a", "b"], "ours", "peer", 3)
    first = json.loads((tmp_path / "timing" / "timing.json").read_text())
    assert first["tasks"]["a"]["ratios"]["sampling_speed_ours_over_peer"] == 600.0 / 200.0
    rates.update({("a", "ours"): [900.0] * 3, ("a", "peer"): [100.0] * 3})
    run.run_timing(FakeRunner(), ["a"], "ours", "peer", 3)
    second = json.loads((tmp_path / "timing" / "timing.json").read_text())
    assert second["tasks"]["a"]["ratios"]["sampling_speed_ours_over_peer"] == 9.0
    assert second["tasks"]["b"] == first["tasks"]["b"] and second["tasks"]["b"]["command"]
    text = (tmp_path / "timing" / "timing.md").read_text()
    assert "| a |" in text and "| b |" in text and "- b: `" in text
    # another pair of contestants starts a new report
    rates.update({("a", "ours"): [1.0] * 3, ("a", "other"): [1.0] * 3})
    run.run_timing(FakeRunner(), ["a"], "ours", "other", 3)
    assert list(json.loads((tmp_path / "timing" / "timing.json").read_text())["tasks"]) == ["a"]


def test_the_npe_contestant_runs_the_estimator_and_heads_the_summary(tmp_path):
    # tfcflow_npe: tfcflow.inference.NPE with the task's TFP prior (smoke: a tiny flow for 2 epochs)
    cmd = [sys.executable, RUN, "--smoke", "--out", str(tmp_path), "--contestants", "tfcflow_npe"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "results" / "two_moons__tfcflow_npe.json").read_text())
    assert r["settings"]["estimator"] == "NPE (smoke: tiny)" and r["settings"]["support"] == "truncate"
    assert r["settings"]["flow"]["bounds"] == [[-1.0, 1.0], [-1.0, 1.0]]  # from the TFP prior, not typed
    samples = __import__("numpy").load(tmp_path / "samples" / "two_moons__tfcflow_npe.npz")["samples"]
    assert (abs(samples) < 1).all()
    summary = (tmp_path / "summary.md").read_text()
    assert "## Headline" in summary and "| tfcflow NPE (defaults) |" in summary
    # the summary figures (C2ST bars, training time) from the same headline rows
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "sbi_benchmark", "figures.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("c2st.png", "train_time.png"):
        assert (tmp_path / name).stat().st_size > 5_000


def test_the_nle_sampler_bench_measures_how_far_the_mode_weights_are_from_quarters():
    import numpy as np

    module = _bench_module("nle_sampler.py")
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)
    even = np.concatenate([np.zeros((400, 2)), np.repeat(signs, 100, axis=0), np.zeros((400, 1))], axis=1)
    assert module.quadrant_tv(even) == pytest.approx(0.0)
    one_mode = np.abs(even)  # every draw in the (+, +) quadrant
    assert module.quadrant_tv(one_mode) == pytest.approx(0.75)
