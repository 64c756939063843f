"""`dvc repro build_ops` from a fresh copy compiles the C++ ops with ninja, checks them against the
PyTorch references, and the models can then load them (Snakemake's `build_ops` rule runs the same
command; tests/test_slurm.py runs it through SLURM)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import BIN, run, tool_env


def test_dvc_repro_build_ops_compiles_checks_and_is_loadable(workspace):
    out = run([str(BIN / "dvc"), "repro", "build_ops"], cwd=workspace, timeout=1200).stdout
    assert "Running stage 'build_ops'" in out
    report = json.loads((workspace / "data/build_ops/report.json").read_text())
    cpu = next(e for e in report["extensions"] if e["name"] == "balancehead_ops_cpu")
    assert report["ok"] and cpu["status"] == "ok" and cpu["check"]["passed"]
    assert report["versions"]["torch"] and report["versions"]["gcc"]

    env = dict(tool_env(), BALANCEHEAD_OPS_DIR=str(workspace / "data/build_ops"))
    probe = ("import torch; from balancehead.ops import bias_act, load_built_ops; "
             "m = load_built_ops(); x = torch.randn(2, 3, 4, 4, dtype=torch.float64); "
             "b = torch.randn(3, dtype=torch.float64); "
             "d = (bias_act(x, b, act='lrelu', impl='compiled') - bias_act(x, b, act='lrelu', impl='ref')).abs().max(); "
             "print(m is not None, float(d))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=workspace, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded, diff = proc.stdout.split()
    assert loaded == "True" and float(diff) < 1e-12
