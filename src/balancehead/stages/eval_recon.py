"""eval_recon: the feed-forward reconstructor against PTI, PanoLAM Table 2 / Table 3 protocol (issue 13).

Each held-out prior identity (sample_prior's "holdout" split, never seen by train_recon) is reconstructed
from one packed view (the one nearest `eval_recon.input_yaw_deg`) and rendered at front / back / left /
right (yaw 0 / 180 / 90 / -90, pitch 0). The ground truth of those views, and PTI's renders of them, come
from the invert stage run on the same targets (`invert.targets: prior_holdout`): invert renders the
identity's true latent and its tuned generator at exactly these cameras (gt_<view>.png, novel_<view>.png),
so both rows of the table are scored against the same pixels by the same functions
(evaluation/reconstruction.py). PTI is not run again; its seconds per reconstruction are those invert timed.
A third row, the mean-head baseline (the mean training image of the prior nearest each view), is what any
reconstructor must beat on held-out identities.

The `eval_recon` output directory holds, per target <id>/:
  input.png            the input photo (white background) given to the reconstructor
  head.ply             the reconstructed head, standard 3DGS .ply (any splat viewer opens it)
  turntable.gif        its 360-degree turntable (turntable.mp4 too with `mp4: true` and imageio-ffmpeg)
  recon_<view>.png     its renders at the evaluation views
  metrics.json         per-view metrics of the reconstructor, PTI and the mean head, and the seconds taken
plus metrics.jsonl (the same without the machine-dependent seconds) and labels.json (what measured what).
The `metrics` output (DVC metrics) holds the two table rows; the evaluate stage merges it into its own
`metrics` output under "reconstruction".
"""
from __future__ import annotations

import shutil

from .. import fileio
from ..progress import track


def _read_gt_and_pti(inv_dir, views, size):
    """{view: gt}, {view: PTI render}, PTI seconds (None when invert did not record them) of one target."""
    import json

    from ..evaluation.reconstruction import resize

    gts, ptis = {}, {}
    for v in views:
        if (inv_dir / f"gt_{v}.png").exists():
            gts[v] = fileio.read_png(inv_dir / f"gt_{v}.png")
        if (inv_dir / f"novel_{v}.png").exists():
            ptis[v] = fileio.read_png(inv_dir / f"novel_{v}.png")
    if size is not None:
        gts = {v: resize(im, size) for v, im in gts.items()}
        ptis = {v: resize(im, size) for v, im in ptis.items()}
    meta = inv_dir / "metrics.json"
    seconds = json.loads(meta.read_text()).get("seconds") if meta.exists() else None
    return gts, ptis, seconds


