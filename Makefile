# wattline: the two README commands are `make demo` and `make test`; both set up first.
# Each target is a thin wrapper: the work is in scripts/setup.sh, pytest and the wattline CLI.

VENV := .venv
PY := $(VENV)/bin/python
PYTEST_FLAGS ?= -q --durations=10
DEMO_ARGS ?=
RUFF := $(firstword $(wildcard $(VENV)/bin/ruff) $(shell command -v ruff 2>/dev/null))

# The tests of the kernels alone, run again with Numba's JIT off (test-nojit).
KERNEL_TESTS := tests/unit/test_kernel_behaviour.py tests/unit/test_alert_behaviour.py \
	tests/property/test_kernel_properties.py tests/property/test_alert_properties.py \
	tests/property/test_kernel_finite.py tests/unit/test_batch_behaviour.py \
	tests/property/test_batch_properties.py tests/unit/test_period_behaviour.py \
	tests/property/test_period_properties.py tests/unit/test_carbon_kernels.py
NOJIT_PYTEST = NUMBA_DISABLE_JIT=1 $(PY) -m pytest $(PYTEST_FLAGS) $(KERNEL_TESTS)

.PHONY: setup test test-nojit demo bench lint clean

## setup: Debian packages (as root), .venv and an editable install with test extras
setup:
	@bash scripts/setup.sh

## test: the full suite, end-to-end tests included, then test-nojit's run (what CI runs: .ci/run)
test: setup
	$(PY) -m pytest $(PYTEST_FLAGS)
	$(NOJIT_PYTEST)

## test-nojit: the kernel tests with NUMBA_DISABLE_JIT=1: the kernels run as Python, for coverage
test-nojit: setup
	$(NOJIT_PYTEST)

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
