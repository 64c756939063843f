"""GAN-prior sampling (PanoLAM §3.4, appendix E): identities drawn from a trained generator, each
rendered from the protocol's cameras, written as a packed dataset (role "prior").

Every identity i gets its own seed (global seed, "sample_prior", i), so an identity's latents and
views do not depend on how many identities are drawn. The optional quality gate replaces PanoLAM's
manual cleaning with the offline judge's artifact check; a dropped view keeps its manifest row with
rejected_by = "sample_prior_gate" and the judge's reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch

from balancehead.models import Generator

from .generator_io import ConditionSource, render
from .protocols import ViewSpec, sample_views

GATE = "sample_prior_gate"


@dataclass
class PriorIdentity:
    index: int
    subject_id: str
    z: np.ndarray            # (z_dim,)
    c: np.ndarray            # (c_dim,)
    condition_index: int     # row of the condition table used (-1: none / camera)
    ws: np.ndarray           # (num_ws, w_dim)
    views: ViewSpec
    images: np.ndarray       # (V, H, W, 3) uint8
    masks: np.ndarray        # (V, H, W) uint8
    depth: np.ndarray        # (V, r, r) float32
    cameras: np.ndarray      # (V, 25) rendering cameras after self-adaptation


def subject_id(index: int) -> str:
    return f"prior{index:06d}"


def image_id(index: int, view: int) -> str:
    return f"prior{index:06d}_v{view:03d}"


def identity_latents(g: Generator, cond: ConditionSource, seed: int, psi: float, device) -> tuple:
    """z, c, condition index and ws of one identity drawn from its own seed."""
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.standard_normal((1, g.cfg.z_dim)).astype(np.float32)).to(device)
    c, idx = cond.draw(rng, 1, front=True)
    ws = g.map(z, torch.from_numpy(c).to(device), psi=psi)
    return z, c[0], int(idx[0]), ws, rng


@torch.no_grad()
def sample_identity(g: Generator, cond: ConditionSource, index: int, seed: int, p, device) -> PriorIdentity:
    z, c, cidx, ws, rng = identity_latents(g, cond, seed, p.psi, device)
    views = sample_views(rng, p)
    n = len(views)
    out = render(g, ws.repeat(n, 1, 1), views.labels(), z=z.repeat(n, 1), resolution=p.resolution,
                 white_background=p.white_background, batch_size=p.batch_size)
    return PriorIdentity(index, subject_id(index), z[0].cpu().numpy(), c, cidx, ws[0].cpu().numpy(), views,
                         out["image"], out["mask"], out["depth"], out["camera"])


def gate_verdicts(judge, ident: PriorIdentity) -> list[Optional[str]]:
    """Per view: None (kept) or the judge's reason for dropping it."""
    out = []
    for img, mask in zip(ident.images, ident.masks):
        v = judge.artifacts(img, mask)
        out.append(v.reason if v.label == "severe artifacts" else None)
    return out


def iter_identities(g, cond, seeds: list[int], p, device) -> Iterator[PriorIdentity]:
    for i, seed in enumerate(seeds):
        yield sample_identity(g, cond, i, seed, p, device)
