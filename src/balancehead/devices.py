"""The one device picker (a leaf): `auto` takes CUDA when torch sees it; `cuda` without CUDA is an error,
never a silent fallback to the CPU."""
from __future__ import annotations

import torch


def pick_device(name: str, index: int | None = None) -> torch.device:
    """`name` is auto / cpu / cuda (or cuda:N); `index` picks the local GPU of a distributed rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' requested but torch sees no CUDA device; "
                               "set the device to cpu or auto")
        if index is not None and name == "cuda":
            return torch.device("cuda", index)
    return torch.device(name)
