# Two commands: `make run` (the console with the demo sprint) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export QUARTERDECK_HOST ?= 127.0.0.1
export QUARTERDECK_PORT ?= 8050

.PHONY: run test lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,demo,scale]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: create .venv, install, migrate, seed the demo sprint, serve on http://127.0.0.1:8050
run: install
	export QUARTERDECK_DEMO_MODE=$${QUARTERDECK_DEMO_MODE:-true}; \
	export QUARTERDECK_AUTH__ALLOW_ANONYMOUS_READ=$${QUARTERDECK_AUTH__ALLOW_ANONYMOUS_READ:-true}; \
	$(BIN)/quarterdeck db upgrade && \
	$(BIN)/quarterdeck demo seed && \
	exec $(BIN)/quarterdeck serve

## lint: ruff (lint + format check), mypy (strict on store/ and actions/), import contracts
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy store actions providers collectors evidence egress demo console
	$(BIN)/lint-imports
	@if command -v docker-compose >/dev/null; then \
		docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"; \
	elif [ "$${CI:-}" = "true" ]; then \
		echo "CI=true but docker-compose is missing (apt-get install docker-compose)"; exit 1; \
	else echo "docker-compose not installed: compose file not validated"; fi

## test: install dev extras, lint, then the whole pytest suite (slowest 15 listed; target ≤ 6 min
## on an idle 2-core machine: Alembic and the demo seed run once per dialect per session)
test: lint
	$(BIN)/pytest --durations=15

## bench: run the benchmarks under benchmarks/ (on demand; prints ratios)
bench: install-dev
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
