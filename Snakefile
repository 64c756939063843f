# BalanceHead workflow. `snakemake --cores all all` (local) or `snakemake --profile slurm all` (cluster).
# The stage list lives in src/balancehead/pipeline.py; rules/stages.smk builds every rule from it in
# one loop, and dvc.yaml is generated from it, so both tools run the same commands on the same
# deps/outs/params.
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from balancehead.params import load_params
from balancehead import pipeline

# params.yaml is the only parameter file. It is also Snakemake's configfile, so `--config` and
# `--configfile` are seen: an attempt to override a value that way is refused instead of being ignored
# (edit params.yaml, or use `dvc exp run -S key=value`).
configfile: "params.yaml"

P = load_params(Path(workflow.basedir) / "params.yaml")   # validated before any job is scheduled
from balancehead.locking import ORCHESTRATOR_ENV, refuse_if_dvc_running
refuse_if_dvc_running(workflow.basedir)                   # not while `dvc repro` runs in this checkout
os.environ[ORCHESTRATOR_ENV] = "snakemake"                # our jobs pass the check against Snakemake's lock
_raw = yaml.safe_load((Path(workflow.basedir) / "params.yaml").read_text(encoding="utf-8"))
_overrides = sorted(k for k in set(config) | set(_raw) if config.get(k) != _raw.get(k))
if _overrides:
    raise WorkflowError(f"--config/--configfile would change {', '.join(_overrides)}, but the stages read "
                        "params.yaml only; edit params.yaml (or `dvc exp run -S key=value`) instead")
NSHARDS = P.workflow.shards


include: "rules/stages.smk"


rule all:
    input:
        "data/dataset",
        "results/dataset_card",
        "data/build_ops",
        "data/train",
        "data/recon",
        "results/metrics.json",
        "results/report",
    default_target: True


rule data:
    input:
        "data/dataset",
        "results/dataset_card",


onsuccess:
    # record what Snakemake produced in dvc.lock, so `dvc status` / `dvc repro` agree with it
    shell(dvc_commit_command())
