import hashlib

import numpy as np
import pytest

from balancehead.camera import camera_label
from balancehead.data.manifest import ManifestError, read_manifest, write_manifest, yaw_bin, yaw_bins


def _rows(n=6):
    rows = []
    for i in range(n):
        kept = i % 3 != 0
        rows.append(dict(image_id=f"im{i:03d}", subject_id=f"s{i // 2}", role="view" if i % 2 else "front",
                         shard="shard-00000.tar" if kept else None, key=f"im{i:03d}" if kept else None,
                         yaw=10.0 * i, camera=camera_label(10.0 * i, 5.0), seed=i, iqa_score=50.5,
                         rejected_by=None if kept else "filter_views", reasons=None if kept else "wrong view",
                         verdict_match=kept, provenance={"seed": i, "path": None}))
    return rows


def test_round_trip_keeps_every_row(tmp_path):
    rows = _rows()
    assert write_manifest(rows, tmp_path / "m.parquet") == len(rows)
    got = read_manifest(tmp_path / "m.parquet")
    assert [r["image_id"] for r in got] == sorted(r["image_id"] for r in rows)
    rejected = [r for r in got if r["shard"] is None]
    assert len(rejected) == 2 and all(r["rejected_by"] == "filter_views" for r in rejected)
    r = got[1]
    np.testing.assert_allclose(r["camera"], camera_label(10.0, 5.0), rtol=1e-6)
    assert r["provenance"] == '{"path":null,"seed":1}'
    assert r["pitch"] is None and r["verdict_match"] is True and r["seed"] == 1


def test_bytes_independent_of_row_order(tmp_path):
    rows = _rows(9)
    write_manifest(rows, tmp_path / "a.parquet")
    write_manifest(list(reversed(rows)), tmp_path / "b.parquet")
    a, b = (hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.parquet", "b.parquet"))
    assert a == b


@pytest.mark.parametrize("change, match", [
    ({"colour": "red"}, "unknown field"),
    ({"role": "selfie"}, "role"),
    ({"subject_id": ""}, "subject_id"),
    ({"shard": "shard-00000.tar", "key": None}, "both"),
    ({"camera": [0.0] * 24}, "25 floats"),
    ({"shard": "x.tar", "key": "k", "rejected_by": "filter_views"}, "rejected_by"),
])
def test_invalid_rows_raise(tmp_path, change, match):
    rows = _rows(3)
    rows[0] = {**rows[0], **change}
    with pytest.raises(ManifestError, match=match):
        write_manifest(rows, tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_duplicates_raise(tmp_path):
    rows = _rows(3)
    with pytest.raises(ManifestError, match="duplicate"):
        write_manifest(rows + [rows[0]], tmp_path / "m.parquet")
    dup_key = dict(rows[1], image_id="other")
    with pytest.raises(ManifestError, match="same"):
        write_manifest(rows + [dup_key], tmp_path / "m.parquet")


@pytest.mark.parametrize("yaw, b", [(0, 0), (22.49, 0), (-22.5, 0), (22.5, 1), (-22.51, 7), (45, 1), (90, 2),
                                    (135, 3), (157.5, 4), (180, 4), (-180, 4), (-157.6, 4), (-157.4, 5),
                                    (-90, 6), (-45, 7), (360, 0), (-337.5, 1), (-340, 0), (540, 4)])
def test_yaw_bin(yaw, b):
    assert yaw_bin(yaw) == b
    assert yaw_bins([yaw])[0] == b


def test_yaw_bin_rejects_nan():
    with pytest.raises(ValueError):
        yaw_bin(float("nan"))


def test_rows_with_and_without_a_camera_read_back(tmp_path):
    """Source rows have no camera; a fixed-size list column with nulls would not read back."""
    cam = camera_label(30.0, 5.0)
    rows = [dict(image_id="a", subject_id="s", role="source"),
            dict(image_id="b", subject_id="s", role="view", shard="shard-00000.tar", key="b", camera=cam)]
    write_manifest(rows, tmp_path / "m.parquet")
    back = {r["image_id"]: r for r in read_manifest(tmp_path / "m.parquet")}
    assert back["a"]["camera"] is None
    assert np.allclose(back["b"]["camera"], cam)
