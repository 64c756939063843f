"""The evaluate stage end to end on a tiny packed dataset and a tiny random generator."""
import json

import numpy as np
import pytest

from balancehead.evaluation.params import EvaluateParams


def _dataset(d, n_subjects=4, views=8):
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
                       turntable_samples=1, turntable_frames=4, grid_size=2)
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
