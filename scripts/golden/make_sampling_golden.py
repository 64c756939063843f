"""Golden plane-sampling numbers from the official HyPlaneHead and SphereHead code.

    python scripts/golden/make_sampling_golden.py --hyplane /path/to/aigc3d/HyPlaneHead \
        --spherehead /path/to/lhyfst/SphereHead

Imports each checkout's `training.volumetric_rendering.renderer` (never copied into this repository),
samples random feature planes at random points (small sizes, fixed seeds) and writes only the inputs and
the official outputs to tests/data/golden/sampling.safetensors. `tests/test_golden_sampling.py` checks
balancehead.models.hyplane / balancehead.models.sphere against them.

* hy-plane: `ImportanceRenderer.run_model` with render_mode `TriPlane_SingSph_flatten` (one C-channel
  2R x 2R map cut into 2x2 quadrants, near-equal-area warping: sph2cir_flag = cir2squ_flag = True) and
  `TriPlane_SingSph` (four channel groups); the sampled per-plane features are taken from its call of
  `sample_from_triplane_singsph`.
* SphereHead: `sample_from_planes` (systems A and B fused) from lhyfst/SphereHead; system A alone and B
  alone from HyPlaneHead's copy of SphereHead's training sampler (`sample_from_sphtriplane` with
  a_b_both = [1, 0, 0] / [0, 1, 0]); single sphere from `sample_from_sphtriplane_single`; the per-system
  1x1 heads (ConvA / ConvB) as SphereHead's generator builds them, with their random weights.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden" / "sampling.safetensors"
BATCH, CHANNELS, RES, POINTS, BOX_WARP, HEAD_IN = 2, 4, 8, 256, 1.0, 16


def load_renderer(checkout: Path):
    """The checkout's renderer module; modules of a previously loaded checkout are dropped first."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("training", "torch_utils", "dnnlib")]:
        del sys.modules[name]
    sys.path.insert(0, str(checkout.resolve()))
    try:
        return importlib.import_module("training.volumetric_rendering.renderer")
    finally:
        sys.path.pop(0)


class _Captured(Exception):
    pass


def run_model_features(module, renderer, planes, points, options):
    """The features `ImportanceRenderer.run_model` samples (its quadrant cut included). The released
    run_model never calls the decoder (`out` is undefined after sampling), so the official sampler is
    wrapped to hand its result back and stop there."""
    official, seen = module.sample_from_triplane_singsph, {}

    def spy(*a, **kw):
        seen["features"] = official(*a, **kw)
        raise _Captured

    module.sample_from_triplane_singsph = spy
    try:
        renderer.run_model(planes, None, points, None, options)
    except _Captured:
        return seen["features"]
    finally:
        module.sample_from_triplane_singsph = official
    raise RuntimeError("run_model did not sample the hy-plane")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hyplane", required=True, type=Path, help="an aigc3d/HyPlaneHead checkout")
    ap.add_argument("--spherehead", required=True, type=Path, help="an lhyfst/SphereHead checkout")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    # points mostly inside the box, some outside (zero padding), in world units
    points = (torch.rand(BATCH, POINTS, 3, generator=g) * 2 - 1) * 0.6 * BOX_WARP
    t = {"points": points}

    hp = load_renderer(args.hyplane)
    renderer = hp.ImportanceRenderer()
    t["hyplane_unified"] = torch.randn(BATCH, 1, CHANNELS, 2 * RES, 2 * RES, generator=g)
    opts = {"render_mode": "TriPlane_SingSph_flatten", "box_warp": BOX_WARP, "sph2cir_flag": True, "cir2squ_flag": True}
    t["hyplane_unified_out"] = run_model_features(hp, renderer, t["hyplane_unified"], points, opts)
    t["hyplane_split"] = torch.randn(BATCH, 4, CHANNELS, RES, RES, generator=g)
    opts = {"render_mode": "TriPlane_SingSph", "box_warp": BOX_WARP, "sph2cir_flag": True, "cir2squ_flag": True}
    t["hyplane_split_out"] = run_model_features(hp, renderer, t["hyplane_split"], points, opts)

    t["sphere_dual"] = torch.randn(BATCH, 2, 3, CHANNELS, RES, RES, generator=g)
    axes = hp.generate_planes()
    for name, a_b_both in (("a", [1.0, 0.0, 0.0]), ("b", [0.0, 1.0, 0.0])):
        t[f"sphere_dual_{name}_out"] = hp.sample_from_sphtriplane(axes, t["sphere_dual"], points, box_warp=BOX_WARP,
                                                                  a_b_both=a_b_both)
    t["sphere_single"] = torch.randn(BATCH, 3, CHANNELS, RES, RES, generator=g)
    t["sphere_single_out"] = hp.sample_from_sphtriplane_single(axes, t["sphere_single"], points, box_warp=BOX_WARP)

    sh = load_renderer(args.spherehead)
    t["sphere_dual_both_out"] = sh.sample_from_planes(t["sphere_dual"], points, sh.generate_planes(), box_warp=BOX_WARP)

    # SphereHead's per-system heads (ConvA / ConvB of its TriPlaneGenerator, at a small width): two
    # bias-free linear 1x1 Conv2dLayers, in -> in/2 -> 3C, applied to the backbone's map
    conv2d_layer = importlib.import_module("training.networks_stylegan2").Conv2dLayer
    torch.manual_seed(1)
    t["sphere_head_in"] = torch.randn(BATCH, HEAD_IN, RES, RES, generator=g)
    for name in ("a", "b"):
        head = torch.nn.Sequential(conv2d_layer(HEAD_IN, HEAD_IN // 2, kernel_size=1, bias=False, activation="linear"),
                                   conv2d_layer(HEAD_IN // 2, 3 * CHANNELS, kernel_size=1, bias=False, activation="linear"))
        t[f"sphere_head_{name}_0"], t[f"sphere_head_{name}_1"] = head[0].weight.detach(), head[1].weight.detach()
        with torch.no_grad():
            t[f"sphere_head_{name}_out"] = head(t["sphere_head_in"])

    tensors = {k: v.float().contiguous() for k, v in t.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"box_warp": str(BOX_WARP),
                                           "source": "aigc3d/HyPlaneHead + lhyfst/SphereHead volumetric_rendering/renderer.py"})
    tmp.replace(args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))


if __name__ == "__main__":
    main()
