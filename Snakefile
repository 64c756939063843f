# BalanceHead workflow. `snakemake --cores all all` (local) or `snakemake --profile slurm all` (cluster).
# The stage list lives in src/balancehead/pipeline.py; rules/*.smk build each rule from it, and
# dvc.yaml is generated from it, so both tools run the same commands on the same deps/outs/params.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from balancehead.params import load_params
from balancehead import pipeline

P = load_params(Path(workflow.basedir) / "params.yaml")   # validated before any job is scheduled
from balancehead.locking import ORCHESTRATOR_ENV, refuse_if_dvc_running
refuse_if_dvc_running(workflow.basedir)                   # not while `dvc repro` runs in this checkout
os.environ[ORCHESTRATOR_ENV] = "snakemake"                # our jobs pass the check against Snakemake's lock
NSHARDS = P.workflow.shards


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/synthesis.smk"
include: "rules/preprocess.smk"
include: "rules/filtering.smk"
include: "rules/labelling.smk"
include: "rules/packing.smk"
include: "rules/ops.smk"
include: "rules/train.smk"
include: "rules/evaluation.smk"


rule all:
    input:
        "data/dataset",
        "results/dataset_card",
        "data/build_ops",
        "data/train",
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
