"""The embedded pipeline through a real SLURM cluster: `snakemake --profile slurm all`, as typed from
the repository root. `.ci/run` starts a single-node slurmctld + slurmd on loopback (`.ci/slurm-up`)
and sets BALANCEHEAD_REQUIRE_SLURM=1, so in CI a missing cluster is a failure, never a skip."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, REPO, run


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mixed", "alloc"))


@pytest.fixture(scope="module")
def slurm():
    if not _cluster_up() and os.geteuid() == 0:
        subprocess.run([str(REPO / ".ci/slurm-up")], capture_output=True, text=True)
    if _cluster_up():
        return True
    if os.environ.get("BALANCEHEAD_REQUIRE_SLURM") == "1":
        pytest.fail("no SLURM cluster answers sinfo and .ci/slurm-up could not start one")
    pytest.skip("no local SLURM (run .ci/slurm-up as root to start one); CI requires it")


def test_snakemake_profile_slurm_runs_the_whole_chain(slurm, workspace):
    proc = run([str(BIN / "snakemake"), "--profile", "slurm", "all"], cwd=workspace, timeout=1500)
    log = proc.stdout + proc.stderr
    rules_run = re.findall(r"^rule (\w+):$", log, re.M)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert {"ingest_shard", "ingest", "label_clip", "pack_dataset", "build_ops", "train", "sample_prior",
            "invert", "evaluate", "report"} <= set(rules_run)
    assert len(submitted) == len(rules_run) and len(set(submitted)) == len(submitted)   # every job went through sbatch
    for out in ("data/dataset/manifest.parquet", "results/dataset.json", "data/build_ops/report.json",
                "results/train.json", "results/metrics.json", "results/report/index.html"):
        assert (workspace / out).exists(), out
    status = run([str(BIN / "dvc"), "status"], cwd=workspace).stdout
    assert "up to date" in status
