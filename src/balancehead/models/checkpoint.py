"""Checkpoints: one safetensors file of tensors + one JSON file with the configs that rebuild the
modules exactly. Loading never unpickles: anything that is not a safetensors file is refused,
with a specific message for pickle / torch.save archives.

Layout for a checkpoint `path` (a directory): path/model.safetensors, path/model.json.
Tensor keys are "<module name>.<state_dict key>", e.g. "G_ema.mapping.w_avg".
model.json records the sha256 of model.safetensors; loading checks it, so garbled weight bytes are an
error naming the file instead of a model that silently draws different images.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from balancehead import fileio
from balancehead.integrity import IntegrityError, verify_file

from .config import DiscriminatorConfig, GeneratorConfig
from .discriminator import Discriminator
from .generator import Generator

FORMAT = "balancehead-checkpoint/1"
TENSORS = "model.safetensors"
CONFIG = "model.json"


class CheckpointError(ValueError):
    pass


def _kind_of(module: torch.nn.Module) -> tuple[str, dict]:
    if isinstance(module, Generator):
        return "generator", module.cfg.to_dict()
    if isinstance(module, Discriminator):
        return "discriminator", module.cfg.to_dict()
    raise CheckpointError(f"cannot checkpoint a {type(module).__name__}; only Generator and Discriminator")


def _build(kind: str, config: dict) -> torch.nn.Module:
    if kind == "generator":
        return Generator(GeneratorConfig.from_dict(config))
    if kind == "discriminator":
        return Discriminator(DiscriminatorConfig.from_dict(config))
    raise CheckpointError(f"unknown module kind {kind!r} in checkpoint config")


def save_checkpoint(path, modules: dict[str, torch.nn.Module], meta: dict | None = None) -> Path:
    """Write `modules` (name -> Generator/Discriminator) atomically; returns the checkpoint dir."""
    path = Path(path)
    tensors, entries = {}, {}
    for name, module in modules.items():
        kind, config = _kind_of(module)
        entries[name] = {"kind": kind, "config": config}
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous().clone()
    data = st_save(tensors)
    fileio.write_bytes(path / TENSORS, data)
    fileio.write_json(path / CONFIG, {"format": FORMAT, "modules": entries, "meta": meta or {},
                                      "tensors_sha256": hashlib.sha256(data).hexdigest()})
    return path


def _looks_like_pickle(head: bytes) -> bool:
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04" or head[:1] in (b"(", b"]", b"}", b"c")


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; refuses anything else (never unpickles)."""
    data = Path(file).read_bytes()
    if len(data) >= 9:
        (header_len,) = struct.unpack("<Q", data[:8])
        if 0 < header_len <= len(data) - 8 and data[8:9] == b"{":
            return st_load(data)
    if _looks_like_pickle(data[:4]):
        raise CheckpointError(f"{file} is a pickle / torch.save file; refusing to load it (unpickling runs code). "
                              "Checkpoints must be safetensors + JSON written by balancehead.models.save_checkpoint.")
    raise CheckpointError(f"{file} is not a safetensors file")


def load_checkpoint(path, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.nn.Module], dict]:
    """-> ({name: module rebuilt from its JSON config with its tensors}, meta)."""
    path = Path(path)
    if path.is_file():  # someone pointed at a single file (e.g. a .pkl / .pt)
        tensors_file, config_file = path, path.with_name(CONFIG)
    else:
        tensors_file, config_file = path / TENSORS, path / CONFIG
    if not config_file.exists():
        read_safetensors(tensors_file)                      # a pickle is refused as such first
        raise CheckpointError(f"missing {config_file}: the JSON config that rebuilds the modules")
    try:
        spec = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file} is unreadable ({e}); the checkpoint is damaged") from None
    if "tensors_sha256" in spec:
        try:
            verify_file(tensors_file, spec["tensors_sha256"])
        except IntegrityError as e:
            with open(tensors_file, "rb") as f:
                if _looks_like_pickle(f.read(4)):
                    read_safetensors(tensors_file)          # raises its "refusing to unpickle" message
            raise CheckpointError(str(e).split(";")[0] + "; the checkpoint is damaged") from None
    tensors = read_safetensors(tensors_file)
    if spec.get("format") != FORMAT:
        raise CheckpointError(f"{config_file}: unknown checkpoint format {spec.get('format')!r}")
    modules = {}
    for name, entry in spec["modules"].items():
        module = _build(entry["kind"], entry["config"])
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
        modules[name] = module.to(map_location)
    return modules, spec.get("meta", {})
