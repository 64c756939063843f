"""MLflow tracking with the real MLflow (sqlite store): a DVC temp-workspace run lands in the main
repository's store, stage runs of separate processes nest under one parent per pipeline run, a sweep is
a set of parents, and a moved repository keeps its artifacts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

STAGE_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from types import SimpleNamespace
    from balancehead.params import load_params
    from balancehead.tracking import log_dataset, mlflow_run

    stage, root = sys.argv[1], Path.cwd()
    params = load_params("params.yaml")
    ctx = SimpleNamespace(params=params, all_params=params, stage=SimpleNamespace(name=stage), root=root,
                          params_path=Path("params.yaml"))
    (root / "out.txt").write_text(stage)
    with mlflow_run(ctx, stage, {"x": {"y": 1}}) as mlflow:
        mlflow.log_metric("m", 1.0)
        mlflow.log_artifact(str(root / "out.txt"))
        (root / "data" / "dataset").mkdir(parents=True, exist_ok=True)
        (root / "data" / "dataset" / "manifest.parquet").write_bytes(b"rows")
        log_dataset(mlflow, root / "data" / "dataset", root, context="training")
""")


def _git_repo(path: Path, params: dict) -> Path:
    path.mkdir(parents=True)
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run(git + ["add", "-A"], cwd=path, check=True)
    subprocess.run(git + ["commit", "-qm", "x"], cwd=path, check=True)
    return path


