"""preprocess (for front candidates and for views): person mask, head-centred crop, head pose and the
EG3D camera label derived from the estimated pose (BalanceHead §3.1: VGGHeads pose + DAViD mask;
offline: white-background segmenter + template pose estimator, both from pixels only)."""
from __future__ import annotations

import json

import numpy as np

from .. import fileio
from ..camera import camera_label, yaw_distance
from ..runner import StageContext, finish, run_items

PASS_THROUGH = ("source_id", "subject_id", "front_id", "role", "prompt_id", "prompt", "negative_prompt",
                "nominal_yaw", "requested_yaw", "provenance")


def make_backends(ctx: StageContext):
    return preprocess_backends(ctx.params.preprocess)


def preprocess_backends(p):
    """(segmenter, pose estimator) of the `preprocess` params section (also `balancehead reconstruct`'s)."""
    from ..backends.offline_pose import OfflinePoseEstimator, PoseBankConfig
    from ..backends.segment import OfflineSegmenter

    if p.backend == "offline":
        return (OfflineSegmenter(margin=p.crop_margin, out_size=p.crop_size),
                OfflinePoseEstimator(PoseBankConfig(**p.offline_pose.model_dump())))
    from ..backends.production.head_pose_mask import OnnxHeadPoseEstimator, OnnxPersonSegmenter

    return (OnnxPersonSegmenter(p.person_seg, crop_size=p.crop_size, margin=p.crop_margin),
            OnnxHeadPoseEstimator(p.head_pose))


def backend_provenance(segmenter, pose) -> dict:
    """Names of the backends, plus model id / revision / weights checksum of production ones."""
    out = {}
    for key, b in (("mask", segmenter), ("pose", pose)):
        out[key] = b.provenance() if hasattr(b, "provenance") else {"backend": b.name}
    return out


def analyse(rgb: np.ndarray, segmenter, pose) -> tuple[np.ndarray, np.ndarray, list, dict]:
    """One image -> (head-centred crop, its person mask, crop box, pose estimate {yaw, pitch, roll, ...})."""
    mask = segmenter.mask(rgb)
    crop, crop_mask, box = segmenter.crop(rgb, mask)
    est = pose.estimate(rgb, mask)          # pose from the whole frame; the crop follows the mask
    return crop, crop_mask, box, est


def main(ctx: StageContext) -> None:
    dep = "raw"                      # input name (both preprocess stages): see pipeline.py
    items = {r["id"]: r for r in ctx.read_items(dep)}
    segmenter, pose = None, None
    cam = ctx.params.camera

    def compute(chunk):
        nonlocal segmenter, pose
        if segmenter is None:                    # built on first use: a rerun with all items cached loads nothing
            segmenter, pose = make_backends(ctx)
            compute.provenance = backend_provenance(segmenter, pose)
        out = []
        for item_id in chunk:
            src = items[item_id]
            rgb = fileio.read_png(ctx.item_file(dep, item_id, "png"))
            crop, crop_mask, box, est = analyse(rgb, segmenter, pose)
            yaw, pitch = float(est["yaw"]), float(est["pitch"])
            label = camera_label(yaw, pitch, cam.radius, cam.fov_deg, cam.pivot)
            record = {k: src[k] for k in PASS_THROUGH if k in src}
            record.update(id=item_id, yaw=round(yaw, 3), pitch=round(pitch, 3), roll=round(float(est.get("roll", 0.0)), 3),
                          pose_confidence=round(float(est.get("confidence", 0.0)), 4),
                          camera=[round(float(v), 7) for v in label], crop_box=box,
                          mask_fraction=round(float((crop_mask > 127).mean()), 4),
                          pose_detected=bool(est.get("detected", True)),
                          preprocess_backend=compute.provenance)
            files = {"png": fileio.png_bytes(crop), "mask.png": fileio.png_bytes(crop_mask)}
            truth = ctx.item_file(dep, item_id, "truth.json")
            if truth.exists():
                files["truth.json"] = truth.read_bytes()
            out.append((record, files))
        return out

    done = run_items(ctx, sorted(items), compute, desc="images")
    finish(ctx, done, pose_metrics if ctx.stage.metrics else None)


def pose_metrics(records, cache) -> dict:
    """Pose-estimator error against the synthesiser's ground truth (evaluation only)."""
    errs = []
    for r in records:
        path = cache.file(r["id"], "truth.json")
        if "truth.json" in r.get("files", {}) and path.exists():
            t = json.loads(path.read_text())
            if "true_yaw" in t:
                errs.append(yaw_distance(r["yaw"], t["true_yaw"]))
    if not errs:
        return {"n": len(records), "n_with_truth": 0}
    e = np.asarray(errs)
    return {"n": len(records), "n_with_truth": len(e), "yaw_abs_err_median": float(np.median(e)),
            "yaw_abs_err_p90": float(np.percentile(e, 90)), "yaw_abs_err_mean": float(e.mean()),
            "frac_within_22_5": float((e <= 22.5).mean())}
