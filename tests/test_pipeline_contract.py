"""One stage list, two tools: Snakemake's parsed rules and DVC's parsed stages must agree on every
stage's command, deps, outs and params (both read by the real tools, not by us). The code dependencies
themselves are pinned by tests/test_code_deps.py."""
from __future__ import annotations

import json
import shlex
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
    # DVC runs `balancehead run X`; the rule runs the same arguments through Snakemake's own interpreter
    assert stage["cmd"] == f"balancehead run {name}"
    assert shlex.split(rule["shell"].replace("{params.stage}", name)) == [sys.executable, "-m", "balancehead", "run", name]
    assert "stage" in rule["params"]                 # the shell's stage name, a constant of the rule
    rule = {**rule, "params": [p for p in rule["params"] if p != "stage"]}
    scatter = [f for f in rule["input"] if f.startswith(f"data/.items/{name}/shard-")]
    assert sorted(f for f in rule["input"] if f not in scatter) == stage["deps"]
    assert sorted(rule["output"]) == stage["outs"]
    assert sorted(p.replace("__", ".") for p in rule["params"]) == stage["params"]
    assert rule["log"] == [f"logs/{name}.log"]
    assert {"mem_mb", "runtime", "gpu"} <= set(rule["resources"]) and "gpus" not in rule["resources"]
    if pipeline.stage(name).sharded:
        shard = smk_rules[f"{name}_shard"]
        assert len(scatter) >= 1
        assert sorted(shard["input"]) == stage["deps"]
        assert shard["params"] == rule["params"]
        shell = shard["shell"].replace("{wildcards.stage}", name)
        assert shlex.split(shell) == [sys.executable, "-m", "balancehead", "run", name,
                                      "--shard", "{wildcards.i}/{wildcards.n}"]
        assert shard["output"] == [pipeline.stage(name).shard_marker("{i}", "{n}", stage=f"{{stage,{name}}}")]
        assert shard["wildcard_constraints"] == {"stage": name}
    else:
        assert scatter == []


def test_metrics_plots_and_the_report_go_into_snakemake_report(smk_rules):
    flagged = {f for r in smk_rules.values() for f in r["report_outputs"]}
    for s in pipeline.STAGES:
        assert set(s.metric_files) | set(s.plot_files) <= flagged
    assert {"results/report", "results/dataset_card", "results/eval"} <= flagged


def test_dvc_plots_declare_their_columns(dvc_stages):
    """Top-level `plots:` name x and y columns that exist in the TSV each stage writes (header read
    from the code that writes it)."""
    import yaml

    plots = {k: v for d in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] for k, v in d.items()}
    assert set(plots) == {"results/fid_by_yaw.tsv", "results/train_stats.tsv", "results/yaw_hist.tsv",
                          "results/train_recon_stats.tsv"}
    from balancehead.stages.evaluate import bias_curve_tsv
    from balancehead.train.recon_loop import CURVE, curve_tsv
    from balancehead.data.manifest import YAW_BIN_LABELS
    from balancehead.train.loop import stats_tsv

    from balancehead.stages.pack_dataset import yaw_hist_tsv

    none = {"fid": None, "kid": None, "n_real": 0, "n_fake": 0}
    written = {"results/fid_by_yaw.tsv": bias_curve_tsv({f"fid_yaw_{b}": none for b in YAW_BIN_LABELS}),
               "results/train_stats.tsv": stats_tsv([{"tick": 0, "kimg": 0.0, "loss_g": 1.0, "loss_d": 1.0,
                                                      "skipped_steps": 0}]),
               "results/yaw_hist.tsv": yaw_hist_tsv(YAW_BIN_LABELS, [0] * 8, [0] * 8),
               "results/train_recon_stats.tsv": curve_tsv([{k: 1.0 for k in CURVE}])}
    for path, spec in plots.items():
        assert spec["title"] and spec["x"]
        ys = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
        columns = written[path].splitlines()[0].split("\t")
        assert spec["x"] in columns and set(ys) <= set(columns), (path, columns)
        assert not {"n_fake", "n_real", "skipped_steps", "tick"} & set(ys)


def test_downstream_closure_follows_data_deps():
    closure = pipeline.downstream_closure({"label_clip"})
    assert {"label_clip", "pack_dataset", "train"} <= closure
    assert not {"ingest", "filter_views", "build_ops"} & closure
    assert "pack_dataset" in pipeline.downstream_closure({"ingest"})
    assert "build_ops" not in pipeline.downstream_closure({"ingest"})
    assert "evaluate" in pipeline.downstream_closure({"invert"})       # through results/invert.json


def test_snakemake_config_overrides_are_refused_not_ignored():
    """Issue 15: `--config` must never be silently ignored (the stages read params.yaml only)."""
    proc = run([str(Path(sys.executable).parent / "snakemake"), "-n", "--cores", "1", "--config", "seed=3"],
               cwd=REPO, check=False)
    assert proc.returncode != 0
    assert "--config" in proc.stdout + proc.stderr and "seed" in proc.stdout + proc.stderr
