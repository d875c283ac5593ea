# pimcast — two commands set everything up on a fresh machine:
#   make run    the main job on the embedded default
#   make test   the whole test suite (fast tests + slow RTL regressions)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= --durations=25
# pytest-xdist workers (one per core of the 2-core CI machine); test files are the unit of
# distribution (module fixtures and simulator builds stay in one worker; see sim/runner.py)
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: run test test-fast setup lint verilog bench clean

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(VENV)/bin/pimcast run

test: setup
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

verilog: setup
	$(VENV)/bin/pimcast verilog --top all --out build/verilog

lint: setup
	$(VENV)/bin/pimcast lint

clean:
	rm -rf build runs .pytest_cache
