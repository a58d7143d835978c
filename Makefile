# Two-command quickstart: `make run` (main job, offline) and `make test` (the test suite).
# Both create .venv and install the package with its test/experiment/serving/docs extras the first time.
# `make docs` builds the documentation site (mkdocs.yml) with --strict into build/site.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all docs setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test,experiments,serving,docs]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: the Gaussian-mixture inverse problem with both vector models, then their joint report.
run: $(STAMP)
	$(VENV)/bin/tfcflow train training/gaussian_mixture/cinn.json --out runs/gaussian_mixture_cinn
	$(VENV)/bin/tfcflow train training/gaussian_mixture/rcf.json --out runs/gaussian_mixture_rcf
	$(PY) training/gaussian_mixture/report.py runs/gaussian_mixture_cinn runs/gaussian_mixture_rcf \
		--out runs/gaussian_mixture

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ''

# The site, offline; --strict: a broken link, a missing page or an unreadable docstring fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) runs build/site
