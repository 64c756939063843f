"""A tiny packed dataset of procedural renders (real writer, 32 px) for the training tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from balancehead.data.conditions import save_conditions
from balancehead.data.manifest import (CONDITIONS_FILE, IDENTITY_CONDITIONS_FILE, MANIFEST_FILE, SHARDS_DIR,
                                       VIEW_CONDITIONS_FILE, VIEW_IDENTITY_CONDITIONS_FILE, write_manifest)
from balancehead.data.shards import ShardWriter
from balancehead.world.render import render
from balancehead.world.subject import sample_subject

YAWS = (0.0, 90.0, 180.0, -90.0)
DIM = 16
ID_DIM = 12          # identity tables: a width of their own, so a test sees which table a mode reads


def make_dataset(root, n_subjects: int = 6, size: int = 32, shard_size: int = 10, identity: bool = True) -> Path:
    root = Path(root)
    rng = np.random.default_rng(0)
    rows = []
    with ShardWriter(root / SHARDS_DIR, shard_size) as w:
        for s in range(n_subjects):
            subject = sample_subject(s)
            sid = subject.subject_id
            for v, yaw in enumerate(YAWS):
                r = render(subject, yaw, 0.0, size=size)
                image_id = f"{sid}_v{v}"
                cam = np.asarray(r.camera, dtype=np.float32).tolist()
                role = "front" if v == 0 else "view"
                shard, key = w.add(image_id, r.rgb,
                                   {"camera": cam, "subject_index": s, "yaw": yaw, "pitch": 0.0}, mask=r.mask)
                rows.append(dict(image_id=image_id, subject_id=sid, role=role, yaw=yaw, pitch=0.0, roll=0.0,
                                 camera=cam, shard=shard, key=key, backend="procedural", seed=s))
    write_manifest(rows, root / MANIFEST_FILE)
    subjects = sorted({r["subject_id"] for r in rows})
    save_conditions(root / CONDITIONS_FILE, subjects, rng.standard_normal((len(subjects), DIM)),
                    {"backend": "offline", "model_id": "test"})
    save_conditions(root / VIEW_CONDITIONS_FILE, [r["image_id"] for r in rows],
                    rng.standard_normal((len(rows), DIM)), {"backend": "offline", "model_id": "test"})
    if identity:
        save_conditions(root / IDENTITY_CONDITIONS_FILE, subjects, rng.standard_normal((len(subjects), ID_DIM)),
                        {"backend": "offline", "model_id": "test", "kind": "subject"})
        save_conditions(root / VIEW_IDENTITY_CONDITIONS_FILE, [r["image_id"] for r in rows],
                        rng.standard_normal((len(rows), ID_DIM)), {"backend": "offline", "model_id": "test"})
    return root
