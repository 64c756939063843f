"""Offline identity embedder: same subject across views is closer than other subjects or a drifted
re-render (the world's `perturb_identity` is the identity-drift failure mode of the synthesiser)."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead.backends.identity import OfflineIdentityEmbedder, block_similarities, cosine
from balancehead.world.render import render
from balancehead.world.subject import perturb_identity, sample_subject

N = 12


def auc(pos, neg) -> float:
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


@pytest.fixture(scope="module")
def embs():
    emb = OfflineIdentityEmbedder()
    out = {}
    for s in range(N):
        subject = sample_subject(s)
        for yaw in (0.0, 30.0, -45.0, 180.0):
            out[s, yaw] = emb.embed(render(subject, yaw, size=96).rgb)[0]
        drifted = perturb_identity(subject, np.random.default_rng(1000 + s))
        out[s, "drift"] = emb.embed(render(drifted, 30.0, size=96).rgb)[0]
    return out


def test_shape_norm_and_determinism():
    emb = OfflineIdentityEmbedder()
    r = render(sample_subject(1), 10.0, size=64)
    a = emb.embed([r.rgb, r.rgb], masks=[r.mask, r.mask])
    assert a.shape == (2, emb.dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert cosine(a[0], emb.embed(r.rgb)[0]) > 0.99  # own mask ~ renderer mask
    np.testing.assert_array_equal(emb.embed(r.rgb), emb.embed(r.rgb))
    assert emb.name == "offline-appearance-embedder"


def test_same_subject_nearby_views_beat_other_subjects(embs):
    same = [cosine(embs[s, 0.0], embs[s, y]) for s in range(N) for y in (30.0, -45.0)]
    diff = [cosine(embs[s, 0.0], embs[t, y]) for s in range(N) for t in range(N) if t != s for y in (30.0, -45.0)]
    assert auc(same, diff) >= 0.97
    assert np.mean(same) - np.mean(diff) > 0.3


def test_front_and_back_of_one_subject_still_match(embs):
    same = [cosine(embs[s, 0.0], embs[s, 180.0]) for s in range(N)]
    diff = [cosine(embs[s, 0.0], embs[t, 180.0]) for s in range(N) for t in range(N) if t != s]
    assert auc(same, diff) >= 0.9


def test_identity_drift_is_less_similar(embs):
    same = [cosine(embs[s, 0.0], embs[s, 30.0]) for s in range(N)]
    drift = [cosine(embs[s, 0.0], embs[s, "drift"]) for s in range(N)]
    assert auc(same, drift) >= 0.85
    # The weakest region reacts more than the overall cosine does.
    weakest = [min(block_similarities(embs[s, 0.0], embs[s, "drift"]).values()) for s in range(N)]
    assert np.mean(weakest) < np.mean(drift)


def test_cosine_rows_and_vectors():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(cosine(a, b), [1 / np.sqrt(2), 1.0])
    assert cosine(a[0], a[0]) == pytest.approx(1.0)
