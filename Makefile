# The README's two commands: `make demo` and `make test`. Each sets up an
# isolated virtual environment (.venv) with the project's dependencies the
# first time, and skips that when pyproject.toml has not changed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-quick setup clean

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

# CI's short form: prints the speed-up over the plain PyTorch loop (no
# assertions on time: a slowdown shows in the log)
bench-quick: $(STAMP)
	$(VENV)/bin/python bench/seed_network.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
