"""The ingest stage on a user's folder (and the same folder zipped): every file becomes a record, bad
input is quarantined with its reason, and the rest of the chain accepts real photos."""
from __future__ import annotations

import io as pyio
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import run, set_params


def _png(img: Image.Image) -> bytes:
    buf = pyio.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _photo(seed: int, size=(96, 80), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    return Image.fromarray(arr).convert(mode)


def make_folder(root: Path) -> dict[str, str | None]:
    """Writes a messy photo folder; returns relpath -> expected reason (None = kept)."""
    expect = {}
    (root / "a/b").mkdir(parents=True)
    (root / "ok.png").write_bytes(_png(_photo(1)));                               expect["ok.png"] = None
    _photo(2, mode="CMYK").save(root / "a/cmyk.jpg")
    expect["a/cmyk.jpg"] = None
    Image.fromarray((np.arange(96 * 80).reshape(80, 96) * 7 % 65535).astype(np.uint16)).save(root / "a/b/deep16.png")
    expect["a/b/deep16.png"] = None
    _photo(3, mode="RGBA").save(root / "rgba.png");                                expect["rgba.png"] = None
    _photo(4).convert("P").save(root / "palette.png");                             expect["palette.png"] = None
    _photo(5, mode="L").save(root / "gray.jpg");                                   expect["gray.jpg"] = None
    (root / "empty.jpg").write_bytes(b"");                                          expect["empty.jpg"] = "empty_file"
    (root / "notes.jpg").write_text("this is not an image");                        expect["notes.jpg"] = "not_an_image"
    data = _png(_photo(6, size=(200, 200)))
    (root / "truncated.png").write_bytes(data[: len(data) // 2]);                   expect["truncated.png"] = "truncated"
    Image.new("RGB", (1, 1)).save(root / "tiny.png");                               expect["tiny.png"] = "too_small"
    (root / "x_copy_of_ok.png").write_bytes(_png(_photo(1)));                         expect["x_copy_of_ok.png"] = "duplicate"
    os.symlink(root / "missing.png", root / "broken_link.png");                     expect["broken_link.png"] = "unreadable"
    (root / "readme.txt").write_text("photos for the test");                        expect["readme.txt"] = "unsupported_type"
    return expect


def _check(workspace: Path, expect: dict):
    records = [json.loads(l) for l in (workspace / "data/ingest/items.jsonl").read_text().splitlines()]
    by_path = {r["provenance"]["path"]: r for r in records}
    assert set(by_path) == set(expect)                   # every input is a record; nothing disappears
    for path, reason in expect.items():
        r = by_path[path]
        assert r["reason"] == reason, (path, r)
        assert (r["status"] == "kept") == (reason is None)
        assert bool(r["files"]) == (reason is None)
    dup = by_path["x_copy_of_ok.png"]             # the first in scan order (sorted paths) is kept
    assert dup["duplicate_of"] == by_path["ok.png"]["id"]
    return records


def test_ingest_quarantines_bad_files_and_downstream_accepts_photos(workspace):
    expect = make_folder(workspace / "photos")
    set_params(workspace, {"ingest": {"source": "photos"}})
    run([sys.executable, "-m", "balancehead", "run", "ingest"], cwd=workspace)
    _check(workspace, expect)
    run([sys.executable, "-m", "balancehead", "run", "assess_quality"], cwd=workspace)
    quality = [json.loads(l) for l in (workspace / "data/quality/items.jsonl").read_text().splitlines()]
    assert len(quality) == sum(r is None for r in expect.values())
    assert all(0.0 <= q["iqa_score"] <= 100.0 for q in quality)


def test_ingest_reads_the_same_folder_as_a_zip(workspace):
    folder = workspace / "photos"
    expect = make_folder(folder)
    os.remove(folder / "broken_link.png")                # an archive cannot hold a dangling link
    expect.pop("broken_link.png")
    with zipfile.ZipFile(workspace / "photos.zip", "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    set_params(workspace, {"ingest": {"source": "photos.zip"}})
    run([sys.executable, "-m", "balancehead", "run", "ingest"], cwd=workspace)
    _check(workspace, expect)
