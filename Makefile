# Every target does its own set-up on a fresh machine: it creates .venv and
# installs the project with the extras it needs before running anything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: bytecode demo test test-unit test-integration lint format docs docs-serve schemas bench clean system-packages

# uv (from PyPI, pinned) installs the same releases pip would resolve, in about a
# quarter of pip's time on a machine with an empty cache; --compile-bytecode writes
# the .pyc files pip would have written at install time.
UV_VERSION ?= 0.13.9

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[embedded,dev]'
	touch $(STAMP)

# Bytecode for the project's own modules, written once. Where PYTHONDONTWRITEBYTECODE
# is set (this CI's machines set it), Python would otherwise compile every module of
# the router again in every process: each `router` command and worker the tests
# start paid about 0.2 s of CPU for it. compileall skips what is up to date.
bytecode: $(STAMP)
	@$(PY) -m compileall -q router schemas tests bench

demo: bytecode  ## run the router end to end on embedded Kafka (Tansu) and PostgreSQL
	$(VENV)/bin/router demo

# Integration tests mostly wait on brokers and subprocesses, so four workers
# halve the run even on two cores; each worker starts its own embedded servers.
# Tests marked `long` are collected first and handed out two at a time
# (--maxschedchunk 2), so they start together on different workers.
# Debian packages some tests use (a TLS-capable PostgreSQL 15, promtool); installs
# what is missing, as root (CI runs as root).
system-packages:
	sh tests/system/install.sh

test: bytecode system-packages docs  ## lint, type-check, build the docs, then every test (unit and integration)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n 4 --maxschedchunk 2

test-unit: bytecode
	$(PY) -m pytest tests/unit

test-integration: bytecode system-packages
	$(PY) -m pytest tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# --strict turns every warning (a dead link or anchor, a page left out of nav)
# into a failure. No --quiet: mkdocs 1.6 then drops warnings before strict mode
# counts them, and a broken docs site would pass. Material's banner about its
# successor is switched off; the site is built into a throw-away directory.
docs: $(STAMP)  ## build the docs site (docs/, mkdocs.yml); fails on any warning
	@site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir "$$site"; \
	status=$$?; rm -rf "$$site"; exit $$status

docs-serve: $(STAMP)  ## serve the docs site on http://127.0.0.1:8000 while you edit it
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: $(STAMP)  ## regenerate the committed JSON Schema files and the AsyncAPI and OpenAPI documents
	$(PY) -m schemas.export
	$(PY) -m router.asyncapi
	$(PY) -m router.openapi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo

bench: $(STAMP)  ## print figures: 100,000-row import; router throughput next to a bare loop
	$(PY) bench/import_contacts.py
	$(PY) bench/throughput.py
