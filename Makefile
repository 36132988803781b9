# The README's two commands: `make demo` and `make test`. Each sets up an
# isolated virtual environment (.venv) with the project's dependencies the
# first time, and skips that when neither pyproject.toml nor this file has
# changed.
#
# The library declares a torch range (pyproject.toml); the project's machines
# and CI pin the release they test with, a CPU build on local disk. It is
# installed first, so that resolving the range finds it already there and
# never fetches another build (e.g. a multi-GB CUDA one). Another torch:
# `make TORCH="torch==2.6.0" setup`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test coverage bench bench-quick setup clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/layerlab demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The suite under coverage, the subprocess tests (command line, demo,
# examples, DDP workers) included: see [tool.coverage] in pyproject.toml.
coverage: $(STAMP)
	rm -f .coverage .coverage.*
	$(VENV)/bin/python -m coverage run -m pytest -q
	$(VENV)/bin/python -m coverage combine --quiet
	$(VENV)/bin/python -m coverage report

bench: $(STAMP)
	$(VENV)/bin/python bench/seed_network.py

# CI's short form: prints the speed-up over the plain PyTorch loop (no
# assertions on time: a slowdown shows in the log)
bench-quick: $(STAMP)
	$(VENV)/bin/python bench/seed_network.py --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .coverage .coverage.*
