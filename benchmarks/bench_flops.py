"""FLOPs of one generator forward (batch 4), ours vs the official EG3D code (issue 9, FLOP parity).

    python benchmarks/bench_flops.py [--eg3d /path/to/NVlabs/eg3d/eg3d] [--batch 4]

Counted with torch.utils.flop_counter (matmuls and convolutions, incl. transposed ones; element-wise
ops, grid_sample and upfirdn2d's depthwise FIR are convolutions too where the implementation uses
them) on the meta device, so nothing is computed. Two EG3D configs, noise 'const', 48+48 samples:
* eg3d-128: 128 px output (SuperresolutionHybrid2X), neural 64;
* ffhq-512: 512 px output (SuperresolutionHybrid8XDC), neural 64 (EG3D's FFHQ-512 model).
Both: z/w 512, c 25, tri-plane 256 x 32 ch, channel_base 32768, channel_max 512, 2 mapping layers.
Without --eg3d only our figures are printed; with it the ratio must be within +-2 %.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

CONFIGS = {"eg3d-128": (128, "training.superresolution.SuperresolutionHybrid2X"),
           "ffhq-512": (512, "training.superresolution.SuperresolutionHybrid8XDC")}


def rendering_kwargs(res: int, sr_module: str) -> dict:
    return {"image_resolution": res, "disparity_space_sampling": False, "clamp_mode": "softplus",
            "superresolution_module": sr_module, "c_gen_conditioning_zero": False, "c_scale": 1.0,
            "superresolution_noise_mode": "none", "density_reg": 0.25, "density_reg_p_dist": 0.004,
            "reg_type": "l1", "decoder_lr_mul": 1.0, "sr_antialias": True, "depth_resolution": 48,
            "depth_resolution_importance": 48, "ray_start": 2.25, "ray_end": 3.3, "box_warp": 1}


def g_kwargs(res: int) -> dict:
    return dict(z_dim=512, c_dim=25, w_dim=512, img_resolution=res, img_channels=3, sr_num_fp16_res=0,
                mapping_kwargs={"num_layers": 2}, sr_kwargs={}, channel_base=32768, channel_max=512, num_fp16_res=0,
                conv_clamp=None)


def camera(batch: int) -> torch.Tensor:
    pose = torch.eye(4)
    pose[:3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # looking at the origin from +z, OpenCV axes
    pose[2, 3] = 2.7
    k = torch.tensor([[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]])
    return torch.cat([pose.reshape(1, 16), k.reshape(1, 9)], 1).repeat(batch, 1)


def n_params(module: torch.nn.Module, prefix: str) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if n.startswith(prefix))


def count(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def ours(res: int, sr_module: str, batch: int) -> int:
    from balancehead.models import GeneratorConfig
    from balancehead.models.generator import Generator

    cfg = GeneratorConfig(z_dim=512, c_dim=25, w_dim=512, mapping_layers=2, representation="triplane",
                          plane_channels=32, plane_resolution=256, channel_base=32768, channel_max=512,
                          feature_channels=32, neural_resolution=64, output_resolution=res,
                          sr_dc=sr_module.endswith("DC"), n_coarse=48, n_importance=48, background=False,
                          camera_adapt=False)
    G = Generator(cfg).eval().to("meta")
    z, c = torch.zeros(batch, 512, device="meta"), camera(batch).to("meta")
    return count(lambda: G(z, c, c, noise_mode="const")), n_params(G, ""), n_params(G, "superres.")


def official(path: str, res: int, sr_module: str, batch: int) -> int:
    sys.path.insert(0, str(Path(path).resolve()))
    from training.triplane import TriPlaneGenerator

    G = TriPlaneGenerator(**g_kwargs(res), rendering_kwargs=rendering_kwargs(res, sr_module)).eval().to("meta")
    G.neural_rendering_resolution = 64
    z, c = torch.zeros(batch, 512, device="meta"), camera(batch).to("meta")
    flops = count(lambda: G(z, c, noise_mode="const"))
    sys.path.pop(0)
    return flops, n_params(G, ""), n_params(G, "superresolution.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eg3d", help="path of NVlabs/eg3d's inner eg3d/ directory")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    ok = True
    for name, (res, sr_module) in CONFIGS.items():
        a, pa, sa = ours(res, sr_module, args.batch)
        line = f"{name}: ours {a / 1e9:.1f} GFLOP per batch of {args.batch}, {pa / 1e6:.3f} M params (SR {sa / 1e6:.3f} M)"
        if args.eg3d:
            b, pb, sb = official(args.eg3d, res, sr_module, args.batch)
            ratio = a / b
            ok &= math.isclose(ratio, 1.0, abs_tol=0.02)
            line += f"; EG3D {b / 1e9:.1f} GFLOP, {pb / 1e6:.3f} M params (SR {sb / 1e6:.3f} M); FLOP ratio {ratio:.4f}"
        print(line, flush=True)
    if not ok:
        raise SystemExit("FLOP parity outside +-2 %")


if __name__ == "__main__":
    main()
