"""train_recon: a feed-forward 3D Gaussian head reconstructor (PanoLAM or PercHead) on the GAN-prior samples.

Reads `prior` (sample_prior's output: packed views of synthetic identities with cameras, masks, depth and
`splits.json`); trains on the "prior" identities only -- the "holdout" ones are for evaluation. With
`train_recon.mix_dataset` the packed multi-view dataset (`dataset`) is mixed in, as PercHead trains on
multi-view captures.

Resumable state lives in the stage's scratch directory `<scratch>/<run key>/checkpoints/` (outside the
declared outputs, which DVC deletes before rerunning a stage); the run key hashes everything that changes
the numbers (the section minus bookkeeping keys, the global seed, the prior's -- and when mixed the
dataset's -- manifest), so a rerun resumes and a changed recipe starts afresh.
SIGTERM / SIGUSR1 -> checkpoint, then exit with `train_recon.requeue_exit_code` (default 3), like `train`.

Outputs: `recon` (the final model: recon.checkpoint's safetensors + JSON, loadable with
`load_reconstructor`), `metrics` (steps, throughput, final loss, held-out PSNR/SSIM of front-view
reconstructions against the mean-head and white-image baselines), `stats` (the loss curve, DVC plots).
"""
from __future__ import annotations

import hashlib
import json

from .. import fileio
from ..hashing import sha256_file
from ..runner import StageContext

# Keys that never change the numbers: excluded from the run key.
NEUTRAL = ("checkpoint_steps", "keep_checkpoints", "log_steps", "requeue_exit_code", "holdout_identities", "device")


def run_key(ctx: StageContext) -> str:
    p = ctx.params.train_recon
    section = {k: v for k, v in p.model_dump(mode="json").items() if k not in NEUTRAL}
    h = hashlib.sha256(json.dumps({"train_recon": section, "seed": ctx.params.seed}, sort_keys=True).encode())
    sources = [ctx.input("prior")] + ([ctx.input("dataset")] if p.mix_dataset else [])
    for root in sources:
        for name in ("manifest.parquet", "splits.json", "depth.safetensors"):
            f = root / name
            h.update(name.encode() + (sha256_file(f).encode() if f.exists() else b"-"))
    return h.hexdigest()[:16]


def main(ctx: StageContext) -> None:
    from ..devices import pick_device
    from ..evaluation.perceptual import PerceptualLoss
    from ..recon.checkpoint import save_reconstructor
    from ..recon.views import load_views, read_splits
    from ..tracking import log_dataset, mlflow_run
    from ..train.preemption import Preempted, StopFlag
    from ..train.recon_loop import ReconTrainer, build_config, curve_tsv, holdout_scores

    p = ctx.params.train_recon
    device = pick_device(p.device)
    cfg = build_config(p)
    if cfg.encoder.kind == "dinov2" and not ctx.path(cfg.encoder.weights).is_dir():
        raise FileNotFoundError(f"train_recon.encoder_weights: {cfg.encoder.weights!r} is not a directory; preset "
                                f"{p.preset!r} needs a local DINOv2 checkpoint (config.json + model.safetensors)")
    prior = ctx.input("prior")
    splits = read_splits(prior)
    data = load_views(prior, cfg.render_size, subjects=splits["prior"], with_depth=cfg.loss.depth > 0)
    if p.mix_dataset:
        data = data.merged(load_views(ctx.input("dataset"), cfg.render_size, roles=p.mix_roles))
    held = splits["holdout"][:p.holdout_identities]
    holdout = load_views(prior, cfg.render_size, subjects=held) if held else None
    ctx.log.info("train_recon: %s, %d identities / %d views for training%s, %d held out, on %s",
                 cfg.name, len(data), data.num_images, " (prior + packed dataset)" if p.mix_dataset else "",
                 len(held), device)
    distance = None
    if p.perceptual:
        net = PerceptualLoss(p.perceptual, device)

        def distance(a, b):               # the backends take [-1, 1]; renders are in [0, 1]
            return net(2 * a - 1, 2 * b - 1)

    work = ctx.scratch / run_key(ctx)
    work.mkdir(parents=True, exist_ok=True)
    stop = StopFlag()
    try:
        with mlflow_run(ctx, "train_recon", {"train_recon": p.model_dump(mode="json"), "seed": ctx.params.seed}) as mlflow:
            if mlflow is not None:
                log_dataset(mlflow, prior, ctx.root, context="training")
            trainer = ReconTrainer(p, data, work, ctx.params.seed, device, ctx.log, tracker=mlflow, distance=distance)
            try:
                result = trainer.run(stop=stop)
            except Preempted as exc:
                raise SystemExit(exc.code) from None
            scores = holdout_scores(trainer, holdout, data) if holdout is not None and len(holdout) else {}
            last = result.curve[-1] if result.curve else {}
            first = result.curve[0] if result.curve else {}
            metrics = {"preset": cfg.name, "arch": cfg.arch, "encoder": cfg.encoder.kind,
                       "gaussians": int(result.model.num_gaussians), "steps": result.step,
                       "train_identities": len(data), "train_views": data.num_images,
                       "loss_first": first.get("loss"), "loss_final": last.get("loss"),
                       "psnr_first": first.get("psnr"), "psnr_final": last.get("psnr"),
                       "img_per_s": last.get("img_per_s"),
                       "perceptual": [t.kind for t in p.perceptual], **scores}
            save_reconstructor(result.model.cpu(), cfg, ctx.output("recon"),
                               {"steps": result.step, "seed": ctx.params.seed, "prior": str(ctx.stage.inputs["prior"]),
                                "perceptual": [t.kind for t in p.perceptual], "preset": p.preset},
                               stage=ctx.stage.name)
            tsv = curve_tsv(result.curve)
            fileio.write_text(ctx.output("stats"), tsv)
            fileio.write_json(ctx.output("metrics"), metrics)
            ctx.log.info("train_recon: %d steps, loss %.4f -> %.4f; held-out PSNR %.2f dB (mean head %.2f dB)",
                         result.step, metrics["loss_first"] or float("nan"), metrics["loss_final"] or float("nan"),
                         scores.get("holdout_psnr", float("nan")), scores.get("mean_head_psnr", float("nan")))
            if mlflow is not None:
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
                mlflow.log_artifact(str(ctx.output("stats")))
                mlflow.log_artifacts(str(ctx.output("recon")), artifact_path="recon")
    finally:
        stop.close()


__all__ = ["main", "run_key"]
