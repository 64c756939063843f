"""Behaviour of the procedural head world: subjects, renderer, wild sources and the offline synthesiser."""
import json

import numpy as np
import pytest

from balancehead.camera import camera_label
from balancehead.world import (HAIR_COLOURS, HAIR_STYLES, SKIN_TONES, ProceduralSynthesizer, Subject,
                               SynthRates, make_wild_source, perturb_identity, render, sample_subject)
from balancehead.world.synth import ARTIFACT_KINDS, apply_artifact


def test_subject_deterministic_and_json_roundtrip():
    a, b = sample_subject(17), sample_subject(17)
    assert a == b
    assert sample_subject(18) != a
    d = json.loads(json.dumps(a.to_dict()))
    assert Subject.from_dict(d) == a


def test_subject_diversity():
    subs = [sample_subject(s) for s in range(200)]
    assert len({s.hair_style for s in subs}) >= 6
    assert len({s.hair_colour for s in subs}) >= 6
    assert len({s.skin_tone for s in subs}) >= 5
    assert any(s.glasses for s in subs) and any(s.hat for s in subs) and any(s.earrings for s in subs)
    assert len({s.clothing_colour for s in subs}) >= 6
    assert set(HAIR_STYLES) >= {"bald", "short", "bob", "long", "ponytail", "afro", "braids"}
    assert len(HAIR_COLOURS) >= 6 and len(SKIN_TONES) >= 5


def test_perturb_identity_changes_visible_attributes():
    s = sample_subject(3)
    for i in range(20):
        p = perturb_identity(s, np.random.default_rng(i))
        assert p.subject_id == s.subject_id
        changed = {k for k in ("hair_colour", "hair_style", "glasses", "skin_tone", "clothing_colour")
                   if getattr(p, k) != getattr(s, k)}
        assert len(changed) >= 2
        assert not np.array_equal(render(s, 0, size=48).rgb, render(p, 0, size=48).rgb)


def test_render_outputs_and_camera_label():
    s = sample_subject(5)
    r = render(s, 30.0, 10.0, size=64)
    assert r.rgb.shape == (64, 64, 3) and r.rgb.dtype == np.uint8
    assert r.mask.shape == (64, 64) and set(np.unique(r.mask)) <= {0, 255}
    np.testing.assert_array_equal(r.camera, camera_label(30.0, 10.0))
    assert r.depth.dtype == np.float32
    assert np.array_equal(r.mask == 255, np.isfinite(r.depth))
    fg = r.depth[np.isfinite(r.depth)]
    # The head sits at the pivot (0, 0, 0.2); the camera is 2.7 from the origin: depths are in a shell around 2.5.
    assert 2.0 < fg.min() and fg.max() < 3.4
    assert (r.rgb[r.mask == 0] == 255).all()
    # Head fills a sensible part of the frame, but not all of it.
    assert 0.25 < (r.mask > 0).mean() < 0.8


def test_render_deterministic():
    s = sample_subject(9)
    a, b = render(s, -70, 5, size=48), render(s, -70, 5, size=48)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)


def test_front_and_back_differ_and_sides_mirror():
    diffs_fb, diffs_mirror, diffs_side = [], [], []
    for seed in range(8):
        s = sample_subject(seed)
        f, b = render(s, 0, size=64).rgb.astype(float), render(s, 180, size=64).rgb.astype(float)
        left, right = render(s, 90, size=64).rgb.astype(float), render(s, -90, size=64).rgb.astype(float)
        diffs_fb.append(np.abs(f - b).mean())
        diffs_mirror.append(np.abs(left - right[:, ::-1]).mean())
        diffs_side.append(np.abs(left - right).mean())
    # The procedural subjects are left/right symmetric and lit from the camera: +90 is the mirror of -90.
    assert np.mean(diffs_mirror) < 3.0
    assert np.mean(diffs_side) > 4 * np.mean(diffs_mirror)
    assert np.mean(diffs_fb) > 10.0


