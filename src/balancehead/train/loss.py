"""The objective, split into EG3D's four phases so regularisers can run lazily:

* G main:    softplus(-D(G(z, c_g), c_d))  (non-saturating)  + camera-offset penalty
* G reg:     EG3D density regularisation: L1 between densities at random points and at points
             perturbed by `density_reg_p_dist`, every `density_reg_every` steps, scaled by the interval
* D main:    softplus(D(fake)) + softplus(-D(real)) + weight * softplus(D(real, shuffled label))  [ViCiCo]
* D reg:     R1 every `r1_interval` steps, scaled by the interval, as PanoHead `training/loss.py` does it:
             gamma/2 * |dD/d(I+, I)|^2 + gamma_mask/2 * |dD/d mask|^2 (the mask term only for the tri D),
             the gradients taken w.r.t. D's actual input, i.e. after blur and augmentation (`r1_wrt:
             d_input`: EG3D's run_D replaces the dict entries the gradient is asked for); `r1_wrt: real`
             takes them w.r.t. the real images before blur/augmentation (StyleGAN2-ADA)

PanoHead details (reference behaviour by default, our former choices as named options):
* camera-offset penalty (`loss.camera_adapt_penalty`): `batch_mean` = PanoHead's trans_reg,
  weight * |mean_b delta_b|^2 over the self-adaptation translations of one round; `per_sample` =
  weight * mean_b |delta_b|^2;
* blur (`loss.blur_kernel`): `eg3d` = kernel 2^-(x/sigma)^2 on |x| <= floor(3 sigma), zero padding, on D's
  I+ (real and fake) and on the real I (EG3D/PanoHead `blur_raw_target`); `gaussian` = a Gaussian of std
  sigma with reflect padding on I+ and I of both;
* G's camera label in view modes is swapped with a probability that fades from 1 to `swap_prob`
  (schedule.swap_probability) for the previous row's camera (`swap_with: roll`) or a random real one.

Each call takes one round (a per-process slice of the batch, already on the device), runs backward
with `scale` (the share of the global batch this round holds) and returns its statistics as detached
device tensors: nothing here reads a value back to the host. All draws come from the `generator`
handed in (on the models' device), seeded by the loop from (seed, step, phase, round).

The generator and discriminator are called only from `run_g` / `run_d` (and `fake_images`, which maps
G's output to D's input), so a change of their signatures touches those three places.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn import functional as F

from .augment import augment
from .conditioning import LabelSpec, d_label, g_label, semantic_of
from .schedule import blur, blur_eg3d, resize
from .vicico import make_negatives

# Translation entries of the flattened 4x4 cam2world matrix in the 25-float camera label.
TRANSLATION = slice(3, 12, 4)   # entries 3, 7, 11: a slice, so indexing copies no index tensor to the device


@dataclass
class StepSettings:
    neural_resolution: int
    blur_sigma: float
    augment_p: Optional[torch.Tensor]     # device scalar; None = augmentation off
    swap_prob: float = 0.0


def camera_offset_penalty(delta: torch.Tensor, weight: float, mode: str) -> torch.Tensor:
    """Penalty on the camera self-adaptation translations delta (B, 3).
    `batch_mean`: PanoHead's trans_reg, weight * sum_k (mean_b delta_bk)^2; `per_sample`: weight * mean_b |delta_b|^2."""
    if mode == "batch_mean":
        return delta.mean(dim=0).square().sum() * weight
    if mode == "per_sample":
        return delta.square().sum(dim=1).mean() * weight
    raise ValueError(f"unknown camera_adapt_penalty {mode!r}")


