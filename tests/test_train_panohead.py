"""PanoHead training details (issue 9 item 10), pinned on known numbers: R1 on the mask input with its
own gamma, the camera-offset penalty, the swap-probability fade and the roll swap, EG3D's blur kernel,
the linear neural-resolution schedule, the background switch and the validation of the new keys; and
the whole lazy-R1 step (blur, raw-image target blur, image and mask terms, gain) against golden numbers
from PanoHead's official `training/loss.py` (scripts/golden/panohead_r1.py)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from balancehead.train.conditioning import LabelSpec
from balancehead.train.loop import build_models
from balancehead.train.loss import GanLoss, StepSettings, camera_offset_penalty, r1_penalties
from balancehead.train.params import TrainParams
from balancehead.train.schedule import blur_eg3d, blur_sigma, eg3d_blur_filter, neural_resolution, swap_probability

torch.set_num_threads(1)


class LinearD(torch.nn.Module):
    """D(x) = <a, I+> + <b, I> + k * <m, mask> per sample: its input gradients are a, b and k*m."""

    def __init__(self, size: int, raw: int, k: float):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.cfg = SimpleNamespace(mode="tri")
        self.a = torch.nn.Parameter(torch.randn(3, size, size, generator=g))
        self.b = torch.nn.Parameter(torch.randn(3, raw, raw, generator=g))
        self.m = torch.nn.Parameter(torch.randn(1, size, size, generator=g))
        self.k = k

    def forward(self, images, c):
        return ((images["image"] * self.a).sum([1, 2, 3]) + (images["image_raw"] * self.b).sum([1, 2, 3])
                + self.k * (images["mask"] * self.m).sum([1, 2, 3]))[:, None]


def r1_setup(k: float, gamma_mask: float, interval: int = 4):
    tp = TrainParams(conditioning={"mode": "view"}, loss={"r1_gamma": 2.0, "r1_gamma_mask": gamma_mask,
                                                           "r1_interval": interval, "blur_init_sigma": 0})
    D = LinearD(8, 4, k)
    loss = GanLoss(None, D, tp, LabelSpec("view", 0), torch.device("cpu"), "fp32")
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(3, 3, 8, 8, generator=g), "mask": torch.rand(3, 1, 8, 8, generator=g),
             "camera": torch.rand(3, 25, generator=g)}
    return D, loss, batch


def test_r1_on_mask_follows_the_mask_channel_only():
    s = StepSettings(neural_resolution=4, blur_sigma=0.0, augment_p=None)
    for k in (1.0, 3.0):
        D, loss, batch = r1_setup(k, gamma_mask=10.0)
        D.requires_grad_(True)
        stats = loss.d_r1(batch, s, torch.Generator().manual_seed(1), scale=0.5)
        img_pen = float(D.a.detach().square().sum() + D.b.detach().square().sum())
        mask_pen = float((k * D.m.detach()).square().sum())
        assert float(stats["r1_penalty"]) == pytest.approx(img_pen, rel=1e-5)        # unchanged by k
        assert float(stats["r1_penalty_mask"]) == pytest.approx(mask_pen, rel=1e-5)   # scales with k^2
        # d/dm of gamma_mask/2 * k^2 |m|^2, times interval (4) and scale (0.5)
        assert torch.allclose(D.m.grad, 10.0 * k ** 2 * D.m.detach() * 4 * 0.5, rtol=1e-5)
        assert torch.allclose(D.a.grad, 2.0 * D.a.detach() * 4 * 0.5, rtol=1e-5)


def test_r1_mask_gamma_zero_is_images_only():
    D, loss, batch = r1_setup(3.0, gamma_mask=0.0)
    D.requires_grad_(True)
    stats = loss.d_r1(batch, StepSettings(4, 0.0, None), torch.Generator().manual_seed(1), scale=1.0)
    assert "r1_penalty_mask" not in stats
    assert D.m.grad is None or float(D.m.grad.abs().sum()) == 0.0


def test_r1_penalties_on_a_nonlinear_function():
    x = {"image": torch.full((2, 3, 2, 2), 0.5, requires_grad=True),
         "image_raw": torch.full((2, 3, 1, 1), 2.0, requires_grad=True),
         "mask": torch.full((2, 1, 2, 2), 3.0, requires_grad=True)}
    logits = x["image"].square().sum([1, 2, 3]) + x["image_raw"].sum([1, 2, 3]) + x["mask"].square().sum([1, 2, 3]) / 2
    pen, pen_mask = r1_penalties(logits, x, with_mask=True)
    assert torch.allclose(pen, torch.full((2,), 12 * 1.0 + 3 * 1.0))     # (2 * 0.5)^2 * 12 + 1 * 3
    assert torch.allclose(pen_mask, torch.full((2,), 4 * 9.0))           # 3^2 * 4


def test_camera_offset_penalty_formula():
    delta = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert float(camera_offset_penalty(delta, 10.0, "batch_mean")) == pytest.approx(10.0 * (4 + 4 + 4))
    assert float(camera_offset_penalty(delta, 10.0, "per_sample")) == pytest.approx(10.0 * 14)
    opposite = torch.tensor([[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]])       # PanoHead only penalises a shared drift
    assert float(camera_offset_penalty(opposite, 1.0, "batch_mean")) == 0.0


def test_swap_probability_fade():
    assert swap_probability(0.0, 0.7, 1000) == 1.0
    assert swap_probability(250.0, 0.7, 1000) == pytest.approx(0.925)
    assert swap_probability(500.0, 0.7, 1000) == pytest.approx(0.85)
    assert swap_probability(1000.0, 0.7, 1000) == pytest.approx(0.7)
    assert swap_probability(5000.0, 0.7, 1000) == pytest.approx(0.7)
    assert swap_probability(0.0, 0.7, 0) == pytest.approx(0.7)


def test_swap_probability_raised_to_one_mid_training():
    """BalanceHead Fig. 2(b): from `to_one_kimg` on the camera label is always swapped (view conditioning off)."""
    assert swap_probability(1999.0, 0.7, 1000, to_one_kimg=2000.0) == pytest.approx(0.7)
    assert swap_probability(2000.0, 0.7, 1000, to_one_kimg=2000.0) == 1.0
    assert swap_probability(9000.0, 0.7, 1000, to_one_kimg=2000.0) == 1.0
    assert swap_probability(500.0, 0.7, 1000, to_one_kimg=None) == pytest.approx(0.85)


@pytest.mark.parametrize("swap_with", ["roll", "random"])
def test_swapped_camera_label(swap_with):
    tp = TrainParams(conditioning={"mode": "view", "swap_with": swap_with})
    loss = GanLoss(None, None, tp, LabelSpec("view", 0), torch.device("cpu"), "fp32")
    batch = {"camera": torch.arange(6 * 25, dtype=torch.float32).view(6, 25)}
    cam, c_g, c_d = loss.gen_labels(batch, torch.Generator().manual_seed(0), swap_prob=1.0)
    assert torch.equal(c_d, cam)                                   # D sees the rendering camera
    if swap_with == "roll":
        assert torch.equal(c_g, torch.roll(cam, 1, 0))             # G sees the previous row's camera
    else:
        assert all(any(torch.equal(r, b) for b in batch["camera"]) for r in c_g)
    _, c_g0, _ = loss.gen_labels(batch, torch.Generator().manual_seed(0), swap_prob=0.0)
    assert torch.equal(c_g0, cam)


def test_eg3d_blur_kernel():
    f = eg3d_blur_filter(1.0)
    taps = torch.tensor([2.0 ** -(x * x) for x in range(-3, 4)])
    assert torch.allclose(f, taps / taps.sum())
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    assert torch.allclose(blur_eg3d(x, 1.0)[0, 0, 1:8, 1:8], torch.outer(f, f), atol=1e-7)
    ones = blur_eg3d(torch.ones(1, 1, 9, 9), 1.0)                  # zero padding darkens the border
    assert float(ones[0, 0, 0, 0]) == pytest.approx(float(f[3:].sum()) ** 2, rel=1e-5)
    assert float(ones[0, 0, 4, 4]) == pytest.approx(1.0, rel=1e-5)
    assert torch.equal(blur_eg3d(x, 0.3), x)                       # floor(3 sigma) = 0: no blur


def test_neural_resolution_schedules():
    assert [neural_resolution(k, 64, 128, 1000, "linear") for k in (0, 250, 500, 1000, 2000)] == [64, 80, 96, 128, 128]
    assert neural_resolution(1.0, 64, 128, 1000, "linear") == 64                   # rint(64.064)
    assert [neural_resolution(k, 64, 128, 1000, "pow2") for k in (0, 500, 999, 1000)] == [64, 64, 64, 128]
    assert neural_resolution(10, 64, 128, 0, "linear") == 128


def test_background_switch(tmp_path):
    spec = LabelSpec("semantic", 4)
    G, _ = build_models(TrainParams(model={"background": False}), spec, 0)
    assert G.background is None
    G, _ = build_models(TrainParams(), spec, 0)
    assert G.background is not None


@pytest.mark.parametrize("section,key,value", [("loss", "r1_gamma_mask", -1.0), ("loss", "r1_gamma_mask", math.nan),
                                               ("loss", "camera_adapt_penalty", "l2"), ("loss", "blur_kernel", "box"), ("loss", "r1_wrt", "fake"),
                                               ("conditioning", "swap_fade_kimg", -5), ("conditioning", "swap_with", "x"),
                                               ("schedule", "neural_resolution_mode", "log"), ("model", "background", "maybe")])
def test_new_keys_are_validated(section, key, value):
    with pytest.raises(ValidationError, match=key):
        TrainParams(**{section: {key: value}})


GOLDEN = Path(__file__).parent / "data" / "panohead_r1.safetensors"
_spec = importlib.util.spec_from_file_location("panohead_r1", Path(__file__).parents[1] / "scripts/golden/panohead_r1.py")
STUBS = importlib.util.module_from_spec(_spec)       # the analytic G and D the golden numbers were made with
_spec.loader.exec_module(STUBS)


@pytest.mark.parametrize("case", ["raw_downsampled", "with_mask"])
def test_r1_step_matches_official_panohead(case):
    """PanoHead's `accumulate_gradients('Dreg', ...)` (blur 1.3, gain 4) vs our d_r1 on the same analytic D."""
    meta = json.loads(GOLDEN.with_suffix(".json").read_text())
    cfg, gold = meta["cases"][case], load_file(str(GOLDEN))
    params = {k: torch.nn.Parameter(gold[f"{case}.param.{k}"].clone()) for k in ("a", "b", "m")}

    class D(torch.nn.Module):
        cfg = SimpleNamespace(mode="tri")

        def forward(self, images, c):
            return STUBS.stub_logits(params, images["image"], images["image_raw"], images["mask"])

    tp = TrainParams(conditioning={"mode": "view"},
                     loss={"r1_gamma": cfg["r1_gamma"], "r1_gamma_mask": cfg["r1_gamma_seg"], "r1_interval": meta["gain"],
                           "blur_kernel": "eg3d"})
    loss = GanLoss(None, D(), tp, LabelSpec("view", 0), torch.device("cpu"), "fp32")
    sigma = blur_sigma(meta["cur_nimg"] / 1000, meta["blur_init_sigma"], meta["blur_fade_kimg"])
    s = StepSettings(neural_resolution=cfg["neural_resolution"], blur_sigma=sigma, augment_p=None)
    batch = {"image": gold[f"{case}.image"], "mask": gold[f"{case}.mask"], "camera": gold[f"{case}.camera"]}
    loss.d_r1(batch, s, torch.Generator().manual_seed(0), scale=1.0)
    for k, p in params.items():
        want = gold[f"{case}.grad.{k}"]
        assert torch.allclose(p.grad, want, rtol=1e-5, atol=1e-6 * float(want.abs().max())), k
    if cfg["r1_gamma_seg"]:
        assert float(params["m"].grad.abs().max()) > 0        # the mask term is really compared


