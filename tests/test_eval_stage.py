"""The evaluate stage end to end on a tiny packed dataset and a tiny random generator."""
import json

import numpy as np
import pytest

from balancehead.evaluation.params import EvaluateParams


def _dataset(d, n_subjects=4, views=8, view_clip=False):
    """Packed images (random pixels) at 8 yaws per subject; `view_clip`: a per-image feature table from
    the label_clip stage's embedder (repository params), as pack_dataset writes it."""
    from balancehead.camera import camera_label
    from balancehead.data.conditions import save_conditions
    from balancehead.data.manifest import write_manifest
    from balancehead.data.shards import ShardWriter

    rng = np.random.default_rng(0)
    rows = []
    with ShardWriter(d / "shards", 1000) as w:
        for s in range(n_subjects):
            for j, yaw in enumerate(np.linspace(-180, 180, views, endpoint=False)):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                cam = camera_label(float(yaw), 0.0)
                shard, key = w.add(f"s{s}_v{j}", img, {"camera": cam}, np.full((32, 32), 255, np.uint8))
                rows.append(dict(image_id=f"s{s}_v{j}", subject_id=f"s{s}", role="view", shard=shard, key=key,
                                 yaw=float(yaw), pitch=0.0, camera=cam))
    write_manifest(rows, d / "manifest.parquet")
    save_conditions(d / "conditions.safetensors", [f"s{s}" for s in range(n_subjects)],
                    rng.standard_normal((n_subjects, 16)), {"backend": "test", "model_id": "none"})
    if view_clip:
        from stage_context import stage_context
        from balancehead.data.shards import iter_shard
        from balancehead.stages.label_clip import make_embedder

        emb = make_embedder(stage_context(d, "label_clip"))
        images = {s.key: s.image for shard in sorted((d / "shards").iterdir()) for s in iter_shard(shard)}
        feats = emb.embed(np.stack([images[r["key"]] for r in rows]))
        save_conditions(d / "view_conditions.safetensors", [r["image_id"] for r in rows], feats,
                        {"backend": emb.name, "model_id": "ViT-B-32"})


@pytest.mark.parametrize("mode,c_dim", [("view", 25), ("semantic", 16)])
def test_evaluate_writes_every_metric(tmp_path, mode, c_dim):
    from balancehead.data.manifest import YAW_BIN_LABELS
    from stage_context import stage_context
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import evaluate

    _dataset(tmp_path / "data/dataset")
    g = Generator(GeneratorConfig.tiny(c_dim=c_dim, background=False, camera_adapt=False))
    save_checkpoint(tmp_path / "data/train", {"G_ema": g}, {"conditioning": mode})
    p = EvaluateParams(num_fakes=8, fakes_per_yaw_bin=4, mknnd_samples=8, id_identities=2, kid_subsets=3,
                       turntable_samples=1, turntable_frames=4, grid_size=2,
                       memorisation_samples=4)      # no per-image CLIP table here: skipped (see the view_semantic test)
    evaluate.main(stage_context(tmp_path, "evaluate", {"evaluate": p}))
    m = json.loads((tmp_path / "results/metrics.json").read_text())
    for k in ("fid_random", "fid_front", "fid_back", "kid_random", "mknnd", "id_consistency"):
        assert m[k] is not None and np.isfinite(m[k]), k
    assert (m["fid_view"] is None) == (mode == "semantic")      # the paper leaves FID-view blank for semantic
    assert all(f"fid_yaw_{b}" in m for b in YAW_BIN_LABELS)
    tsv = (tmp_path / "results/fid_by_yaw.tsv").read_text().splitlines()
    assert tsv[0].startswith("yaw_bin\tfid\tfid_std") and len(tsv) == 9
    stds = [float(line.split("\t")[2]) for line in tsv[1:] if line.split("\t")[2]]
    assert stds and all(np.isfinite(v) and v > 0 for v in stds)          # bootstrap error bars per bin
    labels = json.loads((tmp_path / "results/eval/labels.json").read_text())
    assert labels["fid_comparable_to_published"] is False and "not comparable" in labels["warning"]
    from PIL import Image
    with Image.open(tmp_path / "results/eval/turntable_00.gif") as im:     # the model's full output size
        assert im.size == (g.cfg.output_resolution,) * 2 and im.n_frames == p.turntable_frames
    assert (tmp_path / "results/eval/fakes_fid_random.png").exists()
    assert labels["memorisation"].startswith("skipped") and not (tmp_path / "results/eval/memorisation.json").exists()