def main(ctx) -> None:
    import torch

    from ..backends.identity import OfflineIdentityEmbedder
    from ..devices import pick_device
    from ..evaluation.perceptual import PerceptualLoss
    from ..evaluation.reconstruction import (Scorers, export_head, mean_head_views, reconstruct, render_head,
                                             score_views, summarise, target_mask, view_cameras)
    from ..evaluation.targets import prior_targets
    from ..recon.checkpoint import load_reconstructor

    p = ctx.params.eval_recon
    device = pick_device(p.device)
    torch.manual_seed(ctx.seed("eval_recon"))
    model, cfg, meta = load_reconstructor(ctx.input("recon"), device)
    prior_dir, inv_root = ctx.input("prior"), ctx.input("invert")
    targets = prior_targets(prior_dir, p.max_targets, p.input_yaw_deg)
    pose = None
    if p.pose == "offline":
        from ..backends.offline_pose import OfflinePoseEstimator, PoseBankConfig
        pose = OfflinePoseEstimator(PoseBankConfig(n_subjects=p.pose_subjects, views_per_subject=p.pose_views))
    scorers = Scorers(PerceptualLoss([p.metric_lpips.model_copy(update={"weight": 1.0})], device),
                      OfflineIdentityEmbedder(), pose, device)
    backend = p.rasterizer
    cameras = view_cameras(p.views)

    out_dir = ctx.output("eval_recon")
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    records, recon_scores, pti_scores, mean_scores, recon_secs, pti_secs, missing = [], [], [], [], [], [], []
    mean_heads = {}                                         # metric size -> the mean-head baseline's views
    for t in track(targets, ctx.log, "eval_recon: targets", "target"):
        gts, ptis, pti_seconds = _read_gt_and_pti(inv_root / t.target_id, p.views, p.resolution)
        target_size = p.resolution or (next(iter(gts.values())).shape[0] if gts else t.image.shape[0])
        mask = target_mask(prior_dir, t)
        head, seconds = reconstruct(model, t.image, mask, p.timing_repeats)
        renders = dict(zip(p.views, render_head(head, cameras, target_size, backend)))
        d = tmp / t.target_id
        fileio.write_png(d / "input.png", t.image)
        for v, img in renders.items():
            fileio.write_png(d / f"recon_{v}.png", img)
        export_head(head, d, p.turntable_frames, p.turntable_size or target_size, p.frame_ms, p.mp4,
                    p.turntable_pitch_deg, backend, ctx.log)
        if target_size not in mean_heads:
            mean_heads[target_size] = mean_head_views(prior_dir, p.views, target_size)
        rec = {"target_id": t.target_id, "input_yaw": t.yaw, "gaussians": len(head),
               "reconstructor": score_views(scorers, renders, gts), "pti": score_views(scorers, ptis, gts),
               "mean_head": score_views(scorers, mean_heads[target_size], gts)}
        if not gts:
            missing.append(t.target_id)
        else:
            recon_scores.append(rec["reconstructor"])
            mean_scores.append(rec["mean_head"])
            recon_secs.append(seconds)
            if rec["pti"]:
                pti_scores.append(rec["pti"])
                if pti_seconds is not None:
                    pti_secs.append(pti_seconds)
        fileio.write_json(d / "metrics.json", {**rec, "seconds": {"reconstructor": seconds, "pti": pti_seconds}})
        records.append(rec)
    if missing:
        ctx.log.warning("eval_recon: no ground truth in %s for %s (run invert with targets: prior_holdout on the "
                        "same identities); exported without metrics", inv_root, ", ".join(missing))
    labels = {"reconstructor": cfg.name, "architecture": cfg.arch, "encoder": cfg.encoder.kind,
              "encoder_offline": cfg.encoder.kind == "tiny", "gaussians": int(getattr(model, "num_gaussians", 0)),
              "lpips_metric": scorers.lpips.labels[0], "lpips_is_offline": p.metric_lpips.kind == "offline",
              "identity_backend": scorers.embedder.name, "pose_backend": pose.name if pose is not None else None,
              "apd": "mean L2 of (yaw, pitch, roll) estimates, radians" if pose is not None else None,
              "mean_head": "pixel mean of the prior's training images nearest each view (within 22.5 degrees)",
              "views": list(p.views), "input_yaw_deg": p.input_yaw_deg, "rasterizer": backend,
              "device": str(device), "targets": len(records), "targets_without_ground_truth": missing,
              "train_meta": meta}
    fileio.write_json(tmp / "labels.json", labels)
    fileio.write_jsonl(tmp / "metrics.jsonl", records)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    summary = {"targets": len(recon_scores), "reconstructor": summarise(recon_scores, recon_secs),
               "pti": summarise(pti_scores, pti_secs), "mean_head": summarise(mean_scores, [])}
    fileio.write_json(ctx.output("metrics"), summary)
    r, q = summary["reconstructor"], summary["pti"]
    ctx.log.info("eval_recon: %d targets; PSNR recon %s / PTI %s dB; %.3g s per reconstruction",
                 len(recon_scores), r["psnr"], q["psnr"], r["seconds_per_reconstruction"] or float("nan"))
    _log_mlflow(ctx, summary, labels, out_dir)


def _log_mlflow(ctx, summary: dict, labels: dict, out_dir) -> None:
    from ..tracking import mlflow_run

    with mlflow_run(ctx, "eval_recon", {"eval_recon": ctx.params.eval_recon.model_dump(mode="json")}) as mlflow:
        if mlflow is None:
            return
        flat = fileio.flatten(summary)
        mlflow.log_metrics({k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.set_tags({"reconstructor": labels["reconstructor"], "lpips_metric": labels["lpips_metric"]})
        mlflow.log_artifacts(str(out_dir), artifact_path="eval_recon")
