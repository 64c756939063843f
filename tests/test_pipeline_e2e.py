"""The real tools on a small run: Snakemake (sharded) and DVC (unsharded) agree on what is up to date,
on what a parameter change reruns, and on the output bytes."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from balancehead import pipeline
from conftest import BIN, run, set_params

DATA_STAGES = [s for s in pipeline.DATA_STAGES]


def dvc(root, *args, check=True):
    return run([str(BIN / "dvc"), *args], cwd=root, check=check)


def dvc_changed(root) -> set[str]:
    out = dvc(root, "status", "--json", *DATA_STAGES).stdout
    return set(json.loads(out or "{}"))


def snakemake_plan(root, target="data") -> dict[str, int]:
    """Jobs per rule that `snakemake -n` would run (its own 'Job stats' table)."""
    out = run([str(BIN / "snakemake"), "--cores", "2", "-n", target], cwd=root).stdout
    plan = {}
    m = re.search(r"Job stats:\n(.*?)\n\n", out + "\n\n", re.S)
    if m:
        for line in m.group(1).splitlines()[2:]:
            parts = line.split()
            if len(parts) == 2 and parts[0] not in ("total", "job") and parts[1].isdigit():
                plan[parts[0]] = int(parts[1])
    return plan


def stages_in_plan(plan: dict[str, int]) -> set[str]:
    return {r[: -len("_shard")] if r.endswith("_shard") else r for r in plan} - {"data", "all"}


def lock_hashes(root) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {name: {o["path"]: o.get("md5") for o in st.get("outs", [])} for name, st in lock.items()}


def clone(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_after_snakemake_dvc_is_up_to_date_and_repro_reruns_nothing(built_workspace):
    assert dvc_changed(built_workspace) == set()
    out = dvc(built_workspace, "repro", *DATA_STAGES).stdout
    assert "Running stage" not in out
    for name in DATA_STAGES:
        assert f"'{name}' didn't change" in out
    assert stages_in_plan(snakemake_plan(built_workspace)) == set()


def test_outputs_of_a_small_run(built_workspace):
    ds = built_workspace / "data/dataset"
    assert (ds / "manifest.parquet").exists() and list((ds / "shards").glob("shard-*.tar"))
    metrics = json.loads((built_workspace / "results/dataset.json").read_text())
    assert metrics["subjects"] >= 5 and metrics["packed_images"] > metrics["subjects"]
    assert metrics["conditions_offline"] is True
    from balancehead.data.manifest import read_manifest

    rows = read_manifest(ds / "manifest.parquet")
    assert {"source", "front", "view"} <= {r["role"] for r in rows}
    assert all(r["rejected_by"] is None for r in rows if r["shard"] is not None)

    # the offline CLIP stand-in embeds the rendered subjects' attributes (label_clip offline_semantics)
    import numpy as np

    from balancehead.data.conditions import ConditionTable
    from balancehead.data.manifest import (CONDITIONS_FILE, IDENTITY_CONDITIONS_FILE, VIEW_CONDITIONS_FILE,
                                           VIEW_IDENTITY_CONDITIONS_FILE)

    cond, view = ConditionTable.load(ds / CONDITIONS_FILE), ConditionTable.load(ds / VIEW_CONDITIONS_FILE)
    assert cond.meta["backend"] == metrics["condition_backend"] == "offline-world-attributes-ViT-B-32"
    assert cond.meta["semantic_sources"] == {"world-attributes": metrics["packed_images"]}
    packed = [r for r in rows if r["shard"] is not None]
    own = [float(view[r["image_id"]].astype(np.float32) @ cond[r["subject_id"]].astype(np.float32)) for r in packed]
    other = [float(view[r["image_id"]].astype(np.float32) @ cond[s].astype(np.float32))
             for r in packed for s in cond.ids if s != r["subject_id"]]
    assert np.mean(own) > np.mean(other) + 0.3      # a view's feature is about its subject, not random
    # the identity tables of the A.6.10 baselines, one row per subject and per packed image
    ident, view_ident = ConditionTable.load(ds / IDENTITY_CONDITIONS_FILE), ConditionTable.load(ds / VIEW_IDENTITY_CONDITIONS_FILE)
    assert ident.ids == cond.ids and sorted(view_ident.ids) == sorted(view.ids)
    assert ident.meta["backend"] == "offline-appearance-embedder"


@pytest.mark.parametrize("key,value", [("label_clip.seed", 7), ("pack_dataset.shard_size", 5)])
def test_param_change_reruns_exactly_the_dependent_stages(built_workspace, tmp_path, key, value):
    section, leaf = key.split(".")
    direct = pipeline.stages_reading(key)
    expected = pipeline.downstream_closure(direct) & set(DATA_STAGES)     # the run targets the data stages

    snk = clone(built_workspace, tmp_path / "snk")
    set_params(snk, {section: {leaf: value}})
    assert dvc_changed(snk) == direct & set(DATA_STAGES)      # status is asked of the data stages only
    assert stages_in_plan(snakemake_plan(snk)) == expected
    run([str(BIN / "snakemake"), "--cores", "2", "data"], cwd=snk)
    assert dvc_changed(snk) == set()

    d = clone(built_workspace, tmp_path / "dvc")
    set_params(d, {section: {leaf: value}})
    out = dvc(d, "repro", *DATA_STAGES).stdout
    assert set(re.findall(r"Running stage '([\w]+)'", out)) == expected
    assert dvc_changed(d) == set()


def test_unsharded_dvc_repro_gives_the_same_bytes_as_sharded_snakemake(built_workspace, workspace):
    dvc(workspace, "repro", *DATA_STAGES)
    ours, theirs = lock_hashes(workspace), lock_hashes(built_workspace)
    for name in DATA_STAGES:
        assert ours[name] == theirs[name], f"stage {name}: outputs differ between sharded and unsharded runs"


def test_a_partial_snakemake_target_does_not_vouch_for_stages_outside_it(built_workspace, tmp_path):
    ws = clone(built_workspace, tmp_path / "partial")
    set_params(ws, {"label_clip": {"seed": 11}})
    run([str(BIN / "snakemake"), "--cores", "2", "data/views"], cwd=ws)     # label_clip is not in this DAG
    assert dvc_changed(ws) == {"label_clip"}
