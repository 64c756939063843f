"""Behaviour of the procedural degradation library."""
import json

import numpy as np
import pytest

from balancehead.world import degrade as D


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    """Smooth gradient plus sharp edges plus fine texture: every degradation has something to hurt."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([x, y, 0.5 * (x + y)], axis=-1) * 160
    img[size // 4 : size // 2, size // 4 : 3 * size // 4] = [230, 40, 40]
    img += rng.uniform(-20, 20, size=(size, size, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def _hf_energy(img: np.ndarray) -> float:
    g = img.astype(np.float64).mean(axis=2)
    return float(np.mean(np.abs(np.diff(g, axis=0))) + np.mean(np.abs(np.diff(g, axis=1))))


def test_ops_keep_shape_dtype_and_do_not_mutate_input():
    img = _image()
    before = img.copy()
    rng = np.random.default_rng(0)
    for out in (D.blur(img, 1.5), D.add_noise(img, 10, rng), D.jpeg(img, 30), D.downscale(img, 3)):
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img)
    np.testing.assert_array_equal(img, before)


def test_zero_strength_is_identity():
    img = _image()
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(D.blur(img, 0), img)
    np.testing.assert_array_equal(D.add_noise(img, 0, rng), img)
    np.testing.assert_array_equal(D.downscale(img, 1.0), img)


def test_blur_and_downscale_remove_detail_monotonically():
    img = _image()
    assert _hf_energy(D.blur(img, 0.5)) > _hf_energy(D.blur(img, 2.0)) > _hf_energy(D.blur(img, 4.0))
    assert _hf_energy(D.downscale(img, 1.5)) > _hf_energy(D.downscale(img, 4.0))


def test_noise_strength_matches_sigma():
    flat = np.full((128, 128, 3), 128, np.uint8)
    out = D.add_noise(flat, 10.0, np.random.default_rng(3))
    assert abs(float(out.astype(np.float64).std()) - 10.0) < 0.5


def test_jpeg_lower_quality_is_further_from_original():
    img = _image()
    err = [np.abs(D.jpeg(img, q).astype(int) - img).mean() for q in (95, 50, 10)]
    assert err[0] < err[1] < err[2]


def test_reject_wrong_input():
    with pytest.raises(ValueError):
        D.blur(np.zeros((8, 8), np.uint8), 1.0)
    with pytest.raises(ValueError):
        D.jpeg(np.zeros((8, 8, 3), np.float32), 50)


def test_degrade_is_deterministic_and_reports_json():
    img = _image()
    a, ra = D.degrade(img, np.random.default_rng(7), 0.6)
    b, rb = D.degrade(img, np.random.default_rng(7), 0.6)
    np.testing.assert_array_equal(a, b)
    assert ra == rb
    assert json.loads(json.dumps(ra)) == ra
    assert ra["severity"] == 0.6 and ra["ops"]
    assert [o["op"] for o in ra["ops"]] == [op for op in D.OPS if op in {o["op"] for o in ra["ops"]}]


def test_degrade_severity_zero_is_untouched():
    img = _image()
    out, rep = D.degrade(img, np.random.default_rng(0), 0.0)
    np.testing.assert_array_equal(out, img)
    assert rep["ops"] == []


def test_degrade_damage_grows_with_severity_on_average():
    img = _image(size=96)
    mean_err = []
    for s in (0.2, 0.5, 0.9):
        errs = [np.abs(D.degrade(img, np.random.default_rng(i), s)[0].astype(int) - img).mean() for i in range(12)]
        mean_err.append(np.mean(errs))
    assert mean_err[0] < mean_err[1] < mean_err[2]


def test_degrade_uses_every_op_across_seeds():
    img = _image(size=32)
    seen = set()
    for i in range(40):
        seen |= {o["op"] for o in D.degrade(img, np.random.default_rng(i), 0.5)[1]["ops"]}
    assert seen == set(D.OPS)
