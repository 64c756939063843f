"""Pivotal Tuning Inversion (Roich et al. 2022), as BalanceHead uses it (BalanceHead §5.2, A.6.2):

1. Pivot: optimise w (one code broadcast to every layer) or w+ (one per layer) from w_avg, with the
   camera fixed, against L2 + perceptual loss, plus the StyleGAN2 projector's noise regulariser on the
   per-layer constant noise maps (optimised too, renormalised after each step).
2. Tuning: freeze the pivot and fine-tune the generator's weights with L2 + perceptual loss, plus an
   optional locality regulariser that keeps renders of nearby random latents unchanged.

The conditioning label is not involved (the pivot is a w code), so any conditioning mode inverts the
same way. Images are in [-1, 1]; targets are white-background renders with z = None (no background
generator, no camera self-adaptation) composited on white with the rendered mask.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from balancehead.devices import reproducible_threads
from balancehead.models import Generator
from balancehead.models.layers import SynthesisLayer

from .generator_io import ConditionSource, composite_white


@dataclass
class PTIResult:
    ws: torch.Tensor                 # (1, num_ws, w_dim) pivot
    generator: Generator             # the tuned generator
    history: dict = field(default_factory=dict)   # per phase: list of loss values


def render_white(g: Generator, ws: torch.Tensor, camera: torch.Tensor, resolution=None) -> torch.Tensor:
    out = g(None, None, camera, ws=ws, output_resolution=resolution)
    return composite_white(out.image, out.mask)


def noise_layers(g: Generator) -> list[SynthesisLayer]:
    return [m for m in g.synthesis.modules() if isinstance(m, SynthesisLayer)]


def noise_regulariser(maps: list[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation at one-pixel shifts over a pyramid (StyleGAN2 projector)."""
    reg = maps[0].new_zeros(())
    for n in maps:
        x = n[None, None]
        while True:
            reg = reg + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return reg


def _lr_at(step: int, total: int, base: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    t = step / max(total, 1)
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * np.cos(ramp * np.pi)
    return base * ramp * min(1.0, t / rampup) if rampup > 0 else base * ramp


def reconstruction_loss(pred, target, l2_weight, perceptual) -> torch.Tensor:
    loss = l2_weight * (pred - target).square().flatten(1).mean(1)
    if perceptual is not None:
        loss = loss + perceptual(pred, target)
    return loss.mean()


def invert_pivot(g: Generator, target: torch.Tensor, camera: torch.Tensor, p, perceptual, resolution=None,
                 progress: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Phase 1: the pivot ws (1, num_ws, w_dim), starting from w_avg. g's noise maps are updated in place."""
    num_ws = g.synthesis.num_ws
    w_avg = g.mapping.w_avg.detach()
    shape = (1, num_ws, w_avg.numel()) if p.latent_space == "w+" else (1, 1, w_avg.numel())
    w = w_avg.view(1, 1, -1).expand(shape).clone().requires_grad_(True)
    params = [w]
    layers = noise_layers(g) if p.optimize_noise else []
    for m in layers:
        m.noise_const = m.noise_const.detach().clone().requires_grad_(True)
        params.append(m.noise_const)
    opt = torch.optim.Adam(params, lr=p.w_lr, betas=(0.9, 0.999))
    history = []
    for step in tqdm(range(p.w_steps), desc="PTI pivot", disable=not progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, p.w_steps, p.w_lr)
        ws = w if w.shape[1] == num_ws else w.expand(1, num_ws, -1)
        pred = render_white(g, ws, camera, resolution)
        loss = reconstruction_loss(pred, target, p.l2_weight, perceptual)
        if layers and p.noise_reg_weight > 0:
            loss = loss + p.noise_reg_weight * noise_regulariser([m.noise_const for m in layers])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for m in layers:   # keep the noise maps standard normal
                n = m.noise_const
                n.sub_(n.mean()).div_(n.std().clamp_min(1e-8))
        history.append(float(loss.detach()))
    for m in layers:
        m.noise_const = m.noise_const.detach()
    ws = (w if w.shape[1] == num_ws else w.expand(1, num_ws, -1)).detach().clone()
    return ws, history


def tune_generator(g: Generator, ws: torch.Tensor, target: torch.Tensor, camera: torch.Tensor, p, perceptual,
                   cond: ConditionSource | None = None, seed: int = 0, resolution=None,
                   progress: bool = False) -> list[float]:
    """Phase 2: fine-tune g's weights in place with the pivot fixed."""
    frozen = copy.deepcopy(g).requires_grad_(False) if p.locality_weight > 0 else None
    g.requires_grad_(True)
    params = [q for q in g.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=p.g_lr)
    rng = np.random.default_rng(seed)
    tg = torch.Generator(device="cpu").manual_seed(seed)
    history = []
    for _ in tqdm(range(p.g_steps), desc="PTI tuning", disable=not progress, leave=False):
        pred = render_white(g, ws, camera, resolution)
        loss = reconstruction_loss(pred, target, p.l2_weight, perceptual)
        if frozen is not None:
            z = torch.randn((1, g.cfg.z_dim), generator=tg).to(ws.device)
            c = cond.draw(rng, 1)[0] if cond is not None else np.zeros((1, g.cfg.c_dim), np.float32)
            w_z = frozen.map(z, torch.from_numpy(c).to(ws.device))
            direction = w_z - ws
            w_r = ws + p.locality_alpha * float(rng.uniform()) * direction / direction.norm().clamp_min(1e-8)
            with torch.no_grad():
                ref = render_white(frozen, w_r, camera, resolution)
            loss = loss + p.locality_weight * reconstruction_loss(render_white(g, w_r, camera, resolution), ref,
                                                                  p.l2_weight, perceptual)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    g.requires_grad_(False).eval()
    return history


def pti(g: Generator, target: torch.Tensor, camera: torch.Tensor, p, perceptual, cond=None, seed: int = 0,
        resolution=None, progress: bool = False) -> PTIResult:
    """Invert `target` (1, 3, H, W) in [-1, 1] seen from `camera` (1, 25). `g` is copied, never modified.
    On the CPU the optimisation runs single-threaded: the same bytes whatever `workflow.threads` says."""
    g = copy.deepcopy(g).eval()
    with reproducible_threads(target.device):
        ws, h1 = invert_pivot(g, target, camera, p, perceptual, resolution, progress)
        h2 = tune_generator(g, ws, target, camera, p, perceptual, cond, seed, resolution, progress) if p.g_steps else []
    return PTIResult(ws, g, {"pivot": h1, "tuning": h2})


def weight_delta(original: Generator, tuned: Generator) -> dict[str, torch.Tensor]:
    """Tuned minus original state, only for entries that changed (float tensors): the PTI result is
    stored as this delta, a fraction of a full checkpoint when few layers move much."""
    base = original.state_dict()
    out = {}
    for k, v in tuned.state_dict().items():
        if v.is_floating_point() and not torch.equal(v, base[k]):
            out[k] = (v - base[k]).detach().cpu().contiguous()
    return out


def apply_delta(g: Generator, delta: dict[str, torch.Tensor]) -> Generator:
    g = copy.deepcopy(g)
    state = g.state_dict()
    for k, d in delta.items():
        state[k] = state[k] + d.to(state[k].device, state[k].dtype)
    g.load_state_dict(state)
    return g.eval()
