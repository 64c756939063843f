"""In-the-wild inversion (BalanceHead A.6.12): invert.targets folder + invert.pose production crops and
poses each photo with the data engine's ONNX backends (tiny random-contract models, as the preprocess
tests use) and scores identity with the ArcFace ONNX backend."""
import json

import numpy as np
import pytest

from balancehead.evaluation.params import InvertParams


def _photo(h=80, w=64, cx=40, cy=30, seed=0):
    """A 'photo': a dark textured blob (the person) on white, off-centre, non-square frame."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    blob = ((xx - cx) / 14.0) ** 2 + ((yy - cy) / 22.0) ** 2 <= 1.0
    img[blob] = rng.integers(20, 160, (int(blob.sum()), 3), dtype=np.uint8)
    return img


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    from production_models import CentredHeadPose, NonWhiteSeg, TinyHeadPose, export, tiny_arcface

    d = tmp_path_factory.mktemp("onnx")
    return {"centred_pose": export(CentredHeadPose(64), d / "centred.onnx", 64, ["boxes", "pose"]),
            "tiny_pose": export(TinyHeadPose(), d / "tiny_pose.onnx", 64, ["boxes", "pose"]),
            "seg": export(NonWhiteSeg(), d / "seg.onnx", 64, ["mask"]),
            "arcface": export(tiny_arcface(dim=512), d / "arcface.onnx", 112, ["embedding"])}


def _params(m, pose="tiny_pose", **kw):
    from balancehead.backends.production.params import ArcFaceParams, HeadPoseParams, PersonSegParams

    onnx = {"input_size": 64, "progress": False}
    return InvertParams(targets="folder", folder="photos", pose="production",
                        head_pose=HeadPoseParams(model=m[pose], **onnx), person_seg=PersonSegParams(model=m["seg"], **onnx),
                        **kw)


def test_wild_targets_use_the_data_engine_crop_and_pose(tmp_path, onnx_models):
    """Each target is exactly what preprocess would make of the photo (mask -> crop -> pose on the whole
    frame), with the background whitened, and its camera is the detected pose's camera label."""
    from balancehead import fileio
    from balancehead.camera import camera_label
    from balancehead.evaluation.targets import wild_targets
    from balancehead.stages.invert import production_pose

    photos = tmp_path / "photos"
    fileio.write_png(photos / "a.png", _photo())
    fileio.write_png(photos / "b.png", _photo(cx=24, cy=50, seed=1))
    seg, pose = production_pose(_params(onnx_models), 32)
    targets = wild_targets(photos, 5, seg, pose)
    assert [t.target_id for t in targets] == ["a", "b"]
    for t, name in zip(targets, ("a", "b")):
        rgb = fileio.read_png(photos / f"{name}.png")
        mask = seg.mask(rgb)
        crop, crop_mask, box = seg.crop(rgb, mask)           # the data engine's crop (segment.crop_head)
        est = pose.estimate(rgb, mask)
        assert t.image.shape == (32, 32, 3) and t.pose["crop_box"] == box
        assert np.array_equal(t.image[crop_mask > 127], crop[crop_mask > 127])
        assert (t.image[crop_mask <= 127] == 255).all()
        assert t.yaw == pytest.approx(est["yaw"]) and t.pose["detected"]
        assert np.allclose(t.camera, camera_label(est["yaw"], est["pitch"]))
    # the blob is off-centre in a non-square frame: the crop box follows it (not the frame centre)
    assert targets[0].pose["crop_box"] != targets[1].pose["crop_box"]


def test_invert_stage_on_wild_photos_with_arcface(tmp_path, onnx_models):
    from balancehead import fileio
    from balancehead.backends.production.params import ArcFaceParams
    from balancehead.backends.production.weights import checksum
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import invert
    from pathlib import Path
    from stage_context import stage_context

    fileio.write_png(tmp_path / "photos/me.png", _photo())
    save_checkpoint(tmp_path / "data/train", {"G_ema": Generator(GeneratorConfig.tiny())}, {"conditioning": "view"})
    ip = _params(onnx_models, pose="centred_pose", max_targets=1, w_steps=3, g_steps=1, turntable_frames=2,
                 identity_backend="arcface", arcface=ArcFaceParams(model=onnx_models["arcface"], progress=False))
    invert.main(stage_context(tmp_path, "invert", {"invert": ip}))
    rec = json.loads((tmp_path / "data/invert/me/metrics.json").read_text())
    assert rec["pose"]["detected"] and rec["pose"]["yaw"] == pytest.approx(0.0, abs=1e-6)   # CentredHeadPose: yaw 0
    assert rec["pose"]["pose_backend"]["weights_sha256"] == checksum(Path(onnx_models["centred_pose"]))["sha256"]
    assert -1.0 <= rec["input_view"]["id_sim"] <= 1.0
    summary = json.loads((tmp_path / "results/invert.json").read_text())
    assert summary["identity_backend"] == "arcface-onnx:arcface.onnx" and "input_view_id_sim" in summary
    target = fileio.read_png(tmp_path / "data/invert/me/target.png")
    assert target.shape == (32, 32, 3) and (target[0, 0] == 255).all()          # the whitened head crop


def test_production_pose_params_are_checked():
    with pytest.raises(ValueError, match="invert.head_pose.model"):
        InvertParams(targets="folder", folder="x", pose="production")
    with pytest.raises(ValueError, match="targets: folder"):
        InvertParams(pose="production")
    with pytest.raises(ValueError, match="invert.arcface.model"):
        InvertParams(identity_backend="arcface")
