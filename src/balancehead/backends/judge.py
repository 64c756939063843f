"""The image-filtering agent's three decisions (BalanceHead, App. A.2, Figs. 8-10), offline.

The paper asks Qwen2.5-VL (1) whether a synthesised view is a 'Standard' or 'Non-standard' image,
(2) whether it shows severe artifacts, and (3) whether it depicts the same person as the front
view, with a stricter same-person prompt for standard images. `HeuristicJudge` makes the same three
decisions from image evidence only (pixels and the masks computed from them; never the
synthesiser's truth sidecar):

* classification: estimated |yaw| against the standard limit, and accessories that dominate the
  head (a hat brim widening the silhouette, a large dark structure across the eyes);
* artifacts: pasted duplicate patches (exactly repeated textured blocks), smeared bands (rows whose
  horizontal detail collapses relative to the rest of the head), implausible head proportions
  (stretched silhouettes) and off-palette colour blotches;
* same person: per-region colour similarity (head, crown, torso) and silhouette layout from the
  appearance embedder, with thresholds relaxed as the view turns away from the front, plus
  accessory agreement (hat added or removed).

It also holds the answer parsers the production VLM backend uses to read free-text replies, and the
attribute text that fills the matching prompt's {attrs1}/{attrs2}.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from balancehead.backends.identity import (IdentityConfig, OfflineIdentityEmbedder, block_similarities,
                                           find_regions, rgb_to_lab)
from balancehead.backends.segment import offline_mask


@dataclass(frozen=True)
class Verdict:
    label: str
    reason: str
    score: float  # the evidence the decision thresholded (meaning depends on the decision)


@dataclass(frozen=True)
class JudgeConfig:
    """Every threshold of the heuristic judge (the lead mirrors these in params.yaml)."""

    # Classification (Fig. 8): 'minimal head rotation (within +-15 deg)'.
    standard_max_yaw: float = 15.0
    hat_absent_ratio: float = 1.08  # below this a view surely has no brim (hysteresis for matching)
    hat_brim_ratio: float = 1.16  # upper-head row width / max(width k rows above, below)
    # Artifacts (Fig. 9).
    duplicate_patch: int = 8  # side of the blocks compared for exact repeats
    duplicate_min_std: float = 2.0  # ignore flat blocks (uniform skin or cloth repeats trivially)
    duplicate_min_shift: int = 6
    duplicate_min_count: int = 4  # repeated blocks needed for "pasted patch"
    smear_rows: float = 0.04  # longest band of rows with both edges washed towards white / head rows
    smear_lift: float = 30.0  # edge pixels this much lighter (0..255) than pixels `smear_inset` inside
    smear_inset: int = 6
    aspect_min: float = 0.6  # head width / head height outside [min, max] -> distorted proportions
    aspect_max: float = 1.3
    blotch_fraction: float = 0.04  # share of head pixels far from the head's own palette
    blotch_delta_e: float = 28.0
    # Matching (Fig. 10): region similarity floors at the front, and at 180 deg from it.
    match_standard_front: float = 0.90
    match_standard_back: float = 0.70
    match_nonstandard_front: float = 0.85
    match_nonstandard_back: float = 0.62
    torso_weight: float = 1.0  # the torso floor is scaled by this (clothing is seen from every side)
    layout_slack: float = 0.15  # the silhouette changes more with yaw errors than colours do


# ----------------------------------------------------------------------------------------------
# Evidence helpers
# ----------------------------------------------------------------------------------------------

def _row_extent(fg: np.ndarray) -> np.ndarray:
    any_row = fg.any(axis=1)
    left = np.argmax(fg, axis=1)
    right = fg.shape[1] - 1 - np.argmax(fg[:, ::-1], axis=1)
    return np.where(any_row, right - left + 1, 0)


def hat_brim_ratio(mask: np.ndarray) -> float:
    """How far the most protruding upper-head row sticks out beyond the rows a little above and
    below it. A brim is a thin horizontal spike in the width profile (ratio ~1.4+); hair, even an
    afro, widens smoothly (ratio ~1)."""
    fg = np.asarray(mask) > 127
    reg = find_regions(mask)
    width = _row_extent(fg).astype(np.float64)
    head_h = reg.neck - reg.top
    if head_h < 8:
        return 0.0
    k = max(2, int(round(0.06 * head_h)))
    best = 0.0
    for r in range(reg.top, reg.top + int(0.6 * head_h)):
        above = width[r - k] if r - k >= 0 else 0.0
        below = width[r + k]
        best = max(best, width[r] / max(above, below, 1.0))
    return float(best)


def _box_sums(a: np.ndarray, p: int) -> np.ndarray:
    """Sums over every p x p window of a 2-D array (shape (h-p+1, w-p+1)), from an integral image."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=a.dtype)
    c[1:, 1:] = a.cumsum(axis=0).cumsum(axis=1)
    return c[p:, p:] - c[:-p, p:] - c[p:, :-p] + c[:-p, :-p]


