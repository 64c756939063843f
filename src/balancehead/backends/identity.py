"""Offline identity embedder for front selection and the same-person check.

The paper ranks front candidates by ArcFace similarity to the source photo and asks a VLM whether a
synthesised view shows the same person (hairstyle, clothing, gender, skin tone). Without weights we
measure what those judgements rest on, from pixels only:

* colour distributions of body regions located from the mask geometry (`segment.head_box`):
  the whole head (skin + hair + accessories), its crown band (hair or hat), and the torso below the
  neck (clothing). Colours are soft-binned in CIELAB, where distances follow perceived colour
  difference, with coarse lightness bins (shading changes lightness with the view) and finer
  chroma bins (hair and skin colours differ mainly in chroma);
* a coarse layout: the silhouette's width profile relative to the head box (hair volume and length).

Each block is a square-rooted histogram (or profile) with unit norm, so the dot product of two
blocks is their Bhattacharyya coefficient; blocks are weighted and the whole vector renormalised,
so the cosine of two embeddings is a weighted mean of per-region similarities. Renders of one
subject from nearby views share all regions' colours; a different subject or an identity drift
(hair colour/style, glasses, skin tone, clothing) changes at least one region's distribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balancehead.backends.segment import head_box, offline_mask

L_CENTRES = np.array([8.0, 24.0, 40.0, 56.0, 72.0, 88.0])
A_CENTRES = np.arange(-20.0, 61.0, 8.0)
B_CENTRES = np.arange(-48.0, 65.0, 8.0)


@dataclass(frozen=True)
class IdentityConfig:
    l_sigma: float = 10.0  # soft-bin widths in Lab units
    ab_sigma: float = 5.0
    crown_fraction: float = 0.35  # top part of the head rows: hair or hat
    layout_rows: int = 16
    w_head: float = 1.0
    w_crown: float = 0.8
    w_torso: float = 0.8
    w_layout: float = 0.6


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) sRGB -> float (..., 3) CIELAB (D65)."""
    from skimage.color import rgb2lab

    flat = np.asarray(rgb, dtype=np.float64).reshape(-1, 1, 3) / 255.0
    return rgb2lab(flat).reshape(np.shape(rgb))


def _soft_weights(values: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    w = np.exp(-0.5 * ((values[:, None] - centres[None, :]) / sigma) ** 2)
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)


def lab_histogram(lab: np.ndarray, cfg: IdentityConfig) -> np.ndarray:
    """Square-rooted, unit-norm soft histogram of Lab pixels (N, 3); zeros when N == 0."""
    size = len(L_CENTRES) * len(A_CENTRES) * len(B_CENTRES)
    if len(lab) == 0:
        return np.zeros(size)
    wl = _soft_weights(lab[:, 0], L_CENTRES, cfg.l_sigma)
    wa = _soft_weights(lab[:, 1], A_CENTRES, cfg.ab_sigma)
    wb = _soft_weights(lab[:, 2], B_CENTRES, cfg.ab_sigma)
    # sum_n wl[n, l] wa[n, a] wb[n, b] as one matrix product (a plain 3-operand einsum is ~9x slower)
    hist = ((wl[:, :, None] * wa[:, None, :]).reshape(len(lab), -1).T @ wb).ravel()
    hist = np.sqrt(hist / hist.sum())
    return hist / max(np.linalg.norm(hist), 1e-12)


@dataclass
class Regions:
    """Boolean pixel masks of the body regions found from the silhouette."""

    head: np.ndarray
    crown: np.ndarray
    torso: np.ndarray
    top: int
    neck: int
    side: float
    cx: float


def find_regions(mask: np.ndarray, crown_fraction: float = 0.35) -> Regions:
    """Head (top..neck), crown band (upper `crown_fraction` of the head) and torso (below the neck)."""
    fg = np.asarray(mask) > 127
    box = head_box(mask, margin=0.0)
    rows = np.arange(fg.shape[0])[:, None]
    head = fg & (rows < box.neck)
    crown = head & (rows < box.top + crown_fraction * (box.neck - box.top))
    torso = fg & (rows >= box.neck + 1)
    return Regions(head=head, crown=crown, torso=torso, top=box.top, neck=box.neck,
                   side=max(box.side, 1.0), cx=box.cx)


