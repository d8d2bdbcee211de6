# The few verbs people use. Everything installs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint format bench serve clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

## demo: embedded PostgreSQL + sample data + two voucher exports, printed
demo: $(STAMP)
	$(BIN)/exportflow demo

## test: the whole suite against real PostgreSQL, S3 (moto server) and Prefect
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

## serve: PostgreSQL + Prefect server/UI + deployments + worker + the exports API (Ctrl-C stops)
serve: $(STAMP)
	$(BIN)/exportflow serve

## bench-formats: write-stage cost per format on the seeded vouchers; XLSX writer comparison
bench-formats: $(STAMP)
	$(BIN)/python bench/formats.py demo
	$(BIN)/python bench/xlsx_writers.py 100000

$(BENCH_STAMP): $(STAMP)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@touch $@

## bench: every export against PostgreSQL's own COPY and dlt at BENCH_ROWS (default 1M), small-export latency through make serve -> bench/results/latest.json
##        + CSV at parallelism 1 and 2, 1M and 5M rows, beside COPY -> bench/results/parallel.json
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.parallel

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf .exportflow
