"""params.yaml validation: every mistake stops before any work, with the key named."""
from __future__ import annotations

import copy
import sys

import pytest
import yaml

from balancehead.params import ParamsError, load_params, validate
from conftest import REPO, run

RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def mutated(path: str, value):
    raw = copy.deepcopy(RAW)
    node = raw
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    return raw


def test_repository_params_are_valid():
    p = load_params(REPO / "params.yaml")
    assert p.ingest.source == "procedural"
    assert p.assess_quality.keep_above == 60 and p.assess_quality.drop_below == 35
    assert len(p.synthesizer.views) == 10        # both columns of Fig. 7's [view] row


@pytest.mark.parametrize("path,value,expect", [
    ("ingest.num_sourcez", 3, "ingest.num_sourcez: unknown key; allowed keys here:"),
    ("ingest.num_sources", "many", "ingest.num_sources"),
    ("ingest.num_sources", 0, "ingest.num_sources: Input should be greater than or equal to 1"),
    ("assess_quality.keep_above", 120, "assess_quality.keep_above"),
    ("assess_quality.drop_below", 80, "drop_below (80.0) must be <= keep_above"),
    ("label_clip.backend", "openai", "label_clip.backend"),
    ("synthesizer.offline.artifact_rate", 1.5, "synthesizer.offline.artifact_rate"),
    ("synth_front.prompt_id", "nope", "synth_front.prompt_id 'nope' is not one of"),
    ("camera.pivot", [0, 0], "camera.pivot"),
    ("workflow.shards", -1, "workflow.shards"),
    ("filter_views.judge", {"not_a_threshold": 1.0}, "filter_views.judge"),
])
def test_bad_value_names_the_key(path, value, expect):
    with pytest.raises(ParamsError) as err:
        validate(mutated(path, value))
    assert expect in str(err.value)


def test_unknown_top_level_section_is_refused():
    raw = copy.deepcopy(RAW)
    raw["trainn"] = {}
    with pytest.raises(ParamsError, match=r"trainn: unknown key; allowed keys here: .*ingest"):
        validate(raw)


def test_cli_fails_before_writing_anything(tmp_path):
    bad = mutated("ingest.num_sources", -5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    proc = run([sys.executable, "-m", "balancehead", "run", "ingest"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "ingest.num_sources" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]   # no data/, no logs/


def test_snakemake_refuses_invalid_params(workspace):
    raw = yaml.safe_load((workspace / "params.yaml").read_text())
    raw["synth_views"]["views_per_front"] = 0
    (workspace / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", "data"], cwd=workspace, check=False)
    assert proc.returncode != 0
    assert "synth_views.views_per_front" in proc.stdout + proc.stderr
    assert not (workspace / "data").exists()
