"""The FID family, each a (real subset, fake sampler) pair (BalanceHead Table 1, PanoHead §4.3):

  fid_view    condition camera = render camera = a real image's camera (standard FID); only for
              modes with a camera in the label (the paper leaves it blank for semantic models)
  fid_random  render from a real image's camera, condition drawn independently (random condition
              row, or another real image's camera): 360° quality and diversity
  fid_front   condition front, render front (yaw 0, pitch 0); reals with |yaw| <= front window
  fid_back    condition front, render from real cameras with |yaw| >= 90° (PanoHead); reals likewise
  fid_yaw_<b> the directional-bias curve: as fid_random, restricted to real cameras / reals of one
              45° yaw bin
KID is computed for the same pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from balancehead.camera import camera_label
from balancehead.data.manifest import YAW_BIN_LABELS, yaw_bins

from .features import extract
from .fid import fid_from_features, kid
from .generator_io import ConditionSource, render
from .real_set import RealSet

CAMERA_MODES = ("view",)


@dataclass
class FakeRequest:
    """How to draw n fakes: render cameras and conditioning cameras (each (n, 25)), front conditions."""
    render_cameras: np.ndarray
    cond_cameras: np.ndarray
    front_condition: bool


def render_fakes(g, cond: ConditionSource, req: FakeRequest, seed: int, psi: float, batch_size: int,
                 device, white_background: bool = False, same_identity: bool = False) -> dict:
    """Fake images (+ masks) for a request, drawn in batches from `seed`. `same_identity`: one z and
    one condition for every view (a head seen from several cameras)."""
    rng = np.random.default_rng(seed)
    n = len(req.render_cameras)
    out = {"image": [], "mask": []}
    for s in range(0, n, batch_size):
        m = min(batch_size, n - s)
        draws = 1 if same_identity else m
        z = torch.from_numpy(rng.standard_normal((draws, g.cfg.z_dim)).astype(np.float32)).to(device)
        c, _ = cond.draw(rng, draws, req.cond_cameras[s:s + draws], front=req.front_condition)
        if same_identity:
            if s:
                raise ValueError("same_identity requests must fit in one batch")
            z, c = z.expand(m, -1), np.repeat(c, m, axis=0)
        with torch.no_grad():
            ws = g.map(z, torch.from_numpy(c).to(device), psi=psi)
        r = render(g, ws, req.render_cameras[s:s + m], z=z, white_background=white_background, batch_size=batch_size)
        out["image"].append(r["image"])
        out["mask"].append(r["mask"])
    return {k: np.concatenate(v) for k, v in out.items()}


def _pick(rng, cams: np.ndarray, n: int) -> np.ndarray:
    return cams[rng.integers(0, len(cams), n)]


def requests(reals: RealSet, cond_mode: str, n: int, n_bin: int, p, rng: np.random.Generator) -> dict:
    """name -> (real subset mask, FakeRequest or None when the metric does not apply)."""
    front = np.repeat(camera_label(0.0, 0.0)[None], n, axis=0)
    absyaw = np.abs(reals.yaw)
    out = {}
    all_mask = np.ones(len(reals), bool)
    if cond_mode in CAMERA_MODES:
        cams = _pick(rng, reals.cameras, n)
        out["fid_view"] = (all_mask, FakeRequest(cams, cams, False))
    else:
        out["fid_view"] = (all_mask, None)
    out["fid_random"] = (all_mask, FakeRequest(_pick(rng, reals.cameras, n), _pick(rng, reals.cameras, n), False))
    out["fid_front"] = (absyaw <= p.front_max_abs_yaw_deg, FakeRequest(front, front, True))
    back = absyaw >= p.back_min_abs_yaw_deg
    out["fid_back"] = (back, FakeRequest(_pick(rng, reals.cameras[back], n), front, True) if back.sum() else None)
    bins = yaw_bins(reals.yaw)
    for b, label in enumerate(YAW_BIN_LABELS):
        sel = bins == b
        req = None
        if sel.sum() >= p.min_reals_per_bin:
            req = FakeRequest(_pick(rng, reals.cameras[sel], n_bin), _pick(rng, reals.cameras, n_bin), False)
        out[f"fid_yaw_{label}"] = (sel, req)
    return out


def run_fid_suite(g, cond: ConditionSource, reals: RealSet, extractor, p, seed: int, device,
                  keep_images: Optional[Callable[[str, dict], None]] = None) -> dict:
    """-> {name: {"fid", "kid", "n_real", "n_fake"}} (fid/kid None when not applicable)."""
    rng = np.random.default_rng(seed)
    results = {}
    plan = requests(reals, cond.mode, p.num_fakes, p.fakes_per_yaw_bin, p, rng)
    for k, (name, (mask, req)) in enumerate(tqdm(plan.items(), desc="FID variants", disable=None)):
        n_real = int(mask.sum())
        if req is None or n_real < 2:
            results[name] = {"fid": None, "kid": None, "n_real": n_real, "n_fake": 0}
            continue
        fakes = render_fakes(g, cond, req, seed + 1000 + k, p.psi, p.batch_size, device)
        if keep_images is not None:
            keep_images(name, fakes)
        ff = extract(extractor, fakes["image"], p.batch_size)
        rf = reals.features[mask]
        results[name] = {"fid": fid_from_features(rf, ff),
                         "kid": kid(rf, ff, p.kid_subsets, p.kid_subset_size, seed),
                         "n_real": n_real, "n_fake": len(ff)}
    return results
