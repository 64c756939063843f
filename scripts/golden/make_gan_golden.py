"""Golden tensors for the GAN core: the official EG3D and PanoHead networks on CPU at small configs.

    python scripts/golden/make_gan_golden.py --eg3d /path/to/NVlabs/eg3d/eg3d --panohead /path/to/SizheAn/PanoHead \
        --spherehead /path/to/lhyfst/SphereHead

Builds the official TriPlaneGenerator + DualDiscriminator (EG3D tri-plane) and TriPlaneGenerator with
tri-grid, background and t_mapping + MaskDualDiscriminator (PanoHead), with fixed seeds and small widths
(128 px output, neural 32, 6+6 samples), and SphereHead's generator (PanoHead's with ConvA/ConvB heads and
dual spherical planes; its discriminator is PanoHead's, so none is stored for it), randomises every parameter/buffer (so biases, noise strengths
and w_avg matter), quantises tensors to 15 levels + one fp32 scale each, packed 4 bits per value (the
official model then runs on the de-quantised values, so storing them this way loses nothing) and writes, per config, one safetensors file under
tests/data/golden/: the quantised state dicts (`G/...`, `D/...`), the inputs (z, c, renderer seed) and
the official outputs (image, image_raw, image_depth[, image_mask], D logits), plus the init kwargs /
rendering_kwargs as JSON metadata. Only the official checkout's path is used; nothing of it is copied.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden"
SMALL = 64  # float tensors up to this many elements are stored as fp32 (filters, scalars)
RENDER_SEED, BATCH, PSI = 1234, 2, 0.7


def use_checkout(path: str):
    """Import the official tree at `path` (its `training`, `torch_utils`, `dnnlib`, `camera_utils`)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("training", "torch_utils", "dnnlib", "camera_utils", "legacy"):
            del sys.modules[name]
    sys.path.insert(0, str(Path(path).resolve()))


