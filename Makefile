# Quick start: `make run` (install + whole chain on the embedded default), `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test sweep clean-data bench

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

# BalanceHead Table 1: one DVC experiment per params.yaml sweep.arms entry (README "Reproduce Table 1")
sweep: install
	$(BIN)/balancehead sweep

test: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q tests

# Figures on the present device (CPU here); each script takes --help for larger / paper-size runs.
bench: install
	$(BIN)/python benchmarks/bench_world.py
	$(BIN)/python benchmarks/bench_iqa.py
	$(BIN)/python benchmarks/bench_offline_backends.py
	$(BIN)/python benchmarks/bench_reader.py
	$(BIN)/python benchmarks/bench_models.py --config tiny
	$(BIN)/python benchmarks/bench_ops.py $(if $(wildcard data/build_ops/report.json),--ops-dir data/build_ops,)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_vs_eg3d.py --config tiny --iters 3
	$(BIN)/python benchmarks/bench_eval.py --quick
	$(BIN)/python benchmarks/bench_production.py --tiny

clean-data:
	rm -rf data results mlruns .snakemake
