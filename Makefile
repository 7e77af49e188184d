# sensorcloud: `make up` runs it, `make test` tests it. Both set up whatever is missing first.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# web/: the dashboard (its targets are below `test`)
WEB := web
WEB_STAMP := $(WEB)/node_modules/.installed
WEB_DIST := $(WEB)/dist/index.html
WEB_SOURCES := $(shell find $(WEB)/src $(WEB)/public -type f 2>/dev/null) \
	$(wildcard $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json)
CHROMIUM ?= /usr/bin/chromium

.PHONY: up up-services test lint format venv system-deps lock clean help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(STAMP) ## create .venv with the locked dependencies

system-deps: ## install postgresql, redis-server, mosquitto, nginx (Debian, as root) if missing
	scripts/install-system-deps.sh

up: venv $(WEB_DIST) ## run sensorcloud in its embedded default on http://localhost:8083 (dashboard built if missing)
	$(BIN)/sensorcloud serve

up-services: venv system-deps ## run the microservices topology here (nginx on :8083), Ctrl-C stops it
	$(BIN)/sensorcloud up-services

lint: venv ## ruff (format and lint) and mypy --strict
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy

format: venv ## apply ruff's formatting and fixes
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

test: venv system-deps lint web-test web-browser $(WEB_DIST) ## set up what is missing, then run every test (web too)
	$(BIN)/pytest

# --- web/: the dashboard (Vue 3 + TypeScript + Vite); needs Node.js >= 20.19 and npm

.PHONY: web web-test web-browser web-dev web-clean

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js >= 20.19 (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	cd $(WEB) && npm ci --prefer-offline --no-audit --no-fund
	touch $@

$(WEB_DIST): $(WEB_STAMP) $(WEB_SOURCES)
	cd $(WEB) && npm run build

web: $(WEB_DIST) ## build the dashboard into web/dist (served by `sensorcloud serve` at /)

web-test: $(WEB_STAMP) ## the dashboard's lint (eslint), type check (vue-tsc) and unit tests (vitest)
	cd $(WEB) && npm run lint
	cd $(WEB) && npm test

web-browser: ## install Debian's chromium for the browser tests (as root) if missing
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "missing $(CHROMIUM): sudo apt-get install chromium" >&2; exit 1; fi; \
	  echo "installing chromium"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

web-dev: $(WEB_STAMP) ## the dashboard with hot reload on :5173, API proxied to SENSORCLOUD_API (default :8083)
	cd $(WEB) && npm run dev

web-clean: ## remove web/node_modules and web/dist
	rm -rf $(WEB)/node_modules $(WEB)/dist

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml requirements.lock
	$(BIN)/pip install -q -c requirements.lock -e '.[bench]'
	touch $@

.PHONY: bench-ingest
bench-ingest: $(BENCH_STAMP) system-deps ## ingest benchmark, 3 rounds, 7 of raw and postgres (3-9 min, by the machine) -> bench/results/ingest.json; BENCH_ARGS="--messages N --repeat R ..."
	$(BIN)/python bench/ingest.py --messages 50000 --repeat 3 --live-repeat 7 --naive-messages 10000 $(BENCH_ARGS)

.PHONY: bench-query
bench-query: $(BENCH_STAMP) system-deps ## read-side benchmark, 10M rows (about 5 min) -> bench/results/query.json; BENCH_ARGS="--rows N ..."
	$(BIN)/python bench/query.py $(BENCH_ARGS)

.PHONY: bench-scaling
bench-scaling: $(BENCH_STAMP) system-deps ## 1 vs 2 replicas through nginx, side by side (2-4 min) -> bench/results/scaling.json; see docs/scaling.md
	$(BIN)/python bench/scaling.py $(BENCH_ARGS)

lock: ## re-pin requirements.lock from pyproject.toml (needs the network)
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q --upgrade pip
	.lockenv/bin/pip install -q -e '.[dev,bench]'
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^sensorcloud' > requirements.lock
	rm -rf .lockenv

clean: ## remove the virtualenv and caches (not ./data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
