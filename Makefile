# Quick start: `make run` runs a short fuzz campaign on both arches, `make test` runs lint,
# types and tests.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quality test-deps lint bench bench-bugs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# A campaign on every arch with one worker per core (it says how many). Exit status 1 means
# "found something", which is the point of the job, not a failure.
run: $(STAMP)
	$(BIN)/fuzzkit fuzz --arch all --time 30 || test $$? -eq 1

test: lint test-deps $(STAMP)
	$(BIN)/python -m pytest

# Long campaigns that measure the engines (pytest marker `quality`).
test-quality: test-deps $(STAMP)
	$(BIN)/python -m pytest -m quality

# The real programs some tests start (redis-server, chromium), installed when missing and possible.
test-deps:
	./scripts/test-services

lint: $(STAMP)
	$(BIN)/ruff check fuzzkit plugins tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/fuzzkit bench

# Time to bug on the seeded library: minutes, so never part of `make test`.
bench-bugs: $(STAMP)
	$(BIN)/fuzzkit bench --bugs

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
