"""Quality gate: a tiny ONNX scorer exported to the Hyper-IQA contract (score rises with edge
energy, so the test can tell sharp from blurred) and a tiny randomly initialised Swin2SR saved with
save_pretrained, both loaded back by path through the production backends."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from balancehead.backends.production import weights as W
from balancehead.backends.production.iqa_sr import (IQA_PARAM, SR_PARAM, HyperIQAScorer, ProductionQuality,
                                                    Swin2SREnhancer, crop_positions)
from balancehead.backends.production.params import HyperIQAParams, Swin2SRParams
from production_models import build_tiny_swin2sr, export_iqa


@pytest.fixture(scope="module")
def iqa_path(tmp_path_factory):
    return export_iqa(tmp_path_factory.mktemp("iqa") / "hyperiqa.onnx", size=32)


@pytest.fixture(scope="module")
def sr_dir(tmp_path_factory):
    return build_tiny_swin2sr(tmp_path_factory.mktemp("swin2sr"))


def _texture(seed=0, size=48):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)


def _iqa(path, **kw):
    return HyperIQAScorer(HyperIQAParams(model=path, input_size=32, progress=False, **kw))


def test_scores_are_0_100_deterministic_and_follow_the_model(iqa_path):
    iqa = _iqa(iqa_path, n_crops=5, batch_size=3, score_scale=0.3)
    sharp = _texture()
    blurred = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(2)))
    s_sharp, s_blur = iqa.score_batch([sharp, blurred])
    assert 0.0 <= s_blur < s_sharp <= 100.0
    assert iqa.score(sharp) == s_sharp  # same crops, same score, batch or not
    assert s_sharp < 100.0  # not clipped: the comparison above is the model's
    scaled = _iqa(iqa_path, n_crops=5, score_scale=0.6, score_offset=10.0)
    assert scaled.score(sharp) == pytest.approx(2.0 * s_sharp + 10.0, rel=1e-5)
    tiny = np.zeros((10, 12, 3), np.uint8)  # smaller than the crop: upsampled first
    assert iqa.score(tiny) == 0.0


def test_crop_positions_cover_the_image():
    assert crop_positions(100, 80, 32, 1) == [(34, 24)]
    five = crop_positions(100, 80, 32, 5)
    assert len(five) == 5 and (0, 0) in five and (68, 48) in five and (34, 24) in five


def test_swin2sr_enhances_at_same_size_or_upscaled(sr_dir):
    img = _texture(1, 20)
    same = Swin2SREnhancer(Swin2SRParams(model=str(sr_dir), device="cpu", progress=False))
    out = same.enhance(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    up = Swin2SREnhancer(Swin2SRParams(model=str(sr_dir), device="cpu", output="upscaled", progress=False))
    big = up.enhance(img)
    assert big.shape == (40, 56, 3)
    assert np.array_equal(same.enhance_batch([img, img])[1], out)
    assert up.provenance()["upscale"] == 2


def test_production_quality_matches_classical_interface(iqa_path, sr_dir):
    q = ProductionQuality(HyperIQAParams(model=iqa_path, input_size=32, progress=False),
                          Swin2SRParams(model=str(sr_dir), device="cpu", progress=False))
    img = _texture(2)
    assert isinstance(q.score(img), float) and q.enhance(img).shape == img.shape
    assert q.name.startswith("hyper-iqa-onnx") and q.enhancer_name.startswith("swin2sr")
    prov = q.provenance()
    assert prov["sr"]["weights_sha256"] == W.checksum(sr_dir)["sha256"]
    assert prov["iqa"]["weight_files"]["hyperiqa.onnx"] == W.sha256_file(W.Path(iqa_path))


def test_missing_weights_fail_fast(tmp_path, iqa_path):
    with pytest.raises(W.MissingWeightsError, match=IQA_PARAM.replace(".", r"\.")):
        HyperIQAScorer(HyperIQAParams(model=str(tmp_path / "none.onnx")))
    with pytest.raises(W.MissingWeightsError, match=SR_PARAM.replace(".", r"\.")):
        Swin2SREnhancer(Swin2SRParams(model=None, device="cpu"))
    # The scorer is checked before the (slower) SR model is loaded.
    with pytest.raises(W.MissingWeightsError, match=IQA_PARAM.replace(".", r"\.")):
        ProductionQuality(HyperIQAParams(model=None), Swin2SRParams(model=None, device="cpu"))
