"""The manifest: one row per image that ever entered the data engine, kept or rejected.

`manifest.parquet` is the ledger of a packed dataset. Every input appears as a row; a rejected image
keeps its row with `shard = None` and `rejected_by` naming the stage that dropped it, so nothing silently
disappears and the dataset card can count every loss. The schema is explicit (no type inference from
the first row) and rows are sorted by image_id before writing, so the same rows always give the same
bytes.

This module also holds the packed-dataset layout (file names inside a packed directory) and the yaw-bin
helper shared by the reader (reweighting) and the card (histograms).
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from balancehead.camera import CAMERA_LABEL_SIZE
from balancehead.fileio import _json_default, atomic_path

# --- packed dataset layout ----------------------------------------------------------------------------
MANIFEST_FILE = "manifest.parquet"
SHARDS_DIR = "shards"
CONDITIONS_FILE = "conditions.safetensors"
VIEW_CONDITIONS_FILE = "view_conditions.safetensors"
# identity features (BalanceHead A.6.10): of each subject's selected front, and of every packed image
IDENTITY_CONDITIONS_FILE = "identity_conditions.safetensors"
VIEW_IDENTITY_CONDITIONS_FILE = "view_identity_conditions.safetensors"
CARD_DIR = "card"

ROLES = ("source", "front-candidate", "front", "view", "prior")

# --- yaw bins -----------------------------------------------------------------------------------------
YAW_BIN_WIDTH = 45.0
NUM_YAW_BINS = 8
# Centre of each bin in our yaw convention (0 = front, +90 = subject's left, 180 = back).
YAW_BIN_CENTRES = (0, 45, 90, 135, 180, -135, -90, -45)
YAW_BIN_LABELS = tuple(str(c) for c in YAW_BIN_CENTRES)


def yaw_bin(yaw_deg: float) -> int:
    """Index 0..7 of the 45° bin holding `yaw_deg`; bins are centred, half-open on the upper edge.

    Bin 0 is [-22.5, 22.5) (the front), bin 2 is centred on +90, bin 4 is [157.5, 202.5) i.e. the back
    (wrapping across ±180), bin 6 is centred on -90. Any real yaw is accepted (wrapped mod 360).
    """
    if not math.isfinite(yaw_deg):
        raise ValueError(f"yaw must be finite, got {yaw_deg}")
    return int(math.floor((float(yaw_deg) + YAW_BIN_WIDTH / 2) / YAW_BIN_WIDTH)) % NUM_YAW_BINS


def yaw_bins(yaws) -> np.ndarray:
    """Vectorised `yaw_bin` for an array of yaws (degrees) -> int64 array of bin indices."""
    y = np.asarray(yaws, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("yaws must be finite")
    return (np.floor((y + YAW_BIN_WIDTH / 2) / YAW_BIN_WIDTH).astype(np.int64)) % NUM_YAW_BINS


# --- schema -------------------------------------------------------------------------------------------
CAMERA_LEN = CAMERA_LABEL_SIZE

SCHEMA = pa.schema([
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("subject_id", pa.string(), nullable=False),
    pa.field("role", pa.string(), nullable=False),
    pa.field("shard", pa.string()),            # shard file name (e.g. shard-00000.tar); None = not packed
    pa.field("key", pa.string()),              # member key inside the shard
    pa.field("prompt_id", pa.string()),        # view prompt id that produced the image
    pa.field("yaw", pa.float32()),             # estimated head pose, degrees (our convention)
    pa.field("pitch", pa.float32()),
    pa.field("roll", pa.float32()),
    # EG3D label, 25 floats (checked in normalize_row). A variable-size list on purpose: pyarrow 25
    # cannot read back a fixed-size list column that holds nulls (rows without a camera).
    pa.field("camera", pa.list_(pa.float32())),
    pa.field("iqa_score", pa.float32()),       # 0..100
    pa.field("iqa_action", pa.string()),       # keep / enhance / drop
    pa.field("verdict_class", pa.string()),    # standard / non-standard
    pa.field("verdict_artifact", pa.bool_()),  # True = the judge saw an artifact
    pa.field("verdict_match", pa.bool_()),     # True = same person as the front
    pa.field("reasons", pa.string()),          # judge / stage reason text ("; "-separated)
    pa.field("rejected_by", pa.string()),      # stage that rejected the image, None = kept
    pa.field("backend", pa.string()),
    pa.field("model_id", pa.string()),
    pa.field("revision", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("provenance", pa.string()),       # JSON object: source path or procedural seed, ...
])
COLUMNS = tuple(SCHEMA.names)
_REQUIRED = ("image_id", "subject_id", "role")


class ManifestError(ValueError):
    """A manifest row is malformed; the message names the row and the field."""


def normalize_row(row: Mapping[str, Any]) -> dict:
    """Validate one row and fill absent optional fields with None.

    Unknown keys are an error (a typo would otherwise silently drop information). `provenance` may be
    given as a dict and is stored as canonical JSON; `camera` may be any 25-element sequence/array.
    """
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ManifestError(f"row {row.get('image_id')!r}: unknown field(s) {unknown}; allowed {list(COLUMNS)}")
    out = {c: row.get(c) for c in COLUMNS}
    for c in _REQUIRED:
        if not isinstance(out[c], str) or not out[c]:
            raise ManifestError(f"row {row.get('image_id')!r}: '{c}' must be a non-empty string, got {out[c]!r}")
    if out["role"] not in ROLES:
        raise ManifestError(f"row {out['image_id']!r}: role {out['role']!r} not one of {ROLES}")
    if (out["shard"] is None) != (out["key"] is None):
        raise ManifestError(f"row {out['image_id']!r}: shard and key must both be set or both be None")
    if out["shard"] is not None and out["rejected_by"] is not None:
        raise ManifestError(f"row {out['image_id']!r}: packed into {out['shard']} but rejected_by={out['rejected_by']!r}")
    if out["camera"] is not None:
        cam = np.asarray(out["camera"], dtype=np.float32).reshape(-1)
        if cam.shape != (CAMERA_LEN,):
            raise ManifestError(f"row {out['image_id']!r}: camera must have {CAMERA_LEN} floats, got {cam.shape[0]}")
        out["camera"] = [float(v) for v in cam]
    prov = out["provenance"]
    if prov is not None and not isinstance(prov, str):
        out["provenance"] = json.dumps(prov, sort_keys=True, separators=(",", ":"), default=_json_default)
    for c in ("yaw", "pitch", "roll", "iqa_score"):
        if out[c] is not None:
            out[c] = float(out[c])
    if out["seed"] is not None:
        out["seed"] = int(out["seed"])
    for c in ("verdict_artifact", "verdict_match"):
        if out[c] is not None:
            out[c] = bool(out[c])
    return out


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Validated, image_id-sorted arrow table with the explicit schema. Duplicate image_ids are an error."""
    norm = sorted((normalize_row(r) for r in rows), key=lambda r: r["image_id"])
    for a, b in zip(norm, norm[1:]):
        if a["image_id"] == b["image_id"]:
            raise ManifestError(f"duplicate image_id {a['image_id']!r}")
    keys = [(r["shard"], r["key"]) for r in norm if r["shard"] is not None]
    if len(set(keys)) != len(keys):
        raise ManifestError("two rows point at the same (shard, key)")
    return pa.Table.from_pylist(norm, schema=SCHEMA)