def _stage(cwd: Path, stage: str, **env) -> None:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    e.update(PYTHONPATH=str(REPO / "src"), MLFLOW_DISABLE_TELEMETRY="true", **env)
    proc = subprocess.run([sys.executable, "-c", STAGE_SCRIPT, stage], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_temp_workspace_runs_land_in_main_store_as_parent_and_children(tmp_path, params):
    from mlflow.tracking import MlflowClient

    from balancehead.tracking import dataset_digest

    main = _git_repo(tmp_path / "main", params)
    variant = yaml.safe_load(yaml.safe_dump(params))
    variant["train"]["conditioning"]["mode"] = "view"
    # what `dvc exp run --temp` does: a separate git checkout under .dvc/tmp/exps, DVC_ROOT = main repo
    temp = _git_repo(main / ".dvc" / "tmp" / "exps" / "tmpabc", variant)
    _stage(temp, "train", DVC_ROOT=str(main), DVC_EXP_NAME="exp-view")
    _stage(temp, "evaluate", DVC_ROOT=str(main), DVC_EXP_NAME="exp-view")
    _stage(main, "train", DVC_ROOT=str(main), DVC_EXP_NAME="exp-semantic")

    assert not (temp / "mlflow.db").exists() and not (temp / "mlartifacts").exists()
    client = MlflowClient(f"sqlite:///{main / 'mlflow.db'}")
    exp = client.get_experiment_by_name("balancehead")
    runs = client.search_runs([exp.experiment_id])
    parents = {r.data.tags["dvc_exp_name"]: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert sorted(parents) == ["exp-semantic", "exp-view"]
    assert parents["exp-view"].data.tags["conditioning"] == "view"
    assert parents["exp-semantic"].data.tags["conditioning"] == params["train"]["conditioning"]["mode"]
    assert parents["exp-view"].data.tags["git_commit"] == subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=temp, capture_output=True, text=True).stdout.strip()
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    by_parent = {}
    for r in children:
        by_parent.setdefault(r.data.tags["mlflow.parentRunId"], []).append(r.data.tags["dvc_stage"])
    assert sorted(by_parent[parents["exp-view"].info.run_id]) == ["evaluate", "train"]
    assert by_parent[parents["exp-semantic"].info.run_id] == ["train"]
    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.metrics["stage_seconds"] > 0
        assert r.info.artifact_uri.startswith((main / "mlartifacts").as_uri())
        local = client.download_artifacts(r.info.run_id, "out.txt", str(tmp_path / r.info.run_id))
        assert Path(local).read_text() == r.data.tags["dvc_stage"]
        [inp] = client.get_run(r.info.run_id).inputs.dataset_inputs
        assert inp.dataset.digest == dataset_digest(temp / "data" / "dataset")[:16]
        assert json.loads(inp.dataset.source)["tags"]["path"] == "data/dataset"


def test_moved_repository_keeps_its_artifacts(tmp_path, params):
    from mlflow.tracking import MlflowClient

    first = _git_repo(tmp_path / "first", params)
    _stage(first, "train")
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    _stage(moved, "evaluate")     # any tracked stage notices the move and rewrites the locations
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    exp = client.get_experiment_by_name("balancehead")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.dvc_stage = 'train'")
    assert len(runs) == 1
    local = client.download_artifacts(runs[0].info.run_id, "out.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == "train"


def test_generator_logged_as_artifact_loads_back_in_three_lines(tmp_path, params, monkeypatch):
    import numpy as np
    import torch
    from types import SimpleNamespace

    from balancehead.camera import camera_label
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.params import validate
    from balancehead.tracking import mlflow_run

    G = Generator(GeneratorConfig.tiny(c_dim=0, n_coarse=4, n_importance=4))
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.01)
    ckpt = save_checkpoint(tmp_path / "train" / "G_ema", {"G_ema": G}, {"kimg": 1.0})
    repo = _git_repo(tmp_path / "repo", params)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    valid = validate(params, "params.yaml")
    ctx = SimpleNamespace(params=valid, all_params=valid, stage=SimpleNamespace(name="train"), root=repo,
                          params_path=repo / "params.yaml")
    with mlflow_run(ctx, "train", {}) as mlflow:
        mlflow.log_artifacts(str(ckpt), artifact_path="G_ema")
        run_id = mlflow.active_run().info.run_id
    import mlflow as mlf

    local = mlf.artifacts.download_artifacts(run_id=run_id, artifact_path="G_ema", dst_path=str(tmp_path / "dl"),
                                             tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    G2 = Generator.from_pretrained(local)                      # the documented three lines
    z, cam = torch.randn(1, G2.cfg.z_dim, generator=torch.Generator().manual_seed(0)), torch.as_tensor(np.asarray(camera_label(30.0, 0.0)))[None]
    assert G2.meta == {"kimg": 1.0} and not G2.training
    assert torch.equal(G.eval()(z, torch.zeros(1, 0), cam).image, G2(z, torch.zeros(1, 0), cam).image)   # both in eval mode
    assert torch.equal(Generator.from_pretrained(tmp_path / "train").mapping.w_avg, G.mapping.w_avg)


def test_real_dvc_exp_run_temp_logs_into_the_main_store(tmp_path, params):
    """The real thing: `dvc exp run --temp` runs the stage in a copy under .dvc/tmp/exps; its MLflow
    run must land in the main checkout's store, under a parent named after the experiment."""
    from mlflow.tracking import MlflowClient

    main = tmp_path / "main"
    main.mkdir()
    (main / "params.yaml").write_text(yaml.safe_dump(params))
    (main / "stage.py").write_text(STAGE_SCRIPT)
    (main / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": f"{sys.executable} stage.py train", "params": ["train.conditioning.mode"], "deps": ["stage.py"],
        "outs": [{"out.txt": {"cache": False}}]}}}))
    (main / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/data/\n/out.txt\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env.update(PYTHONPATH=str(REPO / "src"), MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    dvc = [str(Path(sys.executable).parent / "dvc")]
    for cmd in (["git", "init", "-q"], dvc + ["init", "-q"], git + ["add", "-A"], git + ["commit", "-qm", "x"],
                dvc + ["exp", "run", "--temp", "-n", "exp-view", "-S", "train.conditioning.mode=view"]):
        proc = subprocess.run(cmd, cwd=main, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    client = MlflowClient(f"sqlite:///{main / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("balancehead").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    [child] = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.data.tags["dvc_exp_name"] == "exp-view" and parent.data.tags["conditioning"] == "view"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.artifact_uri.startswith((main / "mlartifacts").as_uri())
    assert Path(client.download_artifacts(child.info.run_id, "out.txt", str(tmp_path / "dl"))).read_text() == "train"
