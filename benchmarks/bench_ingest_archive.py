"""Archive ingestion time vs member count (issue 14): a .tar.gz / .zip / folder of N small PNGs, read
the way the ingest stage reads it (scan once, then every entry in item order through one
`SourceReader`, decoded by `load_image`). Linear reading means seconds per member stays flat as N grows;
the old per-member re-open of a .tar.gz made it grow with N (400 -> 1600 photos: 43 s -> 381 s).

    python benchmarks/bench_ingest_archive.py [--sizes 250 500 1000 2000] [--px 48]
"""
from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def _pngs(n: int, px: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray((rng.random((px, px, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _write(kind: str, root: Path, pngs: list[bytes]) -> Path:
    if kind == "folder":
        d = root / "folder"
        d.mkdir()
        for k, data in enumerate(pngs):
            (d / f"p{k:06d}.png").write_bytes(data)
        return d
    if kind == "zip":
        path = root / "photos.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for k, data in enumerate(pngs):
                zf.writestr(f"photos/p{k:06d}.png", data)
        return path
    path = root / "photos.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for k, data in enumerate(pngs):
            info = tarfile.TarInfo(f"photos/p{k:06d}.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def ingest_like(path: Path, per_entry: bool = False) -> tuple[int, float]:
    """`per_entry`: open the archive again for every member (the old way; quadratic for .tar.gz)."""
    from balancehead.imageload import SourceReader, load_image, scan_source

    t = time.perf_counter()
    entries = scan_source(path)
    kept = 0
    with SourceReader(path, entries[0].container) as reader:
        for e in entries:
            data = e.read_bytes() if per_entry else reader.read(e)
            kept += load_image(e, max_side=64, min_side=8, data=data).ok
    return kept, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--px", type=int, default=48)
    ap.add_argument("--per-entry-max", type=int, default=1000,
                    help="also time re-opening the .tar.gz per member (the old way) up to this many members")
    args = ap.parse_args()
    print(f"{'source':<22} {'members':>8} {'seconds':>9} {'ms/member':>10}")
    runs = [(k, False) for k in ("tar.gz", "zip", "folder")] + [("tar.gz", True)]
    for kind, per_entry in runs:
        for n in args.sizes:
            if per_entry and n > args.per_entry_max:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                path = _write(kind, Path(tmp), _pngs(n, args.px))
                kept, dt = ingest_like(path, per_entry)
                assert kept == n, (kind, n, kept)
                label = kind + (" re-open/member" if per_entry else "")
                print(f"{label:<22} {n:>8} {dt:>9.2f} {1000 * dt / n:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
