"""The tiny CPU preset starts near the data; the paper preset keeps the reference (PanoHead) choices.

Regression pinned here: with PanoHead's background synthesis (raw, unbounded output) and t_mapping
(unscaled camera translation) as the tiny preset's defaults, the initial 32 px fakes were a dark, wide-range
image rendered from cameras thrown 1-6 world units off their labels (the frame spans ~0.9 units), the
first random-feature FD of `make run` was ~600 instead of ~30 and 2 kimg no longer produced heads.
A short training run would show it too, but takes minutes on CPU; the initial generator shows it in a second.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from balancehead.camera import camera_label
from balancehead.train.conditioning import LabelSpec
from balancehead.train.loop import build_models
from balancehead.train.params import PRESET_DEFAULTS, TrainParams

torch.set_num_threads(1)

YAWS = (0.0, 45.0, 90.0, 135.0, 180.0, -135.0, -90.0, -45.0)


def test_preset_defaults_resolve_per_preset():
    tiny = TrainParams().model
    assert tiny.background_kind is None and tiny.camera_adapt_kind is None
    assert (tiny.resolved("background_kind"), tiny.resolved("camera_adapt_kind")) == ("own_mapping", "mlp")
    paper = TrainParams(model={"preset": "paper"}).model
    assert (paper.resolved("background_kind"), paper.resolved("camera_adapt_kind")) == ("panohead", "panohead")
    explicit = TrainParams(model={"background_kind": "panohead", "camera_adapt_kind": "panohead"}).model
    assert explicit.resolved("background_kind") == "panohead" and explicit.resolved("camera_adapt_kind") == "panohead"
    assert set(PRESET_DEFAULTS["tiny"]) == set(PRESET_DEFAULTS["paper"])


def test_build_models_uses_the_resolved_kinds():
    spec = LabelSpec("semantic", 16)
    G, _ = build_models(TrainParams(), spec, 0)
    assert (G.cfg.background_kind, G.cfg.camera_adapt_kind) == ("own_mapping", "mlp")
    G, _ = build_models(TrainParams(model={"background_kind": "panohead", "camera_adapt_kind": "panohead"}), spec, 0)
    assert (G.cfg.background_kind, G.cfg.camera_adapt_kind) == ("panohead", "panohead")


def _initial_fakes(model: dict):
    tp = TrainParams(model={"n_coarse": 4, "n_importance": 4, **model})
    G, _ = build_models(tp, LabelSpec("semantic", 16), 0)
    cams = torch.tensor(np.array([camera_label(y, 0.0) for y in YAWS]), dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(len(YAWS), G.cfg.z_dim, generator=g), torch.randn(len(YAWS), G.cfg.c_dim, generator=g)
    with torch.no_grad():
        return G.eval()(z, c, cams, noise_mode="const")


def test_tiny_preset_starts_near_the_data_range():
    """Data: [-1, 1] images on white. Tiny: a grey start in range, cameras on their labels."""
    out = _initial_fakes({})
    assert float(out.camera_delta_norm.max()) < 0.1
    assert abs(float(out.image.mean())) < 0.5 and float(out.image.std()) < 1.0
    assert float(out.image.abs().max()) < 3.0


@pytest.mark.parametrize("model", [{"background_kind": "panohead"}, {"camera_adapt_kind": "panohead"}])
def test_reference_kinds_start_far_from_it(model):
    """The check above fails with either reference choice at the tiny size (the regression)."""
    out = _initial_fakes(model)
    far_camera = float(out.camera_delta_norm.max()) > 0.5
    wide_image = float(out.image.std()) > 1.0 or float(out.image.abs().max()) > 3.0
    assert far_camera if "camera_adapt_kind" in model else wide_image
