"""The classical IQA gate: thresholds (keep > 60, drop < 35) mean something on the procedural world."""
import numpy as np
import pytest

from balancehead.backends.iqa import ClassicalIQA
from balancehead.world import degrade as D
from balancehead.world.render import render
from balancehead.world.subject import sample_subject

IQA = ClassicalIQA()


@pytest.fixture(scope="module")
def renders():
    rng = np.random.default_rng(99)
    return [render(sample_subject(100 + i), float(rng.uniform(-30, 30)), size=128).rgb for i in range(16)]


def _shapes(seed: int = 0, size: int = 128) -> np.ndarray:
    """Not a head: smooth gradient, a few hard-edged shapes and a fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([60 + 120 * x, 80 + 100 * y, 140 - 60 * x * y], axis=-1)
    for _ in range(5):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(20, 235, 3)
    img += 6 * np.sin(40 * x)[..., None] * np.sin(35 * y)[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _scores(images, severity):
    return np.array([IQA.score(D.degrade(im, np.random.default_rng([i, 7]), severity)[0]) for i, im in enumerate(images)])


def test_names_and_range(renders):
    assert IQA.name == "offline-classical-nriqa" and IQA.enhancer_name == "offline-lanczos-unsharp"
    for im in renders[:4]:
        s = IQA.score(im)
        assert isinstance(s, float) and 0.0 <= s <= 100.0
        assert IQA.score(im) == s


def test_clean_images_are_kept(renders):
    clean = np.array([IQA.score(im) for im in renders])
    assert np.mean(clean > 60) >= 0.85
    assert all(IQA.score(_shapes(k)) > 60 for k in range(4))


def test_severity_bands_match_thresholds(renders):
    mild, moderate, severe = (_scores(renders, s) for s in (0.3, 0.6, 0.9))
    assert mild.mean() > 60 and np.mean(mild > 60) >= 0.6
    assert 35 < moderate.mean() < 60 and np.mean((moderate >= 35) & (moderate <= 60)) >= 0.6
    assert severe.mean() < 35 and np.mean(severe < 35) >= 0.5


@pytest.mark.parametrize("op", D.OPS)
def test_each_degradation_lowers_the_score_monotonically(renders, op):
    # On average over renders the score falls at each step; every single render loses at the strong level.
    # (Per render, a mild downscale of an already soft render can score a point above the original: with
    # EG3D's camera distance the head fills more of the frame than it used to.)
    scores = np.array([[IQA.score(D._apply(im, op, D._magnitude(op, a), np.random.default_rng(0)))
                        for a in (0.0, 0.45, 0.9)] for im in renders[:4]])
    mean = scores.mean(axis=0)
    assert mean[0] > mean[1] > mean[2], (op, scores)
    assert (scores[:, 2] < scores[:, 0]).all() and (scores[:, 2] < scores[:, 1]).all(), (op, scores)


def test_features_name_the_damage(renders):
    im = renders[0]
    noisy = IQA.features(D.add_noise(im, 20, np.random.default_rng(1)))
    assert noisy.noise_amount > max(noisy.detail_amount, noisy.block_amount)
    blurry = IQA.features(D.blur(im, 2.0))
    assert blurry.detail_amount > max(blurry.noise_amount, blurry.block_amount)
    blocky = IQA.features(D.jpeg(im, 8))
    assert blocky.block_amount > max(blocky.noise_amount, blocky.detail_amount)
    assert set(noisy.as_dict()) >= {"noise_sigma", "amount"}


def test_enhance_raises_moderate_scores_and_spares_clean_images(renders):
    degraded = [D.degrade(im, np.random.default_rng([i, 3]), 0.6)[0] for i, im in enumerate(renders)]
    before = np.array([IQA.score(im) for im in degraded])
    restored = [IQA.enhance(im) for im in degraded]
    after = np.array([IQA.score(im) for im in restored])
    assert all(r.shape == d.shape and r.dtype == np.uint8 for r, d in zip(restored, degraded))
    assert after.mean() > before.mean() + 5
    clean = renders[1]
    assert np.abs(IQA.enhance(clean).astype(int) - clean).mean() < 3.0


def test_enhance_can_resample(renders):
    out = IQA.enhance(renders[0][:, :100], size=(200, 256))
    assert out.shape == (256, 200, 3) and out.dtype == np.uint8


def test_edge_cases():
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert 0.0 <= IQA.score(flat) <= 100.0
    assert IQA.score(np.zeros((12, 9, 3), np.uint8)) >= 0.0
    with pytest.raises(ValueError):
        IQA.score(np.zeros((32, 32), np.uint8))
