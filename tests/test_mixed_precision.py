"""EG3D mixed precision: which blocks run in float16 (by resolution, as the official networks pick
them), float32 everywhere off CUDA, the per-block dtype flow, and the train.model fields wiring it."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from balancehead.camera import camera_label
import balancehead.models.discriminator as discriminator_module
import balancehead.models.synthesis as synthesis_module
from balancehead.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from balancehead.models.convert import discriminator_from_official, generator_from_official
from balancehead.models.synthesis import SynthesisNetwork
from balancehead.train.loop import build_models, pick_precision
from balancehead.train.params import TrainParams
from tests.test_golden_gan import load, state_dict


def _cams(n):
    return torch.from_numpy(np.stack([camera_label(30.0 * i, 0.0) for i in range(n)]))


def _fp16_resolutions(blocks, resolutions):
    return {r for b, r in zip(blocks, resolutions) if b.use_fp16}


def _d_resolutions(top):
    return [2 ** i for i in range(int(np.log2(top)), 2, -1)]


def _run(G, D, n=2, seed=0):
    g, device = torch.Generator().manual_seed(seed), next(G.parameters()).device
    z, c = torch.randn(n, G.cfg.z_dim, generator=g).to(device), torch.randn(n, G.cfg.c_dim, generator=g).to(device)
    out = G(z, c, _cams(n).to(device))
    return out, D(out.as_discriminator_input(), torch.randn(n, D.cfg.c_dim, generator=g).to(device))


def test_fp16_fields_default_to_zero_and_select_no_block():
    assert GeneratorConfig().num_fp16_res == GeneratorConfig().sr_num_fp16_res == DiscriminatorConfig().num_fp16_res == 0
    G, D = Generator(GeneratorConfig.tiny()), Discriminator(DiscriminatorConfig.tiny(mode="mask"))
    blocks = [m for m in list(G.modules()) + list(D.modules()) if hasattr(m, "use_fp16")]
    assert len(blocks) > 8 and not any(b.use_fp16 for b in blocks)
    with pytest.raises(ValueError, match="num_fp16_res"):
        GeneratorConfig.tiny(num_fp16_res=-1)


# (img resolution, num_fp16_res) -> the resolutions EG3D runs in float16: the N highest, never below 8 px
@pytest.mark.parametrize("res,n,expected", [
    (256, 4, {32, 64, 128, 256}), (256, 1, {256}), (256, 0, set()), (64, 4, {8, 16, 32, 64}), (32, 9, {8, 16, 32}),
])
def test_synthesis_fp16_blocks_are_eg3ds(res, n, expected):
    net = SynthesisNetwork(8, res, 3, torch.Generator().manual_seed(0), channel_base=2048, channel_max=4, num_fp16_res=n)
    assert _fp16_resolutions(net.blocks, net.block_resolutions) == expected


@pytest.mark.parametrize("res,n,expected", [(512, 4, {512, 256, 128, 64}), (32, 4, {32, 16, 8}), (64, 1, {64}),
                                            (64, 0, set())])
def test_discriminator_fp16_blocks_are_eg3ds(res, n, expected):
    D = Discriminator(DiscriminatorConfig.tiny(resolution=res, num_fp16_res=n, channel_base=2048, channel_max=4))
    assert _fp16_resolutions(D.blocks, _d_resolutions(res)) == expected


def test_mask_branch_uses_the_image_resolution_threshold():
    """PanoHead MaskDualDiscriminator: the seg blocks take fp16_resolution from img_resolution, not seg_resolution."""
    D = Discriminator(DiscriminatorConfig.tiny(resolution=64, seg_resolution=32, mode="mask", num_fp16_res=2))
    assert _fp16_resolutions(D.blocks, _d_resolutions(64)) == {64, 32}
    assert _fp16_resolutions(D.seg_blocks, _d_resolutions(32)) == {32}


def test_sr_blocks_are_all_fp16_when_sr_num_fp16_res_is_positive():
    for n, expected in ((0, False), (1, True), (4, True)):
        G = Generator(GeneratorConfig.tiny(output_resolution=64, sr_num_fp16_res=n))
        assert len(G.superres.blocks) == 2 and all(b.use_fp16 is expected for b in G.superres.blocks)
        assert not any(b.use_fp16 for b in G.synthesis.blocks)


def test_background_synthesis_follows_num_fp16_res():
    G = Generator(GeneratorConfig.tiny(num_fp16_res=1))
    bg = G.background.synthesis
    assert _fp16_resolutions(bg.blocks, bg.block_resolutions) == {bg.resolution}


def test_fp16_configs_stay_exactly_fp32_on_cpu():
    """EG3D forces float32 off CUDA: the same weights give bit-identical outputs with or without fp16 blocks."""
    G0, D0 = Generator(GeneratorConfig.tiny()), Discriminator(DiscriminatorConfig.tiny(mode="mask"))
    G1 = Generator(GeneratorConfig.tiny(num_fp16_res=4, sr_num_fp16_res=4))
    D1 = Discriminator(DiscriminatorConfig.tiny(mode="mask", num_fp16_res=4))
    (o0, d0), (o1, d1) = _run(G0, D0), _run(G1, D1)
    assert torch.equal(o0.image, o1.image) and torch.equal(d0, d1) and o1.image.dtype == torch.float32


def _record_block_dtypes(*nets):
    seen = {}
    for prefix, net in zip("GD", nets):
        for name, m in net.named_modules():
            if hasattr(m, "use_fp16"):
                m.register_forward_hook(lambda mod, args, out, key=f"{prefix}.{name}":
                                        seen.__setitem__(key, (mod.use_fp16, (out[0] if isinstance(out, tuple) else out).dtype)))
    return seen


def _check_fp16_step(G, D):
    seen = _record_block_dtypes(G, D)
    out, logits = _run(G, D)
    assert out.image.dtype == out.image_raw.dtype == logits.dtype == torch.float32
    assert torch.isfinite(out.image).all() and torch.isfinite(logits).all()
    (logits.sum() + out.image.square().mean()).backward()
    assert seen and {dt for fp16, dt in seen.values() if fp16} == {torch.float16}
    assert {dt for fp16, dt in seen.values() if not fp16} == {torch.float32}
    assert any(fp16 for fp16, _ in seen.values()) and not all(fp16 for fp16, _ in seen.values())
    for p in list(G.parameters()) + list(D.parameters()):
        assert p.dtype == torch.float32  # weights stay float32, cast on use
        assert p.grad is None or torch.isfinite(p.grad).all()
    return out, logits


def test_fp16_dtype_flow_when_forced_on_cpu(monkeypatch):
    """The float16 plumbing, run on CPU by lifting the CUDA-only gate: fp16 blocks produce float16,
    the rest float32, outputs and gradients finite and close to the float32 model's."""
    force = lambda use_fp16, device, param_dtype: torch.float16 if use_fp16 else param_dtype  # noqa: E731
    g_cfg = GeneratorConfig.tiny(num_fp16_res=3, sr_num_fp16_res=1, conv_clamp=256.0)
    d_cfg = DiscriminatorConfig.tiny(mode="mask", num_fp16_res=2)
    ref_out, ref_logits = _run(Generator(g_cfg), Discriminator(d_cfg))
    monkeypatch.setattr(synthesis_module, "block_dtype", force)
    monkeypatch.setattr(discriminator_module, "block_dtype", force)
    out, logits = _check_fp16_step(Generator(g_cfg), Discriminator(d_cfg))
    assert not torch.equal(out.image, ref_out.image)  # float16 really ran
    assert (out.image - ref_out.image).abs().max() < 0.05 and (logits - ref_logits).abs().max() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="EG3D's float16 blocks run on CUDA only")
