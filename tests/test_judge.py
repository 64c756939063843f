"""Heuristic judge (the filtering agent's three decisions from pixels) and the VLM answer parsers."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead.backends.judge import (HeuristicJudge, JudgeConfig, Verdict, estimate_attributes,
                                        format_attributes, parse_artifact, parse_classification,
                                        parse_match)
from balancehead.backends.segment import offline_mask
from balancehead.world.render import render
from balancehead.world.subject import perturb_identity, sample_subject
from balancehead.world.synth import apply_artifact


@pytest.mark.parametrize("text,expected", [
    ("Standard Image. The head faces the camera with natural hair.", "standard"),
    ("**Non-standard image** - the head is rotated by 40 degrees.", "non-standard"),
    ("'Non-Standard Image': a large hat hides the forehead.", "non-standard"),
    ("Answer: standard image", "standard"),
    ("This is not a standard image because of the tilt.", "non-standard"),
    ("I cannot tell.", None),
    ("", None),
    (None, None),
])
def test_parse_classification(text, expected):
    assert parse_classification(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("normal", "normal"),
    ("Normal.", "normal"),
    ("Severe artifacts detected: the face is duplicated.", "severe artifacts"),
    ("**severe artifacts**", "severe artifacts"),
    ("No severe artifacts; the image is clean.", "normal"),
    ("The picture looks fine to me", None),
])
def test_parse_artifact(text, expected):
    assert parse_artifact(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("YES, same hairstyle and clothing.", "YES"),
    ("yes, same person", "YES"),
    ("No.", "NO"),
    ("**NO** - the hair colour changed from black to blonde.", "NO"),
    ('"Yes" - consistent skin tone.', "YES"),
    ("Answer: no, glasses were added.", "NO"),
    ("The two people look alike", None),
])
def test_parse_match(text, expected):
    assert parse_match(text) == expected


def test_format_attributes():
    text = format_attributes({"hair_colour": "brown", "hair_length": "short", "glasses": False, "hat": True,
                              "skin_tone": "light", "clothing_colour": "blue"})
    assert text == "hair: brown, short; glasses: no; hat: yes; skin tone: light; clothing: blue"
    assert format_attributes({}) == "unknown"


def test_estimated_attributes_follow_the_subject():
    base = sample_subject(5)
    from dataclasses import replace
    dark = replace(base, hair_style="short", hair_colour="black", clothing_colour=(180, 30, 40), hat=False)
    light = replace(dark, hair_colour="blonde", clothing_colour=(30, 60, 140))
    a = render(dark, 0.0)
    b = render(light, 0.0)
    attrs_a = estimate_attributes(a.rgb, a.mask)
    attrs_b = estimate_attributes(b.rgb, b.mask)
    assert attrs_a["hair_colour"] in ("black", "dark brown") and attrs_b["hair_colour"] in ("blonde", "tan", "yellow")
    assert attrs_a["clothing_colour"] == "red" and attrs_b["clothing_colour"] == "blue"
    hatted = render(replace(dark, hat=True), 0.0)
    assert estimate_attributes(hatted.rgb, hatted.mask)["hat"] and not attrs_a["hat"]


def test_classify_uses_yaw_and_hat():
    judge = HeuristicJudge()
    from dataclasses import replace
    s = replace(sample_subject(2), hat=False, hair_style="short")  # no hat over an afro
    r = render(s, 0.0)
    v = judge.classify(r.rgb, None, est_yaw=5.0)
    assert isinstance(v, Verdict) and v.label == "standard"
    assert judge.classify(r.rgb, None, est_yaw=40.0).label == "non-standard"
    hatted = render(replace(s, hat=True), 0.0)
    assert judge.classify(hatted.rgb, None, est_yaw=0.0).label == "non-standard"
    assert "hat" in judge.classify(hatted.rgb, None, est_yaw=0.0).reason


@pytest.mark.parametrize("kind", ["duplicate", "smear"])
def test_artifacts_flags_pasted_and_smeared_heads(kind):
    judge = HeuristicJudge()
    flagged = 0
    for seed in range(6):
        r = render(sample_subject(seed), 20.0)
        assert judge.artifacts(r.rgb, offline_mask(r.rgb)).label == "normal"
        bad = apply_artifact(r.rgb, r.mask, kind, np.random.default_rng(seed))
        flagged += judge.artifacts(bad, None).label == "severe artifacts"
    assert flagged >= 4


def test_match_accepts_same_subject_and_rejects_drift():
    judge = HeuristicJudge()
    accepted = rejected = 0
    for seed in range(8):
        s = sample_subject(seed)
        front = render(s, 0.0)
        for yaw in (45.0, 180.0):
            view = render(s, yaw)
            standard = judge.classify(view.rgb, None, yaw).label == "standard"
            accepted += judge.match(front.rgb, None, view.rgb, None, standard, yaw).label == "YES"
        drifted = render(perturb_identity(s, np.random.default_rng(seed)), 45.0)
        v = judge.match(front.rgb, None, drifted.rgb, None, False, 45.0)
        rejected += v.label == "NO"
        assert v.reason
    assert accepted >= 14  # of 16
    assert rejected >= 6  # of 8


def test_standard_threshold_is_stricter():
    cfg = JudgeConfig()
    assert cfg.match_standard_front > cfg.match_nonstandard_front
    assert cfg.match_standard_back > cfg.match_nonstandard_back
    judge = HeuristicJudge()
    s = sample_subject(9)
    front, view = render(s, 0.0), render(s, 10.0)
    strict = judge.match(front.rgb, None, view.rgb, None, True, 10.0)
    loose = judge.match(front.rgb, None, view.rgb, None, False, 10.0)
    assert strict.score < loose.score  # same evidence, higher floor -> smaller margin
