"""sample_prior: protocol camera statistics and the packed output of a tiny random generator."""
import json

import numpy as np
import pytest

from balancehead.camera import camera_label, label_to_fov
from balancehead.evaluation.params import SamplePriorParams
from balancehead.evaluation.protocols import sample_views, turntable_yaws


def _many(p, n=400, seed=0):
    rng = np.random.default_rng(seed)
    vs = [sample_views(rng, p) for _ in range(n)]
    return vs, {k: np.concatenate([getattr(v, k) for v in vs]) for k in ("yaw", "pitch", "radius", "fov_deg")}


def test_front_protocol_statistics():
    p = SamplePriorParams(protocol="front")
    vs, a = _many(p)
    assert all(len(v) == 32 for v in vs)
    assert np.abs(a["yaw"]).max() <= 36.0 and np.abs(a["pitch"]).max() <= 26.0
    assert np.abs(a["yaw"]).max() > 34.0          # the window is used, not a narrower one
    assert a["radius"].mean() == pytest.approx(2.7, abs=0.01) and a["radius"].std() == pytest.approx(0.1, abs=0.01)
    assert a["fov_deg"].mean() == pytest.approx(18.83, abs=0.05) and a["fov_deg"].std() == pytest.approx(1.0, abs=0.05)


def test_360_protocol_equator_plus_random():
    p = SamplePriorParams(protocol="360")
    vs, a = _many(p, 200)
    v = vs[0]
    assert len(v) == 32 and v.kind.count("equator") == 8 and v.kind.count("random") == 24
    eq = np.sort(np.mod(v.yaw[:8], 360.0))
    assert np.allclose(np.diff(eq), 45.0)                       # evenly spaced on the equator
    assert np.all(v.pitch[:8] == 0.0)
    rnd = np.concatenate([x.yaw[8:] for x in vs])
    counts = np.histogram(rnd, bins=8, range=(-180, 180))[0]
    assert counts.min() > 0.8 * counts.mean()                   # uniform over the full circle
    assert a["radius"].std() == pytest.approx(0.1, abs=0.01)


def test_labels_match_camera_label():
    v = sample_views(np.random.default_rng(0), SamplePriorParams(protocol="front"))
    lab = v.labels()
    assert lab.shape == (32, 25)
    np.testing.assert_allclose(lab[3], camera_label(v.yaw[3], v.pitch[3], v.radius[3], v.fov_deg[3]), atol=1e-6)
    assert label_to_fov(lab[3]) == pytest.approx(v.fov_deg[3], abs=1e-3)


def test_turntable_yaws():
    y = turntable_yaws(8)
    assert len(y) == 8 and y[0] == 0.0 and y[4] == 180.0


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory):
    from stage_context import stage_context
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import sample_prior

    root = tmp_path_factory.mktemp("prior")
    save_checkpoint(root / "data/train", {"G_ema": Generator(GeneratorConfig.tiny())}, {"conditioning": "view"})
    p = SamplePriorParams(num_identities=3, holdout_identities=1, equator_views=4, random_views=4, batch_size=8)
    sample_prior.main(stage_context(root, "sample_prior", {"sample_prior": p}))
    return root, p


def test_sample_prior_packed_output(prior_run):
    from balancehead.data.manifest import read_manifest
    from balancehead.data.shards import iter_shard

    root, p = prior_run
    d = root / "data/prior"
    rows = read_manifest(d / "manifest.parquet")
    assert len(rows) == 3 * 8 and {r["role"] for r in rows} == {"prior"}
    splits = json.loads((d / "splits.json").read_text())
    assert splits == {"prior": ["prior000000", "prior000001"], "holdout": ["prior000002"]}
    samples = [s for f in sorted((d / "shards").glob("*.tar")) for s in iter_shard(f)]
    assert len(samples) == 24
    s = samples[0]
    assert s.image.shape == (32, 32, 3) and s.mask.shape == (32, 32) and len(s.label["camera"]) == 25
    stats = json.loads((root / "results/sample_prior.json").read_text())
    assert stats["images"] == 24 and stats["gate_drops"] == 0
    from safetensors.numpy import load_file
    lat = load_file(str(d / "latents.safetensors"))
    assert lat["ws"].shape[0] == 3 and lat["c"].shape == (3, 25)
    assert load_file(str(d / "depth.safetensors"))["depth"].shape[0] == 24


def test_sample_prior_is_deterministic(prior_run, tmp_path):
    from stage_context import stage_context
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import sample_prior

    root, p = prior_run
    save_checkpoint(tmp_path / "data/train", {"G_ema": Generator(GeneratorConfig.tiny())}, {"conditioning": "view"})
    sample_prior.main(stage_context(tmp_path, "sample_prior", {"sample_prior": p}))
    for name in ("manifest.parquet", "shards/shard-00000.tar", "latents.safetensors"):
        assert (tmp_path / "data/prior" / name).read_bytes() == (root / "data/prior" / name).read_bytes()


def test_quality_gate_records_every_drop(tmp_path):
    from balancehead.data.manifest import read_manifest
    from stage_context import stage_context
    from balancehead.models import Generator, GeneratorConfig, save_checkpoint
    from balancehead.stages import sample_prior

    save_checkpoint(tmp_path / "data/train", {"G_ema": Generator(GeneratorConfig.tiny())}, {"conditioning": "view"})
    p = SamplePriorParams(num_identities=2, holdout_identities=0, equator_views=4, random_views=0, quality_gate=True)
    sample_prior.main(stage_context(tmp_path, "sample_prior", {"sample_prior": p}))
    rows = read_manifest(tmp_path / "data/prior/manifest.parquet")
    stats = json.loads((tmp_path / "results/sample_prior.json").read_text())
    dropped = [r for r in rows if r["rejected_by"] == "sample_prior_gate"]
    assert len(rows) == 8 and len(dropped) == stats["gate_drops"]
    assert all(r["shard"] is None and r["reasons"] for r in dropped)
    assert stats["images"] + stats["gate_drops"] == 8


def test_protocol_pitch_is_true_elevation_of_the_rendered_camera():
    """PanoLAM's "pitch ±26°" reaches ±26° of elevation in the labels (not EG3D's arccos-squeezed ≈ ±16.8°)."""
    from balancehead.camera import label_to_yaw_pitch
    v = sample_views(np.random.default_rng(1), SamplePriorParams(protocol="front", views_per_identity=64))
    got = np.array([label_to_yaw_pitch(lab) for lab in v.labels()])
    np.testing.assert_allclose(got[:, 1], v.pitch, atol=1e-4)
    np.testing.assert_allclose(got[:, 0], v.yaw, atol=1e-4)
    assert np.abs(got[:, 1]).max() > 20.0
