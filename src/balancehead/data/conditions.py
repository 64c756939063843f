"""Condition tables: float16 feature rows indexed by id, stored as safetensors.

`conditions.safetensors` holds one row per subject (the CLIP feature of its selected front, shared by
all of that subject's views); `view_conditions.safetensors` holds one row per image (per-view features
for the view-semantic ablation). Both have a single tensor "features" of shape (N, D) and one header
metadata entry, "balancehead", with canonical JSON: the row ids in order, the id kind, the dim, the
backend and model id that produced the features, plus any extra fields.

One metadata key (not several) on purpose: safetensors serialises its metadata map in hash order, so
several keys would make the file bytes vary between runs.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from balancehead.fileio import write_bytes

TENSOR = "features"
META_KEY = "balancehead"
REQUIRED_META = ("backend", "model_id")


def save_conditions(path, ids, array, meta: dict[str, Any]) -> None:
    """Atomically write `array` (N, D) as float16 rows for `ids` (N unique strings).

    `meta` must name at least `backend` and `model_id`; `ids` and `dim` are added here (and must not be
    passed in `meta`). Non-finite values (after the float16 cast) are rejected: a NaN condition would
    silently poison training.
    """
    ids = [str(i) for i in ids]
    arr = np.asarray(array)
    if arr.ndim != 2 or arr.shape[0] != len(ids):
        raise ValueError(f"array must be (N={len(ids)}, D), got shape {arr.shape}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta lacks {missing}")
    clash = {"ids", "dim"} & set(meta)
    if clash:
        raise ValueError(f"meta must not set {sorted(clash)} (derived from ids/array)")
    with np.errstate(over="ignore"):  # overflow becomes inf, rejected just below
        arr16 = np.ascontiguousarray(arr.astype(np.float16))
    bad = np.flatnonzero(~np.isfinite(arr16).all(axis=1))
    if len(bad):
        rows = ", ".join(f"{ids[i]!r} (row {i})" for i in bad[:3])
        raise ValueError(f"features contain non-finite values (after float16 cast) in {len(bad)} row(s), e.g. {rows}")
    header = dict(meta, ids=ids, dim=int(arr.shape[1]))
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    write_bytes(path, save({TENSOR: arr16}, metadata={META_KEY: text}))


def load_conditions(path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """-> (ids, float16 array (N, D), meta). `meta` holds everything but `ids` (it keeps `dim`).
    The file is checked against its packed directory's digests (when recorded) before it is parsed."""
    from pathlib import Path

    from balancehead.integrity import verify_in

    verify_in(Path(path).parent, Path(path).name)
    with safe_open(str(path), framework="numpy") as f:
        header = f.metadata() or {}
        if META_KEY not in header:
            raise ValueError(f"{path}: not a balancehead condition table (no '{META_KEY}' metadata)")
        meta = json.loads(header[META_KEY])
        arr = f.get_tensor(TENSOR)
    ids = meta.pop("ids")
    if arr.shape != (len(ids), meta["dim"]):
        raise ValueError(f"{path}: tensor shape {arr.shape} disagrees with metadata ({len(ids)}, {meta['dim']})")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if len(bad):
        rows = ", ".join(f"{ids[i]!r} (row {i})" for i in bad[:3])
        raise ValueError(f"{path}: {len(bad)} condition row(s) hold non-finite values, e.g. {rows}; "
                         "rerun label_clip and pack_dataset")
    return ids, arr, meta


class ConditionTable:
    """Lookup of rows by id (loaded once; read-only)."""

    def __init__(self, ids, array, meta):
        self.ids = list(ids)
        self.array = array
        self.meta = meta
        self.index = {k: i for i, k in enumerate(self.ids)}

    @classmethod
    def load(cls, path) -> "ConditionTable":
        return cls(*load_conditions(path))

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    def __contains__(self, key) -> bool:
        return key in self.index

    def __getitem__(self, key) -> np.ndarray:
        try:
            return self.array[self.index[key]]
        except KeyError:
            raise KeyError(f"no condition row for id {key!r}") from None
