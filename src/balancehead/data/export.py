"""Export a packed dataset in the EG3D / PanoHead training format.

The reference trainers read a folder or zip holding the images plus a `dataset.json` of the form
`{"labels": [[relative_filename, [25 floats]], ...]}`, the floats being the EG3D camera label. Images
are copied byte for byte from the shards (no re-encoding), under `<shard stem>/<key>.png` so that no
directory grows beyond one shard's worth of files. Masks (PanoHead's mask discriminator input) are
optionally written to a parallel `masks/` tree under the same relative names.

Zip output is byte-deterministic (fixed timestamps and permissions, entries in shard order, stored not
deflated — PNG is already compressed) and written atomically.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tqdm import tqdm

from balancehead.camera import CAMERA_LABEL_SIZE
from balancehead.data.manifest import MANIFEST_FILE, SHARDS_DIR, packed_rows, read_manifest
from balancehead.data.shards import iter_shard_raw
from balancehead.fileio import atomic_path, write_bytes

LABELS_FILE = "dataset.json"
MASKS_DIR = "masks"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _members(packed_dir: Path, roles, include_masks: bool) -> Iterator[tuple[str, bytes, list | None]]:
    """(relative name, bytes, camera label or None) for every exported file, shard by shard."""
    rows = packed_rows(read_manifest(packed_dir / MANIFEST_FILE, columns=["role", "shard", "key"]),
                       roles=None if roles is None else set(roles))
    wanted: dict[str, set[str]] = {}
    for r in rows:
        wanted.setdefault(r["shard"], set()).add(r["key"])
    for shard in tqdm(sorted(wanted), desc="export_eg3d", unit="shard"):
        stem = Path(shard).stem
        found = 0
        for raw in iter_shard_raw(packed_dir / SHARDS_DIR / shard, keys=wanted[shard]):
            found += 1
            name = f"{stem}/{raw.key}.png"
            camera = json.loads(raw.label)["camera"]
            if len(camera) != CAMERA_LABEL_SIZE:
                raise ValueError(f"{shard}:{raw.key}: camera label has {len(camera)} floats, expected 25")
            yield name, raw.image, [float(v) for v in camera]
            if include_masks:
                if raw.mask is None:
                    raise ValueError(f"{shard}:{raw.key}: include_masks set but the sample has no mask")
                yield f"{MASKS_DIR}/{name}", raw.mask, None
        if found != len(wanted[shard]):
            raise ValueError(f"{shard}: manifest lists {len(wanted[shard])} keys, shard holds {found}")


def _labels_json(labels: Iterable[tuple[str, list]]) -> bytes:
    return (json.dumps({"labels": sorted([[n, c] for n, c in labels])}, separators=(",", ":")) + "\n").encode()


def export_eg3d(packed_dir, out, roles: Sequence[str] | None = ("front", "view"),
                include_masks: bool = False) -> int:
    """Write `out` (a `.zip` file, else a directory) in EG3D format; returns the number of images."""
    packed_dir, out = Path(packed_dir), Path(out)
    labels: list[tuple[str, list]] = []
    if out.suffix == ".zip":
        # Streamed (never the whole dataset in memory); entry order is the deterministic shard order.
        with atomic_path(out) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, data, camera in _members(packed_dir, roles, include_masks):
                    _zip_write(zf, name, data)
                    if camera is not None:
                        labels.append((name, camera))
                _zip_write(zf, LABELS_FILE, _labels_json(labels))
    else:
        for name, data, camera in _members(packed_dir, roles, include_masks):
            write_bytes(out / name, data)
            if camera is not None:
                labels.append((name, camera))
        write_bytes(out / LABELS_FILE, _labels_json(labels))
    return len(labels)


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, whatever the host
    zf.writestr(info, data)


def read_eg3d_labels(path) -> dict[str, list[float]]:
    """{filename: 25 floats} from an exported zip or directory (for checks and round trips)."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            doc = json.loads(zf.read(LABELS_FILE))
    else:
        doc = json.loads((path / LABELS_FILE).read_text())
    return {name: cam for name, cam in doc["labels"]}
