"""Offline white-background segmenter and head crop, checked against the renderer's exact mask."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead.backends.segment import OfflineSegmenter, crop_head, head_box, offline_mask
from balancehead.world.render import render
from balancehead.world.subject import sample_subject


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("size", [64, 128])
def test_mask_matches_renderer_mask(size):
    scores = []
    for seed in range(8):
        subject = sample_subject(seed)
        for yaw in (0.0, 70.0, 180.0, -120.0):
            r = render(subject, yaw, size=size)
            m = offline_mask(r.rgb)
            assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
            scores.append(iou(m, r.mask))
    assert min(scores) >= 0.9
    assert np.mean(scores) >= 0.97


def test_white_details_inside_the_person_stay_foreground():
    rgb = np.full((64, 64, 3), 255, np.uint8)
    rgb[10:50, 15:45] = (40, 60, 140)
    rgb[25:30, 25:35] = 248  # an enclosed near-white patch (eye white, shaded highlight)
    rgb[40:42, 20:22] = 255  # a tiny pure-white highlight
    rgb[2, 2] = (0, 0, 0)  # an isolated speck on the background
    m = offline_mask(rgb)
    assert (m[25:30, 25:35] == 255).all() and (m[40:42, 20:22] == 255).all()
    # ...but a large pure-white enclosed region is background seen through a gap.
    rgb2 = rgb.copy()
    rgb2[15:45, 20:40] = 255
    assert (offline_mask(rgb2)[20:40, 25:35] == 0).all()
    assert m[2, 2] == 0
    # The opening may round the rectangle's four corner pixels, nothing more.
    assert (m[11:49, 16:44] == 255).all() and abs(int(m.sum()) // 255 - 40 * 30) <= 4


def test_largest_component_only_and_empty_image():
    rgb = np.full((64, 64, 3), 255, np.uint8)
    rgb[5:40, 5:30] = (10, 10, 10)
    rgb[50:60, 45:60] = (200, 30, 30)  # a second, smaller object
    m = offline_mask(rgb)
    assert m[20, 20] == 255 and m[55, 50] == 0
    assert offline_mask(np.full((32, 32, 3), 255, np.uint8)).max() == 0


def test_head_box_finds_the_neck_not_the_shoulders():
    # A synthetic silhouette: round head (rows 10..50), neck (50..60), wide shoulders (60..64).
    mask = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    mask[((yy - 30) / 20.0) ** 2 + ((xx - 40) / 16.0) ** 2 <= 1] = 255
    mask[48:60, 35:45] = 255
    mask[60:64, 5:64] = 255
    b = head_box(mask, margin=0.0)
    assert b.top == 10
    assert 50 <= b.neck <= 59
    assert abs(b.cx - 40.5) <= 1.0  # centred on the head, not on the (off-centre) shoulders


def test_crop_centres_shifted_head_and_pads_white():
    subject = sample_subject(3)
    r = render(subject, 20.0, size=128)
    ref_box = head_box(r.mask)
    # Shift the person 30 px right and 20 px down on a larger white canvas.
    canvas = np.full((160, 160, 3), 255, np.uint8)
    mcanvas = np.zeros((160, 160), np.uint8)
    canvas[20:148, 30:158] = r.rgb
    mcanvas[20:148, 30:158] = r.mask
    rgb, mask, box = crop_head(canvas, mcanvas, out_size=96, margin=0.1)
    assert rgb.shape == (96, 96, 3) and mask.shape == (96, 96)
    assert abs((box[0] + box[2]) / 2 - (ref_box.cx + 30)) <= 1.0
    assert abs((box[1] + box[3]) / 2 - (ref_box.cy + 20)) <= 1.0
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 48) < 10  # head roughly centred in the crop
    # Away from the silhouette everything is white (padding + the white background).
    from scipy import ndimage
    near = ndimage.binary_dilation(mask > 0, iterations=3)
    assert (rgb[~near] >= 250).all()
    assert (rgb[:, :4] == 255).all()  # the crop extends past the canvas on the left: padded white
    again = crop_head(canvas, mcanvas, out_size=96, margin=0.1)
    assert np.array_equal(again[0], rgb) and again[2] == box


def test_crop_scale_is_stable_across_views():
    seg = OfflineSegmenter(out_size=64)
    for seed in (0, 4, 7):
        subject = sample_subject(seed)
        sides = []
        for yaw in (0.0, 45.0, 90.0, 150.0, 180.0, -90.0):
            r = render(subject, yaw, size=128)
            rgb, mask, box = seg.crop(r.rgb)
            assert rgb.shape == (64, 64, 3)
            sides.append(box[2] - box[0])
        assert (max(sides) - min(sides)) / np.mean(sides) < 0.2
