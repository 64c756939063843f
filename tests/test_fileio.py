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
