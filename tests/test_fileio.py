"""Atomic writes: the file appears whole or not at all, with ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from balancehead import fileio


def test_write_is_atomic_and_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.json"
    fileio.write_json(target, {"a": 1})
    assert fileio.read_json(target) == {"a": 1}
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert fileio.read_json(target) == {"a": 1}                       # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]    # no temp file left behind


def test_outputs_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        fileio.write_text(tmp_path / "x.txt", "hi")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "x.txt").stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)                        # group/others can read results


def test_safetensors_bytes_are_identical_for_equal_input_and_keep_the_metadata(tmp_path):
    """safetensors keeps `__metadata__` in a Rust HashMap: two or more keys came out in a different order
    from call to call, so the invert stage's delta.safetensors differed between equal runs (issue 14)."""
    import numpy as np
    import torch
    from safetensors import safe_open

    meta = {"kind": "pti-delta", "base": "G_ema", "ids": ["b", "a"], "psi": 0.7}
    tensors = {"w": torch.arange(6.0).view(2, 3), "a.b": torch.ones(4, dtype=torch.float16)}
    encodings = {fileio.safetensors_bytes(tensors, meta) for _ in range(40)}
    assert len(encodings) == 1
    arrays = {"z": np.arange(4, dtype=np.float32), "c": np.zeros((2, 2), np.float32)}
    assert len({fileio.safetensors_bytes(arrays, meta) for _ in range(40)}) == 1
    for n, data in enumerate((encodings.pop(), fileio.safetensors_bytes(arrays))):
        path = tmp_path / f"{n}.safetensors"
        path.write_bytes(data)
        with safe_open(str(path), framework="numpy") as f:
            got = fileio.read_safetensors_meta(f)
            assert got == (meta if "w" in f.keys() else {})
