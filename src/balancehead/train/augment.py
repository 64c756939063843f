"""A small differentiable ADA subset (Karras et al. 2020), applied to every image D sees.

Per sample, each transform fires with probability p and uses the same draw on I+, I and the mask, so
the three stay aligned:
* integer translation by up to 1/8 of the image (zero padding; the mask pads with 0, images with -1
  after the shift, i.e. black — matches no real background, so D cannot cheat on it: both real and fake
  get it);
* brightness (+N(0, 0.2)), contrast (x lognormal(0, 0.5 ln 2)), saturation (x lognormal(0, ln 2)) on
  the RGB images only.
Geometric flips are left out on purpose: a mirror changes the yaw, and D is conditioned on the camera.
`p` adapts towards `target` of E[sign(D(real))] (the ADA overfitting heuristic).
"""
from __future__ import annotations

import torch


def _translate(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, fill: float) -> torch.Tensor:
    """Shift each sample by whole pixels (dx, dy in pixels of this tensor) with constant fill."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device)[None, :, None] - dy[:, None, None]
    xs = torch.arange(w, device=x.device)[None, None, :] - dx[:, None, None]
    valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(b, 1, -1).expand(-1, x.shape[1], -1)
    out = torch.gather(x.reshape(b, x.shape[1], -1), 2, idx).reshape_as(x)
    return torch.where(valid[:, None], out, torch.full_like(out, fill))


def _colour(x: torch.Tensor, bright, contrast, sat) -> torch.Tensor:
    x = x + bright[:, None, None, None]
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * sat[:, None, None, None] + gray


def augment(images: dict, p: torch.Tensor | None, generator: torch.Generator) -> dict:
    """Augment a D input dict {image, image_raw, mask} with probability p (a device scalar, so ADA can
    move it without a host round trip; None = off) per transform and sample. Draws happen on the
    generator's device."""
    if p is None:
        return images
    img = images["image"]
    b, dev = img.shape[0], img.device
    gdev = generator.device

    def fire():
        return (torch.rand(b, generator=generator, device=gdev) < p.to(gdev)).to(dev)

    def draw(shape_fn):
        return shape_fn().to(dev)

    size = img.shape[-1]
    t_on = fire()
    tx = draw(lambda: torch.randint(-size // 8, size // 8 + 1, (b,), generator=generator, device=gdev)) * t_on
    ty = draw(lambda: torch.randint(-size // 8, size // 8 + 1, (b,), generator=generator, device=gdev)) * t_on
    bright = draw(lambda: torch.randn(b, generator=generator, device=gdev) * 0.2) * fire()
    contrast = torch.exp2(draw(lambda: torch.randn(b, generator=generator, device=gdev) * 0.5) * fire())
    sat = torch.exp2(draw(lambda: torch.randn(b, generator=generator, device=gdev)) * fire())
    out = {}
    for key, x in images.items():
        if key not in ("image", "image_raw", "mask"):
            out[key] = x
            continue
        scale = x.shape[-1] / size
        dx, dy = torch.round(tx * scale).long(), torch.round(ty * scale).long()
        x = _translate(x, dx, dy, 0.0 if key == "mask" else -1.0)
        if key != "mask":
            x = _colour(x, bright.to(x.dtype), contrast.to(x.dtype), sat.to(x.dtype))
        out[key] = x
    return out


def adjust_p(p: torch.Tensor, sign_mean: torch.Tensor, target: float, images_seen: int, speed_kimg: float) -> torch.Tensor:
    """ADA: move p up when D is over-confident on reals (E[sign] > target), down otherwise; on the device."""
    step = images_seen / (speed_kimg * 1000.0)
    return (p + torch.sign(sign_mean - target) * step).clamp(0.0, 1.0)
