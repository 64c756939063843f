"""Synthetic packed datasets for the data-format tests (random images, fake manifest rows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from balancehead.camera import camera_label
from balancehead.data.conditions import save_conditions
from balancehead.data.manifest import (CONDITIONS_FILE, MANIFEST_FILE, SHARDS_DIR, VIEW_CONDITIONS_FILE,
                                       write_manifest)
from balancehead.data.shards import ShardWriter

DIM = 8


def make_packed(root, n_subjects=4, views=5, shard_size=3, size=16, seed=0, view_conditions=True) -> list[dict]:
    """Write a packed dataset into `root`; returns its manifest rows (as given to write_manifest).

    Per subject: one rejected source, one front, `views` views of which the last is rejected by the
    filter. Yaws of views are spread around the circle so every yaw bin gets samples.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    with ShardWriter(root / SHARDS_DIR, shard_size) as w:
        for s in range(n_subjects):
            sid = f"subj{s:03d}"
            rows.append(dict(image_id=f"{sid}_src", subject_id=sid, role="source", iqa_score=20.0 + s,
                             iqa_action="drop", rejected_by="assess_quality", reasons="blurry; low contrast",
                             provenance={"seed": s}))
            for v in range(views + 1):
                role = "front" if v == 0 else "view"
                yaw = 0.0 if v == 0 else float(-180 + 360 * ((v * 7 + s * 3) % 16) / 16)
                image_id = f"{sid}_{role}{v:02d}"
                cam = camera_label(yaw, 0.0)
                row = dict(image_id=image_id, subject_id=sid, role=role, yaw=yaw, pitch=0.0, roll=0.0,
                           camera=cam, prompt_id=f"p{v}", backend="procedural", model_id="none", seed=s * 100 + v)
                if v == views:
                    row.update(rejected_by="filter_views", reasons="artifact", verdict_artifact=True)
                else:
                    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                    mask = rng.integers(0, 256, (size, size), dtype=np.uint8)
                    shard, key = w.add(image_id, image, {"camera": cam, "subject_index": s, "yaw": yaw, "pitch": 0.0},
                                       mask=mask)
                    row.update(shard=shard, key=key, verdict_match=True, verdict_artifact=False)
                rows.append(row)
    write_manifest(rows, root / MANIFEST_FILE)
    subjects = [f"subj{s:03d}" for s in range(n_subjects)]
    save_conditions(root / CONDITIONS_FILE, subjects, rng.standard_normal((n_subjects, DIM)),
                    {"backend": "offline", "model_id": "ViT-B-32"})
    if view_conditions:
        packed = [r["image_id"] for r in rows if r.get("shard")]
        save_conditions(root / VIEW_CONDITIONS_FILE, packed, rng.standard_normal((len(packed), DIM)),
                        {"backend": "offline", "model_id": "ViT-B-32"})
    return rows