def duplicate_blocks(rgb: np.ndarray, mask: np.ndarray, cfg: JudgeConfig) -> int:
    """Number of textured pixel blocks that occur twice, exactly, at least `duplicate_min_shift`
    apart: a copy-paste inside the head (duplicated eyes or mouth) and nothing a renderer or a
    camera produces by chance."""
    p = cfg.duplicate_patch
    grey = rgb.astype(np.int32) @ np.array([1, 256, 65536], dtype=np.int64)  # packed RGB
    h, w = grey.shape
    if h < p or w < p:
        return 0
    win = np.lib.stride_tricks.sliding_window_view(grey, (p, p))  # (h-p+1, w-p+1, p, p)
    inside = 2 * _box_sums((np.asarray(mask) > 127).astype(np.int64), p) >= p * p
    lum = rgb.mean(axis=2)
    mean = _box_sums(lum, p) / (p * p)
    std = np.sqrt(np.maximum(_box_sums(lum * lum, p) / (p * p) - mean * mean, 0.0))
    ys, xs = np.nonzero(inside & (std >= cfg.duplicate_min_std))
    if ys.size == 0:
        return 0
    # Each candidate block against the first block (in row-major scan order) with the same pixels.
    # Grouped by a 64-bit hash of the block (wrapping integer arithmetic), then checked pixel by pixel:
    # a hash collision (never seen) falls back to exact byte keys.
    blocks = win[ys, xs].reshape(ys.size, -1).astype(np.int64)
    weights = np.random.default_rng(0).integers(1, 2**62, size=blocks.shape[1], dtype=np.int64) | 1
    with np.errstate(over="ignore"):
        hashes = blocks @ weights
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    first = first[inverse.ravel()]
    if not np.array_equal(blocks[first], blocks):
        seen: dict[bytes, int] = {}
        first = np.array([seen.setdefault(row.tobytes(), k) for k, row in enumerate(blocks)])
    shift = np.maximum(np.abs(ys[first] - ys), np.abs(xs[first] - xs))
    return int(((first != np.arange(ys.size)) & (shift >= cfg.duplicate_min_shift)).sum())


