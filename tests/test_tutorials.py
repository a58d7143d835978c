"""The site's tutorials (docs/tutorials/*.py) run, at a small size, so they cannot rot.

Each runs in its own process (as a reader would run it) with TFCFLOW_TUTORIAL_SMALL=1: fewer
simulations and steps, the same calls.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(ROOT, "docs", "tutorials")


def _run(script, out, timeout=600):
    env = dict(os.environ, TFCFLOW_TUTORIAL_SMALL="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, os.path.join(TUTORIALS, script), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_every_tutorial_script_is_tested_here():
    scripts = sorted(f for f in os.listdir(TUTORIALS) if f.endswith(".py"))
    assert scripts == ["posterior_two_moons.py", "super_resolution_photos.py"], \
        "a new tutorial needs a test in tests/test_tutorials.py"


def test_posterior_two_moons_tutorial(tmp_path):
    out = _run("posterior_two_moons.py", tmp_path)
    assert "support taken from the prior: [[-1.0, 1.0], [-1.0, 1.0]]" in out
    assert os.path.exists(tmp_path / "posterior" / "estimator.json")
    assert os.path.exists(tmp_path / "serving" / "npe" / "1" / "saved_model.pb")
    pytest.importorskip("matplotlib")
    assert os.path.exists(tmp_path / "posterior.png")


def test_super_resolution_photos_tutorial(tmp_path):
    pytest.importorskip("skimage", reason="the tutorial's photos come with scikit-image (the experiments extra)")
    out = _run("super_resolution_photos.py", tmp_path)
    assert "64x64 photo: PSNR" in out
    assert os.path.exists(tmp_path / "sheet.png")