def test_evaluate_view_semantic_arcface_fills_fid_view_and_panohead_metrics(tmp_path):
    """view_semantic gets FID-view (each fake conditioned on a real image's own feature, rendered at its
    camera); PanoHead's FID-all / FID-front sit beside BalanceHead's; MKNND and ID consistency come from
    the ArcFace ONNX backend (a tiny random model of the real contract: 112x112 in, 512-d out)."""
    from production_models import export, tiny_arcface
    from stage_context import stage_context
    from balancehead.backends.production.params import ArcFaceParams
    from balancehead.backends.production.weights import checksum
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import evaluate
    from pathlib import Path

    onnx = export(tiny_arcface(dim=512), tmp_path / "arcface.onnx", 112, ["embedding"])
    _dataset(tmp_path / "data/dataset", view_clip=True)
    g = Generator(GeneratorConfig.tiny(c_dim=512, background=False, camera_adapt=False))
    save_checkpoint(tmp_path / "data/train", {"G_ema": g}, {"conditioning": "view_semantic"})
    p = EvaluateParams(num_fakes=8, fakes_per_yaw_bin=4, mknnd_samples=8, id_identities=2, kid_subsets=3,
                       turntable_samples=0, grid_size=2, fid_bootstrap=0, memorisation_samples=3,
                       memorisation_neighbours=2,
                       identity_backend="arcface", arcface=ArcFaceParams(model=onnx, progress=False))
    evaluate.main(stage_context(tmp_path, "evaluate", {"evaluate": p}))
    m = json.loads((tmp_path / "results/metrics.json").read_text())
    for k in ("fid_view", "fid_panohead_all", "fid_panohead_front", "kid_view", "fid_random", "fid_front"):
        assert m[k] is not None and np.isfinite(m[k]), k
    assert 0.0 <= m["mknnd"] <= 2.0 and -1.0 <= m["id_consistency"] <= 1.0
    labels = json.loads((tmp_path / "results/eval/labels.json").read_text())
    assert labels["identity_backend"] == "arcface-onnx:arcface.onnx"
    assert labels["identity_provenance"]["weights_sha256"] == checksum(Path(onnx))["sha256"]
    assert labels["n_real_per_metric"]["fid_panohead_front"] == 4 * 3       # |yaw| < 90 of 8 views at 45° steps
    memo = json.loads((tmp_path / "results/eval/memorisation.json").read_text())     # A.6.13
    assert memo["same_embedder"] and memo["n_training"] == 32 and len(memo["samples"]) == 3
    for row in memo["samples"]:
        cos = [nb["cosine"] for nb in row["neighbours"]]
        assert len(cos) == 2 and cos[0] >= cos[1] and row["neighbours"][0]["subject_id"].startswith("s")
    assert m["memorisation_nearest_cosine"] == pytest.approx(np.mean([r["neighbours"][0]["cosine"] for r in memo["samples"]]), abs=1e-5)
    from balancehead import fileio
    strip = fileio.read_png(tmp_path / "results/eval/memorisation.png")
    assert strip.shape[0] == 3 * 32 + 2 * 2 and strip.shape[1] > 3 * 32


def test_fid_view_requests_condition_on_the_image_own_feature():
    """The view_semantic FID-view request renders each fake at the camera of the image whose feature
    conditions it; PanoHead's FID-front keeps |yaw| < 90 for both cameras and reals."""
    from balancehead.camera import camera_label
    from balancehead.evaluation.fid_suite import requests
    from balancehead.evaluation.generator_io import ConditionSource
    from balancehead.evaluation.real_set import RealSet

    yaws = np.linspace(-180, 180, 16, endpoint=False)
    cams = np.stack([camera_label(float(y), 0.0) for y in yaws]).astype(np.float32)
    reals = RealSet(np.zeros((16, 4)), yaws, cams, 32)
    feats = np.arange(16, dtype=np.float32)[:, None] * np.ones((1, 8), np.float32)
    cond = ConditionSource("view_semantic", 8, None, feats, yaws, 22.5, cams)
    plan = requests(reals, cond, 50, 4, EvaluateParams(), np.random.default_rng(0))
    req = plan["fid_view"][1]
    assert np.array_equal(req.render_cameras, cams[req.image_rows])
    assert np.array_equal(cond.image_rows(req.image_rows)[:, 0], req.image_rows.astype(np.float32))
    mask, front = plan["fid_panohead_front"]
    assert np.array_equal(mask, np.abs(yaws) < 90)
    assert (np.abs(yaws[front.image_rows]) < 90).all()
    no_table = ConditionSource("semantic", 8, feats)
    plan = requests(reals, no_table, 10, 4, EvaluateParams(), np.random.default_rng(0))
    assert plan["fid_view"][1] is None and plan["fid_panohead_all"][1] is not None
