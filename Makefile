# wattline: the two README commands are `make demo` and `make test`; both set up first.
# Each target is a thin wrapper: the work is in scripts/setup.sh, pytest and the wattline CLI.

VENV := .venv
PY := $(VENV)/bin/python
PYTEST_FLAGS ?= -q --durations=10
DEMO_ARGS ?=
RUFF := $(firstword $(wildcard $(VENV)/bin/ruff) $(shell command -v ruff 2>/dev/null))

.PHONY: setup test demo bench lint clean

## setup: Debian packages (as root), .venv and an editable install with test extras
setup:
	@bash scripts/setup.sh

## test: the full suite, end-to-end tests included (what CI runs: .ci/run)
test: setup
	$(PY) -m pytest $(PYTEST_FLAGS)

## demo: three simulated lines and a live kgce/t table (make demo DEMO_ARGS="--duration 30")
demo: setup
	$(VENV)/bin/wattline demo $(DEMO_ARGS)

## bench: the kernel benchmark
bench: setup
	$(VENV)/bin/wattline bench kernels

## lint: ruff, if it is installed
lint:
ifeq ($(RUFF),)
	@echo "lint: ruff is not installed (pip install ruff into $(VENV) to use it)"
else
	$(RUFF) check contract ingest kernels simulators benchmarks tests
endif

## clean: build leftovers (keeps .venv)
clean:
	rm -rf build dist .pytest_cache .hypothesis
