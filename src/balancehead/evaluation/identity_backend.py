"""The identity embedder behind MKNND, multi-view ID consistency and the inversion `id_sim`, chosen by
`evaluate.identity_backend` / `invert.identity_backend`:

  offline  the appearance embedder (`backends.identity`, pixels only; the labelled default, not a
           face-recognition model, so its numbers are not comparable to published ones)
  arcface  the ArcFace ONNX recogniser the data engine's select_front uses (`backends.production.arcface`):
           BalanceHead A.6.11 computes MKNND in ArcFace space, PanoHead §4.3 ID consistency with a face
           recogniser (AdaFace there). Our renders come without landmarks, so the recogniser sees the
           mask-based fallback crop (`arcface.fallback_crop`), not a landmark-aligned one; PanoHead scores
           only images with detected landmarks, we score every view (side views are thus harder).
Both embed through `embed(rgbs, masks) -> (N, D)` unit rows.
"""
from __future__ import annotations


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
