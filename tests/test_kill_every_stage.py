"""kill -9 at a seeded random point of EVERY pipeline stage, then a rerun (issue 14, Tests): the rerun ends
with outputs byte-identical to an uninterrupted run and leaves no temp files behind; nothing hangs (every
subprocess runs under a hard timeout).

The upstream outputs are built once per session by the real chain (`python -m balancehead run STAGE`, the
command DVC and the Snakemake rules run) with the smallest world and tiny model presets, timing each stage.
Each case then copies that tree, removes the stage's own outputs and per-item cache, starts the stage, sends
SIGKILL after a delay drawn from an RNG seeded by the stage name (within the stage's measured run time),
reruns it to completion and compares every file of its declared outputs, metrics and plots.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from balancehead import pipeline
from conftest import REPO, SMALL, deep_update

STAGE_TIMEOUT = 240            # hard limit of one stage run (s): a hang fails the case instead of CI
KILL_WINDOW = (0.3, 0.95)      # the kill lands in this fraction of the stage's measured run time

# Smallest world and tiny presets on top of conftest.SMALL: each stage does real work on a handful of items.
TINY = deep_update(json.loads(json.dumps(SMALL)), {
    "ingest": {"num_sources": 4, "image_size": 48},
    "synth_front": {"candidates": 2},
    "train": {"total_kimg": 0.032, "kimg_per_tick": 0.016, "eval": {"num_images": 16}},
    "evaluate": {"fid_bootstrap": 0},
})

# Values that measure the machine, not the result: they legitimately differ between two runs, killed or not.
# Named explicitly; every other byte must match.
TIMING_JSON_KEYS = {"sec_per_kimg", "img_per_s", "peak_memory_mb",      # results/train.json
                    "seconds",                          # data/invert/*/metrics.json, data/eval_recon/*/metrics.json
                    "seconds_per_reconstruction"}       # results/eval_recon.json (PanoLAM Table 3)
TIMING_TSV_COLUMNS = {"sec_per_kimg", "img_per_s", "peak_memory_mb"}    # results/train_stats.tsv, data/train/stats.tsv
# build_ops' compiler state (ninja's logs with timestamps, the build file with the absolute build path, the
# object and shared library that embed it): a compiler's output, not reproducible across directories.
# Its report.json (the numerical check of the built ops) is compared.
BUILD_STATE = {".ninja_log", ".ninja_deps", "build.ninja", "lock"}
BUILD_SUFFIXES = {".o", ".so"}
# A stage's digest record (integrity.py) holds the sha256 of every file it wrote, so it inherits the timing
# columns of the files above (train's stats.tsv): its entries are checked against the files on disk instead.
DIGEST_RECORD = "digests.json"


def env() -> dict:
    e = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
             MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.pop("BALANCEHEAD_ORCHESTRATOR", None)
    return e


def cmd(stage: str) -> list[str]:
    return [sys.executable, "-m", "balancehead", "run", stage]


def run_stage(root: Path, stage: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd(stage), cwd=root, env=env(), capture_output=True, text=True,
                          timeout=STAGE_TIMEOUT)
    assert proc.returncode == 0, f"{stage} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return time.monotonic() - t0


def _strip_json(value):
    if isinstance(value, dict):
        return {k: _strip_json(v) for k, v in value.items() if k not in TIMING_JSON_KEYS}
    if isinstance(value, list):
        return [_strip_json(v) for v in value]
    return value


def _strip_tsv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return text
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING_TSV_COLUMNS]
    return "\n".join("\t".join(r[i] for i in keep if i < len(r)) for r in rows)


def _digest_record(path: Path) -> bytes:
    record = json.loads(path.read_bytes())
    for rel, sha in record["files"].items():
        f = path.parent / rel
        assert hashlib.sha256(f.read_bytes()).hexdigest() == sha, f"{path}: recorded digest of {rel} is stale"
    record["files"] = {rel: "checked" if Path(rel).suffix in (".json", ".tsv") else sha
                       for rel, sha in record["files"].items()}
    return json.dumps(record, sort_keys=True).encode()


def file_digest(path: Path) -> str:
    data = path.read_bytes()
    if path.name == DIGEST_RECORD:
        data = _digest_record(path)
    elif path.suffix == ".json":
        data = json.dumps(_strip_json(json.loads(data)), sort_keys=True).encode()
    elif path.suffix == ".tsv":
        data = _strip_tsv(data.decode()).encode()
    return hashlib.sha256(data).hexdigest()


def compared(path: Path) -> bool:
    return path.name not in BUILD_STATE and path.suffix not in BUILD_SUFFIXES


def output_digests(root: Path, stage: pipeline.Stage) -> dict[str, str]:
    """relative path -> digest of every file of the stage's declared outputs, metrics and plots."""
    out = {}
    for rel in stage.all_outs():
        p = root / rel
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        assert files, f"{stage.name}: declared output {rel} missing"
        out.update({str(f.relative_to(root)): file_digest(f) for f in files if compared(f)})
    return out


def leftovers(root: Path, stage: pipeline.Stage) -> list[str]:
    parents = {(root / rel).parent for rel in stage.all_outs()} | {root / rel for rel in stage.all_outs()}
    parents.add(root / stage.scratch)
    found = []
    for d in parents:
        if d.is_dir():
            found += [str(p.relative_to(root)) for p in d.rglob("*") if ".tmp" in p.name]
    return sorted(found)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The whole chain once, uninterrupted: (tree, {stage: seconds}, {stage: output digests})."""
    root = tmp_path_factory.mktemp("kill9") / "ref"
    root.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    deep_update(params, TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, width=1000))
    seconds, digests = {}, {}
    for stage in pipeline.STAGES:
        seconds[stage.name] = run_stage(root, stage.name)
        digests[stage.name] = output_digests(root, stage)
    return root, seconds, digests


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in pipeline.STAGES])
def test_kill_minus_nine_at_a_seeded_point_then_rerun_is_byte_identical(reference, tmp_path, name):
    ref_root, seconds, digests = reference
    stage = pipeline.BY_NAME[name]
    root = tmp_path / "repo"
    shutil.copytree(ref_root, root, symlinks=True)
    for rel in stage.all_outs() + [stage.scratch]:          # the stage starts from its inputs only
        p = root / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    delay = float(rng.uniform(*KILL_WINDOW)) * seconds[name]
    proc = subprocess.Popen(cmd(name), cwd=root, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)              # the stage and any worker it started
        proc.wait(timeout=30)
        killed = True
    assert killed or proc.returncode == 0, f"{name} failed before the kill point ({proc.returncode})"

    print(f"{name}: {'killed' if killed else 'finished before the kill'} at {delay:.2f}s of {seconds[name]:.2f}s")
    run_stage(root, name)
    got = output_digests(root, stage)
    differ = sorted(k for k in digests[name].keys() | got.keys() if digests[name].get(k) != got.get(k))
    assert not leftovers(root, stage), f"{name}: temp files left behind: {leftovers(root, stage)}"
    assert not differ, f"{name} killed={killed} after {delay:.2f}s: outputs differ from an uninterrupted run: {differ}"
