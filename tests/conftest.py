"""Shared fixtures: a throw-away copy of the repository (its own git + DVC state) with small params,
for tests that run the real tools (snakemake, dvc, the stage CLI)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Small but complete: every stage does real work on a handful of subjects.
SMALL = {
    "ingest": {"num_sources": 10, "image_size": 64},
    "synthesizer": {"image_size": 64},
    "preprocess": {"crop_size": 64},
    "synth_views": {"views_per_front": 4},
    "label_clip": {"batch_size": 8},
    "pack_dataset": {"shard_size": 16},
    "build_ops": {"build_cuda": "no"},
    "train": {"total_kimg": 0.1, "kimg_per_tick": 0.05, "eval": {"num_images": 32}},
    "sample_prior": {"num_identities": 3, "holdout_identities": 1, "equator_views": 4, "random_views": 4},
    "train_recon": {"steps": 6, "batch_size": 1, "checkpoint_steps": 3, "log_steps": 2, "holdout_identities": 1},
    "invert": {"max_targets": 1, "w_steps": 8, "g_steps": 8, "turntable_frames": 6},
    "evaluate": {"num_fakes": 16, "fakes_per_yaw_bin": 4, "mknnd_samples": 16, "id_identities": 3,
                 "kid_subsets": 10, "kid_subset_size": 8, "turntable_samples": 1, "turntable_frames": 6},
}


def deep_update(d: dict, u: dict) -> dict:
    for k, v in u.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            deep_update(d[k], v)
        else:
            d[k] = v
    return d


def tool_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    return env


def run(cmd, cwd, check=True, timeout=900, **kw) -> subprocess.CompletedProcess:
    """Run a real command; on failure show its output in the assertion message."""
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout,
                          shell=isinstance(cmd, str), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {cmd}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def copy_repo(dest: Path) -> Path:
    """Copy what git would ship (tracked + untracked-not-ignored files), then make it its own repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in files:
        if not f or f.startswith(b"results/"):      # a developer's run results are not part of the code
            continue
        src = REPO / f.decode()
        if not src.exists() and not src.is_symlink():
            continue
        dst = dest / f.decode()
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-qm", "test copy"], cwd=dest, check=True)
    return dest


class PlainDumper(yaml.SafeDumper):
    """Writes every value out: params.yaml refuses YAML anchors/aliases, which safe_dump emits for a
    dict that appears twice."""

    def ignore_aliases(self, data):
        return True


def dump_params(params: dict) -> str:
    return yaml.dump(params, Dumper=PlainDumper, sort_keys=False, width=1000)


def set_params(root: Path, updates: dict) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    deep_update(params, updates)
    path.write_text(dump_params(params))


@pytest.fixture
def workspace(tmp_path) -> Path:
    root = copy_repo(tmp_path / "repo")
    set_params(root, SMALL)
    return root


@pytest.fixture(scope="session")
def built_workspace(tmp_path_factory) -> Path:
    """One small data pipeline run by `snakemake data` (sharded), shared by the read-only tests."""
    root = copy_repo(tmp_path_factory.mktemp("built") / "repo")
    set_params(root, SMALL)
    run([str(BIN / "snakemake"), "--cores", "2", "data"], cwd=root)
    return root
