"""bench/ab_trees.py in smoke mode: two checkouts of this repository's HEAD, one tiny row each,
the JSON summary. No timing assertion."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smoke_compares_two_checkouts(tmp_path):
    if subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    out = tmp_path / "ab.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "ab_trees.py"), "--a", "HEAD", "--b", "HEAD",
                           "--rows", "uncond:1", "--smoke", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", BENCH_MAX_WAIT="0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["a"] == result["b"] and result["rounds"] == 1
    for metric in ("train_ips", "logprob_ips", "sample_ips"):
        row = result["rows"]["uncond:1"][metric]
        assert row["a"][0] > 0 and row["b"][0] > 0 and row["median_b_over_a"] > 0
    # the temporary checkouts are gone from the repository's worktree list
    listed = subprocess.run(["git", "-C", ROOT, "worktree", "list"], capture_output=True, text=True).stdout
    assert "ab_trees_" not in listed
