"""Training loop of the feed-forward Gaussian head reconstructors (PanoLAM §3.4-4.1, PercHead §3.3).

One step: `batch_size` identities; for each, one input view (random, or the one nearest the front) goes
through the model, and its Gaussians are rendered at `views` (N_v) other views of the same identity with
their cameras; the losses of `recon.losses.reconstruction_loss` (L1 / SSIM / silhouette on the coarse and
dense renders, optional depth, optional perceptual distances) compare them with the images and masks.

Determinism and resumption: the model is initialised from a seed derived from the global seed; which
identities and views a step uses is drawn from (seed, step) alone, so the step counter is the whole RNG
state. Checkpoints (`<work>/checkpoints/ckpt-<step>/`: the reconstructor via `recon.checkpoint`, the
optimizer via `train.state`, the loss curve so far in the meta) are written every `checkpoint_steps` and
when SIGTERM/SIGUSR1 asks (then `Preempted` carries the requeue exit code); a new trainer on the same work
directory resumes from the newest intact one, and its result equals an uninterrupted run's.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from balancehead import integrity
from balancehead.hashing import derive_seed
from balancehead.recon.checkpoint import load_reconstructor, save_reconstructor
from balancehead.recon.config import ReconConfig, preset
from balancehead.recon.losses import psnr, reconstruction_loss
from balancehead.recon.model import build_model
from balancehead.recon.params import TrainReconParams
from balancehead.recon.views import MultiViewSet

from .preemption import Preempted
from .state import latest, load_optimizers, publish, save_optimizers

BACKGROUND = (1.0, 1.0, 1.0)      # the prior and the packed dataset are white-background images
MODEL_DIR = "model"
CURVE = ("step", "images", "loss", "l1", "mask", "psnr", "lr", "img_per_s")    # img_per_s: timing, the rest exact


def build_config(p: TrainReconParams) -> ReconConfig:
    """The preset with the params' overrides. Perceptual terms come from `p.perceptual` (a weighted list of
    evaluation.perceptual backends), so the preset's own lpips/perceptual weights are cleared."""
    cfg = preset(p.preset)
    encoder = cfg.encoder
    if encoder.kind == "dinov2" and p.encoder_weights:
        encoder = replace(encoder, weights=p.encoder_weights)
    loss = replace(cfg.loss, lpips=0.0, perceptual=0.0,
                   **{k: v for k, v in p.loss.model_dump().items() if v is not None})
    return replace(cfg, encoder=encoder, template=replace(cfg.template, path=p.template), loss=loss,
                   views=p.views or cfg.views, render_size=p.resolution or cfg.render_size)


@dataclass
class ReconTrainResult:
    model: torch.nn.Module
    cfg: ReconConfig
    step: int
    curve: list[dict]


