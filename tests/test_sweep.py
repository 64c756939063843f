"""`balancehead sweep` (BalanceHead Table 1 as one command, issue 12 "The experiment").

Fast tests pin the plumbing piece by piece: which stages the arms share, the exact `dvc exp run` command of an
arm (its -S overrides read back through DVC's own override parser give the arm's params), the validation of
`sweep.arms`, the MLflow nesting (sweep run -> arm pipeline parents -> stage runs) and the table / report
section. The slow test runs the real thing on the tiny preset: a throw-away git + DVC copy of the repository,
two arms through the DVC queue, the table, the overlaid bias curves and the MLflow runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from balancehead import pipeline, sweep
from balancehead.params import ParamsError, load_params, validate
from conftest import REPO, deep_update, dump_params

TABLE1_ARMS = {"view": {"train.conditioning.mode": "view", "train.vicico.enabled": False},
               "semantic_vicico": {"train.conditioning.mode": "semantic", "train.vicico.enabled": True}}


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _params(raw: dict, arms: dict | None = None, **sweep_keys):
    d = json.loads(json.dumps(raw))
    if arms is not None:
        d["sweep"]["arms"] = arms
    d["sweep"].update(sweep_keys)
    return validate(d)


# ------------------------------------------------------------------------------------------- planning
def test_the_arms_share_every_stage_upstream_of_train_and_rerun_the_rest(raw):
    shared = sweep.shared_stages(_params(raw))
    assert "pack_dataset" in shared and "build_ops" in shared and "ingest" in shared
    assert not {"train", "sample_prior", "invert", "evaluate", "report"} & set(shared)
    assert shared == [s.name for s in pipeline.STAGES if s.name in shared]     # pipeline order
    # an arm that overrides a data-engine key makes that stage and everything below it per-arm
    p = _params(raw, {"a": {"label_clip.seed": 1}, "b": {"label_clip.seed": 2}})
    assert "label_clip" not in sweep.shared_stages(p) and "pack_dataset" not in sweep.shared_stages(p)
    assert "filter_views" in sweep.shared_stages(p)


def test_an_arms_queue_command_sets_its_overrides_and_the_lock_and_metrics_travel_through_git(raw):
    p = _params(raw)
    [arm] = [a for a in sweep.plan(p, "t1_x") if a.name == "semantic_vicico"]
    cmd = sweep.queue_command("dvc", arm, "t1_x", p.sweep.target)
    assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", "t1_x-semantic_vicico"] and cmd[-1] == "evaluate"
    sets = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-S"]
    assert sets == ["train.conditioning.mode=semantic", "train.vicico.enabled=true", "sweep.id=t1_x"]
    assert "-C" not in cmd                         # a copied params.yaml would undo -S; results/ is not there
    staged = sweep.git_side_files(sweep.shared_stages(p))
    assert "dvc.lock" in staged and "results/dataset.json" in staged and "results/yaw_hist.tsv" in staged
    assert "params.yaml" not in staged and "results/train.json" not in staged
    assert not any(f.startswith("data/") for f in staged)      # cached outputs come from the shared cache


def test_set_args_read_back_by_dvcs_override_parser_give_the_arms_params(raw, tmp_path):
    """What DVC writes into the experiment's params.yaml for our -S arguments is exactly the arm."""
    from dvc.utils.hydra import apply_overrides

    arms = dict(TABLE1_ARMS, odd={"train.conditioning.mode": "none", "train.total_kimg": 0.5,
                                  "invert.folder": "my photos/it's.jpg", "train.data.yaw_bin_weights": None})
    p = _params(raw, arms)
    for arm in sweep.plan(p, "t1_y"):
        f = tmp_path / f"{arm.name}.yaml"
        f.write_text(dump_params(raw))
        args = sweep.set_args(arm, "t1_y")
        apply_overrides(f, [args[i + 1] for i in range(0, len(args), 2)])
        got = load_params(f)
        assert got.sweep.id == "t1_y"
        for key, value in arm.overrides.items():
            assert got.section(key) == value, (arm.name, key)


def test_values_dvc_writes_unquoted_keep_their_meaning(raw, tmp_path):
    """`dvc exp run -S` rewrites params.yaml with `no` unquoted: params.yaml reads YAML 1.2 booleans only, so
    build_ops.build_cuda stays the string "no" (YAML 1.1 would read false and fail validation)."""
    d = json.loads(json.dumps(raw))
    d["build_ops"]["build_cuda"] = "no"
    f = tmp_path / "params.yaml"
    f.write_text(dump_params(d).replace("build_cuda: 'no'", "build_cuda: no").replace('build_cuda: "no"', "build_cuda: no"))
    assert "build_cuda: no\n" in f.read_text()
    assert load_params(f).build_ops.build_cuda == "no"


