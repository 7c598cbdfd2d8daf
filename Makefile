# postoffice — `make run` starts the server, `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: run test lint format deps clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed-run

## run: set up and start the server on its embedded default (./postoffice-data)
run: $(VENV)/.installed-run
	$(BIN)/postoffice serve

## deps: Debian tools the interop tests drive (installed only where missing, as root)
deps:
	sh scripts/debian-packages.sh

## test: set up and run the whole test suite (lint included)
test: $(VENV)/.installed-dev deps
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/pytest

## bench: postoffice vs Postfix, Dovecot and aiosmtpd on loopback (not in test/CI; BENCH_QUICK=1: smoke run)
bench: $(VENV)/.installed-bench
	sh bench/debian-packages.sh
	$(BIN)/python -m bench.run

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) postoffice-data .pytest_cache
