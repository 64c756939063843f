"""sample_prior: a synthetic multi-view dataset drawn from the trained generator, or from an imported official
PanoHead / SphereHead / EG3D one (params `generator.checkpoint`; PanoLAM protocols),
in the packed dataset format (shards + manifest with role "prior" + condition table), plus the
latents, depth maps and the prior/holdout split used by the invert stage.

The `prior` output directory:
  shards/, manifest.parquet, conditions.safetensors   packed dataset (role "prior")
  latents.safetensors    z, c, ws per identity (ids in the metadata)
  depth.safetensors      depth per packed image (float16)
  splits.json            identities in "prior" and "holdout"
  dataset.json           counts, protocol, gate drops
The `metrics` output: counts and camera statistics (DVC metrics).
"""
from __future__ import annotations

import shutil

import numpy as np

from .. import fileio, integrity
from ..progress import track



def main(ctx) -> None:
    from ..data.conditions import save_conditions
    from ..data.manifest import write_manifest
    from ..data.shards import ShardWriter
    from ..devices import pick_device
    from ..evaluation.generator_io import condition_source, find_checkpoint, load_generator
    from ..evaluation.prior import GATE, gate_verdicts, image_id, sample_identity
    from ..ops import use_built

    use_built(ctx.input("ops"))      # compiled ops where they pay (a GPU); else the references
    p = ctx.params.sample_prior
    device = pick_device(p.device)
    ckpt = find_checkpoint(ctx.input("checkpoint"))
    g, meta = load_generator(ckpt, device)
    dataset = ctx.input("dataset")
    cond = condition_source(g, meta, dataset if dataset.exists() else None)
    ctx.log.info("sample_prior: %s, conditioning %s, protocol %s, %d identities", ckpt, cond.mode, p.protocol,
                 p.num_identities)
    judge = None
    if p.quality_gate:
        from ..backends.judge import HeuristicJudge
        judge = HeuristicJudge()

    n = p.num_identities
    holdout = set(range(n - p.holdout_identities, n))
    out_dir = ctx.output("prior")
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    rows, ids, zs, cs, wss, cond_rows = [], [], [], [], [], []
    depth_ids, depths = [], []
    yaws, pitches, radii, fovs = [], [], [], []
    drops = 0
    with ShardWriter(tmp / "shards", p.shard_size) as writer:
        for i in track(range(n), ctx.log, "sample_prior: identities", "identity"):
            ident = sample_identity(g, cond, i, ctx.seed("identity", i), p, device)
            verdicts = gate_verdicts(judge, ident) if judge is not None else [None] * len(ident.views)
            split = "holdout" if i in holdout else "prior"
            ids.append(ident.subject_id)
            zs.append(ident.z)
            cs.append(ident.c)
            wss.append(ident.ws)
            cond_rows.append(ident.c if cond.mode in ("semantic", "view_semantic") else ident.ws[0])
            v = ident.views
            for j in range(len(v)):
                iid = image_id(i, j)
                prov = {"protocol": p.protocol, "view_kind": v.kind[j], "radius": float(v.radius[j]),
                        "fov_deg": float(v.fov_deg[j]), "psi": p.psi, "split": split, "identity": i,
                        "condition_index": ident.condition_index, "conditioning": cond.mode,
                        "checkpoint": str(ckpt.relative_to(ctx.path(".")) if ckpt.is_relative_to(ctx.path(".")) else ckpt),
                        "imported_from": meta.get("imported_from")}
                row = dict(image_id=iid, subject_id=ident.subject_id, role="prior", yaw=float(v.yaw[j]),
                           pitch=float(v.pitch[j]), roll=0.0, camera=ident.cameras[j], backend="gan-prior",
                           model_id=prov["checkpoint"], seed=int(ctx.seed("identity", i)), provenance=prov)
                if verdicts[j] is not None:
                    drops += 1
                    rows.append({**row, "rejected_by": GATE, "reasons": verdicts[j]})
                    continue
                label = {"camera": ident.cameras[j], "subject_index": i, "subject_id": ident.subject_id,
                         "yaw": float(v.yaw[j]), "pitch": float(v.pitch[j]), "role": "prior", "split": split,
                         "condition_index": ident.condition_index}
                shard, key = writer.add(iid, ident.images[j], label, ident.masks[j])
                rows.append({**row, "shard": shard, "key": key})
                depth_ids.append(iid)
                depths.append(ident.depth[j].astype(np.float16))
                yaws.append(v.yaw[j]); pitches.append(v.pitch[j]); radii.append(v.radius[j]); fovs.append(v.fov_deg[j])

    save_conditions(tmp / "conditions.safetensors", ids, np.stack(cond_rows),
                    {"backend": "gan-prior", "model_id": str(ckpt.name),
                     "kind": "subject" if cond.mode in ("semantic", "view_semantic") else "w-latent"})
    write_manifest(rows, tmp / "manifest.parquet")
    fileio.write_bytes(tmp / "latents.safetensors", fileio.safetensors_bytes(
        {"z": np.stack(zs), "c": np.stack(cs).astype(np.float32), "ws": np.stack(wss)},
        {"ids": ids, "conditioning": cond.mode, "psi": p.psi}))
    depth = np.stack(depths) if depths else np.zeros((0, 1, 1), np.float16)
    fileio.write_bytes(tmp / "depth.safetensors", fileio.safetensors_bytes({"depth": depth}, {"ids": depth_ids}))
    splits = {"prior": [s for k, s in enumerate(ids) if k not in holdout],
              "holdout": [s for k, s in enumerate(ids) if k in holdout]}
    fileio.write_json(tmp / "splits.json", splits)
    stats = {"identities": n, "images": len(depth_ids), "gate_drops": drops, "protocol": p.protocol,
             "conditioning": cond.mode, "holdout_identities": len(splits["holdout"]),
             "yaw_abs_max": float(np.max(np.abs(yaws))) if yaws else None,
             "pitch_abs_max": float(np.max(np.abs(pitches))) if pitches else None,
             "radius_mean": float(np.mean(radii)) if radii else None,
             "radius_std": float(np.std(radii)) if radii else None,
             "fov_mean_deg": float(np.mean(fovs)) if fovs else None,
             "fov_std_deg": float(np.std(fovs)) if fovs else None}
    fileio.write_json(tmp / "dataset.json", stats)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    integrity.write_digests(tmp, ctx.stage.name)          # checked on load like the packed dataset
    tmp.rename(out_dir)
    fileio.write_json(ctx.output("metrics"), stats)
    ctx.log.info("sample_prior: %d images of %d identities (%d dropped by the gate)", len(depth_ids), n, drops)
