# Two commands for a new user: `make run` (the retraining flow on the embedded defaults)
# and `make test` (the whole test suite). Both create or refresh .venv when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default. For a GPU, pass your CUDA build, e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint format lock clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/simpo run

# Three workers (pytest-xdist) on two cores: a worker waiting on a server or a process it started
# leaves its core to the others. Each test file runs on one of them (`--dist loadfile`: a flow run
# that several tests of a file read is made once), files in collection order (slow tests first).
TEST_WORKERS ?= 3
test: setup lint
	$(BIN)/python -m pytest -m "unit or integration or flows or slow" -n $(TEST_WORKERS) --dist loadfile \
	  --no-loadscope-reorder --durations=15

# Lint, formatting and spelling; `make format` rewrites the files ruff would change.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/codespell

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-fast: setup
	$(BIN)/python -m pytest

lock: setup
	{ echo "# Full lock of the environment \`make setup\` builds (torch excluded: see TORCH_SPEC in the Makefile)."; \
	  echo "# Refresh with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -viE '^(torch|nvidia-|triton)'; } > requirements/constraints.txt

clean:
	rm -rf $(VENV) .simpo simpo-runs

# Data-layer throughput and peak memory (not a test): BENCH_SIZES=10000,100000 for a quick run.
BENCH_SIZES ?= 10000,100000,1000000
.PHONY: bench-data
bench-data: setup
	$(BIN)/python bench/bench_data.py --sizes $(BENCH_SIZES)

# Peak memory and time of mixing two large sources, streamed and on whole frames (not a test):
# BENCH_MIX_ROWS=100000 for a quick run.
BENCH_MIX_ROWS ?= 1000000
.PHONY: bench-mix
bench-mix: setup
	$(BIN)/python bench/bench_mix.py --rows $(BENCH_MIX_ROWS)

# Parameter, gradient and optimizer-state memory per process under ddp and fsdp (CPU, gloo),
# and the per-GPU projection for a full fine-tune of an 8B Llama on 8 GPUs.
.PHONY: bench-memory
bench-memory: setup
	$(BIN)/python bench/bench_memory.py $(BENCH_MEMORY_ARGS)

# Two small trainings started together against one alone, with the automatic thread rule and
# with every core per process (not a test). BENCH_CONCURRENT_ARGS="--repeats 1" for a quick run,
# "--knee" for seconds per step by thread count.
BENCH_CONCURRENT_ARGS ?=
.PHONY: bench-concurrent
bench-concurrent: setup
	$(BIN)/python bench/bench_concurrent.py $(BENCH_CONCURRENT_ARGS)

# Trainer throughput, peak memory and MFU against TRL (not a test): installs the `bench`
# extra into .venv when missing. BENCH_ARGS="--vocabs 32000 --steps 6" for a quick run.
BENCH_ARGS ?=
.PHONY: bench
bench: setup
	$(BIN)/python -c "import trl" 2>/dev/null || $(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[bench]"
	$(BIN)/python bench/bench_trainer.py $(BENCH_ARGS)

# Every GPU path on one CUDA GPU, stage by stage (not a test; docs/performance.md, gpu-check):
# one JSON line per stage as it ends, a summary line last; exit 1 when a stage failed, 2 without
# CUDA. GPU_CHECK_ARGS="--full" for longer shapes, "--dry-run" on the CPU, "--stages packing".
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check: setup
	$(BIN)/python bench/gpu_check.py $(GPU_CHECK_ARGS)
