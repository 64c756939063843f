import hashlib

import numpy as np
import pytest

from balancehead.data.conditions import ConditionTable, load_conditions, save_conditions

META = {"backend": "offline", "model_id": "ViT-B-32", "pretrained": None}


def test_round_trip_float16_and_meta(tmp_path):
    arr = np.random.default_rng(0).standard_normal((3, 512))
    save_conditions(tmp_path / "c.safetensors", ["b", "a", "c"], arr, META)
    ids, got, meta = load_conditions(tmp_path / "c.safetensors")
    assert ids == ["b", "a", "c"]
    assert got.dtype == np.float16 and got.shape == (3, 512)
    np.testing.assert_array_equal(got, arr.astype(np.float16))
    assert meta == {**META, "dim": 512}
    table = ConditionTable.load(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(table["a"], arr[1].astype(np.float16))
    with pytest.raises(KeyError, match="zzz"):
        table["zzz"]


def test_bytes_deterministic(tmp_path):
    arr = np.random.default_rng(1).standard_normal((4, 16))
    meta = {"backend": "x", "model_id": "y", **{f"k{i}": i for i in range(10)}}
    save_conditions(tmp_path / "a.safetensors", list("wxyz"), arr, meta)
    save_conditions(tmp_path / "b.safetensors", list("wxyz"), arr, dict(reversed(list(meta.items()))))
    assert hashlib.sha256((tmp_path / "a.safetensors").read_bytes()).digest() == \
        hashlib.sha256((tmp_path / "b.safetensors").read_bytes()).digest()


@pytest.mark.parametrize("ids, arr, meta, match", [
    (["a", "b"], np.zeros((3, 4)), META, "shape"),
    (["a", "a"], np.zeros((2, 4)), META, "unique"),
    (["a"], np.zeros((1, 4)), {"backend": "x"}, "model_id"),
    (["a"], np.full((1, 4), np.nan), META, "non-finite"),
    (["a"], np.full((1, 4), 1e6), META, "non-finite"),  # overflows float16
    (["a"], np.zeros((1, 4)), {**META, "dim": 3}, "must not set"),
])
def test_invalid(tmp_path, ids, arr, meta, match):
    with pytest.raises(ValueError, match=match):
        save_conditions(tmp_path / "c.safetensors", ids, arr, meta)
    assert not (tmp_path / "c.safetensors").exists()
