"""The fast variant of the Gaussian-mixture training job, with a real (loose) quality bar."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB = os.path.join(ROOT, "training", "gaussian_mixture")


def _load_job():
    spec = importlib.util.spec_from_file_location("gaussian_mixture_job", os.path.join(JOB, "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def job():
    return _load_job()


def test_fast_run_recovers_the_posterior(job, tmp_path):
    out = str(tmp_path / "run")
    summary = job.main(["--config", os.path.join(JOB, "fast.json"), "--out", out])
    res = summary["results"]
    for kind in ("ConditionalRealNVP", "RelaxedConditionFlow"):
        assert res[kind]["mode_accuracy_min"] >= 0.90, (kind, res[kind]["mode_accuracy_min"])
        for row in res[kind]["per_label"]:
            assert row["mean_error"] < 0.3, (kind, row)
    rcf = res["RelaxedConditionFlow"]
    assert rcf["infer_condition_accuracy"] >= 0.90
    assert rcf["bayes_optimal_accuracy"] > 0.99
    # the cINN's exact test NLL is within 0.5 nats of the true posterior's
    assert res["ConditionalRealNVP"]["test_nll"] < summary["reference_test_nll"] + 0.5
    for name in ("results.json", "results.md", "config.json", "ConditionalRealNVP.weights.h5"):
        assert os.path.exists(os.path.join(out, name))
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["steps"] == 150


def test_config_errors_name_the_key(job, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['stepz'\]"):
        job.load_config(str(bad))
    with pytest.raises(ValueError, match="unknown key 'foo'"):
        job.load_config(None, ["foo=1"])
    with pytest.raises(ValueError, match="unknown model"):
        job.load_config(None, ['models=["Glow"]'])
