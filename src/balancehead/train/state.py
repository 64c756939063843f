"""Resumable training state: modules, optimizers and counters, as safetensors + JSON, written atomically.

Layout under `<work>/checkpoints/`:
  ckpt-<images seen, 9 digits>/model.safetensors + model.json   G, D, G_ema (balancehead.models.save_checkpoint;
                                                                the JSON meta holds the loop counters)
  ckpt-.../optim.safetensors + optim.json                       Adam moments + param groups
  latest.json                                                   {"name": "ckpt-..."} — written last

A checkpoint directory is built under a temporary name and renamed into place; `latest.json` is then
replaced atomically. A kill -9 at any moment leaves either the previous or the new checkpoint as the
latest, never a half-written one. The loop's randomness is derived from (seed, step, phase, round),
so the counters in the meta (step, images seen, augmentation p, ...) are the whole RNG state.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from balancehead import fileio, integrity
from balancehead.models import load_checkpoint, save_checkpoint
from balancehead.models.checkpoint import read_safetensors

LATEST = "latest.json"


def _optim_payload(optims: dict[str, torch.optim.Optimizer]) -> tuple[dict, dict]:
    tensors, spec = {}, {}
    for name, opt in optims.items():
        sd = opt.state_dict()
        spec[name] = {"param_groups": sd["param_groups"], "state_keys": {}}
        for idx, st in sd["state"].items():
            spec[name]["state_keys"][str(idx)] = sorted(st)
            for key, value in st.items():
                t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
                tensors[f"{name}.{idx}.{key}"] = t.detach().cpu().contiguous().clone()
    return tensors, spec


def save_state(ckpt_dir: Path, modules: dict, optims: dict, meta: dict, keep: int = 2) -> Path:
    ckpt_dir = Path(ckpt_dir)
    name = f"ckpt-{int(meta['images_seen']):09d}"
    tmp = ckpt_dir / f".{name}.tmp-{integrity.temp_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, modules, meta)
    save_optimizers(tmp, optims)
    return publish(tmp, ckpt_dir, name, keep, "train")


def save_optimizers(directory: Path, optims: dict[str, torch.optim.Optimizer]) -> None:
    """Adam moments + param groups as optim.safetensors + optim.json in `directory`."""
    tensors, spec = _optim_payload(optims)
    fileio.write_bytes(Path(directory) / "optim.safetensors", st_save(tensors))
    fileio.write_json(Path(directory) / "optim.json", spec)


def load_optimizers(directory: Path, optims: dict[str, torch.optim.Optimizer]) -> None:
    """Load what `save_optimizers` wrote into `optims`, in place."""
    tensors = read_safetensors(Path(directory) / "optim.safetensors")
    spec = json.loads((Path(directory) / "optim.json").read_text())
    for name, opt in optims.items():
        s = spec[name]
        state = {int(idx): {k: tensors[f"{name}.{idx}.{k}"] for k in keys} for idx, keys in s["state_keys"].items()}
        opt.load_state_dict({"state": state, "param_groups": s["param_groups"]})


def publish(tmp: Path, ckpt_dir: Path, name: str, keep: int, stage: str) -> Path:
    """Record the digests of the assembled checkpoint `tmp`, rename it to `ckpt_dir/name`, point
    latest.json at it and drop all but the newest `keep` checkpoints."""
    integrity.write_digests(tmp, stage)
    final = Path(ckpt_dir) / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fileio.write_json(Path(ckpt_dir) / LATEST, {"name": name})
    old = sorted(p for p in Path(ckpt_dir).glob("ckpt-*") if p.is_dir() and p.name != name)
    for p in old[:max(len(old) - (keep - 1), 0)]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest(ckpt_dir: Path, marker: str = "model.json") -> Path | None:
    """The newest intact checkpoint: the one `latest.json` names, or — when that one (or the pointer)
    is damaged — the newest older one whose files match their digests. A checkpoint without `marker`
    is incomplete. Leftovers of killed writers are removed first."""
    ckpt_dir = Path(ckpt_dir)
    integrity.clean_leftovers(ckpt_dir)
    pointer = ckpt_dir / LATEST
    if not pointer.exists():
        return None
    try:
        named = ckpt_dir / json.loads(pointer.read_text())["name"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        named = None
    candidates = ([named] if named is not None else []) + sorted(
        (p for p in ckpt_dir.glob("ckpt-*") if p.is_dir() and p != named), reverse=True)
    for path in candidates:
        problems = integrity.verify_tree(path) if (path / marker).exists() else [f"{path}: incomplete"]
        if not problems:
            if path != named:
                logging.getLogger("balancehead").warning(
                    "train: checkpoint %s is damaged; resuming from the newest intact one, %s", named, path.name)
            return path
        logging.getLogger("balancehead").warning("train: skipping damaged checkpoint: %s", problems[0])
    return None


def load_state(path: Path, optims: dict, map_location="cpu") -> tuple[dict, dict]:
    """-> (modules rebuilt from the checkpoint, meta); `optims` are loaded in place."""
    modules, meta = load_checkpoint(path, map_location)
    load_optimizers(path, optims)
    return modules, meta
