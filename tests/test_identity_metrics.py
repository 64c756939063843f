"""Identity metrics on constructed cases (issue 12): MKNND equals eq. 2 computed sample by sample, on
shuffled identities; the same person across views is consistent, different people are not; the
ArcFace backend (a tiny random ONNX model of the real contract) runs through evaluate's helpers."""
import numpy as np
import pytest

from balancehead.evaluation.diversity import id_consistency, mknnd, mknnd_brute_force


def _identities(n_ids=40, per_id=6, dim=512, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per_id)
    return centres[labels] + spread * rng.standard_normal((len(labels), dim)) * np.sqrt(1.0), labels


@pytest.mark.parametrize("k", [1, 5, 9])
def test_mknnd_equals_brute_force_on_shuffled_identities(k):
    emb, _ = _identities()
    perm = np.random.default_rng(1).permutation(len(emb))
    shuffled = emb[perm] * np.random.default_rng(2).uniform(0.5, 3.0, (len(emb), 1))    # order, norms: irrelevant
    ref = mknnd_brute_force(emb, k)
    for chunk in (7, 64, 4096):                   # blocks smaller than k, ragged last blocks, one block
        for fast in (True, False):                # bfloat16 pass + certified float32 re-check, or float32 only
            assert mknnd(shuffled, k, chunk=chunk, fast=fast) == pytest.approx(ref, abs=1e-6)


def test_mknnd_fast_path_falls_back_where_bfloat16_cannot_certify(monkeypatch):
    """Near-duplicate clusters larger than the candidate list: the bf16 top-m cannot prove the k nearest
    (their cosines differ by less than the bf16 error), so those rows are recomputed in float32 --
    the result is still eq. 2 exactly."""
    import balancehead.evaluation.diversity as D

    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 64))
    emb = np.repeat(base, 20, axis=0) + 1e-3 * rng.standard_normal((120, 64))
    calls = []
    orig = D._exact_rows
    monkeypatch.setattr(D, "_exact_rows", lambda z, rows, k, chunk: (calls.append(len(rows)), orig(z, rows, k, chunk))[1])
    got = D.mknnd(emb, 5, chunk=32, candidates=6)
    assert calls and calls[0] > 0
    assert got == pytest.approx(mknnd_brute_force(emb, 5), abs=1e-6)


def test_mknnd_sees_clustering():
    """Tight identity clusters (5 near-copies each) have near neighbours at k=4, spread samples do not."""
    tight, _ = _identities(per_id=5, spread=0.05)
    loose, _ = _identities(per_id=5, spread=3.0)
    assert mknnd(tight, 4) < 0.01 < 0.5 < mknnd(loose, 4)


def test_same_person_across_views_is_consistent_and_shuffled_identities_are_not():
    centres, _ = _identities(n_ids=10, per_id=1, spread=0.0)
    rng = np.random.default_rng(3)
    views = centres[:, None, :] + 0.2 * rng.standard_normal((10, 5, 512))      # 10 heads x 5 views
    same = id_consistency(views)
    assert same["id_consistency"] > 0.9 and same["id_consistency_to_ref"] > 0.9
    mixed = views.copy()
    for v in range(5):                             # each view slot drawn from another head
        mixed[:, v] = views[rng.permutation(10), v]
    assert id_consistency(mixed)["id_consistency"] < 0.3


def test_memorisation_check_finds_a_memorised_training_image(tmp_path):
    """A training set that contains the generator's own front renders (a generator that memorised them):
    each generated sample's nearest training image is its own copy at cosine 1, shown beside it."""
    import torch

    from balancehead.camera import camera_label
    from balancehead.data.conditions import save_conditions
    from balancehead.data.manifest import write_manifest
    from balancehead.data.shards import ShardWriter
    from balancehead.evaluation.fid_suite import render_fakes
    from balancehead.evaluation.generator_io import ConditionSource
    from balancehead.evaluation.identity_metrics import front_request
    from balancehead.evaluation.memorisation import memorisation_check
    from balancehead.models import Generator, GeneratorConfig

    class PixelEmbedder:                     # a cheap stand-in for the CLIP embedder: 8x8 pixels
        name = "pixels-8x8"

        def embed(self, rgbs, batch_size=32):
            x = torch.from_numpy(np.asarray(rgbs)).permute(0, 3, 1, 2).float()
            return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1).numpy() - 127.5

    g = Generator(GeneratorConfig.tiny(c_dim=25, background=False, camera_adapt=False)).eval()
    cond = ConditionSource("view", 25)
    mine = render_fakes(g, cond, front_request(3), 11, 1.0, 8, "cpu", white_background=True)["image"]
    others = np.random.default_rng(0).integers(0, 256, (5, *mine.shape[1:]), dtype=np.uint8)
    d = tmp_path / "dataset"
    rows, ids = [], []
    cam = camera_label(0.0, 0.0)
    with ShardWriter(d / "shards", 1000) as w:
        for i, img in enumerate(np.concatenate([others, mine])):
            iid = f"img{i}"
            shard, key = w.add(iid, img, {"camera": cam}, np.full(img.shape[:2], 255, np.uint8))
            rows.append(dict(image_id=iid, subject_id=f"s{i}", role="view", shard=shard, key=key, yaw=0.0,
                             pitch=0.0, camera=cam))
            ids.append(iid)
    write_manifest(rows, d / "manifest.parquet")
    save_conditions(d / "view_conditions.safetensors", ids, PixelEmbedder().embed(np.concatenate([others, mine])),
                    {"backend": "pixels-8x8", "model_id": "none"})
    res = memorisation_check(g, cond, PixelEmbedder(), d, 3, 2, 11, 1.0, 8, "cpu")
    assert [s["neighbours"][0]["image_id"] for s in res.table["samples"]] == ["img5", "img6", "img7"]
    assert res.nearest_cosine == pytest.approx(1.0, abs=2e-3) and res.table["same_embedder"]
    h = mine.shape[1]
    assert np.array_equal(res.strip[:h, :h], mine[0])
    x = h + 2 + 4                                 # after the column gap (2 px) and the wider gap (4 px)
    assert np.abs(res.strip[:h, x:x + h].astype(int) - mine[0]).max() <= 1    # its copy beside it
