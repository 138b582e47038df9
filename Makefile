# coffer — `make run` serves the engine; `make test` sets up everything and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/coffer/v1/*.proto)

.PHONY: run test lint proto proto-check bench bench-scale bench-bulk loadtest system-packages certs clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: the engine on the embedded SQLite default (honours COFFER_* variables)
run: $(STAMP)
	$(PY) server.py

## test: venv, packages, PostgreSQL/redis-server when absent, throwaway servers, every test
test: $(STAMP) system-packages proto-check
	$(PY) -m pytest -q

system-packages:
	@bash scripts/ensure_system_packages.sh

#: What scripts/gen_reasons.py writes from the ErrorReason enum (committed, like the stubs).
REASON_MODULES := engine/domain/reasons.py clients/_reason_errors.py
#: What scripts/gen_api_docs.py writes from the protos' comments (committed, like the stubs).
API_DOCS := docs/api.md

## proto: regenerate the stubs (with typed .pyi) into coffer/v1, the reason modules and docs/api.md
proto: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTOS)
	$(PY) scripts/gen_reasons.py
	$(PY) scripts/gen_api_docs.py

## proto-check: fail when the committed stubs are not what the protos generate
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos \
		--python_out=$$tmp --grpc_python_out=$$tmp --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS) >/dev/null && \
	for f in $$tmp/coffer/v1/*; do \
		cmp -s "$$f" "coffer/v1/$$(basename $$f)" || { echo "stale stub: coffer/v1/$$(basename $$f) (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done && \
	$(PY) scripts/gen_reasons.py --out-dir $$tmp && \
	$(PY) scripts/gen_api_docs.py --out-dir $$tmp && \
	for f in $(REASON_MODULES) $(API_DOCS); do \
		cmp -s "$$tmp/$$f" "$$f" || { echo "stale generated file: $$f (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "stubs are current"

## lint: ruff on everything, mypy --strict on engine and clients, the layering contracts
## (pyproject [tool.importlinter]), no import cycle in engine, no function-level imports
LINT_SCRIPTS := scripts/check_import_cycles.py scripts/check_local_imports.py
lint: $(STAMP)
	$(VENV)/bin/ruff check engine clients tests scripts server.py
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict $(LINT_SCRIPTS)
	@# The three import checks all run, so one report lists every import to fix.
	@status=0; \
	$(VENV)/bin/lint-imports --no-logo --no-cache || status=1; \
	$(PY) scripts/check_import_cycles.py || status=1; \
	$(PY) scripts/check_local_imports.py || status=1; \
	exit $$status

## bench: throwaway PostgreSQL: pgbench TPC-B, the gRPC floor, plain, mixed, open-loop and SQLite phases; last line is JSON
bench: $(STAMP) system-packages
	$(PY) -m clients.bench

## bench-scale: plain charges on empty shards, then with 10 million ledger entries preloaded; last line is JSON
bench-scale: $(STAMP) system-packages
	$(PY) -m clients.bench --scale

## loadtest: a 60 s, 32-way harness run on SQLite and on PostgreSQL, each ending in the audit
loadtest: $(STAMP) system-packages
	$(PY) -m clients.loadtest.suite --duration 60 --concurrency 32

## certs: a development CA, server and per-role client certificates, token keys under var/certs/ (docs/security.md)
certs: $(STAMP)
	$(PY) scripts/make_certs.py --out var/certs

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

## bench-bulk: pgbench TPC-B, then 100 points to each of 1,000,000 users through IssueBatch, the audit, and a replay that must change nothing; last line is JSON
bench-bulk: $(STAMP) system-packages
	$(PY) -m clients.bench_bulk
