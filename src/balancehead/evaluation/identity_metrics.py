"""MKNND diversity and multi-view ID consistency of a generator, on identity embeddings of its renders.

The identity backend is a param (`evaluate.identity_backend`, `invert.identity_backend`):
  offline  the appearance embedder (`backends.identity`, pixels only; the labelled default, not a
           face-recognition model, so its numbers are not comparable to published ones)
  arcface  the ArcFace ONNX recogniser the data engine's select_front uses (`backends.production.arcface`):
           BalanceHead A.6.11 computes MKNND in ArcFace space, PanoHead §4.3 ID consistency with a face
           recogniser (AdaFace there). Our renders come without landmarks, so the recogniser sees the
           mask-based fallback crop (`arcface.fallback_crop`), not a landmark-aligned one; PanoHead scores
           only images with detected landmarks, we score every view (side views are thus harder).
Both embed through `embed(rgbs, masks) -> (N, D)` unit rows."""
from __future__ import annotations

import numpy as np

from balancehead.camera import camera_label

from .diversity import id_consistency, mknnd
from .fid_suite import FakeRequest, render_fakes


def make_identity_embedder(section: str, backend: str, arcface):
    """The identity embedder `<section>.identity_backend` names (`arcface`: `<section>.arcface`)."""
    if backend == "offline":
        from balancehead.backends.identity import OfflineIdentityEmbedder
        return OfflineIdentityEmbedder()
    if backend == "arcface":
        from balancehead.backends.production.arcface import ArcFaceEmbedder
        return ArcFaceEmbedder(arcface, param=f"{section}.arcface.model",
                               offline=f"{section}.identity_backend: offline (OfflineIdentityEmbedder)")
    raise ValueError(f"{section}.identity_backend must be 'offline' or 'arcface', got {backend!r}")


def identity_label(embedder) -> dict:
    """What produced the identity numbers: backend name (+ weights provenance for ArcFace)."""
    if hasattr(embedder, "provenance"):
        return embedder.provenance()
    return {"backend": embedder.name, "comparable_to_published": False}


def front_request(n: int) -> FakeRequest:
    front = np.repeat(camera_label(0.0, 0.0)[None], n, axis=0)
    return FakeRequest(front, front, True)


def generator_mknnd(g, cond, embedder, n: int, k: int, seed: int, psi: float, batch_size: int, device) -> float:
    """MKNND (k nearest, cosine) over n identities rendered front-on (conditioned on the front)."""
    fakes = render_fakes(g, cond, front_request(n), seed, psi, batch_size, device, white_background=True)
    return mknnd(embedder.embed(fakes["image"], fakes["mask"]), k)


def generator_id_consistency(g, cond, embedder, n: int, yaws, seed: int, psi: float, batch_size: int, device) -> dict:
    """Each of n identities (same z and condition for all its views) rendered at `yaws`; pairwise cosine."""
    v = len(yaws)
    cams = np.stack([camera_label(float(y), 0.0) for y in yaws])
    # repeat each identity's latent draw across its views: draw per identity, render per view
    emb = []
    for i in range(n):
        req = FakeRequest(cams, np.repeat(camera_label(0.0, 0.0)[None], v, axis=0), True)
        fakes = render_fakes(g, cond, req, seed + i, psi, max(batch_size, v), device, white_background=True,
                             same_identity=True)
        emb.append(embedder.embed(fakes["image"], fakes["mask"]))
    return id_consistency(np.stack(emb))