def test_cuda_fp16_generator_and_discriminator_forward_backward():
    G = Generator(GeneratorConfig.tiny(num_fp16_res=4, sr_num_fp16_res=4, conv_clamp=256.0)).cuda()
    D = Discriminator(DiscriminatorConfig.tiny(mode="mask", num_fp16_res=2)).cuda()
    _check_fp16_step(G, D)


def test_convert_reads_fp16_kwargs_from_official_init_kwargs():
    tensors, meta = load("eg3d")
    g_kw, d_kw = json.loads(meta["g_init_kwargs"]), json.loads(meta["d_init_kwargs"])
    rk = json.loads(meta["rendering_kwargs"])
    G = generator_from_official(state_dict(tensors, "G/"), g_kw, rk, "eg3d")
    assert (G.cfg.num_fp16_res, G.cfg.sr_num_fp16_res) == (g_kw["num_fp16_res"], g_kw["sr_num_fp16_res"]) == (0, 1)
    assert all(b.use_fp16 for b in G.superres.blocks) and G.cfg.sr_conv_clamp == 256.0
    D = discriminator_from_official(state_dict(tensors, "D/"), {**d_kw, "num_fp16_res": 2}, "eg3d")
    assert D.cfg.num_fp16_res == 2 and sum(b.use_fp16 for b in D.blocks) == 2
    d_kw.pop("num_fp16_res")  # absent: the official default, 4
    assert discriminator_from_official(state_dict(tensors, "D/"), d_kw, "eg3d").cfg.num_fp16_res == 4


