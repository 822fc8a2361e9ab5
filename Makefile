# One-command set-up: `make demo` and `make test` create .venv, install the CPU torch
# build first (so pip never pulls a CUDA build), then the package with its dev extras.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xbyol-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo lint test test-fast bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Static checks on the source (config in pyproject.toml): ruff lint, mypy, and the
# import-layer contract once pyproject.toml declares one ([tool.importlinter]).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Two xdist workers (one per CI core), each single-threaded (see tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser" tests

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/quality.py

clean:
	rm -rf $(VENV) runs .pytest_cache
