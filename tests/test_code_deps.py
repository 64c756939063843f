"""Code dependencies are computed from each stage module's import graph (pipeline.py); these tests pin
that the computation is complete (the interpreter's own view of what a stage imports), that DVC sees it
(touching any source file changes exactly the stages that import it), and that the layering reads one
way."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from balancehead import pipeline
from conftest import REPO, copy_repo

HERE = Path(__file__).resolve().parent


def test_the_defects_of_the_hand_written_lists_are_gone():
    """The omissions the old hand-written lists had (issue 11): ops (and its C++/CUDA sources) under the
    model stages, the pose estimator's renderer and the camera under preprocess, runner/io everywhere."""
    for name in ("train", "sample_prior", "invert", "evaluate"):
        files = pipeline.stage(name).code_files()
        assert "src/balancehead/ops/upfirdn2d.py" in files
        assert {"src/balancehead/ops/csrc/ops_cuda.cu", "src/balancehead/ops/csrc/ops_cpu.cpp"} <= set(files)
    for name in ("preprocess_fronts", "preprocess_views"):
        files = pipeline.stage(name).code_files()
        assert {"src/balancehead/world/render.py", "src/balancehead/camera.py"} <= set(files)
    for s in pipeline.STAGES:
        files = s.code_files()
        assert f"src/balancehead/stages/{s.module or s.name}.py" in files
        assert "src/balancehead/__init__.py" in files and "src/balancehead/stages/__init__.py" in files
        if s.sharded:          # the per-item cache, chunking, seeds, PNG encoding
            assert {"src/balancehead/runner.py", "src/balancehead/fileio.py", "src/balancehead/hashing.py",
                    "src/balancehead/params.py"} <= set(files), s.name
        assert not {f"src/balancehead/{m.split('.')[-1]}.py" for m in pipeline.EXCLUDED_MODULES} & set(files)


_PROBE = r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
out = {}
for name, module in json.loads(sys.argv[2]).items():
    for m in [m for m in sys.modules if m == "balancehead" or m.startswith("balancehead.")]:
        del sys.modules[m]
    importlib.import_module(module)
    out[name] = sorted(getattr(sys.modules[m], "__file__", None) or "" for m in sys.modules
                       if m == "balancehead" or m.startswith("balancehead."))
print("@@" + json.dumps(out))
"""


def test_every_module_a_stage_really_imports_is_a_dependency():
    """An independent oracle: the interpreter imports each stage module afresh and lists the package
    modules it loaded; each must be a computed dependency (or deliberately excluded)."""
    modules = {s.name: s.module_name for s in pipeline.STAGES}
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(REPO / "src"), json.dumps(modules)],
                          capture_output=True, text=True, check=True, cwd=REPO)
    loaded = json.loads(proc.stdout.split("@@", 1)[1])
    excluded = {str(pipeline._module_file(m).relative_to(REPO)) for m in pipeline.EXCLUDED_MODULES}
    for name, files in loaded.items():
        rel = {str(Path(f).resolve().relative_to(REPO)) for f in files if f}
        missing = rel - set(pipeline.stage(name).code_files()) - excluded
        assert not missing, f"{name} imports {sorted(missing)} but they are not in its code dependencies"


def test_function_local_and_relative_imports_are_followed():
    """A module imported only inside a function (the production backends) still counts."""
    files = pipeline.stage("filter_views").code_files()
    assert "src/balancehead/backends/production/qwen_vl_judge.py" in files          # imported inside make_judge
    assert "src/balancehead/backends/production/__init__.py" in files                # its package runs first
    assert "src/balancehead/backends/production/flux_kontext.py" not in files        # never imported there


@pytest.fixture(scope="module")
def committed_copy(tmp_path_factory):
    """A copy of the repository whose dvc.lock records every stage as up to date (outputs stubbed)."""
    from dvc.repo import Repo

    root = copy_repo(tmp_path_factory.mktemp("touch") / "repo")
    for s in pipeline.STAGES:
        for out in s.all_outs():
            p = root / out
            if Path(out).suffix:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("stub\n")
            else:
                p.mkdir(parents=True, exist_ok=True)
                (p / "stub").write_text("stub\n")
    with contextlib.chdir(root), Repo(str(root)) as repo:
        repo.commit(None, force=True)
    return root


def test_touching_any_source_file_changes_exactly_the_stages_that_import_it(committed_copy):
    """Every source file of the package, one at a time: a comment appended to it in the copy makes DVC
    (its own stages, parsed from dvc.yaml and dvc.lock, and its own change check) report a changed dep
    in exactly the stages whose computed dependencies hold it; their descendants follow from the data
    deps (tests/test_pipeline_e2e.py). Only the touched file can have changed, so each stage's deps
    are indexed by path once and DVC checks the touched one (a full status per file takes minutes)."""
    from dvc.repo import Repo

    root = committed_copy
    reached = set()
    with contextlib.chdir(root), Repo(str(root)) as repo:
        assert repo.status() == {}
        stages = list(repo.index.stages)
        assert {st.name for st in stages} == {s.name for s in pipeline.STAGES}
        deps_by_path: dict[str, list] = {}
        for st in stages:
            for dep in st.deps:
                deps_by_path.setdefault(dep.def_path, []).append((st.name, dep))
        for rel in pipeline.source_files():
            path = root / rel
            original = path.read_bytes()
            path.write_bytes(original + (b"\n# touched\n" if path.suffix == ".py" else b"\n// touched\n"))
            try:
                with repo.lock:
                    changed = {name for name, dep in deps_by_path.get(rel, []) if dep.changed()}
            finally:
                path.write_bytes(original)
            expected = pipeline.stages_importing(rel)
            assert changed == expected, f"touching {rel}: DVC reports {sorted(changed)}, expected {sorted(expected)}"
            reached |= expected
        assert reached == {s.name for s in pipeline.STAGES}
        assert repo.status() == {}


def test_only_declared_modules_are_outside_every_stage():
    """The files no stage depends on are the entry points and the excluded modules, nothing else."""
    unused = {f for f in pipeline.source_files() if not pipeline.stages_importing(f)}
    excluded = {str(pipeline._module_file(m).relative_to(REPO)) for m in pipeline.EXCLUDED_MODULES}
    # entry points and what only the command line runs (import-checkpoint writes a checkpoint directory,
    # which the stages then read as their `generator.checkpoint` input, a data dependency)
    # (`balancehead sweep` queues DVC experiments that run the stages; it is not one)
    cli_only = {"src/balancehead/cli.py", "src/balancehead/__main__.py", "src/balancehead/models/convert.py",
                "src/balancehead/models/official_import.py", "src/balancehead/models/official_pickle.py",
                "src/balancehead/sweep.py"}
    assert unused == excluded | cli_only
