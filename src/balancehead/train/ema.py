"""Exponential moving average of the generator (G_ema), with EG3D/StyleGAN's ramp-up.

The half-life is `ema_kimg` thousand images; with a ramp-up factor it is capped at
`images_seen * rampup`, so early in training G_ema follows G closely instead of averaging noise.
"""
from __future__ import annotations

import torch


def ema_beta(batch: int, images_seen: int, ema_kimg: float, rampup: float | None) -> float:
    ema_nimg = ema_kimg * 1000.0
    if rampup is not None:
        ema_nimg = min(ema_nimg, images_seen * rampup)
    if ema_nimg <= 0:
        return 0.0
    return 0.5 ** (batch / ema_nimg)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """ema <- model + beta * (ema - model) for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b.detach())
