#!/usr/bin/env bash
# Snakemake (`--sdm conda`) runs this once, inside the environment it has just created from
# balancehead.yaml: install this repository's package into it, editable (jobs always run the checkout's
# current code, and the env need not be rebuilt when the code changes), without dependencies (the env file
# pins them). rules/stages.smk exports BALANCEHEAD_ROOT, the workflow's directory.
set -eu
root="${BALANCEHEAD_ROOT:?BALANCEHEAD_ROOT must name the repository to install (the Snakefile sets it)}"
test -f "$root/pyproject.toml" || { echo "BALANCEHEAD_ROOT=$root has no pyproject.toml" >&2; exit 1; }
python -m pip install --no-deps --editable "$root"
