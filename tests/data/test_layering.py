"""The data package stands below the job config: no module of tfcflow/data imports tfcflow.config
(the options both validate live in tfcflow/data/options.py)."""
import os
import subprocess
import sys

import tfcflow.data

DATA = os.path.dirname(tfcflow.data.__file__)


def test_no_data_module_imports_the_config():
    modules = sorted(f"tfcflow.data.{name[:-3]}" for name in os.listdir(DATA)
                     if name.endswith(".py") and name != "__init__.py")
    assert "tfcflow.data.image_folder" in modules
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "bad = [m for m in sys.modules if m == 'tfcflow.config' or m.startswith('tfcflow.trainer')]\n"
              "print(bad)\nsys.exit(1 if bad else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_the_config_checks_the_options_of_the_data_package():
    from tfcflow import config
    from tfcflow.data import options

    assert config.CHOICES[("data", "flips")] is options.FLIPS
    assert config.check_scales is options.check_scales
