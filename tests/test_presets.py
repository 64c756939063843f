"""The paper presets (presets/*.yaml) merge into params.yaml, keep its comments, validate, and carry the
paper's numbers; a preset key params.yaml lacks is refused."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from balancehead.params import load_params

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def _apply_module():
    spec = importlib.util.spec_from_file_location("apply_preset", REPO / "scripts/apply_preset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_merges_validates_and_keeps_comments(tmp_path, preset):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    _apply_module().apply(preset, params)
    merged = load_params(params)
    text = params.read_text()
    assert "# global seed" in text and "BalanceHead workflow" in text          # comments survive
    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v
    for key, value in leaves(yaml.safe_load(preset.read_text())):
        got = merged
        for part in key.split("."):
            got = got[part] if isinstance(got, dict) else getattr(got, part)
        got = got.model_dump(mode="json") if hasattr(got, "model_dump") else got
        assert got == value or (isinstance(value, list) and list(got) == value), key
    # untouched keys keep their values
    assert merged.seed == load_params(REPO / "params.yaml").seed


def test_paper_data_preset_carries_the_papers_scale():
    p = yaml.safe_load((REPO / "presets/paper_data.yaml").read_text())
    sources, views = p["ingest"]["num_sources"], p["synth_views"]["views_per_front"]
    assert sources == 350_000                                     # BalanceHead §3.1
    assert views == round(11.2e6 / sources)                       # 11.2M images (§3.3) / 350k sources = 32
    assert p["synthesizer"]["image_size"] == p["preprocess"]["crop_size"] == 512
    assert load_params(REPO / "params.yaml").synth_views.views_per_front == 9     # the CPU default stays
    readme = (REPO / "README.md").read_text()
    assert "presets/paper_data.yaml" in readme and "presets/paper_train.yaml" in readme


def test_unknown_preset_key_is_refused(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth_views: {views_per_frnt: 32}\n")
    before = params.read_text()
    with pytest.raises(Exception, match="views_per_frnt"):
        _apply_module().apply(bad, params)
    bad.write_text("synth_views: {views_per_front: 0}\n")         # known key, invalid value
    with pytest.raises(Exception, match="views_per_front"):
        _apply_module().apply(bad, params)
    assert params.read_text() == before                            # nothing replaced
