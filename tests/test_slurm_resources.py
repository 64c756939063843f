"""Issue 15, promise 1: SLURM jobs get their GPUs. The train rule's resources, as Snakemake parses them
from a params.yaml that asks for GPUs, are turned into sbatch arguments by the installed
snakemake-executor-plugin-slurm's own code (the functions its executor calls for every submission)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import copy_repo, run, set_params

HERE = Path(__file__).resolve().parent


class _Resources(dict):
    """What the plugin reads: `job.resources.get(name)` and `job.resources.name`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("slurmres") / "repo")
    set_params(root, {"workflow": {"threads": 4, "resources": {
        "train": {"gpu": 2, "mem_mb": 64000, "runtime": 600}}}})
    proc = run([sys.executable, str(HERE / "describe_rules.py"), str(root)], cwd=root)
    return json.loads(proc.stdout.split("@@RULES@@", 1)[1])


def _sbatch(rule: dict, name: str) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(name=name, resources=_Resources(rule["resources"]), threads=rule["threads"] or 1)
    params = {"run_uuid": "test", "slurm_logfile": "/tmp/x.log", "comment_str": f"rule_{name}",
              "account": "", "partition": "", "workdir": None}
    return get_submit_command(job, params) + set_gres_string(job)


def test_train_rule_requests_its_gpus_from_slurm(rules):
    train = rules["train"]
    assert train["resources"]["gpu"] == 2 and "gpus" not in train["resources"]
    call = _sbatch(train, "train")
    assert "--gpus=2" in call.split()
    assert "--mem 64000" in call and "-t 600" in call


def test_a_cpu_stage_requests_no_gpu(rules):
    call = _sbatch(rules["ingest"], "ingest")
    assert "--gpus" not in call and "--ntasks=1" in call
