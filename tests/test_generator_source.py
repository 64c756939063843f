"""generator.checkpoint: sample_prior / invert / evaluate take the trained run or an imported official
checkpoint, and that path is a dependency of those stages for DVC and Snakemake alike."""
from __future__ import annotations

import json
import pickle
import sys
import types

import pytest
import torch
import yaml

from balancehead import pipeline
from balancehead.evaluation.params import EvaluateParams, GeneratorParams, InvertParams, SamplePriorParams
from balancehead.params import ParamsError, default_value, validate
from conftest import BIN, REPO, copy_repo, run, set_params
from official_fakes import fake_official_modules, network_snapshot
from test_pipeline_e2e import snakemake_plan

STAGES = ("sample_prior", "invert", "evaluate")


def _params(**generator):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["generator"] = generator
    return validate(raw)


def test_params_default_and_validation():
    assert default_value("generator.checkpoint") == "data/train" == GeneratorParams().checkpoint
    assert _params(checkpoint="models/panohead/").generator.checkpoint == "models/panohead"
    for bad in ("data/prior", "results/eval", "${train.seed}", ""):
        with pytest.raises(ParamsError, match="generator.checkpoint"):
            _params(checkpoint=bad)
    with pytest.raises(ParamsError, match="generator.kind"):
        _params(checkpoint="models/x", kind="eg3d")


def test_checkpoint_is_a_stage_dependency():
    imported = _params(checkpoint="models/panohead")
    for name in STAGES:
        st = pipeline.stage(name)
        assert "generator" in st.params
        assert pipeline.GENERATOR in st.all_deps()                     # dvc.yaml: DVC's template
        assert "models/panohead" in st.all_deps(imported) and "data/train" not in st.all_deps(imported)
        assert "data/train" in st.all_deps(_params(checkpoint="data/train"))
        assert "train" in pipeline.upstream(name)                     # the default DAG still trains first


def test_dvc_and_snakemake_both_depend_on_the_imported_checkpoint(tmp_path):
    """With generator.checkpoint pointing at an import, DVC (templated dvc.yaml) and Snakemake (rules built
    from the validated params) both make it the stages' input instead of data/train."""
    from dvc.repo import Repo

    root = copy_repo(tmp_path / "repo")
    set_params(root, {"generator": {"checkpoint": "models/panohead"}})
    proc = run([sys.executable, str(REPO / "tests" / "describe_rules.py"), str(root)], cwd=root)
    rules = json.loads(proc.stdout.split("@@RULES@@", 1)[1])
    with Repo(str(root)) as repo:
        dvc_deps = {st.name: sorted(d.def_path for d in st.deps if not d.def_path.endswith("params.yaml"))
                    for st in repo.index.stages}
    for name in STAGES:
        assert "models/panohead" in dvc_deps[name] and "data/train" not in dvc_deps[name], dvc_deps[name]
        assert sorted(rules[name]["input"]) == dvc_deps[name]

    # and neither tool plans a training run to evaluate the imported model
    (root / "models/panohead").mkdir(parents=True)
    (root / "models/panohead/model.json").write_text("{}")
    plan = snakemake_plan(root, "results/metrics.json")
    assert {"evaluate", "invert", "sample_prior"} <= set(plan) and "train" not in plan, plan
    dag = run([str(BIN / "dvc"), "dag", "--dot", "evaluate"], cwd=root).stdout
    assert '"sample_prior"' in dag and '"pack_dataset"' in dag and '"train"' not in dag, dag


def _stub_convert(calls: list):
    """Stands in for balancehead.models.convert (core's converter) to test the import plumbing alone."""
    from balancehead.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

    def generator_from_official(state_dict, init_kwargs, rendering_kwargs, kind):
        calls.append(("G", dict(state_dict), init_kwargs, rendering_kwargs, kind))
        return Generator(GeneratorConfig.tiny(c_dim=init_kwargs["c_dim"]))

    def discriminator_from_official(state_dict, init_kwargs, kind):
        calls.append(("D", dict(state_dict), init_kwargs, kind))
        return Discriminator(DiscriminatorConfig.tiny(c_dim=init_kwargs["c_dim"]))

    mod = types.ModuleType("balancehead.models.convert")
    mod.generator_from_official, mod.discriminator_from_official = generator_from_official, discriminator_from_official
    return mod