def randomise(module: torch.nn.Module, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point() or name.endswith("resample_filter"):
                continue
            if name.endswith("noise_strength") or name.endswith(".bias") or name.endswith("w_avg"):
                t.add_(torch.randn(t.shape, generator=g) * 0.2)


def quantise(state: dict[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """-> (tensors to store, de-quantised state dict).

    Each tensor becomes 15 levels q in [-7, 7] times one fp32 scale, stored as two 4-bit codes (q + 8) per
    byte, plus its shape. De-quantisation (repeated exactly by the test): q.to(float32) * scale."""
    stored, deq = {}, {}
    for k, v in state.items():
        v = v.detach().float()
        if v.numel() <= SMALL or k.endswith("resample_filter"):
            stored[f"{prefix}f/{k}"] = v.clone().contiguous()
            deq[k] = v.clone()
            continue
        scale = (v.abs().max() / 7).clamp_min(1e-12).reshape(())
        q = torch.round(v / scale).clamp(-7, 7).to(torch.int8)
        codes = (q.flatten() + 8).to(torch.uint8)
        if codes.numel() % 2:
            codes = torch.cat([codes, codes.new_zeros(1)])
        stored[f"{prefix}q4/{k}"] = (codes[0::2] << 4) | codes[1::2]
        stored[f"{prefix}s/{k}"] = scale.clone()
        stored[f"{prefix}shape/{k}"] = torch.tensor(list(v.shape), dtype=torch.int64)
        deq[k] = q.to(torch.float32) * scale
    return stored, deq


def cameras(camera_utils, yaws):
    labels = []
    for yaw in yaws:
        pose = camera_utils.LookAtPoseSampler.sample(math.pi / 2 + yaw, math.pi / 2 - 0.1,
                                                     torch.tensor([0.0, 0.0, 0.2]), radius=2.7)
        k = camera_utils.FOV_to_intrinsics(18.837)
        labels.append(torch.cat([pose.reshape(-1, 16), k.reshape(-1, 9)], 1))
    return torch.cat(labels)


def rendering_kwargs(kind: str) -> dict:
    rk = {"image_resolution": 128, "disparity_space_sampling": False, "clamp_mode": "softplus",
          "superresolution_module": "training.superresolution.SuperresolutionHybrid2X",
          "c_gen_conditioning_zero": False, "c_scale": 1.0, "superresolution_noise_mode": "none",
          "density_reg": 0.25, "density_reg_p_dist": 0.004, "reg_type": "l1", "decoder_lr_mul": 1.0,
          "sr_antialias": True, "depth_resolution": 6, "depth_resolution_importance": 6,
          "ray_start": 2.25, "ray_end": 3.3, "box_warp": 1, "avg_camera_radius": 2.7, "avg_camera_pivot": [0, 0, 0.2]}
    if kind in ("panohead", "spherehead"):  # SphereHead: triplane_depth = number of spherical planes
        rk.update({"triplane_size": 32, "triplane_depth": 3, "use_background": True, "decoder_activation": "sigmoid"})
    return rk


def make(kind: str, checkout: str):
    use_checkout(checkout)
    import camera_utils  # noqa: E402  (official tree)
    from training.triplane import TriPlaneGenerator  # noqa: E402

    rk = rendering_kwargs(kind)
    # sr_num_fp16_res > 0 (EG3D's default) gives the SR blocks conv_clamp 256; they still run fp32 on CPU
    g_kwargs = dict(z_dim=8, c_dim=25, w_dim=512, img_resolution=128, img_channels=3,
                    sr_num_fp16_res=1 if kind == "eg3d" else 0,
                    mapping_kwargs={"num_layers": 2, "embed_features": 8, "layer_features": 16},
                    sr_kwargs={}, channel_base=256, channel_max=8, num_fp16_res=0, conv_clamp=None)
    torch.manual_seed(0)
    G = TriPlaneGenerator(**g_kwargs, rendering_kwargs=rk).eval()
    randomise(G, 1)
    g_store, g_deq = quantise(G.state_dict(), "G/")
    G.load_state_dict(g_deq)
    neural = 32
    G.neural_rendering_resolution = neural

    d_store, d_kwargs, D, D2 = {}, {}, None, None
    if kind != "spherehead":  # SphereHead's discriminator is PanoHead's MaskDualDiscriminator, tested there
        d_store, d_kwargs, D, D2 = make_discriminators(kind)

    gz = torch.Generator().manual_seed(5)
    z = torch.randn(BATCH, 8, generator=gz)
    c = cameras(camera_utils, [0.0, 0.4] if kind == "eg3d" else [0.3, -2.8])
    with torch.no_grad():
        torch.manual_seed(RENDER_SEED)  # the renderer's rand_like / rand draw from here
        out = G(z, c, truncation_psi=PSI, neural_rendering_resolution=neural, noise_mode="const")
        logits = D(out, c) if D is not None else None
        logits_v2 = D2(out, c) if D2 is not None else None
    tensors = {**g_store, **d_store, "in/z": z, "in/c": c, "out/image": out["image"], "out/image_raw": out["image_raw"],
               "out/image_depth": out["image_depth"]}
    for key, value in (("out/image_mask", out.get("image_mask")), ("out/logits", logits), ("out/logits_v2", logits_v2)):
        if value is not None:
            tensors[key] = value
    meta = {"kind": kind, "g_init_kwargs": json.dumps(g_kwargs), "rendering_kwargs": json.dumps(rk),
            "d_init_kwargs": json.dumps(d_kwargs), "render_seed": str(RENDER_SEED), "psi": str(PSI),
            "neural_rendering_resolution": str(neural)}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"gan_{kind}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(path)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB; image range {out['image'].min():.3f}..{out['image'].max():.3f}, "
          f"depth {out['image_depth'].min():.3f}..{out['image_depth'].max():.3f}, logits {logits}")
    sys.path.pop(0)


def make_discriminators(kind: str):
    d_kwargs = dict(c_dim=25, img_resolution=128, img_channels=3, channel_base=256, channel_max=16, num_fp16_res=0,
                    conv_clamp=256, epilogue_kwargs={"mbstd_group_size": 2})
    torch.manual_seed(2)
    if kind == "eg3d":
        from training.dual_discriminator import DualDiscriminator
        D = DualDiscriminator(**d_kwargs).eval()
    else:
        from training.dual_discriminator import MaskDualDiscriminator
        d_kwargs.update(seg_resolution=64, seg_channels=1)
        D = MaskDualDiscriminator(**d_kwargs).eval()
    randomise(D, 3)
    d_store, d_deq = quantise(D.state_dict(), "D/")
    D.load_state_dict(d_deq)
    D2 = None
    if kind == "panohead":  # also the V2 variant (mask concatenated as a 7th channel)
        from training.dual_discriminator import MaskDualDiscriminatorV2
        torch.manual_seed(4)
        D2 = MaskDualDiscriminatorV2(**d_kwargs).eval()
        randomise(D2, 5)
        d2_store, d2_deq = quantise(D2.state_dict(), "D2/")
        D2.load_state_dict(d2_deq)
        d_store.update(d2_store)

    return d_store, d_kwargs, D, D2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eg3d", help="path of NVlabs/eg3d's inner eg3d/ directory")
    ap.add_argument("--panohead", help="path of a SizheAn/PanoHead checkout")
    ap.add_argument("--spherehead", help="path of a lhyfst/SphereHead checkout")
    args = ap.parse_args()
    if args.eg3d:
        make("eg3d", args.eg3d)
    if args.panohead:
        make("panohead", args.panohead)
    if args.spherehead:
        make("spherehead", args.spherehead)


if __name__ == "__main__":
    main()
