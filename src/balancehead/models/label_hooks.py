"""Label dropout and shuffling for the discriminator's conditioning (used by ViCiCo negatives).

All draws come from an explicit torch.Generator. A label is (B, D); with camera + semantic labels
concatenated (25 + 512), `shuffle_columns` shuffles only one part across the batch.
"""
from __future__ import annotations

import torch


def drop_labels(c: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Zero each row with probability p (unconditional samples for the projection head)."""
    if p <= 0 or c.shape[1] == 0:
        return c
    keep = torch.rand(c.shape[0], generator=generator, device=generator.device).to(c.device) >= p
    return c * keep[:, None].to(c.dtype)


def shuffle_rows(c: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of the rows (mismatched image/label pairs)."""
    perm = torch.randperm(c.shape[0], generator=generator, device=generator.device).to(c.device)
    return c[perm]


def shuffle_columns(c: torch.Tensor, start: int, stop: int, generator: torch.Generator) -> torch.Tensor:
    """Shuffle only columns [start, stop) across the batch (e.g. camera 0:25 or semantic 25:537)."""
    out = c.clone()
    out[:, start:stop] = shuffle_rows(c[:, start:stop], generator)
    return out