def test_train_model_fields_wire_the_configs():
    tp = TrainParams.model_validate({"model": {"discriminator": "mask", "g_num_fp16_res": 2, "sr_num_fp16_res": 4,
                                               "d_num_fp16_res": 3}})
    spec = type("Spec", (), {"g_dim": 25, "d_dim": 25})()  # build_models reads only the label widths
    G, D = build_models(tp, spec, seed=0)
    assert (G.cfg.num_fp16_res, G.cfg.sr_num_fp16_res, G.cfg.conv_clamp) == (2, 4, 256.0)
    assert (D.cfg.num_fp16_res, D.cfg.mode) == (3, "mask")
    assert pick_precision(tp, torch.device("cuda")) == "fp32"  # EG3D's fp16 blocks replace bf16 autocast
    assert pick_precision(TrainParams(), torch.device("cuda")) == "bf16"
    G0, _ = build_models(TrainParams(), spec, seed=0)
    assert (G0.cfg.num_fp16_res, G0.cfg.conv_clamp) == (0, None)
    with pytest.raises(ValueError, match="bf16"):
        TrainParams.model_validate({"model": {"d_num_fp16_res": 4}, "distributed": {"precision": "bf16"}})
    with pytest.raises(ValueError, match="d_num_fp16_res"):
        TrainParams.model_validate({"model": {"d_num_fp16_res": -1}})


def test_benchmark_mixed_mode_uses_the_config_fields():
    """benchmarks/bench_vs_eg3d.py 'mixed': EG3D's float16 blocks on our side too (no autocast)."""
    path = Path(__file__).parents[1] / "benchmarks" / "bench_vs_eg3d.py"
    spec = importlib.util.spec_from_file_location("bench_vs_eg3d", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = dict(bench.CONFIGS["tiny"], g_num_fp16_res=2)
    G, D, how = bench.our_models(cfg, "mixed", "cpu")
    assert not how.startswith("autocast")
    assert (G.cfg.num_fp16_res, G.cfg.sr_num_fp16_res, D.cfg.num_fp16_res) == (2, 4, 4)
    assert G.cfg.conv_clamp == G.cfg.sr_conv_clamp == D.cfg.conv_clamp == 256.0
    assert all(b.use_fp16 for b in G.superres.blocks) and sum(b.use_fp16 for b in D.blocks) == 4
    G, D, how = bench.our_models(bench.CONFIGS["tiny"], "fp32", "cpu")
    assert G.cfg.sr_conv_clamp is None and D.cfg.conv_clamp is None and not any(b.use_fp16 for b in D.blocks)
    assert bench.our_models(bench.CONFIGS["tiny"], "bf16", "cpu")[2] == "autocast-bf16"
