"""Reconstructor checkpoints: one safetensors file of tensors + one JSON file that rebuilds the model.

Layout of a checkpoint directory:
  recon.safetensors   the model's state dict, plus the template mesh it was built on ("template.vertices",
                      "template.faces"), so a checkpoint does not depend on the template file still existing;
  recon.json          {"format", "config" (ReconConfig as JSON), "meta", "tensors_sha256"};
  digests.json        sha256 of both files (integrity.write_digests), written last.

A frozen DINOv2 backbone (encoder kind "dinov2") is not copied into the checkpoint -- it is hundreds of MB to
GB and unchanged by training -- and is loaded again from `config.encoder.weights` (a local path); the tiny
random ViT is saved with the rest, since it cannot be rebuilt from anything else.

Writing is atomic: the directory is assembled under a temporary name (host + PID in it, so a killed writer's
leftovers are removed on the next run) and renamed into place. Loading never unpickles (models.checkpoint's
reader refuses pickles) and checks the digests first: garbled bytes are an error naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save

from balancehead import fileio, integrity
from balancehead.models.checkpoint import CheckpointError, read_safetensors

from .config import ReconConfig, config_from_dict, config_to_dict
from .model import build_model
from .template import Template

FORMAT = "balancehead-recon/1"
TENSORS = "recon.safetensors"
CONFIG = "recon.json"
BACKBONE = "encoder.backbone."


def _stored_keys(cfg: ReconConfig, state: dict) -> dict:
    """The state dict minus what is reloaded from elsewhere (a DINOv2 backbone comes from its weights path)."""
    if cfg.encoder.kind == "dinov2":
        return {k: v for k, v in state.items() if not k.startswith(BACKBONE)}
    return state


def save_reconstructor(model: torch.nn.Module, cfg: ReconConfig, directory, meta: dict | None = None,
                       stage: str = "train_recon") -> Path:
    """Write `model` (built from `cfg`) and `meta` (JSON-able) to `directory`, replacing it atomically."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    integrity.clean_leftovers(directory.parent)          # what killed writers left beside it
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in _stored_keys(cfg, model.state_dict()).items()}
    template: Template = model.template
    tensors["template.vertices"] = torch.from_numpy(np.ascontiguousarray(template.vertices, dtype=np.float32))
    tensors["template.faces"] = torch.from_numpy(np.ascontiguousarray(template.faces, dtype=np.int64))
    data = st_save(tensors)
    tmp = directory.parent / f".{directory.name}.tmp-{integrity.temp_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    fileio.write_bytes(tmp / TENSORS, data)
    fileio.write_json(tmp / CONFIG, {"format": FORMAT, "config": config_to_dict(cfg), "meta": meta or {},
                                     "tensors_sha256": hashlib.sha256(data).hexdigest()})
    integrity.write_digests(tmp, stage)
    if directory.exists():
        old = directory.parent / f".{directory.name}.old.tmp-{integrity.temp_tag()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    return directory


def read_reconstructor_spec(directory) -> dict:
    """The checkpoint's JSON ({"format", "config", "meta", ...}) after checking every recorded digest."""
    directory = Path(directory)
    config_file = directory / CONFIG
    if not config_file.exists():
        raise CheckpointError(f"{directory} is not a reconstructor checkpoint: {CONFIG} is missing")
    problems = integrity.verify_tree(directory)
    if problems:
        raise CheckpointError(problems[0].split(";")[0] + "; the reconstructor checkpoint is damaged")
    try:
        spec = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file} is unreadable ({e}); the checkpoint is damaged") from None
    if spec.get("format") != FORMAT:
        raise CheckpointError(f"{config_file}: unknown reconstructor checkpoint format {spec.get('format')!r}")
    return spec


def load_reconstructor(directory, map_location: str | torch.device = "cpu",
                       backbone: torch.nn.Module | None = None) -> tuple[torch.nn.Module, ReconConfig, dict]:
    """-> (model in eval mode, its ReconConfig, meta). A DINOv2 backbone is loaded from the config's weights
    path unless `backbone` is given."""
    directory = Path(directory)
    spec = read_reconstructor_spec(directory)
    tensors_file = directory / TENSORS
    integrity.verify_file(tensors_file, spec["tensors_sha256"])
    tensors = read_safetensors(tensors_file)
    cfg = config_from_dict(spec["config"])
    try:
        template = Template(tensors.pop("template.vertices").numpy(), tensors.pop("template.faces").numpy())
    except KeyError:
        raise CheckpointError(f"{tensors_file} has no template mesh; the checkpoint is damaged") from None
    model = build_model(cfg, template, backbone)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not (cfg.encoder.kind == "dinov2" and k.startswith(BACKBONE))]
    if missing or unexpected:
        raise CheckpointError(f"{tensors_file} does not match its config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model.to(map_location).eval(), cfg, spec.get("meta", {})