class ReconTrainer:
    def __init__(self, p: TrainReconParams, train_set: MultiViewSet, work: Path, seed: int, device,
                 log: logging.Logger | None = None, tracker=None, distance=None, cfg: ReconConfig | None = None):
        """`cfg` replaces `build_config(p)` (e.g. a smaller template in tests); `distance` is an optional
        perceptual distance on [0, 1] renders (evaluation.perceptual)."""
        if len(train_set) == 0:
            raise ValueError("train_recon: no training identities")
        self.p, self.data, self.seed, self.device = p, train_set, int(seed), torch.device(device)
        self.cfg = cfg or build_config(p)
        self.log = log or logging.getLogger("balancehead")
        self.tracker, self.distance = tracker, distance
        self.ckpt_dir = Path(work) / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "train_recon", "init"))
            self.model = build_model(self.cfg)
        self.model.to(self.device).train()
        self.opt = torch.optim.AdamW([q for q in self.model.parameters() if q.requires_grad], lr=p.lr,
                                     weight_decay=p.weight_decay)
        self.step, self.curve, self.window = 0, [], []     # window: the steps since the last curve row
        found = latest(self.ckpt_dir, marker=f"{MODEL_DIR}/recon.json")
        if found is not None:
            self._resume(found)

    # --- state -----------------------------------------------------------------------------------------
    def _resume(self, path: Path) -> None:
        frozen = self.model.encoder.backbone if self.cfg.encoder.kind == "dinov2" else None   # not reloaded
        model, cfg, meta = load_reconstructor(path / MODEL_DIR, self.device, backbone=frozen)
        if cfg != self.cfg:
            raise ValueError(f"{path}: checkpoint config differs from the params' (a changed recipe needs a new work dir)")
        self.model.load_state_dict(model.state_dict())
        self.model.train()
        load_optimizers(path, {"opt": self.opt})
        self.step, self.curve, self.window = int(meta["step"]), list(meta["curve"]), list(meta["window"])
        self.log.info("train_recon: resumed from %s (step %d)", path.name, self.step)

    def save(self) -> Path:
        name = f"ckpt-{self.step:09d}"
        tmp = self.ckpt_dir / f".{name}.tmp-{integrity.temp_tag()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_reconstructor(self.model, self.cfg, tmp / MODEL_DIR, {"step": self.step, "curve": self.curve,
                                                                        "window": self.window})
        save_optimizers(tmp, {"opt": self.opt})
        return publish(tmp, self.ckpt_dir, name, self.p.keep_checkpoints, "train_recon")

    # --- one step --------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Cosine decay from lr to lr * lr_final over the run."""
        t = min(step / max(self.p.steps - 1, 1), 1.0)
        return self.p.lr * (self.p.lr_final + (1 - self.p.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))

    def pick(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """-> input rows (B,), supervision rows (B, N_v), drawn from (seed, step) only."""
        rng = np.random.default_rng([self.seed, step, 0x7EC0])
        n, b = len(self.data), self.p.batch_size
        ids = rng.choice(n, b, replace=n < b)
        inputs, targets = [], []
        for i in ids:
            rows = self.data.views[i]
            inp = self.data.front(i) if self.p.input_view == "front" else int(rng.choice(rows))
            others = rows[rows != inp]
            targets.append(rng.choice(others, self.cfg.views, replace=len(others) < self.cfg.views))
            inputs.append(inp)
        return np.asarray(inputs), np.stack(targets)

    def motion(self, step: int) -> float:
        w = self.p.motion_warmup_steps
        return 1.0 if w == 0 else min(1.0, step / w)

    def forward(self, images, masks, step: int | None = None):
        if self.cfg.arch == "perchead":
            return self.model(images, masks, motion=self.motion(self.step if step is None else step))
        return self.model(images, masks)

    def train_step(self) -> dict:
        inputs, targets = self.pick(self.step)
        x, y = self.data.batch(inputs), self.data.batch(targets)
        x = {k: v.to(self.device) for k, v in x.items()}
        y = {k: v.to(self.device) for k, v in y.items()}
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        out = self.forward(x["image"], x["mask"])
        loss, terms = reconstruction_loss(self.cfg.loss, out, y["image"], y["mask"], y["camera"], self.cfg.render_size,
                                          BACKGROUND, sharpen=getattr(self.model, "sharpen", None),
                                          backend=self.p.rasterizer, depth=y.get("depth") if self.cfg.loss.depth else None,
                                          distance=self.distance)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.p.grad_clip:
            torch.nn.utils.clip_grad_norm_([q for q in self.model.parameters() if q.requires_grad], self.p.grad_clip)
        self.opt.step()
        self.step += 1
        quality = psnr(terms["render"].flatten(0, 1), y["image"].flatten(0, 1)).mean()
        value = lambda t: float(t.detach()) if torch.is_tensor(t) else float(t)  # noqa: E731
        return {"loss": value(loss), "l1": value(terms["l1"]), "mask": value(terms.get("mask", 0.0)),
                "psnr": value(quality), "lr": self.lr_at(self.step - 1)}

    # --- the run ---------------------------------------------------------------------------------------
    def run(self, stop=None) -> ReconTrainResult:
        p = self.p
        images_per_step = p.batch_size * (1 + self.cfg.views)
        self.model.train()
        t0, timed = time.perf_counter(), 0
        while self.step < p.steps:
            if stop is not None and stop.requested:
                self.save()
                self.log.info("train_recon: preempted at step %d; checkpoint written, exit %d", self.step,
                              p.requeue_exit_code)
                raise Preempted(p.requeue_exit_code)
            self.window.append(self.train_step())
            timed += 1
            if self.step % p.log_steps == 0 or self.step == p.steps:
                dt = (time.perf_counter() - t0) / timed
                row = {"step": self.step, "images": self.step * images_per_step,
                       **{k: float(np.mean([r[k] for r in self.window])) for k in ("loss", "l1", "mask", "psnr")},
                       "lr": self.window[-1]["lr"], "img_per_s": images_per_step / dt}
                self.curve.append(row)
                self.log.info("train_recon: step %d/%d loss %.4f psnr %.2f dB, %.1f img/s, ETA %.0fs", self.step,
                              p.steps, row["loss"], row["psnr"], row["img_per_s"], dt * (p.steps - self.step))
                if self.tracker is not None:
                    self.tracker.log_metrics({f"train_recon/{k}": row[k] for k in ("loss", "psnr", "img_per_s")},
                                             step=self.step)
                self.window, t0, timed = [], time.perf_counter(), 0
            if self.step % p.checkpoint_steps == 0 and self.step < p.steps:
                self.save()
        self.save()
        self.model.eval()
        return ReconTrainResult(self.model, self.cfg, self.step, self.curve)


def curve_tsv(rows: list[dict]) -> str:
    lines = ["\t".join(CURVE)]
    lines += ["\t".join(f"{r[k]:.6g}" if isinstance(r[k], float) else str(r[k]) for k in CURVE) for r in rows]
    return "\n".join(lines) + "\n"


# --- held-out check --------------------------------------------------------------------------------------
def mean_head_images(data: MultiViewSet, bins: int = 8) -> torch.Tensor:
    """The mean-head baseline: the mean training image per yaw bin (bins x 3 x S x S), a camera-aware
    average head that any reconstructor worth training must beat on held-out identities."""
    yaw = np.mod(data.yaws + 180.0 / bins, 360.0) // (360.0 / bins)
    imgs = data.images.float() / 255.0
    out = torch.ones(bins, *imgs.shape[1:])
    for b in range(bins):
        rows = np.flatnonzero(yaw == b)
        if len(rows):
            out[b] = imgs[torch.as_tensor(rows)].mean(0)
    present = [b for b in range(bins) if (yaw == b).any()]
    for b in range(bins):               # an empty bin takes the nearest present one
        if not (yaw == b).any():
            out[b] = out[min(present, key=lambda q: min(abs(q - b), bins - abs(q - b)))]
    return out


@torch.no_grad()
def holdout_scores(trainer: ReconTrainer, holdout: MultiViewSet, baseline_from: MultiViewSet) -> dict:
    """Front input -> every other view of each held-out identity: PSNR / SSIM of the model's renders, and
    PSNR of the mean-head baseline and of a blank (white) image on the same targets."""
    from balancehead.recon.losses import ssim
    from balancehead.recon.rasterize import render_views

    model, cfg = trainer.model.eval(), trainer.cfg
    mean_head = mean_head_images(baseline_from)
    bins = mean_head.shape[0]
    ours, base, blank, sims = [], [], [], []
    for i in range(len(holdout)):
        inp = holdout.front(i)
        rows = holdout.views[i][holdout.views[i] != inp]
        x, y = holdout.batch([inp]), holdout.batch(rows)
        out = trainer.forward(x["image"].to(trainer.device), x["mask"].to(trainer.device), step=trainer.p.steps)
        rgb = render_views(out.gaussians, y["camera"][None].to(trainer.device), cfg.render_size, BACKGROUND,
                           trainer.p.rasterizer)[0][0]
        sharpen = getattr(model, "sharpen", None)
        rgb = (rgb if sharpen is None else sharpen(rgb)).clamp(0, 1).cpu()
        target = y["image"]
        ours.append(psnr(rgb, target))
        sims.append(ssim(rgb, target))
        yb = np.mod(holdout.yaws[rows] + 180.0 / bins, 360.0) // (360.0 / bins)
        base.append(psnr(mean_head[torch.as_tensor(yb.astype(np.int64))], target))
        blank.append(psnr(torch.ones_like(target), target))
    cat = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    return {"holdout_identities": len(holdout), "holdout_views": int(sum(len(x) for x in ours)),
            "holdout_psnr": cat(ours), "holdout_ssim": cat(sims), "mean_head_psnr": cat(base),
            "white_psnr": cat(blank)}
