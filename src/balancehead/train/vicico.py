"""ViCiCo negatives (BalanceHead eq. 1): real images paired with mismatched (camera, semantic) labels.

For a real batch with D labels [camera | semantic], every row becomes a negative of one kind, drawn
with probabilities (p_camera, p_semantic, p_both): its camera part, its semantic part or both are
replaced by another row's. D is then trained to reject (real image, shuffled label), i.e. to minimise
softplus(D(I, c')) = -log(1 - sigmoid(D)). With only the camera shuffled this is SphereHead's ViCo.

Replacement rows come from a random cyclic shift of the batch (offset 1..B-1), so a row is never
paired with its own label; rows of the same subject can still share a semantic feature, which only
makes a few negatives easy.
"""
from __future__ import annotations

import torch

from .conditioning import CAMERA_DIM

KINDS = ("camera", "semantic", "both")


def negative_kinds(batch: int, probs: tuple[float, float, float], generator: torch.Generator) -> torch.Tensor:
    """Per-row kind index (0 camera, 1 semantic, 2 both) drawn from the normalised probabilities by
    inverse CDF of one uniform per row, on the generator's device (no host round trip)."""
    total = float(sum(probs))
    if total <= 0:
        raise ValueError("ViCiCo probabilities sum to zero")
    c0, c1 = probs[0] / total, (probs[0] + probs[1]) / total
    u = torch.rand(batch, generator=generator, device=generator.device)
    return (u >= c0).long() + (u >= c1).long()


def _shifted(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x rolled by a random offset in 1..B-1 along the batch (a gather: the offset stays on the device)."""
    b = x.shape[0]
    if b < 2:
        return x
    offset = torch.randint(1, b, (1,), generator=generator, device=generator.device).to(x.device)
    idx = (torch.arange(b, device=x.device) - offset) % b
    return x.index_select(0, idx)


def make_negatives(label: torch.Tensor, variant: str, probs: tuple[float, float, float],
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (negative labels (B, D), kind per row). `variant` 'vico' shuffles the camera only."""
    b = label.shape[0]
    if variant == "vico" or label.shape[1] == CAMERA_DIM:
        kinds = torch.zeros(b, dtype=torch.long, device=label.device)
    else:
        kinds = negative_kinds(b, probs, generator)
    shuffled = _shifted(label, generator)
    cam_from = (kinds == 0) | (kinds == 2)
    sem_from = (kinds == 1) | (kinds == 2)
    cam = torch.where(cam_from[:, None].to(label.device), shuffled[:, :CAMERA_DIM], label[:, :CAMERA_DIM])
    sem = torch.where(sem_from[:, None].to(label.device), shuffled[:, CAMERA_DIM:], label[:, CAMERA_DIM:])
    return torch.cat([cam, sem], dim=1), kinds
