"""EG3D / PanoHead state dicts -> this project's Generator / Discriminator (config + weights).

The official networks (NVlabs/eg3d `TriPlaneGenerator`, `DualDiscriminator`; SizheAn/PanoHead
`TriPlaneGenerator` with tri-grid, background and `t_mapping`, `MaskDualDiscriminator` / V2;
lhyfst/SphereHead, PanoHead's generator with ConvA/ConvB heads and dual spherical planes) are
reproduced operator for operator here, so conversion is a renaming of tensors plus a config read
from the official init kwargs and `rendering_kwargs`:

    generator_from_official(state_dict, init_kwargs, rendering_kwargs, kind) -> Generator
    discriminator_from_official(state_dict, init_kwargs, kind) -> Discriminator

`kind` is "eg3d", "panohead" or "spherehead". `init_kwargs` are the official constructor's kwargs
(z_dim, c_dim, w_dim, img_resolution, channel_base, channel_max, conv_clamp, num_fp16_res, sr_num_fp16_res,
mapping_kwargs, ...); the pickled G's `neural_rendering_resolution` attribute may be passed in them
under that name (default 64). Nothing here unpickles anything: the caller (the
safe-import helper) hands over plain tensors and dicts. Every official tensor must land on exactly one
of ours and every one of ours must be filled; otherwise a ValueError names the missing / unexpected
keys. Fixed FIR filter buffers (`resample_filter`) are checked against ours instead of copied.
"""
from __future__ import annotations

import re

import torch

from .config import DiscriminatorConfig, GeneratorConfig
from .discriminator import Discriminator
from .generator import Generator

KINDS = ("eg3d", "panohead", "spherehead")


