# pimcast — two commands set everything up on a fresh machine:
#   make run    the main job on the embedded default
#   make test   the whole test suite (fast tests + slow RTL regressions)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= --durations=25

.PHONY: run test test-fast setup lint verilog bench clean

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(VENV)/bin/pimcast run

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

verilog: setup
	$(VENV)/bin/pimcast verilog --top all --out build/verilog

lint: setup
	$(VENV)/bin/pimcast lint

clean:
	rm -rf build runs .pytest_cache
