import hashlib
import tarfile

import numpy as np
import pytest

from balancehead.data.shards import ShardWriter, iter_shard


def _items(n, seed=0, size=8):
    rng = np.random.default_rng(seed)
    return [(f"img{i:04d}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
             rng.integers(0, 256, (size, size), dtype=np.uint8),
             {"camera": rng.standard_normal(25).astype(np.float32).tolist(), "subject_index": i // 2,
              "yaw": float(rng.uniform(-180, 180))}) for i in range(n)]


def _pack(out, items, shard_size=3):
    with ShardWriter(out, shard_size) as w:
        refs = [w.add(k, im, lab, mask=m) for k, im, m, lab in items]
    return refs, w.shards


def test_round_trip_and_shard_boundaries(tmp_path):
    items = _items(7)
    refs, shards = _pack(tmp_path, items)
    assert shards == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    assert [r[0] for r in refs] == ["shard-00000.tar"] * 3 + ["shard-00001.tar"] * 3 + ["shard-00002.tar"]
    got = [s for name in shards for s in iter_shard(tmp_path / name)]
    assert [s.key for s in got] == [k for k, *_ in items]
    for s, (k, im, m, lab) in zip(got, items):
        np.testing.assert_array_equal(s.image, im)
        np.testing.assert_array_equal(s.mask, m)
        assert s.label == lab
    assert sorted(p.name for p in tmp_path.iterdir()) == shards  # no temp files left


def test_bytes_are_deterministic_and_headers_fixed(tmp_path):
    items = _items(5, seed=3)
    _, a = _pack(tmp_path / "a", items)
    _, b = _pack(tmp_path / "b", items)
    for name in a:
        ha = hashlib.sha256((tmp_path / "a" / name).read_bytes()).hexdigest()
        hb = hashlib.sha256((tmp_path / "b" / name).read_bytes()).hexdigest()
        assert ha == hb
    with tarfile.open(tmp_path / "a" / a[0]) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos[:3]] == ["img0000.png", "img0000.mask.png", "img0000.json"]
    assert all(i.mtime == 0 and i.uid == 0 and i.gid == 0 and i.uname == "" and i.mode == 0o644 for i in infos)


def test_failure_leaves_only_finished_shards(tmp_path):
    items = _items(5)
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(tmp_path, 3) as w:
            for i, (k, im, m, lab) in enumerate(items):
                if i == 4:
                    raise RuntimeError("boom")
                w.add(k, im, lab, mask=m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.tar"]
    assert len(list(iter_shard(tmp_path / "shard-00000.tar"))) == 3


def test_rejects_bad_input(tmp_path):
    (k, im, m, lab), = _items(1)
    with ShardWriter(tmp_path, 2) as w:
        w.add(k, im, lab, mask=m)
        with pytest.raises(ValueError, match="duplicate"):
            w.add(k, im, lab)
        for bad in ["a/b", "x.mask", "y.png", ".hidden", ""]:
            with pytest.raises(ValueError, match="invalid shard key"):
                w.add(bad, im, lab)
        with pytest.raises(ValueError, match="uint8"):
            w.add("f", im.astype(np.float32), lab)
        with pytest.raises(ValueError, match="mask"):
            w.add("g", im, lab, mask=m[:4])


def test_key_subset_and_missing_mask(tmp_path):
    items = _items(4)
    with ShardWriter(tmp_path, 10) as w:
        for i, (k, im, m, lab) in enumerate(items):
            w.add(k, im, lab, mask=m if i % 2 == 0 else None)
    got = list(iter_shard(tmp_path / "shard-00000.tar", keys={"img0001", "img0002"}))
    assert [s.key for s in got] == ["img0001", "img0002"]
    assert got[0].mask is None and got[1].mask is not None


def test_max_bytes_splits_shards(tmp_path):
    items = _items(6, size=32)
    with ShardWriter(tmp_path, 100, max_bytes=12000) as w:
        refs = [w.add(k, im, lab, mask=m) for k, im, m, lab in items]
    assert 1 < len(w.shards) < 6
    assert sorted({r[0] for r in refs}) == w.shards
    assert sum(len(list(iter_shard(tmp_path / n))) for n in w.shards) == 6
