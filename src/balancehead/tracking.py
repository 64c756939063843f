"""MLflow tracking: one PARENT run per pipeline run, one nested run per stage that asks for it.

Where the runs go. The store belongs to the repository's main checkout, wherever the stage runs:
  * under DVC, `$DVC_ROOT` (DVC sets it to the original repository even for `dvc exp run --temp` /
    `--queue`, whose stages run in a throw-away copy under .dvc/tmp/exps/);
  * else the checkout that owns the git directory (`git rev-parse --git-common-dir`: a `git worktree`
    logs into its main checkout);
  * else the working directory.
A relative `sqlite:///mlflow.db` (params mlflow.tracking_uri) is resolved there, and artifacts go to
`<root>/mlartifacts/`. MLflow itself records artifact locations as absolute paths; when the repository
has been moved or copied, the next run rewrites the stored locations to the new root (`relocate`), so
artifacts are effectively stored relative to the repository.

Parent runs. A pipeline run is identified by its key: the git commit, the uncommitted diff of src/, the
bytes of params.yaml and the DVC experiment name ($DVC_EXP_NAME, set by `dvc exp run`). Every stage
process looks its parent up by that key (creating it under a file lock) and nests its run below it, so
an experiment sweep shows up as a set of comparable parents, each tagged with the git commit, the DVC
experiment name, the conditioning mode, the representation and the key train params. Stage runs start
when the stage process started (real stage durations); the parent spans its first to its last stage.

Sweeps. `balancehead sweep` (BalanceHead Table 1) runs one DVC experiment per arm with `-S sweep.id=<id>`;
each arm's pipeline parent is then nested under one SWEEP run (tagged `balancehead.sweep_id`), so the UI
shows the sweep as one run whose children are the arms, side by side; the stage runs sit one level below.

Telemetry is switched off: nothing leaves the machine.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

ARTIFACTS = "mlartifacts"
KEY_TAG = "balancehead.pipeline_key"
ROOT_TAG = "balancehead.root"
SWEEP_TAG = "balancehead.sweep_id"
KIND_TAG = "balancehead.kind"          # "sweep" on a sweep's run
log = logging.getLogger("balancehead")

from . import fileio


def flatten(d: dict) -> dict[str, str]:
    return {k: str(v) for k, v in fileio.flatten(d).items()}


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def git_commit(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD") or "unknown"


def main_checkout(cwd: Path) -> Path:
    """The repository whose store this run belongs to (see the module docstring)."""
    dvc_root = os.environ.get("DVC_ROOT")
    if dvc_root and Path(dvc_root).is_dir():
        return Path(dvc_root).resolve()
    common = _git(cwd, "rev-parse", "--path-format=absolute", "--git-common-dir")
    if common and Path(common).name == ".git":
        return Path(common).parent.resolve()
    return Path(cwd).resolve()


def resolve_tracking_uri(uri: str, root: Path) -> str:
    """A relative sqlite path is made absolute under `root`; any other URI is left as it is."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(root / uri[len('sqlite:///'):]).as_posix()}"
    if "://" not in uri and not uri.startswith("file:"):
        return str(root / uri)
    return uri


def relocate(db_file: Path, root: Path) -> int:
    """Rewrite artifact locations recorded under another root (a moved or copied repository) to `root`, so
    a copy neither loses its artifacts nor writes into the original's. Only for the repository's own
    store (a shared store outside the repository is left alone). Returns the number of experiments rewritten."""
    if not db_file.exists():
        return 0
    new = (root / ARTIFACTS).as_uri()
    moved = 0
    with sqlite3.connect(db_file) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        if "experiments" not in tables:
            return 0
        for exp_id, loc in con.execute("select experiment_id, artifact_location from experiments").fetchall():
            marker = f"/{ARTIFACTS}"
            if not loc or marker + "/" not in loc + "/":
                continue
            old = loc[:(loc + "/").index(marker + "/") + len(marker)]
            if old == new:
                continue
            moved += 1
            for table, col in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                               ("logged_models", "artifact_location")):
                if table in tables:
                    con.execute(f"update {table} set {col} = ? || substr({col}, ?) "   # noqa: S608 (fixed names)
                                f"where experiment_id = ? and {col} like ?",
                                (new, len(old) + 1, exp_id, old + "%"))
    return moved


