"""One stage list, two tools: Snakemake's parsed rules and DVC's parsed stages must agree on every
stage's command, deps, outs and params (both read by the real tools, not by us)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from balancehead import pipeline
from conftest import REPO, run

HERE = Path(__file__).resolve().parent
META_RULES = {"all", "data"}


@pytest.fixture(scope="module")
def smk_rules():
    proc = run([sys.executable, str(HERE / "describe_rules.py"), str(REPO)], cwd=REPO)
    payload = proc.stdout.split("@@RULES@@", 1)[1]
    return json.loads(payload)


@pytest.fixture(scope="module")
def dvc_stages():
    from dvc.repo import Repo

    out = {}
    with Repo(str(REPO)) as repo:
        for st in repo.index.stages:
            deps, params = [], []
            for d in st.deps:
                if hasattr(d, "params") and d.def_path.endswith("params.yaml"):
                    params += list(d.params) if not isinstance(d.params, dict) else list(d.params)
                else:
                    deps.append(d.def_path)
            out[st.name] = {"cmd": st.cmd, "deps": sorted(deps), "outs": sorted(o.def_path for o in st.outs),
                            "params": sorted(params)}
    return out


def test_dvc_yaml_is_generated_from_the_stage_list():
    proc = run([sys.executable, "-m", "balancehead", "dvc-yaml", "--check"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr


def test_params_schema_file_is_current():
    proc = run([sys.executable, "-m", "balancehead", "schema", "--check"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_stage_is_both_a_rule_and_a_dvc_stage(smk_rules, dvc_stages):
    names = {s.name for s in pipeline.STAGES}
    assert set(dvc_stages) == names
    stage_rules = {r for r in smk_rules if r not in META_RULES and not r.endswith("_shard")}
    assert stage_rules == names
    shard_rules = {r[: -len("_shard")] for r in smk_rules if r.endswith("_shard")}
    assert shard_rules == {s.name for s in pipeline.STAGES if s.sharded}


@pytest.mark.parametrize("name", [s.name for s in pipeline.STAGES])
def test_rule_and_dvc_stage_agree(name, smk_rules, dvc_stages):
    rule, stage = smk_rules[name], dvc_stages[name]
    assert rule["shell"].strip() == stage["cmd"].strip()
    scatter = [f for f in rule["input"] if f.startswith(f"data/.items/{name}/shard-")]
    assert sorted(f for f in rule["input"] if f not in scatter) == stage["deps"]
    assert sorted(rule["output"]) == stage["outs"]
    assert sorted(p.replace("__", ".") for p in rule["params"]) == stage["params"]
    assert rule["log"] == [f"logs/{name}.log"]
    assert {"mem_mb", "runtime"} <= set(rule["resources"])
    if pipeline.stage(name).sharded:
        shard = smk_rules[f"{name}_shard"]
        assert len(scatter) >= 1
        assert sorted(shard["input"]) == stage["deps"]
        assert shard["params"] == rule["params"]
        assert shard["shell"].startswith(stage["cmd"] + " --shard ")
    else:
        assert scatter == []


def test_code_dependencies_exist_and_cover_the_stage_module():
    for s in pipeline.STAGES:
        files = s.code_files()
        assert files and all((REPO / f).is_file() for f in files)
        module = {"preprocess_fronts": "preprocess", "preprocess_views": "preprocess"}.get(s.name, s.name)
        assert f"src/balancehead/stages/{module}.py" in files


def test_downstream_closure_follows_data_deps():
    closure = pipeline.downstream_closure({"label_clip"})
    assert {"label_clip", "pack_dataset", "train"} <= closure
    assert not {"ingest", "filter_views", "build_ops"} & closure
    assert "pack_dataset" in pipeline.downstream_closure({"ingest"})
    assert "build_ops" not in pipeline.downstream_closure({"ingest"})
