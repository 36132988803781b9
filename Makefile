# The README's two commands: `make demo` and `make test`. Each sets up an
# isolated virtual environment (.venv) with the project's dependencies the
# first time, and skips that when pyproject.toml has not changed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/layerlab demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python bench/seed_network.py

clean:
	rm -rf $(VENV) build *.egg-info
