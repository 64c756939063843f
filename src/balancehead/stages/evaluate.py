"""evaluate: every number of the closing tables in the `metrics` output (DVC metrics), the per-yaw-bin
FID curve in the `fid_by_yaw` output (DVC plot), fakes grids, random-sample turntables and the
memorisation check (memorisation.json + memorisation.png, BalanceHead A.6.13) in the `eval` directory,
and an MLflow run.

The metrics hold numbers only (null where a metric does not apply); what produced them (feature
extractor, identity backend, whether the FIDs are comparable to published ones) is in
`eval`/labels.json and in the report.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from .. import fileio



def bias_curve_tsv(fids: dict) -> str:
    from ..data.manifest import YAW_BIN_LABELS

    def fmt(v):
        return "" if v is None else f"{v:.6g}"
    lines = ["yaw_bin\tfid\tfid_std\tkid\tn_real\tn_fake"]
    for label in YAW_BIN_LABELS:
        r = fids[f"fid_yaw_{label}"]
        lines.append(f"{label}\t{fmt(r['fid'])}\t{fmt(r.get('fid_std'))}\t{fmt(r['kid'])}\t{r['n_real']}\t{r['n_fake']}")
    return "\n".join(lines) + "\n"


def main(ctx) -> None:
    from ..evaluation.features import build_extractor
    from ..evaluation.fid_suite import run_fid_suite
    from ..devices import pick_device
    from ..evaluation.generator_io import condition_source, find_checkpoint, load_generator
    from ..evaluation.identity_backend import identity_label, make_identity_embedder
    from ..evaluation.identity_metrics import generator_id_consistency, generator_mknnd
    from ..evaluation.real_set import load_real_set
    from ..evaluation.turntable import gif_bytes, grid, turntable_frames
    from ..ops import use_built

    use_built(ctx.input("ops"))      # compiled ops where they pay (a GPU); else the references
    p = ctx.params.evaluate
    device = pick_device(p.device)
    g, meta = load_generator(find_checkpoint(ctx.input("checkpoint")), device)
    cond = condition_source(g, meta, ctx.input("dataset"), p.front_max_abs_yaw_deg)
    extractor = build_extractor(p, device)
    reals = load_real_set(ctx.input("dataset"), extractor, p.max_reals, ctx.seed("reals"), p.batch_size)
    ctx.log.info("evaluate: conditioning %s, %d real images, extractor %s", cond.mode, len(reals), extractor.name)
    out_dir = ctx.output("eval")
    kept = {}

    def keep(name, fakes):
        if name in ("fid_random", "fid_front", "fid_back"):
            kept[name] = fakes["image"][: p.grid_size * p.grid_size]

    fids = run_fid_suite(g, cond, reals, extractor, p, ctx.seed("fid"), device, keep)
    embedder = make_identity_embedder("evaluate", p.identity_backend, p.arcface)
    diversity = generator_mknnd(g, cond, embedder, p.mknnd_samples, p.mknnd_k, ctx.seed("mknnd"), p.psi,
                                p.batch_size, device)
    consistency = generator_id_consistency(g, cond, embedder, p.id_identities, p.id_view_yaws_deg,
                                           ctx.seed("idc"), p.psi, p.batch_size, device)
    memo = None
    from ..data.manifest import VIEW_CONDITIONS_FILE
    has_clip = (ctx.input("dataset") / VIEW_CONDITIONS_FILE).exists()
    if p.memorisation_samples and not has_clip:
        ctx.log.warning("evaluate: the dataset has no %s (training images' CLIP features); memorisation check "
                        "skipped", VIEW_CONDITIONS_FILE)
    if p.memorisation_samples and has_clip:
        from ..evaluation.memorisation import memorisation_check
        from .label_clip import make_embedder as make_clip_embedder     # the embedder of the dataset's features

        memo = memorisation_check(g, cond, make_clip_embedder(ctx), ctx.input("dataset"), p.memorisation_samples,
                                  p.memorisation_neighbours, ctx.seed("memorisation"), p.psi, p.batch_size, device)
    metrics = {name: r["fid"] for name, r in fids.items()}
    metrics.update({name.replace("fid", "kid", 1): r["kid"] for name, r in fids.items()})
    metrics["mknnd"] = diversity
    metrics.update(consistency)
    if memo is not None:
        metrics["memorisation_nearest_cosine"] = memo.nearest_cosine
    inv_path = ctx.input("invert_metrics")
    if inv_path.exists():
        inv = json.loads(inv_path.read_text())
        metrics["inversion"] = {k: v for k, v in inv.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    recon_path = ctx.input("recon_metrics")
    if recon_path.exists():                                 # eval_recon's Table 2 rows (reconstructor and PTI)
        metrics["reconstruction"] = json.loads(recon_path.read_text())
    labels = {"feature_extractor": extractor.name, "fid_comparable_to_published": bool(extractor.comparable),
              "feature_note": extractor.note, "identity_backend": embedder.name,
              "identity_provenance": identity_label(embedder), "conditioning": cond.mode,
              "generator": ctx.params.generator.checkpoint, "imported_from": meta.get("imported_from"),
              "num_fakes": p.num_fakes, "fakes_per_yaw_bin": p.fakes_per_yaw_bin, "n_real": len(reals),
              "n_real_per_metric": {k: r["n_real"] for k, r in fids.items()},
              "not_applicable": sorted(k for k, r in fids.items() if r["fid"] is None),
              "memorisation": ("off" if not p.memorisation_samples else
                               f"nearest training images in CLIP space ({memo.table['embedder']})" if memo else
                               "skipped: the dataset has no per-image CLIP features")}
    if not extractor.comparable:
        labels["warning"] = "FID/KID computed with offline features: not comparable to published numbers"

    if memo is not None:
        fileio.write_json(out_dir / "memorisation.json", memo.table)
        fileio.write_png(out_dir / "memorisation.png", memo.strip)
    for name, imgs in sorted(kept.items()):
        fileio.write_png(out_dir / f"fakes_{name}.png", grid(imgs, p.grid_size))
    rng = np.random.default_rng(ctx.seed("turntables"))
    for i in range(p.turntable_samples):
        z = torch.from_numpy(rng.standard_normal((1, g.cfg.z_dim)).astype(np.float32)).to(device)
        c, _ = cond.draw(rng, 1, front=True)
        with torch.no_grad():
            ws = g.map(z, torch.from_numpy(c).to(device), psi=p.psi)
        frames = turntable_frames(g, ws, p.turntable_frames, z=z, batch_size=p.batch_size)
        fileio.write_bytes(out_dir / f"turntable_{i:02d}.gif", gif_bytes(frames, p.frame_ms))
    fileio.write_json(out_dir / "labels.json", labels)
    fileio.write_json(ctx.output("metrics"), metrics)
    fileio.write_text(ctx.output("fid_by_yaw"), bias_curve_tsv(fids))
    ctx.log.info("evaluate: FID-random %s, FID-front %s, FID-back %s, MKNND %.4f",
                 metrics["fid_random"], metrics["fid_front"], metrics["fid_back"], diversity)
    _log_mlflow(ctx, metrics, labels, out_dir)


def _flat_numbers(d: dict) -> dict:
    return {k: float(v) for k, v in fileio.flatten(d).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _log_mlflow(ctx, metrics: dict, labels: dict, out_dir) -> None:
    from ..tracking import mlflow_run

    with mlflow_run(ctx, "evaluate", {"evaluate": ctx.params.evaluate.model_dump(mode="json")}) as mlflow:
        if mlflow is None:
            return
        mlflow.log_metrics(_flat_numbers(metrics))
        mlflow.set_tags({"feature_extractor": labels["feature_extractor"], "conditioning": labels["conditioning"],
                         "fid_comparable_to_published": str(labels["fid_comparable_to_published"])})
        mlflow.log_artifacts(str(out_dir), artifact_path="eval")
        mlflow.log_artifact(str(ctx.output("fid_by_yaw")))
