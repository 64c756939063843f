"""The objective, split into EG3D's four phases so regularisers can run lazily:

* G main:    softplus(-D(G(z, c_g), c_d))  (non-saturating)  + camera self-adaptation L2
* G reg:     EG3D density regularisation: L1 between densities at random points and at points
             perturbed by `density_reg_p_dist`, every `density_reg_every` steps, scaled by the interval
* D main:    softplus(D(fake)) + softplus(-D(real)) + weight * softplus(D(real, shuffled label))  [ViCiCo]
* D reg:     R1 = gamma/2 * |dD(real)/d real|^2 every `r1_interval` steps, scaled by the interval

Each call takes one round (a per-process slice of the batch), runs backward with `scale` (the share of
the global batch this round holds), and returns plain float statistics. All draws come from the
`generator` handed in, seeded by the loop from (seed, step, phase, round).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .augment import augment
from .conditioning import LabelSpec, d_label, g_label, semantic_of
from .schedule import blur, resize
from .vicico import make_negatives


@dataclass
class StepSettings:
    neural_resolution: int
    blur_sigma: float
    augment_p: float


class GanLoss:
    def __init__(self, G, D, tp, spec: LabelSpec, device: torch.device, precision: str):
        self.G, self.D, self.tp, self.spec, self.device = G, D, tp, spec, device
        self.bf16 = precision == "bf16"

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

    def gen_labels(self, batch: dict, generator: torch.Generator):
        """Labels of the fakes: real (camera, semantic) pairs of other rows of the batch, as EG3D
        draws generator labels from the dataset. -> (render camera, G label, D label)."""
        camera, sem, _ = self.real_labels(batch)
        b = camera.shape[0]
        perm = torch.randperm(b, generator=generator)
        cam_g, sem_g = camera[perm], None if sem is None else sem[perm]
        swap_cam = camera[torch.randperm(b, generator=generator)]
        c_g = g_label(self.spec, cam_g, sem_g, self.tp.conditioning.swap_prob, swap_cam, generator)
        return cam_g, c_g, d_label(self.spec, cam_g, sem_g)

    def z(self, b: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(b, self.G.cfg.z_dim, generator=generator).to(self.device)

    # --- images ------------------------------------------------------------------------------------
    def real_images(self, batch: dict, s: StepSettings) -> dict:
        img = batch["image"].to(self.device)
        return {"image": img, "image_raw": resize(img, s.neural_resolution), "mask": batch["mask"].to(self.device)}

    def d_input(self, images: dict, s: StepSettings, generator: torch.Generator) -> dict:
        out = {k: blur(v, s.blur_sigma) if k != "mask" else v for k, v in images.items()}
        return augment(out, s.augment_p, generator)

    def run_g(self, z, c, camera, s: StepSettings, generator, update_w_avg=False):
        return self.G(z, c, camera, neural_resolution=s.neural_resolution, noise_mode="random",
                      generator=generator, update_w_avg=update_w_avg)

    def run_d(self, images: dict, c: torch.Tensor, s: StepSettings, generator) -> torch.Tensor:
        with self.autocast():
            logits = self.D(self.d_input(images, s, generator), c if c.shape[1] else None)
        return logits.float()

    # --- phases ------------------------------------------------------------------------------------
    def g_main(self, batch, s: StepSettings, generator, scale: float) -> dict:
        cam_g, c_g, c_d = self.gen_labels(batch, generator)
        z = self.z(cam_g.shape[0], generator)
        with self.autocast():
            out = self.run_g(z, c_g, cam_g, s, generator, update_w_avg=True)
        fake = {"image": out.image.float(), "image_raw": out.image_raw.float(), "mask": out.mask.float()}
        logits = self.run_d(fake, c_d, s, generator)
        loss_adv = F.softplus(-logits).mean()
        loss_cam = out.camera_delta_norm.float().square().mean() * self.tp.loss.camera_adapt_weight
        ((loss_adv + loss_cam) * scale).backward()
        return {"loss_g": loss_adv.item(), "loss_camera": loss_cam.item(), "fake_score": logits.mean().item()}

    def g_density(self, batch, s: StepSettings, generator, scale: float) -> dict:
        """EG3D's density regulariser: neighbouring points should have similar density."""
        lp = self.tp.loss
        cam_g, c_g, _ = self.gen_labels(batch, generator)
        z = self.z(cam_g.shape[0], generator)
        with self.autocast():
            ws = self.G.map(z, c_g)
            planes = self.G.planes(ws, "random", generator)
            n = 1000
            pts = (torch.rand(z.shape[0], n, 3, generator=generator).to(self.device) * 2 - 1) * self.G.cfg.box_warp / 2
            near = pts + torch.randn(pts.shape, generator=generator).to(self.device) * lp.density_reg_p_dist
            sigma = self.G.density(planes, torch.cat([pts, near], dim=1)).float()
        a, b = sigma[:, :n], sigma[:, n:]
        loss = (a - b).abs().mean() * lp.density_reg
        (loss * lp.density_reg_every * scale).backward()
        return {"loss_density": loss.item()}

    def d_main(self, batch, s: StepSettings, generator, scale: float) -> dict:
        cam_g, c_g, c_d_fake = self.gen_labels(batch, generator)
        z = self.z(cam_g.shape[0], generator)
        with torch.no_grad(), self.autocast():
            out = self.run_g(z, c_g, cam_g, s, generator)
        fake = {"image": out.image.float(), "image_raw": out.image_raw.float(), "mask": out.mask.float()}
        fake_logits = self.run_d(fake, c_d_fake, s, generator)
        real = self.real_images(batch, s)
        _, _, c_real = self.real_labels(batch)
        real_logits = self.run_d(real, c_real, s, generator)
        loss_fake = F.softplus(fake_logits).mean()
        loss_real = F.softplus(-real_logits).mean()
        stats = {"loss_d_fake": loss_fake.item(), "loss_d_real": loss_real.item(),
                 "real_score": real_logits.mean().item(), "real_sign": real_logits.sign().mean().item()}
        total = loss_fake + loss_real
        vc = self.tp.vicico
        if vc.enabled and vc.weight > 0 and c_real.shape[1]:
            neg, _ = make_negatives(c_real, vc.variant, (vc.p_camera, vc.p_semantic, vc.p_both), generator)
            neg_logits = self.run_d(real, neg, s, generator)
            loss_vicico = F.softplus(neg_logits).mean() * vc.weight
            total = total + loss_vicico
            stats["loss_vicico"] = loss_vicico.item()
        (total * scale).backward()
        stats["loss_d"] = total.item()
        return stats

    def d_r1(self, batch, s: StepSettings, generator, scale: float) -> dict:
        lp = self.tp.loss
        real = {k: v.detach().requires_grad_(k != "mask") for k, v in self.real_images(batch, s).items()}
        _, _, c_real = self.real_labels(batch)
        logits = self.run_d(real, c_real, s, generator)
        grads = torch.autograd.grad(logits.sum(), [real["image"], real["image_raw"]], create_graph=True)
        penalty = sum(g.square().sum(dim=[1, 2, 3]) for g in grads).mean()
        loss = penalty * (lp.r1_gamma / 2)
        (loss * lp.r1_interval * scale + logits.sum() * 0).backward()
        return {"r1_penalty": penalty.item()}
