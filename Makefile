# rnnsweep developer tasks.
#
#   make venv            create .venv: CPU torch, then rnnsweep in editable mode with its dev
#                        extras. Stamped (.venv/.stamp), so it re-runs only when pyproject.toml
#                        changes. torch is installed only if .venv cannot import one already.
#   make run             fresh demo: run studies/quick.toml into rnnsweep-demo.db, then report it
#   make test            the test suite (PYTEST_ARGS="-k render -x" to narrow it)
#   make lint            ruff check, ruff format --check and hadolint on the Dockerfile
#   make typecheck       mypy over rnnsweep/ (pyproject.toml [tool.mypy])
#   make bench           rnnsweep bench (kernel and training throughput)
#   make clean           build outputs, caches and the demo database; keeps .venv
#                        (rm -rf .venv for a full reset: reinstalling torch is the slow part)
#   make install-system  for a box that already has its own (e.g. CUDA) torch: install rnnsweep
#                        editable into $(PYTHON) itself; pip keeps that torch, since it meets
#                        the torch>=2.1 floor in pyproject.toml.
#
# Knobs (make VAR=value):
#   PYTHON         interpreter that creates the venv / receives install-system (python3)
#   TORCH_VERSION  CPU torch the venv gets (2.13.0, the build this machine has locally)
#   TORCH_SPEC     full pip requirement for torch; a GPU box can point it at a CUDA build,
#                  e.g. TORCH_SPEC="torch==2.13.0 --index-url <its CUDA wheel index>"

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp
DEMO_DB := rnnsweep-demo.db

.DEFAULT_GOAL := test
.PHONY: venv run test lint typecheck bench clean install-system

venv: $(STAMP)

# torch is installed only when none is importable, so a venv holding a CUDA build keeps it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

# The demo always starts from an empty database, so a second `make run` shows the same study.
run: venv
	rm -f $(DEMO_DB) $(DEMO_DB)-journal $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(BIN)/rnnsweep run studies/quick.toml --storage sqlite:///$(DEMO_DB)
	$(BIN)/rnnsweep report --storage sqlite:///$(DEMO_DB)

test: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: venv
	$(BIN)/mypy

bench: venv
	$(BIN)/rnnsweep bench

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache out
	rm -f $(DEMO_DB) $(DEMO_DB)-journal $(DEMO_DB)-wal $(DEMO_DB)-shm
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

# Refuses to run without a torch: pip would otherwise fetch a default build, which is
# exactly what a CUDA box does not want.
install-system:
	@$(PYTHON) -c "import torch" 2>/dev/null || { \
		echo "install-system: $(PYTHON) has no torch; install your CUDA build first," \
		     "or use 'make venv' for the CPU build" >&2; exit 1; }
	$(PYTHON) -m pip install -e .
