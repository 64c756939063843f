"""The offline semantic embedder (label_clip offline, world_attributes): a subject's semantic feature is
view-invariant and separates subjects; similar attributes give nearby features; the per-view feature
carries the attributes and the view, as a real CLIP image feature does."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead.backends.attribute_clip import AttributeClipEmbedder, world_view_of
from balancehead.world.subject import SUBJECT_SEED_KEY, perturb_identity, sample_subject

YAWS = (-170.0, -120.0, -90.0, -45.0, -10.0, 0.0, 10.0, 45.0, 90.0, 135.0, 180.0)


@pytest.fixture(scope="module")
def emb():
    return AttributeClipEmbedder(seed=0)


@pytest.fixture(scope="module")
def subjects():
    return [sample_subject(s) for s in range(40)]


def test_semantic_is_deterministic_unit_and_the_front_views_feature(emb, subjects):
    s = subjects[0]
    a = emb.semantic(s)
    assert a.shape == (512,) and a.dtype == np.float32 and np.isclose(np.linalg.norm(a), 1.0, atol=1e-5)
    assert np.array_equal(a, AttributeClipEmbedder(seed=0).semantic(s))          # fixed projection
    assert not np.allclose(a, AttributeClipEmbedder(seed=1).semantic(s))         # the seed picks it
    assert np.allclose(emb.view(s, 0.0, 0.0), a)                                  # canonical front = semantic
    # a different subject id for the same procedural subject changes nothing (the attributes decide)
    assert np.array_equal(a, emb.semantic(sample_subject(0, subject_id="other-name")))


def test_per_view_features_are_view_dependent_but_keep_the_subject(emb, subjects):
    sem = np.stack([emb.semantic(s) for s in subjects])
    for k, s in enumerate(subjects):
        views = np.stack([emb.view(s, y, 0.0) for y in YAWS])
        # view-dependent: every yaw gives its own feature, further from the front's the more the head turns
        gram = views @ views.T
        assert gram[~np.eye(len(YAWS), dtype=bool)].max() < 0.9999
        to_front = views @ sem[k]
        assert to_front[YAWS.index(10.0)] > to_front[YAWS.index(90.0)] > 0.5
        assert not np.allclose(emb.view(s, 0.0, 15.0), sem[k])                  # pitch is a view change too
        # the subject is still what the feature is mostly about: nearest semantic feature = its own
        assert (np.argmax(views @ sem.T, axis=1) == k).all()


def test_semantic_separates_subjects_and_similar_attributes_stay_close(emb, subjects):
    sem = np.stack([emb.semantic(s) for s in subjects])
    cos = sem @ sem.T
    off = cos[~np.eye(len(subjects), dtype=bool)]
    assert off.max() < 0.9                           # no two sampled subjects collapse onto one feature
    rng = np.random.default_rng(0)
    for s in subjects[:10]:
        one = perturb_identity(s, rng, n_changes=1)  # one attribute changed (hair, glasses, skin, clothes)
        assert emb.semantic(one) @ emb.semantic(s) > np.median(off)
    # glasses on/off moves the feature less than swapping the whole subject
    s = subjects[0]
    from dataclasses import replace
    assert emb.semantic(replace(s, glasses=not s.glasses)) @ emb.semantic(s) > off.mean()


def test_world_view_of_reads_provenance_and_truth():
    subject = sample_subject(7, subject_id="subj-000007")
    record = {"id": "v1", "subject_id": subject.subject_id, "provenance": {SUBJECT_SEED_KEY: 7}}
    got = world_view_of(record, {"true_yaw": 93.0, "true_pitch": -4.0, "identity_drift": False})
    assert got == (subject, 93.0, -4.0)
    drifted = perturb_identity(subject, np.random.default_rng(1))
    got = world_view_of(record, {"true_yaw": 12.0, "identity_drift": True, "shown_subject": drifted.to_dict()})
    assert got[0] == drifted                          # what the image shows, not what was asked for
    assert world_view_of(record, None) is None                                   # a FLUX output: no truth
    assert world_view_of({"id": "p", "provenance": {}}, {"true_yaw": 0.0}) is None   # a photo


def test_offline_synth_truth_names_the_shown_subject_on_drift():
    from balancehead.world.synth import ProceduralSynthesizer, SynthRates

    synth = ProceduralSynthesizer(SynthRates(identity_drift_rate=1.0), size=32)
    subject = sample_subject(3)
    truth = synth.view(subject, 45.0, seed=0).truth
    shown = world_view_of({"subject_id": subject.subject_id, "provenance": {SUBJECT_SEED_KEY: 3}}, truth)[0]
    assert truth["identity_drift"] and shown != subject
    assert sorted(k for k, v in shown.to_dict().items() if v != subject.to_dict()[k]) == truth["drift_changes"]