def layout_profile(mask: np.ndarray, regions: Regions, n_rows: int) -> np.ndarray:
    """Silhouette width per row band from the head top to 1.3 head heights below it, relative to the
    head height: hair volume and length (a bob, long hair or an afro widen the lower bands)."""
    fg = np.asarray(mask) > 127
    head_h = max(regions.neck - regions.top, 1)
    edges = regions.top + np.linspace(0.0, 1.3, n_rows + 1) * head_h
    widths = fg.sum(axis=1).astype(np.float64) / head_h
    prof = np.zeros(n_rows)
    for i in range(n_rows):
        a, b = int(edges[i]), max(int(edges[i + 1]), int(edges[i]) + 1)
        band = widths[max(a, 0):min(b, fg.shape[0])]
        prof[i] = band.mean() if band.size else 0.0
    return prof


def make_identity_embedder(backend: str, arcface_params=None):
    """The identity backend of select_front (`select_front.backend`): this offline appearance embedder,
    or ArcFace (ONNX) with `select_front.arcface`. pack_dataset builds the identity condition tables of
    BalanceHead A.6.10 with the same one."""
    if backend == "offline":
        return OfflineIdentityEmbedder()
    from balancehead.backends.production.arcface import ArcFaceEmbedder

    return ArcFaceEmbedder(arcface_params)


class OfflineIdentityEmbedder:
    """Appearance embedding from image evidence only (no weights, deterministic)."""

    name = "offline-appearance-embedder"

    def __init__(self, cfg: IdentityConfig = IdentityConfig()):
        self.cfg = cfg

    @property
    def dim(self) -> int:
        return 3 * len(L_CENTRES) * len(A_CENTRES) * len(B_CENTRES) + self.cfg.layout_rows

    def embed_one(self, rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        cfg = self.cfg
        rgb = np.asarray(rgb)
        mask = offline_mask(rgb) if mask is None else np.asarray(mask)
        reg = find_regions(mask, cfg.crown_fraction)
        lab = rgb_to_lab(rgb)
        blocks = [
            (cfg.w_head, lab_histogram(lab[reg.head], cfg)),
            (cfg.w_crown, lab_histogram(lab[reg.crown], cfg)),
            (cfg.w_torso, lab_histogram(lab[reg.torso], cfg)),
        ]
        prof = np.sqrt(layout_profile(mask, reg, cfg.layout_rows))
        # Centre the layout on a typical silhouette so that its cosine reacts to shape, not scale.
        prof = prof - 0.5 * prof.mean()
        blocks.append((cfg.w_layout, prof / max(np.linalg.norm(prof), 1e-12)))
        vec = np.concatenate([w * b for w, b in blocks])
        return (vec / max(np.linalg.norm(vec), 1e-12)).astype(np.float32)

    def embed(self, rgbs, masks=None) -> np.ndarray:
        """float32 (N, D), unit rows. `masks` (same length) skips the built-in segmentation."""
        if isinstance(rgbs, np.ndarray) and rgbs.ndim == 3:
            rgbs = rgbs[None]
            masks = None if masks is None else np.asarray(masks)[None]
        n = len(rgbs)
        out = np.zeros((n, self.dim), dtype=np.float32)
        for i in range(n):
            out[i] = self.embed_one(rgbs[i], None if masks is None else masks[i])
        return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine similarity of two vectors (float) or of matching rows of two (N, D) arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = (a * b).sum(axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    sim = num / np.maximum(den, 1e-12)
    return float(sim) if np.ndim(sim) == 0 else sim


BLOCKS = ("head", "crown", "torso", "layout")


def block_similarities(a: np.ndarray, b: np.ndarray, cfg: IdentityConfig = IdentityConfig()) -> dict[str, float]:
    """Per-region cosine of two embeddings (head, crown, torso colours; layout). The judge uses the
    weakest region: one changed region (a new shirt) is diluted in the overall cosine, not here."""
    n = len(L_CENTRES) * len(A_CENTRES) * len(B_CENTRES)
    spans = {"head": (0, n), "crown": (n, 2 * n), "torso": (2 * n, 3 * n),
             "layout": (3 * n, 3 * n + cfg.layout_rows)}
    return {k: float(cosine(a[s:e], b[s:e])) for k, (s, e) in spans.items()}
