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
    for variant, flags in [("uncond", ["--xla"]), ("cond_label_injector", []), ("cond_image", []), ("mirrored", [])]:
        r = glow_bench.main(["--variant", variant, "--smoke", *flags])
        for key in ("train_ips", "logprob_ips", "sample_ips"):
            assert r[key]["median"] > 0, (variant, key)
        assert r["inv_err_max"] < 1e-3 and r["peak_rss_after_train_mb"] > 0 and r["train_first_step_s"] > 0
        results["tfcflow_" + variant] = r
    assert results["tfcflow_mirrored"]["replicas"] == 2
    text = run_bench.table(results, peak=185.0)
    assert "| tfcflow_uncond |" in text and "| tfcflow_mirrored |" in text


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