def write_manifest(rows: Iterable[Mapping[str, Any]], path) -> int:
    """Write `manifest.parquet` atomically; returns the number of rows.

    Deterministic bytes for the same set of rows: rows are sorted, the schema is fixed, and no
    timestamps are written (parquet's only free-form metadata is the writer version string).
    """
    table = rows_to_table(rows)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=65536, use_dictionary=True,
                       write_statistics=True)
    return table.num_rows


def read_manifest_table(path, columns=None) -> pa.Table:
    """Read the manifest, first checked against its packed directory's digests (when recorded)."""
    from pathlib import Path

    from balancehead.integrity import verify_in

    verify_in(Path(path).parent, Path(path).name)
    return pq.read_table(path, columns=list(columns) if columns is not None else None, schema=SCHEMA)


def read_manifest(path, columns=None) -> list[dict]:
    """The manifest rows as dicts (sorted by image_id), with `provenance` left as its JSON string."""
    return read_manifest_table(path, columns).to_pylist()


def packed_rows(rows: Iterable[Mapping[str, Any]], roles=None) -> list[dict]:
    """Rows that are in a shard (optionally only of the given roles), in (shard, manifest) order."""
    sel = [r for r in rows if r["shard"] is not None and (roles is None or r["role"] in roles)]
    return sorted(sel, key=lambda r: (r["shard"], r["key"]))

