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

# Two processes: the suite waits on worker processes and compiles in turn, so both cores of
# a small machine stay busy (a fixed count: each process starts its own backend workers).
# One OpenMP thread per process: the test processes and their backend workers already
# outnumber the cores, and OpenMP threads that spin while waiting for a core made the torch
# tests up to 100x slower per call (the whole suite 391 s against 340 s on two cores). Tests
# check numbers, not speed; benchmarks set their own threads. --dist loadgroup keeps each
# backend's equivalence checks in one process (tests/conftest.py groups them), so that its
# worker starts once and each model is compiled once.
pytest: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup

test: lint typecheck pytest

# The main job: replay the seed notebook, check every backend against float64 for every cell
# (rnn, lstm, gru and the reset-before gru: one table each, and one of its gradients), a small
# benchmark of every backend over the rnn, lstm and gru cells and one training case, then a
# report of both, grouped by cell. A failed check does
# not stop the demo before the report (the report shows it), but the demo exits non-zero. The
# cells multiply the work, so the sizes are small (one hidden size, two sequence lengths) to
# keep it within a few minutes on two cores.
DEMO_CASE := --batch 4 --seq-len 50 --input-size 16 --hidden-size 32 --layers 2 --bidirectional
DEMO_BENCH := --cell rnn,lstm,gru --batch 16 --seq-len 25,100 --input-size 64 --hidden-size 64 \
	--min-time 0.15 --warmup 0.1
# One training case (forward + backward) beside its inference case, resumed into the same file:
# the inference case is already there, so only the training step runs on each backend.
DEMO_TRAIN := --cell lstm --mode inference,training --batch 16 --seq-len 25 --input-size 64 \
	--hidden-size 64 --min-time 0.15 --warmup 0.1

demo: $(STAMP)
	mkdir -p $(DEMO_DIR)
	rm -f $(DEMO_DIR)/bench.json
	$(PY) -m rnnbench seed
	@rc=0; \
	$(PY) -m rnnbench check $(DEMO_CASE) --cell all --h0 --grad --dtype float32,float64 --json $(DEMO_DIR)/check.json || rc=$$?; \
	$(PY) -m rnnbench bench $(DEMO_BENCH) --out $(DEMO_DIR)/bench.json || rc=$$?; \
	$(PY) -m rnnbench bench $(DEMO_TRAIN) --out $(DEMO_DIR)/bench.json || rc=$$?; \
	$(PY) -m rnnbench report $(DEMO_DIR)/bench.json $(DEMO_DIR)/check.json -o $(DEMO_DIR)/report || rc=$$?; \
	exit $$rc

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