def test_import_checkpoint_then_sample_prior_from_it(tmp_path, monkeypatch):
    from balancehead.cli import main as cli_main
    from balancehead.data.manifest import read_manifest
    from stage_context import stage_context
    from balancehead.models import load_checkpoint
    from balancehead.stages import sample_prior

    marker = tmp_path / "module_src_ran"
    data = network_snapshot(marker)
    with fake_official_modules():
        (tmp_path / "panohead.pkl").write_bytes(pickle.dumps(data, protocol=4))
    calls: list = []
    monkeypatch.setitem(sys.modules, "balancehead.models.convert", _stub_convert(calls))
    out = tmp_path / "models/panohead"
    assert cli_main(["import-checkpoint", str(tmp_path / "panohead.pkl"), "--kind", "panohead", "--out", str(out)]) == 0
    assert not marker.exists()
    (_, g_sd, g_kwargs, g_render, kind), (_, d_sd, _, _) = calls
    assert kind == "panohead" and g_kwargs["c_dim"] == 25 and g_render["neural_rendering_resolution"] == 64
    truth = data["G_ema"].state_dict()
    assert list(g_sd) == list(truth) and all(torch.equal(g_sd[k], truth[k]) for k in truth)
    assert set(d_sd) == set(data["D"].state_dict())
    modules, meta = load_checkpoint(out)
    assert set(modules) == {"G_ema", "D"} and meta["conditioning"] == "view"
    assert meta["imported_from"]["kind"] == "panohead" and len(meta["imported_from"]["sha256"]) == 64
    assert meta["imported_from"]["classes"] == {"G_ema": "TriPlaneGenerator", "D": "DualDiscriminator"}

    # sample_prior draws 360° data from it; there is no data/train at all
    p = SamplePriorParams(num_identities=2, holdout_identities=1, equator_views=2, random_views=1, batch_size=4)
    ctx = stage_context(tmp_path, "sample_prior",
                        {"sample_prior": p, "generator": GeneratorParams(checkpoint="models/panohead")})
    sample_prior.main(ctx)
    assert not (tmp_path / "data/train").exists()
    rows = read_manifest(tmp_path / "data/prior/manifest.parquet")
    assert len(rows) == 2 * 3
    prov = rows[0]["provenance"] if isinstance(rows[0]["provenance"], dict) else json.loads(rows[0]["provenance"])
    assert prov["checkpoint"] == "models/panohead" and prov["imported_from"]["kind"] == "panohead"


def test_invert_and_evaluate_take_the_imported_generator(tmp_path):
    """The official model goes through the same inversion, metrics and FID-by-yaw bias curve (no data/train)."""
    from stage_context import stage_context
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import evaluate, invert, sample_prior
    from test_eval_stage import _dataset

    g = Generator(GeneratorConfig.tiny(c_dim=25, background=False, camera_adapt=False))
    save_checkpoint(tmp_path / "models/eg3d", {"G_ema": g}, {"conditioning": "view", "source": "import",
                                                            "imported_from": {"kind": "eg3d"}})
    _dataset(tmp_path / "data/dataset")
    gen = {"generator": GeneratorParams(checkpoint="models/eg3d")}

    def run(stage, outs, section, params):
        stage.main(stage_context(tmp_path, section, {section: params, **gen}))
    run(sample_prior, ("data/prior",), "sample_prior",
        SamplePriorParams(num_identities=2, holdout_identities=1, equator_views=4, random_views=0))
    run(invert, ("data/invert",), "invert", InvertParams(max_targets=1, w_steps=2, g_steps=2, turntable_frames=4))
    run(evaluate, ("results/eval",), "evaluate",
        EvaluateParams(num_fakes=8, fakes_per_yaw_bin=4, mknnd_samples=8, id_identities=2, kid_subsets=3,
                       turntable_samples=1, turntable_frames=4, grid_size=2))
    assert not (tmp_path / "data/train").exists()
    assert json.loads((tmp_path / "results/invert.json").read_text())["targets"] == 1
    metrics = json.loads((tmp_path / "results/metrics.json").read_text())
    assert metrics["fid_random"] is not None and metrics["inversion"]["targets"] == 1
    assert len((tmp_path / "results/fid_by_yaw.tsv").read_text().splitlines()) == 9
    labels = json.loads((tmp_path / "results/eval/labels.json").read_text())
    assert labels["generator"] == "models/eg3d" and labels["imported_from"] == {"kind": "eg3d"}


def test_missing_checkpoint_names_the_param(tmp_path):
    from balancehead.evaluation.generator_io import find_checkpoint

    with pytest.raises(FileNotFoundError, match="generator.checkpoint"):
        find_checkpoint(tmp_path / "models/nothing")