def test_face_only_on_front():
    # A bald subject without accessories: the front shows eyes (dark pupils), the back shows none.
    s = Subject(subject_id="t", seed=0, hair_style="bald", skin_tone="porcelain", iris_colour="blue")
    front, back = render(s, 0, size=96), render(s, 180, size=96)
    dark = lambda r: ((r.rgb.max(axis=-1) < 40) & (r.mask > 0)).sum()  # noqa: E731
    assert dark(front) > 4 and dark(back) == 0


def test_wild_sources_near_front_and_severity_mix():
    truths = [make_wild_source(sample_subject(i), seed=i, size=48)[1] for i in range(60)]
    assert all(abs(t["yaw"]) <= 30.0 for t in truths)
    assert all(abs(t["pitch"]) <= 12.5 for t in truths)
    classes = [t["severity_class"] for t in truths]
    assert 0.4 < classes.count("mild") / len(classes) < 0.8
    assert classes.count("severe") >= 2
    json.dumps(truths)
    img, t = make_wild_source(sample_subject(1), seed=4, size=48)
    img2, t2 = make_wild_source(sample_subject(1), seed=4, size=48)
    assert img.shape == (48, 48, 3) and np.array_equal(img, img2) and t == t2
    # Cluttered background: corners are not plain white.
    assert img[:4, :4].std() > 0 or img[0, 0].mean() < 250


def test_synth_white_background_and_determinism():
    syn = ProceduralSynthesizer(SynthRates(), size=48)
    s = sample_subject(2)
    a, b = syn.view(s, 60.0, seed=3), syn.view(s, 60.0, seed=3)
    assert np.array_equal(a.rgb, b.rgb) and a.truth == b.truth
    json.dumps(a.truth)
    assert a.truth["requested_yaw"] == 60.0 and a.truth["subject_id"] == s.subject_id
    corners = np.concatenate([a.rgb[:3, :3], a.rgb[:3, -3:]]).reshape(-1, 3)
    assert (corners == 255).all()
    assert syn.front(s, 3).truth["requested_yaw"] == 0.0


def test_synth_failure_rates_match_config():
    rates = SynthRates(yaw_error_std_deg=12.0, gross_yaw_error_rate=0.1, wrong_view_rate=0.05,
                       artifact_rate=0.08, identity_drift_rate=0.08, pitch_std_deg=3.0)
    syn = ProceduralSynthesizer(rates, size=24)
    truths = [syn.view(sample_subject(i % 40), float(t), seed=i).truth
              for i, t in enumerate(np.linspace(-180, 180, 600, endpoint=False))]
    n = len(truths)
    for key, rate in (("wrong_view", 0.05), ("gross_yaw_error", 0.1), ("artifact", 0.08), ("identity_drift", 0.08)):
        observed = sum(t[key] for t in truths) / n
        assert abs(observed - rate) < 3.5 * np.sqrt(rate * (1 - rate) / n) + 0.005, (key, observed)
    ordinary = [t["yaw_error"] for t in truths if not (t["wrong_view"] or t["gross_yaw_error"])]
    assert 6.0 < np.median(ordinary) < 12.0  # median |N(0, 12)| is about 8.1
    assert all(t["yaw_error"] >= 30 for t in truths if t["gross_yaw_error"])
    assert all(t["yaw_error"] >= 45 for t in truths if t["wrong_view"])
    assert all(t["drift_changes"] for t in truths if t["identity_drift"])


@pytest.mark.parametrize("kind", ARTIFACT_KINDS)
def test_artifacts_visible_and_background_white(kind):
    r = render(sample_subject(4), 0, size=64)
    out = apply_artifact(r.rgb, r.mask, kind, np.random.default_rng(0))
    assert np.abs(out.astype(float) - r.rgb).mean() > 0.5
    assert (out[:2, :2] == 255).all()
