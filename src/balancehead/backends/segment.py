"""Offline person mask and head-centred crop for synthesised images on a pure white background.

The paper removes the background with the image generator (prompt: "pure white background") and then
runs a learned matting model (DAViD) and a head detector (VGGHeads). Offline we exploit the white
background directly:

* background = near-white pixels *connected to the image border* (flood fill), so white details
  inside the person (eye whites, specular highlights, a white shirt's interior) stay foreground;
* a morphological opening removes speckle, a closing seals one-pixel gaps on the silhouette;
* only the largest connected component is kept (a synthesised image shows one person) and its
  holes are filled.

`crop_head` centres a square on the head, found from the mask alone: the head is the part of the
silhouette above the narrowest row of its lower half (the neck), so shoulders and clothing do not
pull the crop down. The square's side follows the head height (top of the head to the neck), which,
unlike its width, barely changes with yaw (ponytails and hat brims widen side views), so all views
of one subject get nearly the same scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SegmentConfig:
    """Thresholds of the white-background segmenter (8-bit units)."""

    white_tolerance: int = 10  # a pixel is "white" when every channel >= 255 - tolerance
    # Enclosed white regions are foreground (eye whites, highlights) unless they are large and pure
    # white: then they are background seen through a gap (between a braid and the neck, under an arm).
    gap_min_fraction: float = 0.0015  # area of the image
    gap_tolerance: int = 3  # "pure white": mean of the darkest channel >= 255 - gap_tolerance
    open_radius: int = 1  # speckle removal
    close_radius: int = 1  # seal hairline gaps in the silhouette
    min_foreground_fraction: float = 0.002  # below this the image is treated as empty


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def _background_gaps(rgb, labels, n, background, cfg: SegmentConfig) -> np.ndarray:
    """Enclosed white components that are large and pure white: background seen through a gap."""
    if n == 0:
        return np.zeros(labels.shape, dtype=bool)
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones(labels.shape), labels, index)
    darkest = ndimage.mean(rgb.min(axis=2).astype(np.float64), labels, index)
    enclosed = ~np.isin(index, np.unique(labels[background]))
    keep = enclosed & (area >= cfg.gap_min_fraction * labels.size) & (darkest >= 255 - cfg.gap_tolerance)
    return np.isin(labels, index[keep])


def offline_mask(rgb: np.ndarray, cfg: SegmentConfig = SegmentConfig()) -> np.ndarray:
    """Person mask (uint8 HxW, 0 or 255) of an RGB uint8 image whose background is near-white."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    white = (rgb >= 255 - cfg.white_tolerance).all(axis=2)
    # Background: white regions that touch the border (a white region enclosed by the person is part of it).
    labels, n = ndimage.label(white)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border > 0])
    gaps = _background_gaps(rgb, labels, n, background, cfg)
    fg = ~background
    if cfg.open_radius > 0:
        fg = ndimage.binary_opening(fg, structure=_disk(cfg.open_radius))
    if cfg.close_radius > 0:
        # Pad so that closing does not erode the silhouette where it touches the image border.
        pad = cfg.close_radius + 1
        fg = ndimage.binary_closing(np.pad(fg, pad, mode="edge"), structure=_disk(cfg.close_radius))[pad:-pad, pad:-pad]
    labels, n = ndimage.label(fg)
    if n == 0 or fg.mean() < cfg.min_foreground_fraction:
        return np.zeros(fg.shape, dtype=np.uint8)
    sizes = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    largest = ndimage.binary_fill_holes(largest) & ~gaps
    return np.where(largest, 255, 0).astype(np.uint8)


@dataclass(frozen=True)
class HeadBox:
    """Square head box in pixel coordinates of the source image (may extend beyond it)."""

    cx: float
    cy: float
    side: float
    top: int  # first head row
    neck: int  # row where the head ends

    def as_list(self) -> list[float]:
        """[x0, y0, x1, y1] of the square."""
        h = self.side / 2
        return [self.cx - h, self.cy - h, self.cx + h, self.cy + h]