def smear_score(rgb: np.ndarray, mask: np.ndarray, cfg: JudgeConfig) -> float:
    """Longest band of head rows (as a share of them) whose outline is washed towards white on both sides.

    A rendered (or photographed) head keeps its colour up to the outline, usually darkening at
    grazing angles. A sideways smear mixes the white background into the outline pixels of the
    smeared rows, so both edges become much lighter than the pixels a few columns inside.
    """
    lum = rgb.astype(np.float64).mean(axis=2)
    fg = np.asarray(mask) > 127
    reg = find_regions(mask)
    inset = cfg.smear_inset
    rows = [r for r in range(reg.top, reg.neck) if fg[r].sum() > 3 * inset]
    if not rows:
        return 0.0
    # Longest run of consecutive lifted rows: a smear is one contiguous band, whereas hair-strand
    # highlights lift isolated rows here and there.
    run = longest = 0
    for r in rows:
        cols = np.flatnonzero(fg[r])
        left, right = cols[0], cols[-1]
        edge_l, edge_r = lum[r, left:left + 2].mean(), lum[r, right - 1:right + 1].mean()
        in_l = lum[r, left + inset:left + inset + 3].mean()
        in_r = lum[r, right - inset - 2:right - inset + 1].mean()
        # A smear leaves a ramp (edge > middle > inside on both sides); an ear or a strand
        # highlight is a step, flat between the edge and the middle.
        mid_l, mid_r = lum[r, left + inset // 2], lum[r, right - inset // 2]
        ramp = min(edge_l - mid_l, mid_l - in_l, edge_r - mid_r, mid_r - in_r) > cfg.smear_lift / 5
        lifted = ramp and (edge_l - in_l > cfg.smear_lift) and (edge_r - in_r > cfg.smear_lift)
        run = run + 1 if lifted else 0
        longest = max(longest, run)
    return float(longest / len(rows))


def head_aspect(mask: np.ndarray) -> float:
    """Median head-row width over head height (top to neck): a stretched head reads as narrow."""
    fg = np.asarray(mask) > 127
    reg = find_regions(mask)
    width = _row_extent(fg)[reg.top:reg.neck]
    height = max(reg.neck - reg.top, 1)
    return float(np.percentile(width, 75) / height) if width.size else 1.0


def blotch_fraction(rgb: np.ndarray, mask: np.ndarray, cfg: JudgeConfig) -> float:
    """Share of head pixels far (Delta E) from every colour the head otherwise shows, where the
    palette is the set of well-populated Lab cells: blotches are smooth off-palette gradients."""
    reg = find_regions(mask)
    lab = rgb_to_lab(rgb)[reg.head]
    if len(lab) < 50:
        return 0.0
    cells = np.floor(lab / 12.0).astype(np.int64)
    keys, inverse, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    populated = counts[inverse.ravel()] >= max(8, 0.004 * len(lab))
    palette = lab[populated]
    if len(palette) == 0:
        return 1.0
    sample = palette[:: max(1, len(palette) // 400)]
    rare = lab[~populated]
    if len(rare) == 0:
        return 0.0
    d = np.sqrt(((rare[:, None, :] - sample[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    return float((d > cfg.blotch_delta_e).sum() / len(lab))


# ----------------------------------------------------------------------------------------------
# Attributes for the matching prompt
# ----------------------------------------------------------------------------------------------

_NAMED_COLOURS = {
    "black": (20, 20, 20), "dark brown": (62, 40, 28), "brown": (110, 72, 42), "auburn": (140, 58, 30),
    "blonde": (214, 180, 112), "red": (178, 40, 38), "grey": (140, 140, 140), "white": (235, 235, 230),
    "blue": (40, 70, 160), "pink": (222, 120, 168), "green": (40, 120, 60), "yellow": (240, 200, 60),
    "purple": (120, 60, 140), "orange": (230, 120, 40), "teal": (60, 170, 180), "tan": (200, 160, 120),
}
_SKIN_WORDS = ((70.0, "very light"), (60.0, "light"), (48.0, "medium"), (38.0, "olive/tan"), (28.0, "brown"))


def colour_name(rgb_mean) -> str:
    """Nearest named colour in Lab."""
    names = list(_NAMED_COLOURS)
    ref = rgb_to_lab(np.array([_NAMED_COLOURS[n] for n in names], dtype=np.uint8))
    lab = rgb_to_lab(np.clip(np.asarray(rgb_mean, dtype=np.float64).reshape(1, 3), 0, 255).astype(np.uint8))
    return names[int(np.argmin(((ref - lab) ** 2).sum(axis=1)))]


def skin_word(lightness: float) -> str:
    for floor, word in _SKIN_WORDS:
        if lightness >= floor:
            return word
    return "dark"


def estimate_attributes(rgb: np.ndarray, mask: np.ndarray, cfg: JudgeConfig = JudgeConfig()) -> dict:
    """Heuristic attribute read-out from pixels: crown colour (hair or hat), hair length (silhouette
    below the chin line), hat (brim), neck skin lightness, clothing colour."""
    fg = np.asarray(mask) > 127
    reg = find_regions(mask)
    head_h = max(reg.neck - reg.top, 1)
    median_rgb = lambda sel: np.median(rgb[sel], axis=0) if sel.any() else np.array([255, 255, 255])  # noqa: E731
    # Skin: the neck, the few rows just above the neck row, inside the central column.
    rows = np.arange(fg.shape[0])[:, None]
    cols = np.arange(fg.shape[1])[None, :]
    neck_band = fg & (rows >= reg.neck - max(2, head_h // 12)) & (rows < reg.neck) & (np.abs(cols - reg.cx) <= max(2, head_h // 14))
    skin_l = float(rgb_to_lab(median_rgb(neck_band).astype(np.uint8).reshape(1, 3))[0, 0])
    width = _row_extent(fg)
    low_rows = np.arange(reg.top + int(0.75 * head_h), reg.neck)
    hair_low = float(width[low_rows].mean() / head_h) if low_rows.size else 0.0
    brim = hat_brim_ratio(mask)
    return {
        "hair_colour": colour_name(median_rgb(reg.crown)),
        "hair_length": "long" if hair_low > 0.75 else "short",
        "hat": bool(brim >= cfg.hat_brim_ratio),
        "skin_tone": skin_word(skin_l),
        "clothing_colour": colour_name(median_rgb(reg.torso)),
    }


def format_attributes(attrs: dict) -> str:
    """Short text for the matching prompt's {attrs1}/{attrs2}, e.g.
    'hair: brown, short; glasses: no; hat: no; skin tone: light; clothing: blue'."""
    parts = []
    if "hair_colour" in attrs or "hair_length" in attrs:
        hair = ", ".join(str(attrs[k]) for k in ("hair_colour", "hair_length") if attrs.get(k) is not None)
        parts.append(f"hair: {hair}")
    for key, label in (("glasses", "glasses"), ("hat", "hat")):
        if key in attrs and attrs[key] is not None:
            parts.append(f"{label}: {'yes' if attrs[key] else 'no'}")
    if attrs.get("skin_tone") is not None:
        parts.append(f"skin tone: {attrs['skin_tone']}")
    if attrs.get("clothing_colour") is not None:
        parts.append(f"clothing: {attrs['clothing_colour']}")
    return "; ".join(parts) if parts else "unknown"


# ----------------------------------------------------------------------------------------------
# Answer parsers for the production VLM backend
# ----------------------------------------------------------------------------------------------

def _normalise_answer(text: str | None) -> str:
    if not text:
        return ""
    t = text.strip().lower()
    t = re.sub(r"[*_`#>\"'“”‘’\[\]()]", " ", t)  # markdown emphasis, quotes, brackets
    t = t.replace("-", " ").replace("\u2011", " ")
    t = re.sub(r"^\s*(answer|response|output|classification|result)\s*[:：]\s*", "", t)
    return re.sub(r"\s+", " ", t).strip()


def parse_classification(text: str | None) -> str | None:
    """'Standard Image. ...' -> 'standard'; '**Non-standard image**' -> 'non-standard'; else None.
    The first verdict in the reply counts (the explanation that follows may mention the other)."""
    t = _normalise_answer(text)
    m = re.search(r"\b(non ?standard|not (?:a )?standard|standard)\b", t)
    if not m:
        return None
    return "standard" if m.group(1) == "standard" else "non-standard"


def parse_artifact(text: str | None) -> str | None:
    """'severe artifacts' / 'Severe artifacts detected' -> 'severe artifacts'; 'normal' -> 'normal'."""
    t = _normalise_answer(text)
    m = re.search(r"\b(no severe artifacts?|severe artifacts?|severe artefacts?|normal)\b", t)
    if not m:
        return None
    return "normal" if m.group(1).startswith(("normal", "no ")) else "severe artifacts"


def parse_match(text: str | None) -> str | None:
    """'YES ...' / 'yes, same person' -> 'YES'; 'No.' -> 'NO'; the leading word decides."""
    t = _normalise_answer(text)
    m = re.match(r"^(yes|no)\b", t)
    if m:
        return m.group(1).upper()
    m = re.search(r"\b(yes|no)\b", t)
    return m.group(1).upper() if m else None


# ----------------------------------------------------------------------------------------------
# The judge
# ----------------------------------------------------------------------------------------------

class HeuristicJudge:
    """Offline stand-in for the Qwen2.5-VL filtering agent: same decisions, pixel evidence."""

    name = "offline-heuristic-judge"

    def __init__(self, cfg: JudgeConfig = JudgeConfig(), identity_cfg: IdentityConfig = IdentityConfig()):
        self.cfg = cfg
        self.embedder = OfflineIdentityEmbedder(identity_cfg)
        self._fronts: dict[bytes, np.ndarray] = {}

    def _front_embedding(self, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The front view is compared with each of its subject's views: embed it once (keyed by content)."""
        key = hashlib.blake2b(np.ascontiguousarray(rgb).tobytes() + np.ascontiguousarray(mask).tobytes(),
                              digest_size=16).digest()
        if key not in self._fronts:
            if len(self._fronts) >= 64:
                self._fronts.clear()
            self._fronts[key] = self.embedder.embed_one(rgb, mask)
        return self._fronts[key]

    @staticmethod
    def _mask(rgb, mask):
        return offline_mask(rgb) if mask is None else np.asarray(mask)

    def classify(self, rgb: np.ndarray, mask: np.ndarray | None, est_yaw: float) -> Verdict:
        cfg = self.cfg
        mask = self._mask(rgb, mask)
        yaw = abs(float(est_yaw))
        if yaw > cfg.standard_max_yaw:
            return Verdict("non-standard", f"Head rotated by about {yaw:.0f} degrees, beyond the "
                           f"{cfg.standard_max_yaw:.0f}-degree limit of a standard image.", yaw)
        brim = hat_brim_ratio(mask)
        if brim >= cfg.hat_brim_ratio:
            return Verdict("non-standard", "A hat dominates the head outline.", brim)
        return Verdict("standard", f"Near-frontal head (about {yaw:.0f} degrees) without dominating accessories.", yaw)

    def artifacts(self, rgb: np.ndarray, mask: np.ndarray | None) -> Verdict:
        cfg = self.cfg
        rgb = np.asarray(rgb)
        mask = self._mask(rgb, mask)
        if (mask > 127).mean() < 0.02:
            return Verdict("severe artifacts", "No head is visible.", 0.0)
        dup = duplicate_blocks(rgb, mask, cfg)
        if dup >= cfg.duplicate_min_count:
            return Verdict("severe artifacts", f"A region of the head is repeated elsewhere ({dup} duplicated blocks).", float(dup))
        aspect = head_aspect(mask)
        if not cfg.aspect_min <= aspect <= cfg.aspect_max:
            return Verdict("severe artifacts", f"Head proportions are distorted (width/height {aspect:.2f}).", aspect)
        smear = smear_score(rgb, mask, cfg)
        if smear > cfg.smear_rows:
            return Verdict("severe artifacts", f"A band of the head is smeared into the background ({100 * smear:.0f}% of rows).", smear)
        blotch = blotch_fraction(rgb, mask, cfg)
        if blotch > cfg.blotch_fraction:
            return Verdict("severe artifacts", f"Unnatural colour blotches cover {100 * blotch:.0f}% of the head.", blotch)
        return Verdict("normal", "No severe artifacts found.", smear)

    def match(self, front_rgb: np.ndarray, front_mask: np.ndarray | None, view_rgb: np.ndarray,
              view_mask: np.ndarray | None, standard: bool, est_yaw: float) -> Verdict:
        cfg = self.cfg
        front_mask = self._mask(front_rgb, front_mask)
        view_mask = self._mask(view_rgb, view_mask)
        a = self._front_embedding(front_rgb, front_mask)
        b = self.embedder.embed_one(view_rgb, view_mask)
        sims = block_similarities(a, b, self.embedder.cfg)
        turn = min(abs(float(est_yaw)), 180.0) / 180.0
        if standard:
            floor = cfg.match_standard_front + (cfg.match_standard_back - cfg.match_standard_front) * turn
        else:
            floor = cfg.match_nonstandard_front + (cfg.match_nonstandard_back - cfg.match_nonstandard_front) * turn
        floors = {"head": floor, "crown": floor, "torso": min(0.999, floor * cfg.torso_weight),
                  "layout": floor - cfg.layout_slack}
        margins = {k: sims[k] - floors[k] for k in floors}
        worst = min(margins, key=margins.get)
        # A hat counts as added/removed only when one image clearly has a brim and the other clearly
        # has none (pitch turns a brim into a thicker ellipse, so borderline ratios are not evidence).
        brim_a, brim_b = hat_brim_ratio(front_mask), hat_brim_ratio(view_mask)
        if (brim_a >= cfg.hat_brim_ratio and brim_b < cfg.hat_absent_ratio) or (
                brim_b >= cfg.hat_brim_ratio and brim_a < cfg.hat_absent_ratio):
            removed = brim_a > brim_b
            return Verdict("NO", f"A hat is {'removed' if removed else 'added'} compared with the front view.", margins[worst])
        what = {"head": "skin and hair colours", "crown": "hair colour", "torso": "clothing colour",
                "layout": "hairstyle outline"}
        if margins[worst] < 0:
            return Verdict("NO", f"The {what[worst]} differ from the front view (similarity {sims[worst]:.2f} < {floors[worst]:.2f}).",
                           margins[worst])
        return Verdict("YES", "Hair, skin and clothing are consistent with the front view.", margins[worst])

    def attributes(self, rgb: np.ndarray, mask: np.ndarray | None = None) -> dict:
        return estimate_attributes(np.asarray(rgb), self._mask(rgb, mask), self.cfg)
