# Two commands for a newcomer: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-fast install lint format bench docs clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11+)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Set up, migrate and serve on the embedded default (SQLite + local store under ./data).
run: install
	$(BIN)/pacs-ext db upgrade
	$(BIN)/pacs-ext serve

## Set up, start what the tests need, lint, and run the whole suite (lint runs while the
## services start; see docs/contributing.md).
test: install
	TEST_LINT=1 scripts/test.sh

## The fast layer: unit and in-process API tests only (no PostgreSQL, Ceph RGW, browser,
## server process or CLI subprocess); under a minute. `make test` runs everything. Bytecode
## is written (as scripts/test.sh does): collecting compiles every test module otherwise.
test-fast: install
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -q -p no:cacheprovider -m "not postgres and not rgw and not browser and not e2e"

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cfn-lint deploy/aws/cloudformation.yaml
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

## Serve the documentation (docs/, mkdocs.yml) with live reload on http://127.0.0.1:8001.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
