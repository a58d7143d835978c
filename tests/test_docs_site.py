"""The documentation site builds with ``mkdocs build --strict`` (mkdocs.yml, docs/): every page in the
nav exists, every link between pages resolves, every docstring the API pages show parses, and every
tutorial snippet is found. The build imports nothing of tfcflow (the API pages read the source)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mkdocs():
    exe = os.path.join(os.path.dirname(sys.executable), "mkdocs")
    return exe if os.path.exists(exe) else shutil.which("mkdocs")


def test_the_site_builds_strict(tmp_path):
    mkdocs = _mkdocs()
    if mkdocs is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' (the Makefile's setup does)")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([mkdocs, "build", "--strict", "--config-file", os.path.join(ROOT, "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for page in ("index.html", "getting-started/index.html", "guides/posterior-estimation/index.html",
                 "api/inference/index.html", "tutorials/posterior-two-moons/index.html"):
        assert (site / page).exists(), page
    # the API page was generated from the docstrings, the tutorial page holds the script itself
    assert "PriorSpace" in (site / "api" / "inference" / "index.html").read_text()
    assert "two_moons_simulator" in (site / "tutorials" / "posterior-two-moons" / "index.html").read_text()
