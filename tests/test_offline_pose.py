"""The offline pose estimator reads only pixels and recovers yaw over the full circle."""
import numpy as np
import pytest

from balancehead.backends.offline_pose import OfflinePoseEstimator, PoseBankConfig
from balancehead.camera import wrap_yaw, yaw_distance
from balancehead.world import render, sample_subject


@pytest.fixture(scope="module")
def estimator():
    return OfflinePoseEstimator(PoseBankConfig(n_subjects=32, views_per_subject=40))


def test_yaw_accuracy_on_unseen_subjects(estimator):
    rng = np.random.default_rng(123)
    yaws = rng.uniform(-180, 180, 120)
    imgs = [render(sample_subject(7000 + i), float(y), float(rng.uniform(-10, 10)), size=64).rgb
            for i, y in enumerate(yaws)]
    est = estimator.estimate_batch(imgs)
    err = yaw_distance(np.array([e["yaw"] for e in est]), yaws)
    print(f"median {np.median(err):.1f} deg, p90 {np.percentile(err, 90):.1f} deg")
    assert np.median(err) <= 15.0
    assert np.percentile(err, 90) <= 60.0
    assert all(e["roll"] == 0.0 and 0.0 <= e["confidence"] <= 1.0 for e in est)


def test_left_right_not_confused(estimator):
    hits = 0
    n = 0
    for i in range(16):
        s = sample_subject(8000 + i)
        for y in (60.0, 90.0, 120.0):
            for sign in (1, -1):
                e = estimator.estimate(render(s, sign * y, size=64).rgb)["yaw"]
                hits += np.sign(e) == sign
                n += 1
    assert hits / n >= 0.9


def test_mask_whitens_background(estimator):
    r = render(sample_subject(9000), 45.0, size=64, background=(20, 140, 60))
    e = estimator.estimate(r.rgb, mask=r.mask)
    assert yaw_distance(e["yaw"], 45.0) < 30.0
    assert wrap_yaw(e["yaw"]) == e["yaw"]


def test_deterministic_bank():
    a = OfflinePoseEstimator(PoseBankConfig(n_subjects=3, views_per_subject=8))
    b = OfflinePoseEstimator(PoseBankConfig(n_subjects=3, views_per_subject=8))
    img = render(sample_subject(1), 10.0, size=48).rgb
    assert a.estimate(img) == b.estimate(img)
