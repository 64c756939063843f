"""A GAN-prior directory in sample_prior's format (packed views + manifest + splits + depth) rendered from the
embedded world's procedural heads instead of a GAN, so reconstructor tests train on real 3D heads whose
views agree exactly, in seconds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save as np_save

from balancehead import fileio
from balancehead.data.manifest import write_manifest
from balancehead.data.shards import ShardWriter
from balancehead.world import render, sample_subject


def write_world_prior(out_dir, identities: int = 4, holdout: int = 1, yaws=(0, 45, 90, 135, 180, 225, 270, 315),
                      size: int = 32, seed: int = 0, role: str = "prior", prefix: str = "prior") -> Path:
    """`role`/`prefix` "view"/"subj" give a packed-dataset-like directory (multi-view captures) instead."""
    out_dir = Path(out_dir)
    rows, depth_ids, depths, ids = [], [], [], []
    with ShardWriter(out_dir / "shards", 1000) as writer:
        for i in range(identities):
            sid = f"{prefix}{i:06d}"
            ids.append(sid)
            subject = sample_subject(seed + i)
            for j, yaw in enumerate(yaws):
                v = render(subject, float(yaw), 0.0, size=size)
                iid = f"{sid}_v{j:03d}"
                shard, key = writer.add(iid, v.rgb, {"camera": v.camera.tolist(), "subject_id": sid, "role": role},
                                        v.mask)
                rows.append(dict(image_id=iid, subject_id=sid, role=role, yaw=float(yaw), pitch=0.0, roll=0.0,
                                 camera=v.camera, backend="world", shard=shard, key=key))
                depth_ids.append(iid)
                depths.append(np.where(np.isfinite(v.depth), v.depth, np.inf).astype(np.float16))
    write_manifest(rows, out_dir / "manifest.parquet")
    fileio.write_bytes(out_dir / "depth.safetensors", np_save(
        {"depth": np.stack(depths)}, metadata={"balancehead": json.dumps({"ids": depth_ids})}))
    fileio.write_json(out_dir / "splits.json", {"prior": ids[:identities - holdout], "holdout": ids[identities - holdout:]})
    return out_dir
