"""The benchmark's smoke mode (one tiny step of every measurement) so it never rots. No timing
assertion: only that every variant runs and reports sane fields."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_smoke_runs_every_variant_and_the_table(monkeypatch):
    import glow_bench
    import run_bench
    import timing

    monkeypatch.setattr(timing, "MAX_WAIT", 0.0)
    results = {}
    runs = [("uncond", ["--xla", "--chains", "2"]), ("uncond_bf16", ["--precision", "mixed_bfloat16"]),
            ("cond_label_injector", []), ("cond_image", []), ("mirrored", [])]
    for name, flags in runs:
        variant = name.removesuffix("_bf16")
        r = glow_bench.main(["--variant", variant, "--smoke", *flags])
        for key in ("train_ips", "logprob_ips", "sample_ips"):
            assert r[key]["median"] > 0, (variant, key)
        assert r["inv_err_max"] < 1e-3 and r["peak_rss_after_train_mb"] > 0 and r["train_first_step_s"] > 0
        results["tfcflow_" + name] = r
    assert results["tfcflow_mirrored"]["replicas"] == 2 and results["tfcflow_uncond"]["chains"] == 2
    # the bf16 run is measured against a float32 twin with its weights, and leaves the global policy float32
    import keras

    assert results["tfcflow_uncond_bf16"]["precision"] == "mixed_bfloat16"
    assert 0 <= results["tfcflow_uncond_bf16"]["bpd_abs_diff_vs_float32"]["max"] < 0.05
    assert keras.mixed_precision.global_policy().name == "float32"
    text = run_bench.table(results, peak=185.0)
    assert "| tfcflow_uncond |" in text and "| tfcflow_mirrored |" in text and "| tfcflow_uncond_bf16 |" in text


def test_head_to_head_smoke_times_both_in_one_process(monkeypatch):
    import head_to_head
    import run_bench
    import timing

    monkeypatch.setattr(timing, "MAX_WAIT", 0.0)
    h = head_to_head.main(["--smoke"])
    assert h["networks"] == 2 * 1 + 1  # smoke: 2 levels x 1 coupling + 1 split prior
    for key in ("logprob_tfcflow", "logprob_tfcflow_networks_only", "logprob_tfp_xla", "logprob_tfp_function",
                "sample_tfcflow", "sample_tfp_function"):
        assert h["ips"][key]["median"] > 0, key
    assert h["logprob_vs_tfp_xla"]["median"] == h["ips"]["logprob_tfcflow"]["median"] / h["ips"]["logprob_tfp_xla"][
        "median"]  # one round: the ratio of the two blocks
    text = run_bench.table({"head_to_head": h}, peak=185.0)
    assert "log-prob vs TFP+XLA" in text


def test_analytic_macs_match_the_peer_architecture():
    import glow_bench

    # the peers' README: 49.4 M MACs forward per 32x32x3 image
    assert round(glow_bench.macs_per_image() / 1e6, 1) == 49.4


def test_ab_compare_smoke_runs_both_versions():
    import subprocess

    import pytest

    if subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    import ab_compare

    r = ab_compare.main(["HEAD", "--smoke", "--call", "log_prob"])
    assert r["a_ms"]["min"] > 0 and r["b_ms"]["min"] > 0
    # the same seed, architecture and data: both versions start from the same density
    assert abs(r["log_prob_a"] - r["log_prob_b"]) < 1e-3 * abs(r["log_prob_b"])


def test_profile_smoke_reads_the_trace():
    import profile_train_step

    r = profile_train_step.main(["--smoke", "--call", "log_prob", "--top", "3"])
    assert r["wall_s"] > 0 and r["unprofiled_wall_s"] > 0 and r["op_s"] > 0
    # the coupling networks' 3x3 convolutions are in the trace, under some kernel's name
    assert any("Conv2D" in kind for kind in r["ops"]), sorted(r["ops"])


def test_chains_grid_smoke_runs_its_settings_in_fresh_processes(monkeypatch):
    import chains_grid

    monkeypatch.setenv("BENCH_MAX_WAIT", "0")
    res = chains_grid.main(["--smoke", "--runs", "1"])
    default, chained = res["rows"]
    # each setting really ran with its thread pools (fresh processes) and its chains
    assert default["threads"] == {"intra": 2, "inter": 2} and default["chains"] == 1
    assert chained["threads"] == {"intra": 1, "inter": 2} and chained["chains"] == 2
    assert all(r[m] > 0 for r in res["rows"] for m in chains_grid.METRICS)
    assert "| 1 | 2 | 2 |" in res["table"]


def test_finite_check_timing_smoke():
    import finite_check_timing
    from tfcflow import _checks

    before = _checks.finite_samples
    out = finite_check_timing.main(["--smoke"])
    assert set(out) == {"assert", "check_numerics", "none"} and all(v["median"] > 0 for v in out.values())
    assert _checks.finite_samples is before  # the library's check is back


def test_sample_many_scaling_smoke():
    import sample_many_scaling

    out = sample_many_scaling.main(["--smoke"])
    assert set(out) == {300, 1000} and all(v["chunked"] > 0 and v["one_chunk"] > 0 for v in out.values())