def r1_penalties(logits: torch.Tensor, images: dict, with_mask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample squared input-gradient norms of D: (over I+ and I, over the mask; zeros without)."""
    keys = ["image", "image_raw"] + (["mask"] if with_mask else [])
    grads = torch.autograd.grad(logits.sum(), [images[k] for k in keys], create_graph=True)
    penalty = grads[0].square().sum(dim=[1, 2, 3]) + grads[1].square().sum(dim=[1, 2, 3])
    penalty_mask = grads[2].square().sum(dim=[1, 2, 3]) if with_mask else torch.zeros_like(penalty)
    return penalty, penalty_mask


class GanLoss:
    def __init__(self, G, D, tp, spec: LabelSpec, device: torch.device, precision: str):
        self.G, self.D, self.tp, self.spec, self.device = G, D, tp, spec, device
        self.bf16 = precision == "bf16"
        self.mask_input = getattr(getattr(D, "cfg", None), "mode", "tri") == "tri"

    def autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # --- labels -------------------------------------------------------------------------------------
    def real_labels(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        camera = batch["camera"].to(self.device)
        sem = semantic_of(batch, self.spec.mode)
        sem = None if sem is None else sem.to(self.device)
        return camera, sem, d_label(self.spec, camera, sem)

    def gen_labels(self, batch: dict, generator: torch.Generator, swap_prob: float = 0.0):
        """Labels of the fakes: real (camera, semantic) pairs of other rows of the batch, as EG3D
        draws generator labels from the dataset. -> (render camera, G label, D label)."""
        camera, sem, _ = self.real_labels(batch)
        b = camera.shape[0]
        perm = torch.randperm(b, generator=generator, device=generator.device).to(camera.device)
        cam_g, sem_g = camera[perm], None if sem is None else sem[perm]
        if self.tp.conditioning.swap_with == "roll":        # PanoHead: torch.roll(c, 1, 0)
            swap_cam = torch.roll(cam_g, 1, 0)
        else:
            swap_cam = camera[torch.randperm(b, generator=generator, device=generator.device).to(camera.device)]
        c_g = g_label(self.spec, cam_g, sem_g, swap_prob, swap_cam, generator)
        return cam_g, c_g, d_label(self.spec, cam_g, sem_g)

    def z(self, b: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(b, self.G.cfg.z_dim, generator=generator, device=generator.device).to(self.device)

    # --- images ------------------------------------------------------------------------------------
    def real_images(self, batch: dict, s: StepSettings) -> dict:
        img = batch["image"].to(self.device)
        raw = resize(img, s.neural_resolution)
        if self.tp.loss.blur_kernel == "eg3d":             # EG3D/PanoHead blur the real I as the target
            raw = blur_eg3d(raw, s.blur_sigma)
        return {"image": img, "image_raw": raw, "mask": batch["mask"].to(self.device)}

    def d_input(self, images: dict, s: StepSettings, generator: torch.Generator) -> dict:
        if self.tp.loss.blur_kernel == "eg3d":
            out = dict(images, image=blur_eg3d(images["image"], s.blur_sigma))
        else:
            out = {k: blur(v, s.blur_sigma) if k != "mask" else v for k, v in images.items()}
        return augment(out, s.augment_p, generator)

    # --- the only call sites of G and D ----------------------------------------------------------------
    def run_g(self, z, c, camera, s: StepSettings, generator, update_w_avg=False):
        return self.G(z, c, camera, neural_resolution=s.neural_resolution,
                      output_resolution=self.tp.model.output_resolution, noise_mode="random",
                      generator=generator, update_w_avg=update_w_avg)

    @staticmethod
    def fake_images(out) -> dict:
        return {"image": out.image.float(), "image_raw": out.image_raw.float(), "mask": out.mask.float()}

    def run_d(self, images: dict, c: torch.Tensor, s: StepSettings | None, generator) -> torch.Tensor:
        """D's logits; `s` None = `images` are already D's input (blurred and augmented)."""
        d_in = images if s is None else self.d_input(images, s, generator)
        with self.autocast():
            logits = self.D(d_in, c if c.shape[1] else None)
        return logits.float()

    # --- phases ------------------------------------------------------------------------------------
    def g_main(self, batch, s: StepSettings, generator, scale: float) -> dict:
        lp = self.tp.loss
        cam_g, c_g, c_d = self.gen_labels(batch, generator, s.swap_prob)
        z = self.z(cam_g.shape[0], generator)
        with self.autocast():
            out = self.run_g(z, c_g, cam_g, s, generator, update_w_avg=True)
        logits = self.run_d(self.fake_images(out), c_d, s, generator)
        loss_adv = F.softplus(-logits).mean()
        delta = out.camera[:, TRANSLATION].float() - cam_g[:, TRANSLATION].float()
        loss_cam = camera_offset_penalty(delta, lp.camera_adapt_weight, lp.camera_adapt_penalty)
        ((loss_adv + loss_cam) * scale).backward()
        return {"loss_g": loss_adv.detach(), "loss_camera": loss_cam.detach(), "fake_score": logits.detach().mean()}

    def g_density(self, batch, s: StepSettings, generator, scale: float) -> dict:
        """EG3D's density regulariser: neighbouring points should have similar density."""
        lp = self.tp.loss
        cam_g, c_g, _ = self.gen_labels(batch, generator, s.swap_prob)
        z = self.z(cam_g.shape[0], generator)
        dev = generator.device
        with self.autocast():
            ws = self.G.map(z, c_g)
            planes = self.G.planes(ws, "random", generator)
            n = 1000
            pts = ((torch.rand(z.shape[0], n, 3, generator=generator, device=dev) * 2 - 1) * self.G.cfg.box_warp / 2).to(self.device)
            near = pts + torch.randn(pts.shape, generator=generator, device=dev).to(self.device) * lp.density_reg_p_dist
            sigma = self.G.density(planes, torch.cat([pts, near], dim=1)).float()
        a, b = sigma[:, :n], sigma[:, n:]
        loss = (a - b).abs().mean() * lp.density_reg
        (loss * lp.density_reg_every * scale).backward()
        return {"loss_density": loss.detach()}

    def d_main(self, batch, s: StepSettings, generator, scale: float) -> dict:
        cam_g, c_g, c_d_fake = self.gen_labels(batch, generator, s.swap_prob)
        z = self.z(cam_g.shape[0], generator)
        with torch.no_grad(), self.autocast():
            out = self.run_g(z, c_g, cam_g, s, generator)
        fake_logits = self.run_d(self.fake_images(out), c_d_fake, s, generator)
        real = self.real_images(batch, s)
        _, _, c_real = self.real_labels(batch)
        real_logits = self.run_d(real, c_real, s, generator)
        loss_fake = F.softplus(fake_logits).mean()
        loss_real = F.softplus(-real_logits).mean()
        real_logits = real_logits.detach()
        stats = {"loss_d_fake": loss_fake.detach(), "loss_d_real": loss_real.detach(),
                 "real_score": real_logits.mean(), "real_sign": real_logits.sign().mean()}
        total = loss_fake + loss_real
        vc = self.tp.vicico
        if vc.enabled and vc.weight > 0 and c_real.shape[1]:
            neg, _ = make_negatives(c_real, vc.variant, (vc.p_camera, vc.p_semantic, vc.p_both), generator)
            neg_logits = self.run_d(real, neg, s, generator)
            loss_vicico = F.softplus(neg_logits).mean() * vc.weight
            total = total + loss_vicico
            stats["loss_vicico"] = loss_vicico.detach()
        (total * scale).backward()
        stats["loss_d"] = total.detach()
        return stats

    def d_r1(self, batch, s: StepSettings, generator, scale: float) -> dict:
        lp = self.tp.loss
        with_mask = self.mask_input and lp.r1_gamma_mask > 0
        real = self.real_images(batch, s)
        if lp.r1_wrt == "d_input":      # EG3D/PanoHead: gradients w.r.t. what D sees (blurred, augmented)
            real = self.d_input(real, s, generator)
        real = {k: v.detach().requires_grad_(k != "mask" or with_mask) for k, v in real.items()}
        _, _, c_real = self.real_labels(batch)
        logits = self.run_d(real, c_real, None if lp.r1_wrt == "d_input" else s, generator)
        penalty, penalty_mask = r1_penalties(logits, real, with_mask)
        loss = (penalty * (lp.r1_gamma / 2) + penalty_mask * (lp.r1_gamma_mask / 2)).mean()
        (loss * lp.r1_interval * scale + logits.sum() * 0).backward()
        stats = {"r1_penalty": penalty.detach().mean()}
        if with_mask:
            stats["r1_penalty_mask"] = penalty_mask.detach().mean()
        return stats
