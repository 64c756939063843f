"""The FID family, each a (real subset, fake sampler) pair.

BalanceHead's definitions (Table 1):
  fid_view    condition = render = a real image's view (standard FID): the camera itself for modes with a
              camera in the label; for view_semantic the real image's own CLIP feature (per-image table),
              rendered at that image's camera; null for semantic / none (the paper leaves it blank)
  fid_random  render from a real image's camera, condition drawn independently (random condition
              row, or another real image's camera): 360° quality and diversity (HyPlaneHead's FID-random)
  fid_front   condition front, render front (yaw 0, pitch 0); reals with |yaw| <= front window
PanoHead's definitions (§4.3), named apart:
  fid_back            condition front, render from real cameras with |yaw| >= 90°; reals likewise
  fid_panohead_all    FID-all: condition = render view (as fid_view; for semantic / none, the mode's own
                      condition draw) over all real cameras, against all reals
  fid_panohead_front  FID-front: the same restricted to |yaw| < 90° (render cameras and reals)
The bias curve:
  fid_yaw_<b> as fid_random, restricted to real cameras / reals of one 45° yaw bin
KID is computed for the same pairs. The per-bin FIDs also get a bootstrap standard error
(`fid_std`: FID over `fid_bootstrap` resamples, with replacement, of the bin's reals and fakes), the
error bars of the bias curve: with few images per bin, differences smaller than that are noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from balancehead.progress import stage_log, track

from balancehead.camera import camera_label
from balancehead.data.manifest import YAW_BIN_LABELS, yaw_bins
from balancehead.train.conditioning import CAMERA_IN_G as CAMERA_MODES   # camera in G's label: FID-view

from .features import extract
from .fid import fid_from_features, kid
from .generator_io import ConditionSource, render
from .real_set import RealSet

PER_VIEW_MODES = ("view_semantic", "view_identity")   # G's label = the view's own feature: FID-view from that table


@dataclass
class FakeRequest:
    """How to draw n fakes: render cameras and conditioning cameras (each (n, 25)), front conditions;
    `image_rows` (n,): condition on these rows of the per-image table instead (view_semantic FID-view)."""
    render_cameras: np.ndarray
    cond_cameras: np.ndarray
    front_condition: bool
    image_rows: Optional[np.ndarray] = None


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
        if req.image_rows is not None:
            c = cond.image_rows(req.image_rows[s:s + draws])
        else:
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


def view_request(reals: RealSet, cond: ConditionSource, keep_yaw: Callable[[np.ndarray], np.ndarray], n: int,
                 rng) -> Optional[FakeRequest]:
    """Condition = render = a real view whose yaw passes `keep_yaw` (FID-view, PanoHead's FID-all /
    FID-front): render at a real image's camera, conditioned on that camera (view modes) or, for
    view_semantic, on an image's own CLIP feature rendered at that image's camera. None when no such
    view exists (or view_semantic has no per-image table)."""
    if cond.mode in PER_VIEW_MODES:
        if cond.image is None or cond.image_camera is None or cond.image_yaw is None:
            return None
        rows = np.flatnonzero(np.isfinite(cond.image_camera).all(axis=1) & keep_yaw(cond.image_yaw))
        if not len(rows):
            return None
        idx = rows[rng.integers(0, len(rows), n)]
        cams = cond.image_camera[idx]
        return FakeRequest(cams, cams, False, image_rows=idx)
    sel = keep_yaw(reals.yaw)
    if not sel.any():
        return None
    cams = _pick(rng, reals.cameras[sel], n)
    return FakeRequest(cams, cams, False)


def requests(reals: RealSet, cond: ConditionSource, n: int, n_bin: int, p, rng: np.random.Generator) -> dict:
    """name -> (real subset mask, FakeRequest or None when the metric does not apply)."""
    front = np.repeat(camera_label(0.0, 0.0)[None], n, axis=0)
    absyaw = np.abs(reals.yaw)
    out = {}
    all_mask = np.ones(len(reals), bool)
    every = lambda yaw: np.ones(len(yaw), bool)                                   # noqa: E731
    pano_front = lambda yaw: np.abs(yaw) < p.panohead_front_max_abs_yaw_deg       # noqa: E731
    has_view = cond.mode in CAMERA_MODES or cond.mode in PER_VIEW_MODES
    out["fid_view"] = (all_mask, view_request(reals, cond, every, n, rng) if has_view else None)
    out["fid_random"] = (all_mask, FakeRequest(_pick(rng, reals.cameras, n), _pick(rng, reals.cameras, n), False))
    out["fid_front"] = (absyaw <= p.front_max_abs_yaw_deg, FakeRequest(front, front, True))
    back = absyaw >= p.back_min_abs_yaw_deg
    out["fid_back"] = (back, FakeRequest(_pick(rng, reals.cameras[back], n), front, True) if back.sum() else None)
    out["fid_panohead_all"] = (all_mask, view_request(reals, cond, every, n, rng))
    out["fid_panohead_front"] = (pano_front(reals.yaw), view_request(reals, cond, pano_front, n, rng))
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
    plan = requests(reals, cond, p.num_fakes, p.fakes_per_yaw_bin, p, rng)
    for k, (name, (mask, req)) in enumerate(track(list(plan.items()), stage_log(), "evaluate: FID variants", "metric")):
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
        if name.startswith("fid_yaw_"):
            results[name]["fid_std"] = bootstrap_fid_std(rf, ff, p.fid_bootstrap, seed + 2000 + k)
    return results


def fid_exact_fast(real: np.ndarray, fake: np.ndarray) -> float:
    """The same FID as `fid_from_features`, computed without a d x d matrix square root.

    With A, B the centred features scaled by 1/sqrt(n-1) (S1 = AᵀA, S2 = BᵀB), the non-zero eigenvalues
    of S1 S2 are the squared singular values of A Bᵀ, so Tr (S1 S2)^½ = ||A Bᵀ||_* (nuclear norm): an
    n1 x n2 SVD when the sets are smaller than the feature width, else Tr (S1^½ S2 S1^½)^½ by two
    symmetric eigendecompositions. Both are exact; used for the bootstrap, which needs many FIDs."""
    a, b = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    diff = a.mean(0) - b.mean(0)
    A = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    B = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    if min(len(a), len(b)) < a.shape[1]:
        tr_sqrt = np.linalg.svd(A @ B.T, compute_uv=False).sum()
    else:
        w, v = np.linalg.eigh(A.T @ A)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root @ (B.T @ B) @ root), 0, None)).sum()
    return float(max(diff @ diff + (A * A).sum() + (B * B).sum() - 2.0 * tr_sqrt, 0.0))


def bootstrap_fid_std(real: np.ndarray, fake: np.ndarray, resamples: int, seed: int) -> Optional[float]:
    """Standard deviation of the FID over `resamples` bootstrap resamples of both sets (None when off)."""
    if resamples < 2:
        return None
    rng = np.random.default_rng(seed)
    values = [fid_exact_fast(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))])
              for _ in range(resamples)]
    return float(np.std(values, ddof=1))
