"""Loading local weight files without unpickling arbitrary code: safetensors, or a torch file read
with weights_only=True. Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import torch


def load_state_dict(path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist (weights are never downloaded; set the path param)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state
