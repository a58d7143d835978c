# Two-command quickstart: `make run` (main job, offline) and `make test` (the test suite).
# Both create .venv and install the package with its test/experiment extras the first time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test,experiments]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) training/gaussian_mixture/train.py --config training/gaussian_mixture/config.json --out runs/gaussian_mixture

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ''

clean:
	rm -rf $(VENV) runs