def dataset_digest(dataset_dir: Path) -> str:
    """sha256 over the packed dataset's manifest and condition tables (the manifest names every shard
    member with its digest)."""
    h = hashlib.sha256()
    for name in ("manifest.parquet", "conditions.safetensors", "view_conditions.safetensors"):
        f = Path(dataset_dir) / name
        if f.exists():
            h.update(name.encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def pipeline_key(ctx, exp_name: str | None) -> str:
    h = hashlib.sha256()
    h.update(git_commit(ctx.root).encode())
    h.update((_git(ctx.root, "diff", "HEAD", "--", "src") or "").encode())
    params_path = Path(ctx.params_path)
    if not params_path.is_absolute():
        params_path = ctx.root / params_path
    h.update(params_path.read_bytes() if params_path.exists() else json.dumps(
        ctx.all_params.model_dump(mode="json"), sort_keys=True).encode())
    h.update((exp_name or "").encode())
    return h.hexdigest()[:16]


def parent_summary(params) -> tuple[dict, dict]:
    """(tags, params) that make parents comparable across a sweep."""
    tags, values = {}, {"seed": params.seed}
    tp = getattr(params, "train", None)
    if tp is not None:
        tags = {"conditioning": tp.conditioning.mode, "representation": tp.model.representation,
                "preset": tp.model.preset, "vicico": tp.vicico.variant if tp.vicico.enabled else "off"}
        values.update({"train.total_kimg": tp.total_kimg, "train.batch": tp.batch,
                       "train.model.output_resolution": tp.model.output_resolution,
                       "train.model.neural_resolution": tp.model.neural_resolution,
                       "train.optim.g_lr": tp.optim.g_lr, "train.optim.d_lr": tp.optim.d_lr,
                       "train.loss.r1_gamma": getattr(tp.loss, "r1_gamma", None)})
    return tags, {k: str(v) for k, v in values.items() if v is not None}


def _process_start_ms() -> int:
    try:
        import psutil

        return int(psutil.Process().create_time() * 1000)
    except Exception:   # psutil missing or /proc unreadable: the run starts now
        return int(time.time() * 1000)


@contextmanager
def _parents_locked(root: Path):
    """Parent runs are looked up or created by several processes at once: one lock for all of them."""
    (root / ARTIFACTS).mkdir(parents=True, exist_ok=True)
    with open(root / ARTIFACTS / ".parent.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _sweep_run(client, experiment_id: str, sweep_id: str, root: Path, start_ms: int | None = None) -> str:
    """The sweep's run (created on first use); the caller holds the parents lock."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

    found = client.search_runs([experiment_id], max_results=1, filter_string=(
        f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`{KIND_TAG}` = 'sweep'"))
    if found:
        return found[0].info.run_id
    commit = git_commit(root)
    run = client.create_run(experiment_id, start_time=start_ms, run_name=f"sweep {sweep_id}",
                            tags={SWEEP_TAG: sweep_id, KIND_TAG: "sweep", "git_commit": commit,
                                  MLFLOW_GIT_COMMIT: commit, ROOT_TAG: str(root)})
    return run.info.run_id


def open_client(cfg, root: Path):
    """(MlflowClient, experiment id) of the repository's store (see the module docstring), or None when
    params.mlflow.enabled is false."""
    if not cfg.enabled:
        return None
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = resolve_tracking_uri(cfg.tracking_uri, root)
    db_file = Path(urlparse(uri).path) if uri.startswith("sqlite:///") else None
    if db_file is not None and db_file.resolve().is_relative_to(root):   # the repository's own store only
        moved = relocate(db_file, root)
        if moved:
            log.info("mlflow: the repository moved; artifact locations of %d experiment(s) now point to %s",
                     moved, root / ARTIFACTS)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    experiment_id = exp.experiment_id if exp else client.create_experiment(
        cfg.experiment, artifact_location=(root / ARTIFACTS).as_uri())
    return client, experiment_id


def sweep_run(cfg, root: Path, sweep_id: str, params: dict[str, str] | None = None) -> tuple | None:
    """(client, run id) of the sweep's run in the repository's store, created when new; `params` (the arms)
    are logged on it. None when tracking is off."""
    opened = open_client(cfg, root)
    if opened is None:
        return None
    client, experiment_id = opened
    with _parents_locked(root):
        run_id = _sweep_run(client, experiment_id, sweep_id, root)
    if params:
        from mlflow.entities import Param

        logged = client.get_run(run_id).data.params
        new = [Param(k, v[:6000]) for k, v in params.items() if k not in logged]
        if new:
            client.log_batch(run_id, params=new)
    return client, run_id


def _parent(client, experiment_id: str, ctx, root: Path, start_ms: int) -> str:
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

    exp_name = os.environ.get("DVC_EXP_NAME") or None
    key = pipeline_key(ctx, exp_name)
    sweep = getattr(ctx.all_params, "sweep", None)
    sweep_id = sweep.id if sweep is not None else None
    with _parents_locked(root):
        found = client.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
        if found:
            return found[0].info.run_id
        commit = git_commit(ctx.root)
        tags, values = parent_summary(ctx.all_params)   # bookkeeping: the whole run, not one stage's view
        tags.update({KEY_TAG: key, "git_commit": commit, MLFLOW_GIT_COMMIT: commit, ROOT_TAG: str(root)})
        if sweep_id:
            tags.update({SWEEP_TAG: sweep_id, MLFLOW_PARENT_RUN_ID: _sweep_run(client, experiment_id, sweep_id, root,
                                                                               start_ms)})
        if exp_name:
            tags["dvc_exp_name"] = exp_name
        if os.environ.get("DVC_EXP_BASELINE_REV"):
            tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
        name = exp_name or f"pipeline {commit[:8]} {key[:6]}"
        run = client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=name)
        if values:
            from mlflow.entities import Param

            client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in values.items()])
        return run.info.run_id


@contextmanager
def mlflow_run(ctx, run_name: str, params: dict):
    """Yield the active mlflow module inside this stage's run (nested under the pipeline's parent), or
    None when params.mlflow.enabled is false."""
    start_ms = _process_start_ms()
    root = main_checkout(ctx.root)
    opened = open_client(ctx.params.mlflow, root)
    if opened is None:
        yield None
        return
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

    client, experiment_id = opened
    parent_id = _parent(client, experiment_id, ctx, root, start_ms)
    commit = git_commit(ctx.root)
    run = client.create_run(experiment_id, start_time=start_ms, run_name=run_name,
                            tags={MLFLOW_PARENT_RUN_ID: parent_id, "git_commit": commit, MLFLOW_GIT_COMMIT: commit,
                                  "dvc_stage": ctx.stage.name, **({"dvc_exp_name": os.environ["DVC_EXP_NAME"]}
                                                                  if os.environ.get("DVC_EXP_NAME") else {})})
    status = "FAILED"
    try:
        with mlflow.start_run(run_id=run.info.run_id, experiment_id=experiment_id):
            items = list(flatten(params).items())
            for i in range(0, len(items), 100):
                mlflow.log_params({k: v[:6000] for k, v in items[i:i + 100]})
            yield mlflow
            mlflow.log_metric("stage_seconds", time.time() - start_ms / 1000)
            status = "FINISHED"
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run(status)
        client.set_terminated(run.info.run_id, status)
        client.set_terminated(parent_id, "FINISHED" if status == "FINISHED" else "FAILED")


def log_dataset(mlflow, dataset_dir: Path, root: Path, context: str) -> str:
    """`mlflow.log_input` for the packed dataset (source = its repository-relative path, with its digest)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.code_dataset_source import CodeDatasetSource

    digest = dataset_digest(dataset_dir)
    try:
        rel = str(Path(dataset_dir).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        rel = str(dataset_dir)
    source = CodeDatasetSource({"path": rel, "sha256": digest})
    mlflow.log_input(MetaDataset(source, name=Path(rel).name, digest=digest[:16]), context=context)
    return digest