def test_bad_arms_fail_naming_the_arm_and_key(raw):
    with pytest.raises(ParamsError, match=r"sweep\.arms\.x.*'train\.conditioning\.moed' is not a params key"):
        _params(raw, {"x": {"train.conditioning.moed": "view"}})
    with pytest.raises(ParamsError, match=r"sweep\.arms\.x.*train\.conditioning\.mode"):
        _params(raw, {"x": {"train.conditioning.mode": "sideways"}})
    with pytest.raises(ParamsError, match=r"sweep\.arms.*arm name 'Bad-Name'"):
        _params(raw, {"Bad-Name": {"train.conditioning.mode": "view"}})
    with pytest.raises(ParamsError, match=r"cannot override \['sweep.id'\]"):
        _params(raw, {"x": {"sweep.id": "other"}})
    with pytest.raises(ParamsError, match=r"sweep\.target.*unknown stage"):
        _params(raw, None, target="evaluat")
    with pytest.raises(ParamsError, match=r"sweep\.id"):
        _params(raw, None, id="1-bad")


def test_params_yaml_lists_table_1s_arms(raw):
    p = _params(raw)
    modes = {(o["train.conditioning.mode"], o["train.vicico.enabled"]) for o in p.sweep.arms.values()}
    assert {("view", False), ("view_semantic", False), ("semantic", False), ("semantic", True)} <= modes


# --------------------------------------------------------------------------------------------- MLflow
def test_arm_parents_nest_under_one_sweep_run(raw, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from balancehead.tracking import KIND_TAG, SWEEP_TAG, mlflow_run, sweep_run

    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    base = _params(raw)
    sweep_run(base.mlflow, root, "t1_z", {"arm.view": "{}"})          # what `balancehead sweep` opens first
    for arm in sweep.plan(base, "t1_z")[:2]:
        d = json.loads(json.dumps(raw))
        d["sweep"]["id"] = "t1_z"
        d["train"]["conditioning"]["mode"] = arm.overrides["train.conditioning.mode"]
        (root / "params.yaml").write_text(dump_params(d))
        p = validate(d)
        monkeypatch.setenv("DVC_EXP_NAME", arm.exp_name)
        for stage in ("train", "evaluate"):
            ctx = SimpleNamespace(params=p, all_params=p, stage=SimpleNamespace(name=stage), root=root,
                                  params_path=root / "params.yaml")
            with mlflow_run(ctx, stage, {"x": 1}) as mlflow:
                mlflow.log_metric("m", 1.0)
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("balancehead").experiment_id])
    [top] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert top.data.tags[KIND_TAG] == "sweep" and top.data.tags[SWEEP_TAG] == "t1_z"
    arms = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == top.info.run_id]
    assert sorted(r.data.tags["dvc_exp_name"] for r in arms) == ["t1_z-none", "t1_z-view"]
    assert {r.data.tags["conditioning"] for r in arms} == {"none", "view"}
    for a in arms:
        stages = [r.data.tags["dvc_stage"] for r in runs if r.data.tags.get("mlflow.parentRunId") == a.info.run_id]
        assert sorted(stages) == ["evaluate", "train"]


# ------------------------------------------------------------------------------------ table and report
def _fake_table(tmp_path) -> Path:
    rows = [{"arm": a, "experiment": f"t1_f-{a}", "overrides": o, "status": "done", "rev": "0" * 40,
             "feature_extractor": "offline", "metrics": {"fid_view": 10.0 + i, "fid_random": 20.0 - i, "mknnd": 0.5}}
            for i, (a, o) in enumerate(TABLE1_ARMS.items())]
    rows.append({"arm": "identity", "experiment": "t1_f-identity", "overrides": {"train.conditioning.mode": "identity"},
                 "status": "missing", "rev": None, "metrics": None})
    tsv = "yaw_bin\tfid\tfid_std\n0\t5.0\t0.5\n45\t7.0\t0.7\n180\t30.0\t3.0\n"
    table = {"sweep_id": "t1_f", "columns": ["fid_view", "fid_random", "mknnd"], "rows": rows,
             "bias_curves": {a: {"header": sweep._tsv(tsv)[0], "rows": sweep._tsv(tsv)[1]} for a in TABLE1_ARMS}}
    f = tmp_path / "table.json"
    f.write_text(json.dumps(table))
    return f


def test_markdown_table_has_one_row_per_arm_and_labels_the_extractor(tmp_path):
    table = json.loads(_fake_table(tmp_path).read_text())
    md = sweep.markdown_table(table)
    lines = [l for l in md.splitlines() if l.startswith("| ") and not l.startswith("| arm")]
    assert [l.split("|")[1].strip() for l in lines] == ["view", "semantic_vicico", "identity"]
    assert "| view | mode=view, vicico=False | 10 | 20 | 0.5 |" in md
    assert "(missing)" in lines[2] and "NOT comparable to published" in md


def test_sweep_page_shows_the_table_and_overlaid_curves(tmp_path):
    """`balancehead sweep` writes results/sweep/index.html: Table 1 (one row per arm) and the bias curves."""
    from balancehead.evaluation import report_html as R
    from balancehead.stages.report import sweep_page

    alone = sweep_page(_fake_table(tmp_path), "abc")
    assert alone.count('<section id="sweep">') == 1
    section = alone[alone.index('<section id="sweep">'):]
    assert all(f"<td>{a}</td>" in section for a in ("view", "semantic_vicico", "identity"))
    assert "FID per yaw bin, every arm" in section and "NOT comparable" in section
    png = R.bias_curves_png({"a": (["yaw_bin", "fid"], [["0", "1.0"], ["45", "2.0"]]),
                             "b": (["yaw_bin", "fid", "fid_std"], [["0", "3.0", "0.1"], ["180", "4.0", "0.2"]])})
    assert png.startswith(b"\x89PNG")


