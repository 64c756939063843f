"""SphereHead's spherical tri-plane, single (system A) and dual (systems A and B) (SphereHead §3).

The sampling reproduces the official SphereHead code (lhyfst/SphereHead, ``sample_from_planes``) and
HyPlaneHead's copy of its training variant (``sample_from_sphtriplane``), checked against both to 1e-5
by ``tests/test_golden_sampling.py``:

* A point (normalised by box_warp/2) is rotated into the system's frame and read in spherical
  coordinates: polar angle theta from the frame's +z, azimuth phi = atan2(y', x'), radius |q|; each is
  mapped to [-1, 1] (theta: 2 theta/pi - 1, phi: phi/pi, radius: 2 |q|/sqrt(3) - 1).
* Three planes per system, read at (theta, phi), (theta, radius) and (phi, radius) -- the axes of EG3D's
  ``generate_planes`` applied to (theta, phi, radius).
* **System A** is rotated +90 degrees about y, q' = (z, y, -x): its poles are on the +-x axis (the ears)
  and its seam (phi = +-pi) is the horizontal half-plane behind the head (y = 0, z < 0).
  **System B** is rotated about two axes (-90 degrees about z, then -90 degrees about y),
  q' = (-z, -x, y): its poles are on the +-y axis and its seam is the vertical half-plane in front
  (x = 0, z > 0). Each system's weight (1 + cos(pi theta_n))/2 * (1 + cos(pi phi_n))/2 vanishes on its
  own poles and seam, and the fused feature is (f_A w_A + f_B w_B) / (w_A + w_B + 1e-8).
* **Training with A, B or both at random**: with probabilities (prob_a, prob_b, 1 - prob_a - prob_b) a
  forward in training mode uses system A alone, B alone, or the fusion, so each system also learns to
  stand on its own (SphereHead's training recipe; HyPlaneHead's copy uses (0.1, 0.1, 0.8)). The draw
  is made once per `planes()` call (one generator forward; the official code draws again for the
  importance pass) from a counter-based stream seeded by `seed`, so a run is reproducible and every
  data-parallel rank draws the same system. Evaluation mode always fuses; `planes(image, system=...)`
  forces a system.

The decoder sees the mean over the three planes of the chosen/fused features (SphereHead's OSGDecoder).

**Heads** (dual, `head_channels > 0`, the reference): as in SphereHead's generator the synthesis network
emits one `head_channels`-channel map (512 in SphereHead) and each system cuts its 3C channels out of it
with its own head of two bias-free linear 1x1 convolutions (head_channels -> head_channels/2 -> 3C,
equalised learning rate; SphereHead's ConvA / ConvB). With `head_channels = 0` the synthesis emits A's and
B's 6C channels directly. The single sphere has no head (HyPlaneHead's ``SphTriPlane_single``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from balancehead import ops

from .representations import Representation, sample_planes

SYSTEMS = ("a", "b", "both")


def rotate_a(q: torch.Tensor) -> torch.Tensor:
    """System A's frame: +90 degrees about y (poles on +-x)."""
    x, y, z = q.unbind(-1)
    return torch.stack([z, y, -x], -1)


def rotate_b(q: torch.Tensor) -> torch.Tensor:
    """System B's frame: -90 degrees about z, then -90 degrees about y (poles on +-y, seam in front)."""
    x, y, z = q.unbind(-1)
    return torch.stack([-z, -x, y], -1)


def spherical_coords(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points (..., 3) in a system's frame -> (theta, phi, radius), each mapped to [-1, 1]."""
    x, y, z = q.unbind(-1)
    radius = 2.0 * torch.sqrt(x.square() + y.square() + z.square()) / math.sqrt(3) - 1.0
    theta = 2.0 * torch.atan2(torch.sqrt(x.square() + y.square()), z) / math.pi - 1.0
    phi = torch.atan2(y, x) / math.pi
    return theta, phi, radius


def system_weight(theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Zero on the system's poles (theta = +-1) and seam (phi = +-1), one on its equator's front."""
    return (1.0 + torch.cos(math.pi * theta)) / 2.0 * (1.0 + torch.cos(math.pi * phi)) / 2.0


def sample_system(planes: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """planes (B, 3, C, H, W), points (B, N, 3) in the system's frame -> features (B, 3, N, C), weight (B, N)."""
    theta, phi, radius = spherical_coords(q)
    uv = torch.stack([torch.stack([theta, phi], -1), torch.stack([theta, radius], -1),
                      torch.stack([phi, radius], -1)], 1)
    return sample_planes(planes, uv), system_weight(theta, phi)


class Linear1x1(nn.Module):
    """A bias-free linear 1x1 convolution with equalised learning rate (weight ~ N(0, 1), scaled by 1/sqrt(fan_in))."""

    def __init__(self, in_channels: int, out_channels: int, generator: torch.Generator):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1, generator=generator))
        self.gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight * self.gain)


