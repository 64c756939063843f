from collections import Counter

import numpy as np
import pytest
import torch

from balancehead.data.manifest import yaw_bins
from balancehead.data.reader import ShardDataset, sample_probabilities
from test_data_fixtures import DIM, make_packed


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    rows = make_packed(root, n_subjects=5, views=5, shard_size=4)
    return root, rows


def _ids(ds, num_workers=0, epoch=0):
    ds.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers)
    return [s["image_id"] for s in loader]


def test_samples_and_values(packed):
    root, rows = packed
    ds = ShardDataset(root, resolution=8, buffer_size=4)
    s = next(iter(ds))
    assert s["image"].shape == (3, 8, 8) and s["image"].dtype == torch.float32
    assert -1.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert s["mask"].shape == (1, 8, 8) and 0.0 <= s["mask"].min() and s["mask"].max() <= 1.0
    assert s["camera"].shape == (25,) and s["condition"].shape == (DIM,) and s["view_condition"].shape == (DIM,)
    row = next(r for r in rows if r["image_id"] == s["image_id"])
    np.testing.assert_allclose(s["camera"].numpy(), row["camera"], rtol=1e-6)
    assert s["subject_index"] == int(row["subject_id"][4:]) and float(s["yaw"]) == row["yaw"]
    full = next(iter(ShardDataset(root, shuffle=False)))
    assert full["image"].shape == (3, 16, 16)


def test_exactly_once_regardless_of_workers_and_ranks(packed):
    root, rows = packed
    expected = sorted(r["image_id"] for r in rows if r.get("shard"))
    for epoch in (0, 1):
        for workers in (0, 1, 2):
            got = _ids(ShardDataset(root, buffer_size=3, seed=7), workers, epoch)
            assert sorted(got) == expected, (epoch, workers)
        ranks = [_ids(ShardDataset(root, buffer_size=3, seed=7, rank=r, world_size=2), 2, epoch) for r in range(2)]
        assert sorted(ranks[0] + ranks[1]) == expected
        assert abs(len(ranks[0]) - len(ranks[1])) <= 1
        assert len(ShardDataset(root, rank=0, world_size=2)) == len(ranks[0])


def test_shuffle_is_seeded_and_changes_with_epoch(packed):
    root, _ = packed
    a0 = _ids(ShardDataset(root, buffer_size=8, seed=1), epoch=0)
    assert a0 == _ids(ShardDataset(root, buffer_size=8, seed=1), epoch=0)
    assert a0 != _ids(ShardDataset(root, buffer_size=8, seed=1), epoch=1)
    assert a0 != _ids(ShardDataset(root, buffer_size=8, seed=2), epoch=0)
    plain = _ids(ShardDataset(root, shuffle=False))
    assert plain == _ids(ShardDataset(root, shuffle=False), epoch=3)


def test_roles_filter(packed):
    root, rows = packed
    fronts = _ids(ShardDataset(root, roles=["front"]))
    assert sorted(fronts) == sorted(r["image_id"] for r in rows if r["role"] == "front")


def test_sample_probabilities_balance_bins():
    yaws = np.array([0.0] * 90 + [180.0] * 10 + [90.0] * 1)
    p = sample_probabilities(yaws, [1.0] * 8)
    assert p.sum() == pytest.approx(1.0)
    per_bin = np.bincount(yaw_bins(yaws), weights=p, minlength=8)
    np.testing.assert_allclose(per_bin[[0, 2, 4]], 1 / 3)
    p2 = sample_probabilities(yaws, [0, 0, 0, 0, 1, 0, 0, 0])
    assert p2[:90].sum() == 0 and p2[90:100].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero"):
        sample_probabilities(yaws, [0, 1, 0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError):
        sample_probabilities(yaws, [1.0] * 7)


def test_reweighting_is_split_invariant_and_follows_weights(packed):
    root, rows = packed
    weights = [4, 0, 0, 0, 1, 0, 0, 0]  # fronts (bin 0) four times the back (bin 4), nothing else
    kw = dict(buffer_size=3, seed=3, yaw_bin_weights=weights, epoch_size=400)
    base = Counter(_ids(ShardDataset(root, **kw)))
    assert sum(base.values()) == 400
    assert Counter(_ids(ShardDataset(root, **kw), 2)) == base
    ranks = [Counter(_ids(ShardDataset(root, rank=r, world_size=2, **kw), 1)) for r in range(2)]
    assert ranks[0] + ranks[1] == base
    yaw_of = {r["image_id"]: r.get("yaw") for r in rows}
    by_bin = Counter()
    for image_id, c in base.items():
        by_bin[int(yaw_bins([yaw_of[image_id]])[0])] += c
    assert set(by_bin) <= {0, 4}
    assert 0.7 < by_bin[0] / 400 < 0.9


def test_repeat_walks_epochs(packed):
    root, rows = packed
    n = sum(1 for r in rows if r.get("shard"))
    ds = ShardDataset(root, buffer_size=2, repeat=True)
    it = iter(ds)
    first = [next(it)["image_id"] for _ in range(2 * n)]
    assert first[:n] == _ids(ShardDataset(root, buffer_size=2), epoch=0)
    assert first[n:] == _ids(ShardDataset(root, buffer_size=2), epoch=1)


def test_missing_condition_table_fails_fast(tmp_path):
    make_packed(tmp_path, n_subjects=2, views=2, view_conditions=False)
    ds = ShardDataset(tmp_path)
    assert "view_condition" not in next(iter(ds))
    (tmp_path / "conditions.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="conditions"):
        ShardDataset(tmp_path)
