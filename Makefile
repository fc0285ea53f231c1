# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

BROWSER_STAMP := $(VENV)/.browser-stamp
# The console's browser tests: Debian's Chromium and its driver, and axe-core from the npm registry.
AXE_CORE_VERSION := 4.14.1

.PHONY: install browser run test check bench openapi clean

TEST_STAMP := $(VENV)/.test-stamp

# Serving needs the service's packages only; the test tools come with `make test`.
$(STAMP): pyproject.toml constraints.txt
	@echo "creating the virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing the service's packages (a minute or two on a new machine)"
	$(BIN)/python -m pip install --progress-bar off --no-color -c constraints.txt -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	@echo "installing the test tools"
	$(BIN)/python -m pip install --quiet --progress-bar off -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

$(BROWSER_STAMP): $(TEST_STAMP)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "installing Debian's chromium and chromium-driver for the console's browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/npm axe-core@$(AXE_CORE_VERSION)
	touch $(BROWSER_STAMP)

## Chromium, its driver and axe-core, for tests/test_console_browser.py (the test command installs them)
browser: $(BROWSER_STAMP)

## Create the environment, migrate, seed the demo data (first run only) and serve on http://$(HOST):$(PORT)
run: install
	$(BIN)/aidaccess db upgrade
	$(BIN)/aidaccess seed demo
	@echo "serving on http://$(HOST):$(PORT): the console at /, the API docs at /docs"
	$(BIN)/aidaccess serve --host $(HOST) --port $(PORT)

## The test suite: SQLite, or PostgreSQL when AIDACCESS_TEST_DATABASE_URL is set
test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest
	@if [ -z "$$AIDACCESS_TEST_DATABASE_URL" ]; then \
		echo "PostgreSQL skipped: set AIDACCESS_TEST_DATABASE_URL=postgresql+psycopg://USER@HOST:PORT/DB to run the suite on it too"; \
	fi

## Lint, formatting and types (ruff, mypy; configured in pyproject.toml); CI runs it before the tests
check: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Throughput and latency of /v1/me against a bare endpoint (not part of CI)
bench: $(TEST_STAMP)
	$(BIN)/python bench/bench_me.py

openapi: install
	$(BIN)/aidaccess openapi --output openapi/openapi.json

## Remove the virtual environment, the data (var/: the database, the development keys) and test artifacts
clean:
	rm -rf $(VENV) var .pytest_cache test-artifacts
