"""ONNX backends (ArcFace identity, head pose, person mask): tiny torch graphs exported in the test
with torch.onnx.export to the documented tensor contracts, loaded back by path through onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead.backends.production import weights as W
from balancehead.backends.production.arcface import (ARCFACE_TEMPLATE_112, PARAM as ARC_PARAM, ArcFaceEmbedder,
                                                     align_face, fallback_crop, similarity_transform)
from balancehead.backends.production.head_pose_mask import (POSE_PARAM, SEG_PARAM, OnnxHeadPoseEstimator,
                                                            OnnxPersonSegmenter)
from balancehead.backends.production.params import ArcFaceParams, HeadPoseParams, PersonSegParams
from production_models import TinyHeadPose, TinySeg, export, tiny_arcface


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {"arcface": export(tiny_arcface(), d / "arcface.onnx", 112, ["embedding"]),
            "pose": export(TinyHeadPose(), d / "pose.onnx", 64, ["boxes", "pose"]),
            "seg": export(TinySeg(), d / "seg.onnx", 64, ["mask"])}


def _faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 80, 3), dtype=np.uint8) for _ in range(n)]


# ----------------------------------------------------------------------------------------- ArcFace

def test_arcface_embeds_unit_rows_batch_independent(models):
    emb = ArcFaceEmbedder(ArcFaceParams(model=models["arcface"], batch_size=2, progress=False))
    imgs = _faces(3)
    e = emb.embed(imgs)
    assert e.shape == (3, 16) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb.embed(imgs[1:2])[0], e[1], atol=1e-5)
    assert e[0] @ e[0] > e[0] @ e[1]
    prov = emb.provenance()
    assert prov["weights_sha256"] == W.checksum(W.Path(models["arcface"]))["sha256"]


def test_similarity_transform_recovers_a_known_one():
    ang, s, t = np.radians(17.0), 1.7, np.array([5.0, -3.0])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src = ARCFACE_TEMPLATE_112
    m = similarity_transform(src, src @ rot.T + t)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)


def test_alignment_maps_landmarks_onto_the_template():
    # A face image whose landmarks are the template scaled x2 and shifted: alignment undoes it.
    big = np.full((260, 260, 3), 255, np.uint8)
    lms = ARCFACE_TEMPLATE_112 * 2.0 + 20.0
    for x, y in lms.round().astype(int):
        big[y - 3:y + 4, x - 3:x + 4] = 0
    aligned = align_face(big, lms, 112)
    for x, y in ARCFACE_TEMPLATE_112.round().astype(int):
        assert aligned[y, x].max() < 60  # a landmark dot lands on its template position


def test_fallback_crop_centres_on_the_head_from_the_mask():
    img = np.full((100, 100, 3), 255, np.uint8)
    img[10:40, 60:90] = 0  # a dark "head" in the upper right
    mask = np.zeros((100, 100), np.uint8)
    mask[10:40, 60:90] = 255
    mask[40:56, 70:80] = 255  # neck
    mask[56:100, 55:95] = 255  # shoulders
    crop = fallback_crop(img, mask, 0.75, 112)
    assert crop.shape == (112, 112, 3) and crop[56, 56].max() == 0
    centre = fallback_crop(img, None, 0.5, 112)
    assert centre[56, 56].min() == 255  # image centre is white background


def test_arcface_contract_and_missing_weights(models, tmp_path):
    with pytest.raises(ValueError, match="input_size"):
        ArcFaceEmbedder(ArcFaceParams(model=models["arcface"], input_size=96))
    for model in (None, str(tmp_path / "absent.onnx")):
        with pytest.raises(W.MissingWeightsError, match=ARC_PARAM.replace(".", r"\.")):
            ArcFaceEmbedder(ArcFaceParams(model=model))
    with pytest.raises(ValueError, match="does not match"):
        ArcFaceEmbedder(ArcFaceParams(model=models["arcface"], expected_sha256="ab" * 32))


# ----------------------------------------------------------------------------------- Pose and mask

def test_head_pose_decodes_box_and_pose_into_source_pixels(models):
    est = OnnxHeadPoseEstimator(HeadPoseParams(model=models["pose"], input_size=64, progress=False))
    img = np.zeros((128, 64, 3), np.uint8)  # tall: letterboxed with scale 0.5, 16 px white left/right
    img[..., 0] = 255  # red channel 1.0 -> yaw 100 -> wrapped into [-180, 180)
    r = est.estimate(img)
    assert r["detected"] and r["confidence"] == pytest.approx(0.9)
    assert r["box"] == pytest.approx([(8 - 16) / 0.5, 32.0, (40 - 16) / 0.5, 96.0])
    # Pose of a letterboxed frame: half of the input is white padding (1.0), half the image.
    assert r["yaw"] == pytest.approx(100.0, abs=1.0) and r["pitch"] == pytest.approx(50.0, abs=1.0)
    flipped = OnnxHeadPoseEstimator(HeadPoseParams(model=models["pose"], input_size=64, yaw_sign=-1, progress=False))
    assert flipped.estimate(img)["yaw"] == pytest.approx(-r["yaw"])
    batch = est.estimate_batch([img, img[:, :, ::-1].copy()])
    assert len(batch) == 2 and batch[0]["yaw"] == pytest.approx(r["yaw"])
    with pytest.raises(ValueError, match="boxes_output"):
        OnnxHeadPoseEstimator(HeadPoseParams(model=models["pose"], input_size=64, boxes_output="dets"))


def test_person_mask_and_crop(models):
    seg = OnnxPersonSegmenter(PersonSegParams(model=models["seg"], input_size=64, progress=False), crop_size=32)
    img = np.full((120, 80, 3), 255, np.uint8)
    yy, xx = np.mgrid[:120, :80]
    person = ((yy - 40) ** 2 + (xx - 40) ** 2 < 18 ** 2) | ((yy > 55) & (np.abs(xx - 40) < 25))
    img[person] = 30
    m = seg.mask(img)
    assert m.shape == (120, 80) and set(np.unique(m)) <= {0, 255}
    iou = ((m > 0) & person).sum() / ((m > 0) | person).sum()
    assert iou > 0.9
    crop, cmask, box = seg.crop(img, m)
    assert crop.shape == (32, 32, 3) and cmask.shape == (32, 32) and len(box) == 4
    crop2, _, box2 = seg.crop(img, m, head_xyxy=[22, 22, 58, 58])
    assert box2[0] == pytest.approx(40 - 0.6 * 36, abs=1) and crop2.shape == (32, 32, 3)


def test_pose_and_seg_missing_weights(tmp_path):
    with pytest.raises(W.MissingWeightsError, match=POSE_PARAM.replace(".", r"\.")):
        OnnxHeadPoseEstimator(HeadPoseParams())
    with pytest.raises(W.MissingWeightsError, match=SEG_PARAM.replace(".", r"\.")):
        OnnxPersonSegmenter(PersonSegParams(model=str(tmp_path)))  # a folder, not a .onnx file
