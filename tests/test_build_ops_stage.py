"""`dvc repro build_ops` from a fresh copy compiles the C++ ops with ninja, checks them against the
PyTorch references, and the models can then load them (Snakemake's `build_ops` rule runs the same
command; tests/test_slurm.py runs it through SLURM)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import BIN, run, tool_env


def test_dvc_repro_build_ops_compiles_checks_and_is_loadable(workspace):
    out = run([str(BIN / "dvc"), "repro", "build_ops"], cwd=workspace, timeout=1200).stdout
    assert "Running stage 'build_ops'" in out
    report = json.loads((workspace / "data/build_ops/report.json").read_text())
    cpu = next(e for e in report["extensions"] if e["name"] == "balancehead_ops_cpu")
    assert report["ok"] and cpu["status"] == "ok" and cpu["check"]["passed"]
    assert report["versions"]["torch"] and report["versions"]["gcc"]

    env = {k: v for k, v in tool_env().items() if k != "BALANCEHEAD_OPS_DIR"}
    # what the stages do with their declared input data/build_ops: no environment variable needed
    probe = ("import torch; from balancehead.ops import bias_act, use_built; "
             "m = use_built('data/build_ops', cpu=True); x = torch.randn(2, 3, 4, 4, dtype=torch.float64); "
             "b = torch.randn(3, dtype=torch.float64); "
             "d = (bias_act(x, b, act='lrelu', impl='compiled') - bias_act(x, b, act='lrelu', impl='ref')).abs().max(); "
             "print(m is not None, float(d))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=workspace, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded, diff = proc.stdout.split()
    assert loaded == "True" and float(diff) < 1e-12


def test_auto_skips_the_cuda_build_without_a_usable_gpu(monkeypatch, tmp_path):
    """`auto` compiles CUDA kernels only where a GPU can run them (half of a GPU-less `make run` was
    spent compiling them); `yes` still compiles them, e.g. on a login node."""
    import torch

    from balancehead.stages import build_ops

    calls = []
    monkeypatch.setattr(build_ops, "find_cuda_home", lambda cfg: "/opt/cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(build_ops.ops_build, "build_cuda_extension", lambda *a: calls.append(a) or 1 / 0)
    skipped = build_ops._build_cuda(build_ops.BuildOpsConfig(build_cuda="auto"), tmp_path)
    assert skipped["status"] == "skipped" and "no usable CUDA device" in skipped["reason"] and not calls
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setenv("CUDA_HOME", "/opt/cuda")                 # restored after the test
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/opt/cuda")
    with pytest.raises(ZeroDivisionError):                         # `yes` went on to compile
        build_ops._build_cuda(build_ops.BuildOpsConfig(build_cuda="yes"), tmp_path)
    assert len(calls) == 1