def _check_kind(kind: str):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _resolutions(state_dict: dict, prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"b(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := pat.match(k))})


def _count_fc(state_dict: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"fc(\d+)\.weight$")
    return len({m.group(1) for k in state_dict if (m := pat.match(k))})


# --- key renaming -------------------------------------------------------------------------------

def _mapping_keys(src: str, dst: str, n_layers: int) -> dict[str, str]:
    out = {f"{src}embed.weight": f"{dst}embed.weight", f"{src}embed.bias": f"{dst}embed.bias",
           f"{src}w_avg": f"{dst}w_avg"}
    for i in range(n_layers):
        for p in ("weight", "bias"):
            out[f"{src}fc{i}.{p}"] = f"{dst}layers.{i}.{p}"
    return out


def _synthesis_block_keys(src: str, dst: str) -> dict[str, str]:
    out = {f"{src}const": f"{dst}const", f"{src}resample_filter": f"{dst}resample_filter"}
    for layer in ("conv0", "conv1"):
        for p in ("affine.weight", "affine.bias", "weight", "bias", "noise_const", "noise_strength", "resample_filter"):
            out[f"{src}{layer}.{p}"] = f"{dst}{layer}.{p}"
    for p in ("affine.weight", "affine.bias", "weight", "bias"):
        out[f"{src}torgb.{p}"] = f"{dst}torgb.{p}"
    return out


def _synthesis_keys(state_dict, src: str, dst: str) -> dict[str, str]:
    out = {}
    for i, res in enumerate(_resolutions(state_dict, src)):
        out.update(_synthesis_block_keys(f"{src}b{res}.", f"{dst}blocks.{i}."))
    return out


def _d_block_keys(src: str, dst: str) -> dict[str, str]:
    out = {f"{src}resample_filter": None}  # the block's own filter: ours lives in each conv
    for layer in ("fromrgb", "conv0", "conv1", "skip"):
        for p in ("weight", "bias", "resample_filter"):
            out[f"{src}{layer}.{p}"] = f"{dst}{layer}.{p}"
    return out


def _load(module: torch.nn.Module, state_dict: dict, renames: dict[str, str | None], what: str):
    ours = module.state_dict()
    mapped, unexpected = {}, []
    for key, value in state_dict.items():
        if key not in renames:
            unexpected.append(key)
            continue
        target = renames[key]
        if target is None:
            continue
        if target not in ours:
            unexpected.append(key)
            continue
        if key.endswith("resample_filter"):
            if not torch.allclose(value.float().cpu(), ours[target]):
                raise ValueError(f"{what}: {key} is not the [1,3,3,1] FIR filter this project uses")
            mapped[target] = ours[target]
            continue
        if tuple(value.shape) != tuple(ours[target].shape):
            raise ValueError(f"{what}: {key} has shape {tuple(value.shape)}, {target} expects {tuple(ours[target].shape)}")
        mapped[target] = value.detach().to(torch.float32).cpu()
    missing = sorted(set(ours) - set(mapped) - _optional(module, state_dict))
    if unexpected or missing:
        raise ValueError(f"{what}: cannot convert the state dict; unexpected official keys {sorted(unexpected)[:20]}"
                         f"{' ...' if len(unexpected) > 20 else ''}; our keys left unfilled {missing[:20]}"
                         f"{' ...' if len(missing) > 20 else ''}")
    for k in set(ours) - set(mapped):  # optional buffers keep their construction value
        mapped[k] = ours[k]
    module.load_state_dict(mapped, strict=True)
    return module


def _optional(module: torch.nn.Module, state_dict: dict) -> set[str]:
    """Ours without an official counterpart by design: w_avg of D's mapping (EG3D builds it without one)."""
    return {k for k in module.state_dict() if k.startswith("mapping.w_avg") and isinstance(module, Discriminator)}


# --- generator ----------------------------------------------------------------------------------

def _generator_config(sd: dict, kw: dict, rk: dict, kind: str) -> GeneratorConfig:
    for key, bad in (("white_back", True), ("disparity_space_sampling", True), ("use_torgb_raw", True)):
        if rk.get(key, False) == bad:
            raise ValueError(f"rendering_kwargs[{key!r}]={bad!r} is not supported")
    if rk.get("ray_start") == "auto" or rk.get("ray_end") == "auto":
        raise ValueError("rendering_kwargs ray_start/ray_end 'auto' (box-limited rays) is not supported")
    if rk.get("decoder_activation", "sigmoid") != "sigmoid":
        raise ValueError(f"decoder_activation {rk['decoder_activation']!r} is not supported (only 'sigmoid')")
    if rk.get("clamp_mode", "softplus") != "softplus":
        raise ValueError("clamp_mode must be 'softplus' (MipRayMarcher2)")
    res = _resolutions(sd, "backbone.synthesis.")
    if not res:
        raise ValueError("state dict has no backbone.synthesis.b<res> blocks: not an EG3D/PanoHead generator")
    depth = int(rk.get("triplane_depth", 1)) if kind == "panohead" else 1
    synthesis_channels = sd[f"backbone.synthesis.b{res[-1]}.torgb.weight"].shape[0]
    if kind == "spherehead":  # SphereHead: ConvA/ConvB 1x1 heads cut each system's planes; triplane_depth = 3 planes
        if int(rk.get("triplane_depth", 3)) != 3:
            raise ValueError("spherehead: triplane_depth must be 3 (three spherical planes per system)")
        plane_channels = sd["ConvA.1.weight"].shape[0] // 3
    else:
        plane_channels = synthesis_channels // (3 * depth)
    features = sd["decoder.net.2.weight"].shape[0] - 1
    sr_module = str(rk.get("superresolution_module", ""))
    sr_noise = rk.get("superresolution_noise_mode", "none")
    c_scale = 0.0 if rk.get("c_gen_conditioning_zero", False) else float(rk.get("c_scale", 0))
    mapping_kwargs = kw.get("mapping_kwargs", {}) or {}
    if float(mapping_kwargs.get("lr_multiplier", 0.01)) != 0.01:
        raise ValueError("mapping_kwargs lr_multiplier other than 0.01 is not supported")
    channel_base, channel_max = int(kw.get("channel_base", 32768)), int(kw.get("channel_max", 512))
    pano = kind in ("panohead", "spherehead")  # SphereHead is PanoHead's generator with spherical planes
    bg = pano and any(k.startswith("bcg_synthesis.") for k in sd)
    sr_fp16 = int(kw.get("sr_num_fp16_res", 0))  # absent: TriPlaneGenerator's default
    representation = {"eg3d": "triplane", "panohead": "trigrid", "spherehead": "sphere_dual"}[kind]
    return GeneratorConfig(
        z_dim=int(kw["z_dim"]), c_dim=int(kw["c_dim"]), c_scale=c_scale, w_dim=int(kw["w_dim"]),
        mapping_layers=_count_fc(sd, "backbone.mapping."),
        mapping_embed_features=int(mapping_kwargs.get("embed_features") or 0),
        mapping_layer_features=int(mapping_kwargs.get("layer_features") or 0),
        representation=representation, plane_channels=plane_channels,
        sphere_head_channels=synthesis_channels if kind == "spherehead" else 0,
        plane_resolution=res[-1], trigrid_depth=depth, channel_base=channel_base, channel_max=channel_max,
        feature_channels=features, decoder_hidden=sd["decoder.net.0.weight"].shape[0],
        decoder_lr_mul=float(rk.get("decoder_lr_mul", 1)),
        neural_resolution=int(kw.get("neural_rendering_resolution", rk.get("neural_rendering_resolution", 64))),
        output_resolution=int(kw["img_resolution"]), sr_dc=sr_module.endswith("DC"),
        sr_antialias=bool(rk.get("sr_antialias", True)),
        sr_conv_clamp=256.0 if sr_fp16 > 0 else None, sr_num_fp16_res=sr_fp16, sr_noise_mode="none" if sr_noise == "none" else "follow",
        n_coarse=int(rk["depth_resolution"]), n_importance=int(rk["depth_resolution_importance"]),
        ray_start=float(rk["ray_start"]), ray_end=float(rk["ray_end"]), box_warp=float(rk["box_warp"]),
        crop_margin=0.1 if pano else 0.0,
        background=bg, background_kind="panohead", bg_channel_base=channel_base // 2, bg_channel_max=channel_max,
        camera_adapt=pano, camera_adapt_kind="panohead", conv_clamp=kw.get("conv_clamp"),
        num_fp16_res=int(kw.get("num_fp16_res", 4)))  # absent: the official SynthesisNetwork default


def generator_from_official(state_dict: dict[str, torch.Tensor], init_kwargs: dict, rendering_kwargs: dict,
                            kind: str) -> Generator:
    """An EG3D / PanoHead `TriPlaneGenerator` state dict (+ its init kwargs and rendering_kwargs) -> Generator."""
    _check_kind(kind)
    sd = dict(state_dict)
    cfg = _generator_config(sd, init_kwargs, rendering_kwargs, kind)
    if cfg.output_resolution not in (128, 256, 512):
        raise ValueError(f"output resolution {cfg.output_resolution}: EG3D has super-resolution modules for 128/256/512 only")
    G = Generator(cfg)
    renames: dict[str, str | None] = {}
    renames.update(_mapping_keys("backbone.mapping.", "mapping.", cfg.mapping_layers))
    renames.update(_synthesis_keys(sd, "backbone.synthesis.", "synthesis."))
    renames.update({f"decoder.net.0.{p}": f"decoder.hidden.{p}" for p in ("weight", "bias")})
    renames.update({f"decoder.net.2.{p}": f"decoder.out.{p}" for p in ("weight", "bias")})
    renames["superresolution.resample_filter"] = None
    for i in range(len(G.superres.blocks)):
        renames.update(_synthesis_block_keys(f"superresolution.block{i}.", f"superres.blocks.{i}."))
    if cfg.background:
        renames.update(_synthesis_keys(sd, "bcg_synthesis.", "background.synthesis."))
    if cfg.camera_adapt:
        renames.update(_mapping_keys("t_mapping.", "camera_adapter.mapping.", _count_fc(sd, "t_mapping.")))
    if kind == "spherehead":
        for src, dst in (("ConvA", "head_a"), ("ConvB", "head_b")):
            for i in range(2):
                renames[f"{src}.{i}.weight"] = f"representation.{dst}.{i}.weight"
                renames[f"{src}.{i}.resample_filter"] = None
    return _load(G, sd, renames, f"{kind} generator").eval()


# --- discriminator ------------------------------------------------------------------------------

def discriminator_from_official(state_dict: dict[str, torch.Tensor], init_kwargs: dict, kind: str) -> Discriminator:
    """An EG3D DualDiscriminator / PanoHead (= SphereHead) MaskDualDiscriminator(V2) state dict -> Discriminator."""
    _check_kind(kind)
    sd = dict(state_dict)
    kw = init_kwargs
    res = _resolutions(sd, "")
    top = max(r for r in res if r != 4)
    seg_res = _resolutions(sd, "s")
    fromrgb = sd[f"b{top}.fromrgb.weight"]
    if seg_res:
        mode = "mask"
    elif fromrgb.shape[1] == 7:
        mode = "tri"
    elif fromrgb.shape[1] == 6:
        mode = "dual"
    else:
        raise ValueError(f"b{top}.fromrgb takes {fromrgb.shape[1]} channels: not a dual (6) or mask (7) discriminator")
    mapping_kwargs = kw.get("mapping_kwargs", {}) or {}
    epilogue_kwargs = kw.get("epilogue_kwargs", {}) or {}
    c_dim = int(kw.get("c_dim", 0))
    cmap_dim = sd["b4.out.weight"].shape[0] if c_dim > 0 else 1
    cfg = DiscriminatorConfig(
        resolution=top, mode=mode, c_dim=c_dim, cmap_dim=cmap_dim,
        mapping_layers=_count_fc(sd, "mapping.") or 1, mapping_lr_mul=float(mapping_kwargs.get("lr_multiplier", 0.01)),
        seg_resolution=max(seg_res) if seg_res else 128, channel_base=int(kw.get("channel_base", 32768)),
        channel_max=int(kw.get("channel_max", 512)), mbstd_group=int(epilogue_kwargs.get("mbstd_group_size", 4)),
        mbstd_channels=int(epilogue_kwargs.get("mbstd_num_channels", 1)), conv_clamp=kw.get("conv_clamp", 256),
        num_fp16_res=int(kw.get("num_fp16_res", 4)))  # absent: the official discriminators' default
    D = Discriminator(cfg)
    renames: dict[str, str | None] = {"resample_filter": None}
    for i, r in enumerate(sorted((r for r in res if r != 4), reverse=True)):
        renames.update(_d_block_keys(f"b{r}.", f"blocks.{i}."))
    for i, r in enumerate(sorted(seg_res, reverse=True)):
        renames.update(_d_block_keys(f"sb{r}.", f"seg_blocks.{i}."))
    if c_dim > 0:
        renames.update(_mapping_keys("mapping.", "mapping.", cfg.mapping_layers))
    for p in ("weight", "bias", "resample_filter"):
        renames[f"b4.conv.{p}"] = f"epilogue_conv.{p}"
    for p in ("weight", "bias"):
        renames[f"b4.fc.{p}"] = f"epilogue_fc.{p}"
        renames[f"b4.out.{p}"] = f"out.{p}"
    return _load(D, sd, renames, f"{kind} discriminator").eval()
