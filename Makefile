# rnnbench: `make demo` runs the main job, `make test` the whole suite. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is the CPU build on this project's machines (a local wheel); elsewhere pip
# fetches it from PyPI. Override with `make TORCH_SPEC=torch==X test`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.rnnbench-installed
DEMO_DIR ?= demo-results
LINT_PATHS := rnnbench backends tests benchmarks

.PHONY: venv test lint typecheck pytest demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all,test]"
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(PY) -m rnnbench seed
	$(PY) -m rnnbench check --batch 4 --seq-len 100 --input-size 16 --hidden-size 32 --layers 2 --bidirectional --dtype float32,float64

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
