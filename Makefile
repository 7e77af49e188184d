# sensorcloud: `make up` runs it, `make test` tests it. Both set up whatever is missing first.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint format venv system-deps lock clean help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(STAMP) ## create .venv with the locked dependencies

system-deps: ## install postgresql and redis-server (Debian, as root) if missing
	scripts/install-system-deps.sh

up: venv ## run sensorcloud in its embedded default on http://localhost:8083
	$(BIN)/sensorcloud serve

lint: venv ## ruff (format and lint) and mypy --strict
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy

format: venv ## apply ruff's formatting and fixes
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

test: venv system-deps lint ## set up what is missing, then run every test
	$(BIN)/pytest

lock: ## re-pin requirements.lock from pyproject.toml (needs the network)
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q --upgrade pip
	.lockenv/bin/pip install -q -e '.[dev]'
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^sensorcloud' > requirements.lock
	rm -rf .lockenv

clean: ## remove the virtualenv and caches (not ./data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