def system_head(in_channels: int, out_channels: int, generator: torch.Generator) -> nn.Sequential:
    """SphereHead's ConvA / ConvB: in -> in/2 -> out, two linear 1x1 convolutions."""
    hidden = max(in_channels // 2, 1)
    return nn.Sequential(Linear1x1(in_channels, hidden, generator), Linear1x1(hidden, out_channels, generator))


class SpherePlanes(NamedTuple):
    a: torch.Tensor | None          # (B, 3, C, H, W) system A (None when only B is used)
    b: torch.Tensor | None          # (B, 3, C, H, W) system B (dual only)
    system: str                     # "a", "b" or "both": which the features use


class SphericalTriPlane(Representation):
    """SphereHead's spherical tri-plane: system A only (`dual=False`), or A and B (`dual=True`)."""

    def __init__(self, channels: int, resolution: int, box_warp: float, dual: bool = False,
                 prob_a: float = 0.1, prob_b: float = 0.1, seed: int = 0, head_channels: int = 0):
        super().__init__(channels, resolution, box_warp)
        if min(prob_a, prob_b) < 0 or prob_a + prob_b > 1:
            raise ValueError(f"sphere system probabilities must be >= 0 with sum <= 1, got ({prob_a}, {prob_b})")
        if head_channels < 0:
            raise ValueError(f"sphere head_channels must be >= 0, got {head_channels}")
        self.dual, self.prob_a, self.prob_b, self.seed = dual, prob_a, prob_b, seed
        self.head_channels = head_channels if dual else 0
        if self.head_channels:
            g = torch.Generator().manual_seed(seed)
            self.head_a = system_head(head_channels, 3 * channels, g)
            self.head_b = system_head(head_channels, 3 * channels, g)
        self._draws = 0  # counter of the seeded system draws (not checkpointed: a resumed run restarts it)

    @property
    def synthesis_channels(self) -> int:
        if self.head_channels:
            return self.head_channels
        return (6 if self.dual else 3) * self.channels

    def draw_system(self) -> str:
        """The next seeded choice among A, B and both (the counter-based stream of `seed`)."""
        u = np.random.default_rng([self.seed, self._draws]).random()
        self._draws += 1
        return "a" if u < self.prob_a else "b" if u < self.prob_a + self.prob_b else "both"

    def planes(self, image: torch.Tensor, system: str | None = None) -> SpherePlanes:
        def cut(x):
            return x.reshape(x.shape[0], -1, self.channels, *x.shape[2:])

        # each system's planes stored as the compiled lookup reads them, once for every pass
        lay = ops.sampling_layout
        if not self.dual:
            return SpherePlanes(lay(cut(image)), None, "a")
        if system is None:
            system = self.draw_system() if self.training else "both"
        if system not in SYSTEMS:
            raise ValueError(f"system must be one of {SYSTEMS}, got {system!r}")
        if not self.head_channels:
            split = cut(image)
            return SpherePlanes(lay(split[:, :3]), lay(split[:, 3:]), system)
        # a system that is not used this forward is not computed (its head gets no gradient, as in SphereHead)
        a = lay(cut(self.head_a(image))) if system != "b" else None
        b = lay(cut(self.head_b(image))) if system != "a" else None
        return SpherePlanes(a, b, system)

    def features(self, planes: SpherePlanes, points: torch.Tensor) -> torch.Tensor:
        q = self.normalise(points)
        if planes.system == "a":
            return sample_system(planes.a, rotate_a(q))[0].mean(dim=1)
        if planes.system == "b":
            return sample_system(planes.b, rotate_b(q))[0].mean(dim=1)
        feats_a, w_a = sample_system(planes.a, rotate_a(q))
        feats_b, w_b = sample_system(planes.b, rotate_b(q))
        w_a, w_b = w_a[:, None, :, None], w_b[:, None, :, None]
        return ((feats_a * w_a + feats_b * w_b) / (w_a + w_b + 1e-8)).mean(dim=1)
