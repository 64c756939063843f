# Quick start: `make run` (install + whole chain on the embedded default), `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test clean-data bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: pip takes these two from local disk where a wheel lies there
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/balancehead validate
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores all all

test: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q tests

bench: install
	for f in benchmarks/*.py; do $(BIN)/python $$f; done

clean-data:
	rm -rf data results mlruns .snakemake