def _central_runs(fg: np.ndarray, cx: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the [left, right] columns of the foreground run that contains column `cx`
    (left = 0, right = -1 where that pixel is background). Braids or hands beside the neck form
    separate runs, so the neck stays the narrowest run."""
    h, w = fg.shape
    left = np.zeros(h, dtype=np.int64)
    right = np.full(h, -1, dtype=np.int64)
    for r in np.flatnonzero(fg[:, cx]):
        row = fg[r]
        gaps_left = np.flatnonzero(~row[:cx])
        gaps_right = np.flatnonzero(~row[cx:])
        left[r] = gaps_left[-1] + 1 if gaps_left.size else 0
        right[r] = cx + gaps_right[0] - 1 if gaps_right.size else w - 1
    return left, right


def head_box(mask: np.ndarray, margin: float = 0.1, neck_search: tuple[float, float] = (0.45, 0.95)) -> HeadBox:
    """Locate the head in a person mask.

    The silhouette's central column is the median midpoint of its upper rows. Along it, the rows
    between `neck_search` fractions of the silhouette height are scanned for the narrowest central
    run: the neck; the head spans top..neck. The horizontal centre is the median of the head rows'
    run midpoints (robust to a ponytail or a brim on a few rows). The square side is the head
    height times (1 + 2 * margin), or 0.8 x the head width if that is larger (very wide hair).
    """
    fg = np.asarray(mask) > 127
    h, w = fg.shape
    rows = np.flatnonzero(fg.any(axis=1))
    if rows.size == 0:
        return HeadBox(cx=w / 2, cy=h / 2, side=float(max(h, w)), top=0, neck=h)
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    height = bottom - top
    # Central column from the upper part of the silhouette (row extents there are the head's).
    upper = np.arange(top, top + max(1, int(0.4 * height)))
    upper = upper[fg[upper].any(axis=1)]
    ext_left = np.argmax(fg[upper], axis=1)
    ext_right = w - 1 - np.argmax(fg[upper, ::-1], axis=1)
    cx0 = int(np.clip(np.median((ext_left + ext_right) / 2.0), 0, w - 1))
    left, right = _central_runs(fg, cx0)
    width = right - left + 1  # 0 where the central column is background
    lo = top + int(round(neck_search[0] * height))
    hi = max(lo + 1, top + int(round(neck_search[1] * height)))
    search = np.arange(lo, min(hi, bottom))
    search = search[width[search] > 0]
    if search.size:
        # Narrowest run. A neck is a near-constant-width column over many rows, so take the middle
        # of all rows within one pixel of the minimum: stabler across views than the first minimum.
        wmin = width[search].min()
        neck = int(np.median(search[width[search] <= wmin + 1]))
    else:
        neck = bottom
    head_rows = np.arange(top, max(neck, top + 1))
    head_rows = head_rows[width[head_rows] > 0]
    if head_rows.size:
        cx = float(np.median((left[head_rows] + right[head_rows]) / 2.0)) + 0.5
        head_w = float(np.percentile(width[head_rows], 90))
    else:
        cx, head_w = cx0 + 0.5, 0.0
    head_h = neck - top
    side = max(head_h, 0.8 * head_w) * (1.0 + 2.0 * margin)
    return HeadBox(cx=cx, cy=top + head_h / 2.0, side=max(float(side), 1.0), top=top, neck=neck)


def crop_head(rgb: np.ndarray, mask: np.ndarray, out_size: int = 128, margin: float = 0.1,
              box: HeadBox | None = None) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Head-centred square crop resized to `out_size`, padded with white (mask padded with 0).

    Returns (rgb uint8 out x out x 3, mask uint8 out x out, box [x0, y0, x1, y1] in source pixels).
    Deterministic: the box is computed from the mask only, and the resampling is PIL's bicubic for
    the image and a bilinear-then-threshold for the mask.
    """
    from PIL import Image

    rgb = np.asarray(rgb)
    mask = np.asarray(mask)
    b = box if box is not None else head_box(mask, margin=margin)
    x0, y0, x1, y1 = b.as_list()
    # Integer crop window (rounded outward), then pad where it leaves the image.
    ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
    side = max(1, int(np.ceil(x1 - x0)))
    h, w = mask.shape
    canvas = np.full((side, side, 3), 255, dtype=np.uint8)
    mcanvas = np.zeros((side, side), dtype=np.uint8)
    sx0, sy0 = max(ix0, 0), max(iy0, 0)
    sx1, sy1 = min(ix0 + side, w), min(iy0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = rgb[sy0:sy1, sx0:sx1]
        mcanvas[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = mask[sy0:sy1, sx0:sx1]
    if side != out_size:
        canvas = np.asarray(Image.fromarray(canvas).resize((out_size, out_size), Image.BICUBIC))
        m = np.asarray(Image.fromarray(mcanvas).resize((out_size, out_size), Image.BILINEAR))
        mcanvas = np.where(m >= 128, 255, 0).astype(np.uint8)
    return canvas, mcanvas, [float(ix0), float(iy0), float(ix0 + side), float(iy0 + side)]


class OfflineSegmenter:
    """Mask + head crop backend for white-background synthesised images (no weights)."""

    name = "offline-whitebg-threshold"

    def __init__(self, cfg: SegmentConfig = SegmentConfig(), margin: float = 0.1, out_size: int = 128):
        self.cfg = cfg
        self.margin = margin
        self.out_size = out_size

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        return offline_mask(rgb, self.cfg)

    def crop(self, rgb: np.ndarray, mask: np.ndarray | None = None):
        """(rgb, mask, box) of the head-centred crop; the mask is computed when not given."""
        m = self.mask(rgb) if mask is None else mask
        return crop_head(rgb, m, out_size=self.out_size, margin=self.margin)
