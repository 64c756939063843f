"""PTI on a prior sample of a tiny random generator; turntables; the invert stage's outputs."""
import json

import numpy as np
import pytest
import torch

from balancehead.evaluation.params import InvertParams, SamplePriorParams


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from stage_context import stage_context
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import invert, sample_prior

    root = tmp_path_factory.mktemp("invert")
    save_checkpoint(root / "data/train", {"G_ema": Generator(GeneratorConfig.tiny())}, {"conditioning": "view"})
    sp = SamplePriorParams(num_identities=2, holdout_identities=1, equator_views=4, random_views=0)
    sample_prior.main(stage_context(root, "sample_prior", {"sample_prior": sp}))
    ip = InvertParams(max_targets=1, w_steps=25, g_steps=10, turntable_frames=6, w_lr=0.05)
    invert.main(stage_context(root, "invert", {"invert": ip}))
    return root, ip


def test_pti_reduces_input_view_error(run):
    root, _ = run
    rec = json.loads((root / "data/invert/metrics.jsonl").read_text().splitlines()[0])
    assert rec["pivot"]["l2"] < 0.8 * rec["start"]["l2"]
    assert rec["input_view"]["l2"] <= rec["pivot"]["l2"] * 1.05
    assert rec["input_view"]["psnr"] > rec["start"]["psnr"] + 1.0
    assert rec["loss_pivot_last"] < rec["loss_pivot_first"]
    assert set(rec["novel_views"]) == {"front", "left", "back", "right"}


def test_invert_outputs_and_delta_reproduce_the_render(run):
    from safetensors.torch import load_file

    from balancehead.evaluation.generator_io import load_generator
    from balancehead.evaluation.pti import apply_delta, render_white
    from balancehead.evaluation.turntable import gif_frame_count

    root, ip = run
    d = next(p for p in (root / "data/invert").iterdir() if p.is_dir())
    for name in ("pivot.safetensors", "delta.safetensors", "target.png", "input_view.png", "turntable.gif",
                 "novel_back.png", "gt_back.png", "metrics.json"):
        assert (d / name).exists(), name
    assert gif_frame_count((d / "turntable.gif").read_bytes()) == ip.turntable_frames
    g, _ = load_generator(root / "data/train")
    from PIL import Image
    with Image.open(d / "turntable.gif") as im:                                # the model's full output size
        assert im.size == (g.cfg.output_resolution,) * 2
    tuned = apply_delta(g, load_file(str(d / "delta.safetensors")))
    ws = load_file(str(d / "pivot.safetensors"))["ws"]
    cam = torch.tensor(json.loads((d / "metrics.json").read_text())["camera"])[None]
    with torch.no_grad():
        img = render_white(tuned, ws, cam)
    from balancehead.evaluation.generator_io import to_uint8
    from balancehead import fileio
    saved = fileio.read_png(d / "input_view.png")
    assert np.abs(to_uint8(img)[0].astype(int) - saved.astype(int)).max() <= 1
    summary = json.loads((root / "results/invert.json").read_text())
    assert summary["targets"] == 1 and summary["lpips_is_offline"] is True


def test_w_plus_and_locality_run():
    from balancehead.evaluation.perceptual import PerceptualLoss
    from balancehead.evaluation.pti import pti, render_white
    from balancehead.models import Generator, GeneratorConfig
    from balancehead.camera import camera_label

    g = Generator(GeneratorConfig.tiny()).eval()
    cam = torch.from_numpy(camera_label(30.0, 0.0))[None]
    with torch.no_grad():
        ws_true = g.map(torch.randn(1, 32, generator=torch.Generator().manual_seed(1)), cam)
        target = render_white(g, ws_true, cam)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    p = InvertParams(latent_space="w+", w_steps=8, g_steps=3, locality_weight=0.1, optimize_noise=False)
    res = pti(g, target, cam, p, PerceptualLoss(p.perceptual))
    assert res.ws.shape == ws_true.shape and len(res.history["tuning"]) == 3
    assert all(torch.equal(v, before[k]) for k, v in g.state_dict().items())   # the input generator is untouched


def test_turntable_frame_count():
    from balancehead.evaluation.turntable import gif_bytes, gif_frame_count, turntable_frames
    from balancehead.models import Generator, GeneratorConfig

    g = Generator(GeneratorConfig.tiny()).eval()
    ws = g.mapping.w_avg.view(1, 1, -1).expand(1, g.synthesis.num_ws, -1)
    frames = turntable_frames(g, ws, 10)
    assert frames.shape == (10, 32, 32, 3)
    stripes = np.zeros((7, 8, 8, 3), np.uint8)
    for i in range(7):
        stripes[i, :, i] = 255
    assert gif_frame_count(gif_bytes(stripes)) == 7


def test_pti_twice_gives_identical_delta_bytes():
    """Issue 14: two PTI runs on the same target, with 1 and 2 torch threads, write byte-identical
    delta.safetensors in the stage's own encoding (causes found: the safetensors header's metadata order,
    and CPU weight-gradient sums that depend on the thread count)."""
    from balancehead import fileio
    from balancehead.camera import camera_label
    from balancehead.evaluation.perceptual import PerceptualLoss
    from balancehead.evaluation.pti import pti, render_white, weight_delta
    from balancehead.models import Generator, GeneratorConfig
    from balancehead.stages.invert import DELTA_META

    g = Generator(GeneratorConfig.tiny()).eval()
    cam = torch.from_numpy(camera_label(-20.0, 5.0))[None]
    with torch.no_grad():
        target = render_white(g, g.map(torch.randn(1, 32, generator=torch.Generator().manual_seed(3)), cam), cam)
    p = InvertParams(w_steps=6, g_steps=4, locality_weight=0.1)       # locality: the seeded random draws too
    encoded, before = [], torch.get_num_threads()
    try:
        for threads in (1, 2):     # workflow.threads never changes outputs (oneDNN/MKL sums split by thread)
            torch.set_num_threads(threads)
            res = pti(g, target, cam, p, PerceptualLoss(p.perceptual), seed=7)
            assert torch.get_num_threads() == threads                  # the caller's setting is restored
            delta = weight_delta(g, res.generator)
            assert delta                                               # tuning changed weights
            encoded += [fileio.safetensors_bytes(delta, DELTA_META) for _ in range(10)]
    finally:
        torch.set_num_threads(before)
    assert len(set(encoded)) == 1
