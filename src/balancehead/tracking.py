"""MLflow tracking: one run per stage that asks for it, in the local store named by params (mlflow.*).

Runs are tagged with the git commit and the DVC stage; params are flattened ('ingest.num_sources').
Telemetry is switched off: nothing leaves the machine.
"""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

from . import fileio


def flatten(d: dict) -> dict[str, str]:
    return {k: str(v) for k, v in fileio.flatten(d).items()}


def git_commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextmanager
def mlflow_run(ctx, run_name: str, params: dict):
    """Yield an active mlflow module (or None when params.mlflow.enabled is false)."""
    cfg = ctx.params.mlflow
    if not cfg.enabled:
        yield None
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    cwd = os.getcwd()
    os.chdir(ctx.root)          # relative tracking URIs / artifact roots are relative to the repository
    try:
        mlflow.set_tracking_uri(cfg.tracking_uri)
        mlflow.set_experiment(cfg.experiment)
        with mlflow.start_run(run_name=run_name, tags={"git_commit": git_commit(ctx.root),
                                                      "dvc_stage": ctx.stage.name}):
            flat = flatten(params)
            items = list(flat.items())
            for i in range(0, len(items), 100):
                mlflow.log_params({k: v[:6000] for k, v in items[i:i + 100]})
            yield mlflow
    finally:
        os.chdir(cwd)
