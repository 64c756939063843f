"""ingest: procedural 'in-the-wild' photos, or a user's folder/archive of photos, into normalised RGB.

Every input becomes a record, kept or quarantined with a reason; duplicates (same decoded pixels) are
marked after all items are loaded, so the decision does not depend on sharding.
"""
from __future__ import annotations

import hashlib
import json
import os

from .. import fileio
from ..hashing import derive_seed
from ..runner import StageContext, assemble_dir, run_items
from ..world.subject import SUBJECT_SEED_KEY


def _procedural_ids(n: int) -> list[str]:
    return [f"src-{k:06d}" for k in range(n)]


def main(ctx: StageContext) -> None:
    p = ctx.params.ingest
    if p.source == "procedural":
        ids = _procedural_ids(p.num_sources)
        compute = _procedural_compute(ctx)
    else:
        from ..imageload import SourceArchiveError, SourceReader, scan_source

        source = ctx.path(p.source)  # absolute paths stay absolute
        if not os.path.exists(source):
            raise FileNotFoundError(f"ingest.source: {p.source} does not exist (a folder, .zip or .tar[.gz], or 'procedural')")
        try:
            entries = scan_source(source)
        except SourceArchiveError as e:
            raise ValueError(f"ingest.source: {e} (0 bytes, damaged, or not an archive?)") from None
        by_id = {e.item_id: e for e in entries}
        ids = [e.item_id for e in entries]
        reader = SourceReader(source, entries[0].container if entries else "dir")
        compute = _folder_compute(ctx, by_id, reader)
    try:
        done = run_items(ctx, ids, compute, desc="photos")
    finally:
        if p.source != "procedural":
            reader.close()
    if done is None:
        return
    records, cache = done
    _mark_duplicates(records)
    kept = sum(r["status"] == "kept" for r in records)
    ctx.log.info("ingest: %d inputs, %d kept, %d quarantined", len(records), kept, len(records) - kept)
    assemble_dir(ctx.output("sources"), records, cache)


def _procedural_compute(ctx: StageContext):
    from ..world.subject import sample_subject
    from ..world.wild import WildRates, make_wild_source

    p = ctx.params.ingest
    rates = WildRates(**p.wild.model_dump())

    def compute(chunk):
        out = []
        for item_id in chunk:
            k = int(item_id.split("-")[1])
            subject_seed = derive_seed(ctx.params.seed, "subject", k) % (2**31)
            subject = sample_subject(subject_seed, subject_id=f"subj-{k:06d}")
            rgb, truth = make_wild_source(subject, seed=ctx.seed(item_id) % (2**31), size=p.image_size, rates=rates)
            png = fileio.png_bytes(rgb)
            record = {
                "id": item_id, "subject_id": subject.subject_id, "role": "source", "status": "kept",
                "reason": None, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                "sha256": hashlib.sha256(rgb.tobytes() + str(rgb.shape).encode()).hexdigest(),
                "provenance": {"source": "procedural", SUBJECT_SEED_KEY: subject_seed,
                               "backend": "procedural-world", "seed": ctx.seed(item_id) % (2**31)},
            }
            truth = {"subject": subject.to_dict(), **truth}
            out.append((record, {"png": png, "truth.json": json.dumps(truth, sort_keys=True, default=fileio._json_default).encode()}))
        return out

    return compute


def _folder_compute(ctx: StageContext, by_id, reader):
    from ..imageload import IMAGE_SUFFIXES, LoadedImage, Reason, SourceReadError, load_image

    p = ctx.params.ingest

    def load(entry):
        """One file -> LoadedImage; whatever goes wrong costs this file's row, never the stage."""
        try:
            data = None
            if entry.error is None and entry.suffix in IMAGE_SUFFIXES:
                data = reader.read(entry, p.max_bytes)       # one pass over a tar, in item order
            return load_image(entry, max_side=p.max_side, min_side=p.min_side,
                              max_pixels=p.max_pixels, max_bytes=p.max_bytes, data=data)
        except SourceReadError as e:
            return LoadedImage(entry.item_id, entry.relpath, reason=e.reason, detail=e.detail)
        except Exception as e:  # a decoder bug on hostile bytes  # noqa: BLE001
            return LoadedImage(entry.item_id, entry.relpath, reason=Reason.CORRUPT,
                               detail=f"{type(e).__name__}: {e}"[:200])

    def compute(chunk):
        out = []
        for item_id in chunk:
            entry = by_id[item_id]
            loaded = load(entry)
            info = loaded.record()
            record = {
                "id": item_id, "subject_id": item_id, "role": "source",
                "status": "kept" if loaded.ok else "quarantined",
                "reason": loaded.reason, "detail": loaded.detail,
                "width": info["size"][0] if info["size"] else None,
                "height": info["size"][1] if info["size"] else None,
                "sha256": loaded.sha256,
                "provenance": {"source": "folder", "path": entry.relpath, "container": entry.container,
                               "orig_size": info["orig_size"], "orig_mode": info["orig_mode"],
                               "exif_transposed": info["exif_transposed"], "resized": info["resized"]},
            }
            files = {"png": fileio.png_bytes(loaded.image)} if loaded.ok else {}
            out.append((record, files))
        return out

    return compute


def _mark_duplicates(records: list[dict]) -> None:
    first: dict[str, str] = {}
    for r in records:
        if r["status"] != "kept" or not r.get("sha256"):
            continue
        if r["sha256"] in first:
            r["status"], r["reason"] = "quarantined", "duplicate"
            r["duplicate_of"] = first[r["sha256"]]
            r["files"] = {}
        else:
            first[r["sha256"]] = r["id"]