def test_dataset_md5_reads_the_packed_datasets_hash_from_a_dvc_lock():
    lock = yaml.safe_dump({"schema": "2.0", "stages": {
        "train": {"outs": [{"path": "data/train", "md5": "t.dir"}]},
        "pack_dataset": {"outs": [{"path": "data/dataset", "md5": "abc.dir"},
                                  {"path": "results/dataset_card", "md5": "card.dir"}]}}})
    assert sweep.dataset_md5(lock) == "abc.dir"
    assert sweep.dataset_md5(None) is None and sweep.dataset_md5("stages: {}") is None


# ----------------------------------------------------------------------------------- the real sweep
# On top of conftest.SMALL (whose data stages `built_workspace` has already run, once per test session): the
# per-arm stages at their smallest budgets.
ARM_BUDGET = {
    "train": {"total_kimg": 0.032, "kimg_per_tick": 0.016, "eval": {"num_images": 16}},
    "invert": {"w_steps": 2, "g_steps": 2, "turntable_frames": 2},
    "evaluate": {"fid_bootstrap": 2, "turntable_frames": 2},
    # not "no": DVC rewrites params.yaml for -S in YAML 1.2 and leaves `no` unquoted, which YAML 1.1 reads as
    # false; auto builds no CUDA kernels here either (no GPU)
    "build_ops": {"build_cuda": "auto"},
}


@pytest.mark.slow
def test_sweep_runs_two_arms_on_one_packed_dataset(built_workspace, tmp_path):
    from mlflow.tracking import MlflowClient

    from balancehead.tracking import KIND_TAG

    root = tmp_path / "repo"
    shutil.copytree(built_workspace, root, symlinks=True)      # git + DVC state and the packed data, copied
    params = yaml.safe_load((root / "params.yaml").read_text())
    deep_update(params, ARM_BUDGET)["sweep"]["arms"] = TABLE1_ARMS     # replace the arms, not merge them
    (root / "params.yaml").write_text(dump_params(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    venv = str(Path(sys.executable).parent)          # off PATH, as for `.venv/bin/balancehead sweep`: the sweep adds it
    env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true",
               DVC_NO_ANALYTICS="1", PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv))
    proc = subprocess.run([sys.executable, "-m", "balancehead", "sweep", "--id", "t1_ci"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]

    table = json.loads((root / "results/sweep/table.json").read_text())
    assert [r["arm"] for r in table["rows"]] == list(TABLE1_ARMS)
    assert all(r["status"] == "done" for r in table["rows"])
    assert {"fid_random", "fid_front", "mknnd"} <= set(table["columns"])
    view, sem = table["rows"]
    assert view["metrics"]["fid_view"] is not None and sem["metrics"].get("fid_view") is None   # view modes only
    assert view["metrics"]["fid_random"] != sem["metrics"]["fid_random"]
    assert set(table["bias_curves"]) == set(TABLE1_ARMS)
    assert table["one_dataset"] and view["dataset_md5"] == sweep.dataset_md5((root / "dvc.lock").read_text())
    assert (root / "results/sweep/bias_curves.png").read_bytes().startswith(b"\x89PNG")
    assert "semantic_vicico" in (root / "results/sweep/index.html").read_text()
    md = (root / "results/sweep/table.md").read_text()
    assert md.count("\n| view |") == 1 and md.count("\n| semantic_vicico |") == 1

    # dvc exp show: the two experiments, with their own params
    shown = sweep._experiments(str(Path(sys.executable).parent / "dvc"), root)
    assert shown["t1_ci-view"]["params"]["train"]["conditioning"]["mode"] == "view"
    assert shown["t1_ci-semantic_vicico"]["params"]["train"]["vicico"]["enabled"] is True

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("balancehead").experiment_id])
    [top] = [r for r in runs if r.data.tags.get(KIND_TAG) == "sweep"]
    arms = {r.data.tags["dvc_exp_name"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == top.info.run_id}
    assert sorted(arms) == ["t1_ci-semantic_vicico", "t1_ci-view"]
    assert arms["t1_ci-view"].data.metrics["fid_random"] == view["metrics"]["fid_random"]
    digests = set()
    for a in arms.values():
        stages = {r.data.tags["dvc_stage"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == a.info.run_id}
        assert {"train", "evaluate"} <= set(stages) and "pack_dataset" not in stages    # the dataset is not rebuilt
        digests |= {d.dataset.digest for d in client.get_run(stages["train"].info.run_id).inputs.dataset_inputs}
    assert len(digests) == 1                                                            # ... and is the same one
    assert len([r for r in runs if r.data.tags.get("dvc_stage") == "pack_dataset"]) == 1  # built once, in the workspace