def test_g_main_step_matches_official_panohead():
    """PanoHead's `accumulate_gradients('Gmain', ...)` (blur on the fake I+ only, trans_reg 10) vs our g_main."""
    meta = json.loads(GOLDEN.with_suffix(".json").read_text())["g_main"]
    gold = load_file(str(GOLDEN))
    gp = {k: torch.nn.Parameter(gold[f"g_main.param.{k}"].clone()) for k in ("d", "img", "raw", "msk")}
    dp = {k: gold[f"g_main.dparam.{k}"] for k in ("a", "b", "m")}

    class G(torch.nn.Module):
        cfg = SimpleNamespace(z_dim=4)

        def forward(self, z, c, camera, **_):
            adapted, _delta = STUBS.stub_adapt(gp, camera)
            image, raw, mask = STUBS.stub_render(gp, adapted)
            return SimpleNamespace(image=image, image_raw=raw, mask=mask, camera=adapted)

    class D(torch.nn.Module):
        cfg = SimpleNamespace(mode="tri")

        def forward(self, images, c):
            return STUBS.stub_logits(dp, images["image"], images["image_raw"], images["mask"])

    tp = TrainParams(conditioning={"mode": "view"}, model={"output_resolution": meta["size"], "neural_resolution": meta["size"]},
                     schedule={"neural_resolution_initial": meta["size"]},
                     loss={"camera_adapt_weight": meta["trans_reg"], "camera_adapt_penalty": "batch_mean", "blur_kernel": "eg3d"})
    loss = GanLoss(G(), D(), tp, LabelSpec("view", 0), torch.device("cpu"), "fp32")
    sigma = blur_sigma(0.35, 2.0, 1.0)
    stats = loss.g_main({"camera": gold["g_main.camera"]}, StepSettings(meta["size"], sigma, None, swap_prob=0.7),
                        torch.Generator().manual_seed(0), scale=1.0)
    assert float(stats["loss_camera"]) > 0
    for k, p in gp.items():
        want = gold[f"g_main.grad.{k}"]
        assert torch.allclose(p.grad, want, rtol=1e-4, atol=1e-6 * float(want.abs().max())), k
