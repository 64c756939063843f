"""invert: PTI on each target (held-out prior identities, or a folder of photos; with `pose: production`
the photos are cropped and posed by the data engine's ONNX backends, BalanceHead A.6.12).

The `invert` output directory holds, per target <id>/:
  pivot.safetensors   the pivot ws (1, num_ws, w_dim)
  delta.safetensors   tuned generator weights minus the checkpoint's (changed entries only)
  target.png, input_view.png, start.png, novel_<view>.png / gt_<view>.png (prior targets)
  turntable.gif (and turntable.mp4 when requested and an ffmpeg writer exists)
  metrics.json
and metrics.jsonl (one line per target); the `metrics` output summarises them (DVC metrics).
"""
from __future__ import annotations

import shutil

import numpy as np

from .. import fileio
from ..progress import track

# delta.safetensors says what it is relative to (read back with fileio.read_safetensors_meta)
DELTA_META = {"base": "G_ema", "kind": "pti-delta"}


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(records: list[dict], labels: dict) -> dict:
    out = {"targets": len(records), **labels}
    for phase in ("start", "pivot", "input_view"):
        for k in ("psnr", "ssim", "lpips", "l2", "id_sim"):
            v = _mean([r[phase].get(k) for r in records])
            if v is not None:
                out[f"{phase}_{k}"] = v
    novel = [r["novel_views"] for r in records if "novel_views" in r]
    if novel:
        for view in novel[0]:
            for k in novel[0][view]:
                out[f"novel_{view}_{k}"] = _mean([n[view][k] for n in novel])
    return out


def production_pose(p, size: int):
    """invert.pose 'production' (BalanceHead A.6.12): the data engine's ONNX person mask and head pose
    (preprocess's onnx backend classes), from invert's own head_pose / person_seg params; the head crop
    has the generator's resolution and invert.crop_margin."""
    from ..backends.production.head_pose_mask import OnnxHeadPoseEstimator, OnnxPersonSegmenter

    offline = "invert.pose: offline (OfflinePoseEstimator)"
    return (OnnxPersonSegmenter(p.person_seg, crop_size=size, margin=p.crop_margin,
                                param="invert.person_seg.model", offline=offline),
            OnnxHeadPoseEstimator(p.head_pose, param="invert.head_pose.model", offline=offline))


def main(ctx) -> None:
    from ..devices import pick_device
    from ..evaluation.generator_io import condition_source, find_checkpoint, load_generator
    from ..evaluation.inversion import invert_target
    from ..evaluation.perceptual import PerceptualLoss
    from ..evaluation.targets import estimate_camera, folder_targets, prior_targets, wild_targets
    from ..evaluation.turntable import gif_bytes, mp4_bytes
    from ..evaluation.identity_backend import identity_label, make_identity_embedder
    from ..ops import use_built

    use_built(ctx.input("ops"))      # compiled ops where they pay (a GPU); else the references
    p = ctx.params.invert
    device = pick_device(p.device)
    g, meta = load_generator(find_checkpoint(ctx.input("checkpoint")), device)
    dataset = ctx.input("dataset")
    cond = condition_source(g, meta, dataset if dataset.exists() else None)
    res = g.cfg.output_resolution if p.resolution is None else p.resolution
    backends = {}
    if p.targets == "prior_holdout":
        targets = prior_targets(ctx.input("prior"), p.max_targets, p.input_yaw_deg)
    elif p.pose == "production":
        segmenter, pose = production_pose(p, res)
        backends = {"pose_backend": pose.provenance(), "mask_backend": segmenter.provenance()}
        targets = wild_targets(ctx.path(p.folder), p.max_targets, segmenter, pose, ctx.params.camera)
        for t in targets:
            if not t.pose["detected"]:
                ctx.log.warning("invert: no head detected in %s (confidence %.3f); inverting at the best "
                                "candidate's pose", t.source, t.pose["confidence"])
    else:
        targets = folder_targets(ctx.path(p.folder), p.max_targets, res)
    estimator = None
    if p.pose == "offline":
        from ..backends.offline_pose import OfflinePoseEstimator
        estimator = OfflinePoseEstimator()
    perceptual = PerceptualLoss(p.perceptual, device)
    metric = PerceptualLoss([p.metric_lpips.model_copy(update={"weight": 1.0})], device)
    embedder = make_identity_embedder("invert", p.identity_backend, p.arcface)
    labels = {"perceptual_loss": "; ".join(perceptual.labels), "lpips_metric": metric.labels[0],
              "identity_backend": embedder.name, "lpips_is_offline": p.metric_lpips.kind == "offline"}
    ctx.log.info("invert: identity similarity on %s", identity_label(embedder))

    out_dir = ctx.output("invert")
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    records = []
    for t in track(targets, ctx.log, "invert: targets", "target"):
        known = p.pose in ("known", "production") and t.camera is not None
        camera = t.camera if known else estimate_camera(t, estimator, ctx.params.camera)
        out = invert_target(g, t, camera, p, perceptual, metric, embedder, cond, ctx.seed("pti", t.target_id), device)
        d = tmp / t.target_id
        fileio.write_bytes(d / "pivot.safetensors", fileio.safetensors_bytes({"ws": out.result.ws.cpu().contiguous()}))
        fileio.write_bytes(d / "delta.safetensors", fileio.safetensors_bytes(out.delta, DELTA_META))
        for name, img in sorted(out.images.items()):
            fileio.write_png(d / f"{name}.png", img)
        fileio.write_bytes(d / "turntable.gif", gif_bytes(out.turntable, p.frame_ms))
        if p.mp4:
            data = mp4_bytes(out.turntable, fps=max(1, 1000 // p.frame_ms))
            if data is None:
                ctx.log.warning("invert: no MP4 writer (imageio-ffmpeg) installed; wrote the GIF only")
            else:
                fileio.write_bytes(d / "turntable.mp4", data)
        rec = {**out.metrics, "camera": [float(x) for x in camera]}
        if t.pose is not None:
            rec["pose"] = {**t.pose, **backends}
        fileio.write_json(d / "metrics.json", {**rec, "seconds": out.seconds})   # timing: not in metrics.jsonl
        records.append(rec)
    fileio.write_jsonl(tmp / "metrics.jsonl", records)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    summary = summarise(records, labels)
    fileio.write_json(ctx.output("metrics"), summary)
    ctx.log.info("invert: %d targets; input-view PSNR %.2f -> %.2f dB", len(records),
                 summary.get("start_psnr", float("nan")), summary.get("input_view_psnr", float("nan")))
    _log_mlflow(ctx, summary, out_dir)


def _log_mlflow(ctx, summary: dict, out_dir) -> None:
    from ..tracking import mlflow_run

    with mlflow_run(ctx, "invert", {"invert": ctx.params.invert.model_dump(mode="json")}) as mlflow:
        if mlflow is None:
            return
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_artifacts(str(out_dir), artifact_path="invert")
