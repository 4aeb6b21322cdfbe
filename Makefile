# The commands people type. Everything runs through uv and the locked dependencies: uv on PATH,
# else the one the quick start installed into ./.tools (so `make` works in a fresh shell after it).
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)

.PHONY: setup demo test test-fast lint fmt typecheck bench server pools deploy worker

setup:            ## install the locked dependencies into .venv
	$(UV) sync --frozen --compile-bytecode

demo: setup       ## generate SOT exports, serve them on loopback, ingest them, print a summary
	.venv/bin/headwater demo

test:             ## lint, type-check and run the whole test suite (what CI runs)
	python3 quickstart.py test

test-fast: setup  ## the test suite without the tests that start a real Prefect server
	$(UV) run --frozen pytest -m "not server"

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

fmt: setup
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

typecheck: setup
	$(UV) run --frozen mypy

bench: setup      ## SOT load benchmark (2M raw_alerts rows and 4x that)
	$(UV) run --frozen python bench/sot_load.py

server: setup     ## a local Prefect server with its UI on http://127.0.0.1:4200
	$(UV) run --frozen prefect server start --host 127.0.0.1

pools: setup      ## create or update the work pools and queues (idempotent)
	$(UV) run --frozen python -m deployments.setup

deploy: pools     ## register every deployment of prefect.yaml
	$(UV) run --frozen prefect --no-prompt deploy --all

worker: setup     ## a process worker for the headwater pool
	$(UV) run --frozen prefect worker start --pool headwater
