"""Golden layout of the official network pickles (EG3D, PanoHead, SphereHead), for tests/test_official_layout.py.

Builds a tiny G / D with the official code (a checkout given by path, imported from there, never copied),
pickles them the way the official training loop writes `network-snapshot-*.pkl`, reads that pickle back
with balancehead's restricted unpickler and checks that every state dict comes back exactly. Writes a
JSON file (no pickle, no weights): every global the official pickle names, and the module tree of G_ema
and D (persistent / plain classes, parameter and buffer shapes, init kwargs, rendering kwargs). Tests
rebuild pickles of that exact layout from it.

    python scripts/golden/official_pickle_layout.py --kind eg3d --official /work/refs/NVlabs+eg3d/eg3d
    python scripts/golden/official_pickle_layout.py --kind panohead --official /work/refs/SizheAn+PanoHead
    python scripts/golden/official_pickle_layout.py --kind spherehead --official /work/refs/lhyfst+SphereHead
"""
from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from balancehead.models.official_import import read_official_networks  # noqa: E402
from balancehead.models.official_pickle import PersistentObject, loads, pickle_globals  # noqa: E402

# Tiny versions of each code base's training configuration (their train.py options; widths shrunk).
COMMON_RENDERING = dict(image_resolution=128, disparity_space_sampling=False, clamp_mode="softplus",
                        superresolution_module="training.superresolution.SuperresolutionHybrid2X",
                        c_gen_conditioning_zero=False, gpc_reg_prob=0.5, c_scale=1.0, superresolution_noise_mode="none",
                        density_reg=0.25, density_reg_p_dist=0.004, reg_type="l1", decoder_lr_mul=1.0, sr_antialias=True,
                        depth_resolution=12, depth_resolution_importance=12, ray_start=2.25, ray_end=3.3, box_warp=1,  # EG3D: 48 + 48 samples
                        avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2])
HEAD_RENDERING = dict(decoder_activation="sigmoid", use_torgb_raw=False, triplane_size=32, triplane_depth=3,
                      trans_reg=0.0, use_background=True)
DISCRIMINATOR = {"eg3d": "DualDiscriminator", "panohead": "MaskDualDiscriminatorV2", "spherehead": "MaskDualDiscriminatorV2"}


def build(kind: str):
    import dnnlib

    rendering = dict(COMMON_RENDERING, **({} if kind == "eg3d" else HEAD_RENDERING))
    common = dict(c_dim=25, img_resolution=128, img_channels=3)
    g_kwargs = dnnlib.EasyDict(z_dim=512, w_dim=512,  # 512: the official SR blocks hard-code w_dim=512
                               mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=1024,
                               channel_max=32, fused_modconv_default="inference_only", rendering_kwargs=rendering,
                               num_fp16_res=0, sr_num_fp16_res=4,
                               sr_kwargs=dnnlib.EasyDict(channel_base=1024, channel_max=32, fused_modconv_default="inference_only"),
                               conv_clamp=None)
    d_kwargs = dnnlib.EasyDict(block_kwargs=dnnlib.EasyDict(freeze_layers=0), mapping_kwargs=dnnlib.EasyDict(),
                               epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4), channel_base=1024, channel_max=32,
                               num_fp16_res=0, conv_clamp=None, disc_c_noise=0)
    if kind != "eg3d":
        d_kwargs.update(seg_resolution=64, seg_channels=1)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(class_name="training.triplane.TriPlaneGenerator", **g_kwargs, **common)
    D = dnnlib.util.construct_class_by_name(class_name=f"training.dual_discriminator.{DISCRIMINATOR[kind]}",
                                            **d_kwargs, **common)
    return G, D


def tree(module: torch.nn.Module, persistent_cls) -> dict:
    """Class, parameters, buffers, children and scalar attributes of a module, as the pickle stores them."""
    cls = type(module)
    is_persistent = isinstance(module, tuple(persistent_cls))
    node = {"persistent": is_persistent,
            "class": getattr(cls, "_orig_class_name", cls.__name__) if is_persistent else f"{cls.__module__}.{cls.__qualname__}",
            "parameters": {k: [list(v.shape), str(v.dtype)] for k, v in module._parameters.items() if v is not None},
            "buffers": {k: [list(v.shape), str(v.dtype)] for k, v in module._buffers.items() if v is not None},
            "fixed_buffers": {k: v.flatten().tolist() for k, v in module._buffers.items()     # FIR filters: constants
                              if v is not None and k == "resample_filter"},
            "non_persistent": sorted(module._non_persistent_buffers_set),
            "modules": {k: tree(v, persistent_cls) for k, v in module._modules.items() if v is not None},
            "none_modules": [k for k, v in module._modules.items() if v is None],
            "attributes": {k: v for k, v in module.__dict__.items()
                           if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str))}}
    if is_persistent:
        node["init_kwargs"] = json.loads(json.dumps(module.init_kwargs, default=str))
    if "rendering_kwargs" in module.__dict__:
        node["rendering_kwargs"] = json.loads(json.dumps(module.rendering_kwargs))
    return node


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", required=True, choices=["eg3d", "panohead", "spherehead"])
    ap.add_argument("--official", required=True, type=Path, help="the official repository checkout (its root)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(args.official.resolve()))
    import dnnlib
    from torch_utils import persistence

    G, D = build(args.kind)
    G_ema = G.eval().requires_grad_(False)
    snapshot = {"G": G, "D": D.eval().requires_grad_(False), "G_ema": G_ema, "augment_pipe": None,
                "training_set_kwargs": dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", resolution=128)}
    blob = pickle.dumps(snapshot)           # as the official training loop: pickle.dump(snapshot_data, f)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network-snapshot.pkl"
        path.write_bytes(blob)
        nets = read_official_networks(path)   # balancehead's restricted unpickler on the real layout
    for name, module in (("G_ema", G_ema), ("D", D)):
        truth, got = module.state_dict(), nets[name].state_dict
        assert list(truth) == list(got), name
        assert all(torch.equal(truth[k], got[k]) for k in truth), name
    assert isinstance(loads(blob)["G_ema"], PersistentObject)
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    persistent_cls = persistence._decorators
    out = {"kind": args.kind, "official_commit": commit or None, "torch": torch.__version__,
           "pickle_globals": pickle_globals(blob),
           "networks": {"G_ema": tree(G_ema, persistent_cls), "D": tree(D, persistent_cls)}}
    dest = args.out or REPO / "tests" / "data" / "official_layout" / f"{args.kind}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out) + "\n")   # key order = module order
    print(f"wrote {dest}: {len(out['pickle_globals'])} globals, "
          f"{sum(1 for _ in G_ema.state_dict())} G_ema tensors, {sum(1 for _ in D.state_dict())} D tensors")


if __name__ == "__main__":
    main()
