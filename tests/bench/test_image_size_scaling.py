"""The image-size scaling benchmark's smoke mode (tiny CAFlow, 16 and 32 px, one process per size) so
it never rots: every size reports finite positive times and memory, and the fits are there. No
assertion on the exponents themselves (timing noise at these sizes is larger than the signal)."""
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_smoke_measures_every_size_and_fits_exponents(tmp_path):
    import image_size_scaling

    out = tmp_path / "scaling.json"
    image_size_scaling.main(["--smoke", "--out", str(out)])
    res = json.loads(out.read_text())
    assert [r["size"] for r in res["rows"]] == list(image_size_scaling.SMOKE_SIZES)
    for r in res["rows"]:
        assert r["pixels"] == r["size"] ** 2
        for call in ("sample", "log_prob"):
            for key in ("median_s", "min_s", "first_s", "trace_s"):
                assert math.isfinite(r[call][key]) and r[call][key] > 0, (r["size"], call, key)
            assert r[call]["calls"] >= 2 and r[call]["graph"]["gflop"] > 0 and r[call]["graph"]["melements"] > 0
            # the per-size graph has static shapes: its cost is known exactly
            assert r[call]["graph"]["outputs_of_unknown_shape"] == 0
        assert r["peak_rss_mb"] >= 0 and math.isfinite(r["bits_per_dim"])
    fits = res["exponents"]
    assert set(fits) == {"large", "all"} and fits["all"]["sizes"] == [16, 32]
    for key in ("sample_s", "log_prob_s", "peak_rss_mb", "sample_gflop", "log_prob_gflop"):
        assert key in fits["all"] and key in fits["large"]
    assert math.isfinite(fits["all"]["sample_s"]) and math.isfinite(fits["all"]["log_prob_s"])
    # 4x the pixels: the graphs' float ops grow about 4x (fixed parts make it a little less)
    assert 0.8 < fits["all"]["sample_gflop"] <= 1.05 and 0.8 < fits["all"]["log_prob_gflop"] <= 1.05
    md = (tmp_path / "scaling.md").read_text()
    assert "| 16 | 256 |" in md and "| 32 | 1024 |" in md and "Exponent" in md


def test_fit_exponent_recovers_a_power_law():
    import image_size_scaling as iss

    pixels = [64 ** 2, 128 ** 2, 256 ** 2, 512 ** 2]
    assert abs(iss.fit_exponent(pixels, [3e-6 * p ** 1.3 for p in pixels]) - 1.3) < 1e-9
    assert iss.fit_exponent(pixels[:1], [1.0]) is None and iss.fit_exponent(pixels, [0.0] * 4) is None
    rows = [dict(size=s, pixels=s * s, **{m: float(s * s) for m in iss.METRICS}) for s in (32, 64, 128)]
    fits = iss.exponents(rows, 64)
    assert fits["large"]["sizes"] == [64, 128] and fits["all"]["sizes"] == [32, 64, 128]
    assert all(abs(fits[k][m] - 1.0) < 1e-9 for k in fits for m in iss.METRICS)
