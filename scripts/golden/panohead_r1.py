"""Golden numbers for PanoHead's lazy R1 step (image, raw image and mask terms, EG3D blur) and its G main
step (blur of the fake I+ only, camera-offset penalty trans_reg) from the official `training/loss.py`,
with a small analytic generator and discriminator so only the loss code is exercised.

    python scripts/golden/panohead_r1.py /path/to/SizheAn/PanoHead [tests/data/panohead_r1.safetensors]

Imports the official code from the checkout given (never vendored) and writes only small tensors
(safetensors) and the settings (JSON next to them). tests/test_train_panohead.py replays them through
`balancehead.train.loss.GanLoss.d_r1`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

CASES = {   # name: (image size, neural resolution, r1_gamma, r1_gamma_seg)
    "raw_downsampled": (16, 8, 2.0, 0.0),
    "with_mask": (8, 8, 2.0, 30.0),
}
BLUR_INIT, BLUR_FADE_KIMG, CUR_NIMG, GAIN = 2.0, 1.0, 350, 4     # blur sigma 2 * (1 - 0.35) = 1.3


def stub_params(size: int, raw: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(3, size, size, generator=g), "b": torch.randn(3, raw, raw, generator=g),
            "m": torch.randn(1, raw, raw, generator=g)}


def stub_logits(p: dict, image, raw, mask) -> torch.Tensor:
    """Linear in I+, quadratic in I and the mask: the R1 gradients depend on the (blurred) inputs. The mask
    is brought to the size of `m` (PanoHead feeds D the mask at the neural resolution, we at the image size;
    the case that compares the mask term has both equal)."""
    if mask.shape[-1] != p["m"].shape[-1]:
        mask = torch.nn.functional.interpolate(mask, size=p["m"].shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return ((image * p["a"]).sum([1, 2, 3]) + 0.5 * (raw.square() * p["b"]).sum([1, 2, 3])
            + (mask.square() * p["m"]).sum([1, 2, 3]))[:, None]


G_SIZE, TRANS_REG = 8, 10.0


def stub_adapt(p: dict, c: torch.Tensor):
    """Camera label (B, 25) -> (adapted label, translation delta): the delta moves entries 3, 7, 11 as
    PanoHead's apply_delta_c does."""
    delta = c[:, :3] * p["d"]
    c_new = c.clone()
    c_new[:, 3] += delta[:, 0]
    c_new[:, 7] += delta[:, 1]
    c_new[:, 11] += delta[:, 2]
    return c_new, delta


def stub_render(p: dict, c: torch.Tensor):
    """(adapted) camera label -> (I+, I, mask), all at G_SIZE."""
    return (torch.tanh(p["img"][None] * c[:, 3, None, None, None]), torch.tanh(p["raw"][None] * c[:, 7, None, None, None]),
            torch.sigmoid(p["msk"][None] * c[:, 11, None, None, None]))


def g_params(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"d": torch.randn(3, generator=g), "img": torch.randn(3, G_SIZE, G_SIZE, generator=g),
            "raw": torch.randn(3, G_SIZE, G_SIZE, generator=g), "msk": torch.randn(1, G_SIZE, G_SIZE, generator=g)}


def g_main_case(StyleGAN2Loss, tensors: dict, meta: dict) -> None:
    gp = {k: torch.nn.Parameter(v) for k, v in g_params(11).items()}
    dp = stub_params(G_SIZE, G_SIZE, 12)

    class G(torch.nn.Module):
        rendering_kwargs = {"density_reg": 0, "trans_reg": TRANS_REG}

        def mapping(self, z, c, update_emas=False):
            return torch.zeros(z.shape[0], 1, 1)

        def apply_delta_c(self, z, c, update_emas=False):
            return stub_adapt(gp, c)

        def synthesis(self, ws, c, neural_rendering_resolution=None, update_emas=False, ws_bcg=None):
            image, raw, mask = stub_render(gp, c)
            return {"image": image, "image_raw": raw, "image_mask": mask}

    class D(torch.nn.Module):
        def forward(self, img, c, update_emas=False):
            return stub_logits(dp, img["image"], img["image_raw"], img["image_mask"])

    loss = StyleGAN2Loss("cpu", G(), D(), r1_gamma=1.0, blur_init_sigma=BLUR_INIT, blur_fade_kimg=BLUR_FADE_KIMG,
                         neural_rendering_resolution_initial=G_SIZE, dual_discrimination=True, gpc_reg_prob=0.7)
    g = torch.Generator().manual_seed(5)
    c = torch.rand(4, 25, generator=g) * 2 - 1
    loss.accumulate_gradients("Gmain", torch.zeros(4, 3, G_SIZE, G_SIZE), torch.zeros(4, 1, G_SIZE, G_SIZE), c,
                              torch.zeros(4, 4), c, gain=1, cur_nimg=CUR_NIMG)
    for k, v in gp.items():
        tensors[f"g_main.param.{k}"] = v.detach().clone()
        tensors[f"g_main.grad.{k}"] = v.grad.detach().clone()
    for k, v in dp.items():
        tensors[f"g_main.dparam.{k}"] = v
    tensors["g_main.camera"] = c
    meta["g_main"] = {"size": G_SIZE, "trans_reg": TRANS_REG}


def main(checkout: str, out: str = "tests/data/panohead_r1.safetensors") -> None:
    sys.path.insert(0, str(Path(checkout).resolve()))
    from training.loss import StyleGAN2Loss  # noqa: E402  (the official code)

    tensors, meta = {}, {"blur_init_sigma": BLUR_INIT, "blur_fade_kimg": BLUR_FADE_KIMG, "cur_nimg": CUR_NIMG,
                         "gain": GAIN, "cases": {}}
    for name, (size, raw_res, gamma, gamma_seg) in CASES.items():
        params = {k: torch.nn.Parameter(v) for k, v in stub_params(size, raw_res, len(name)).items()}

        class D(torch.nn.Module):
            def forward(self, img, c, update_emas=False):
                return stub_logits(params, img["image"], img["image_raw"], img["image_mask"]) + 0 * c.sum(1, keepdim=True)

        G = torch.nn.Module()
        G.rendering_kwargs = {"density_reg": 0}
        loss = StyleGAN2Loss("cpu", G, D(), r1_gamma=gamma, r1_gamma_seg=gamma_seg, blur_init_sigma=BLUR_INIT,
                             blur_fade_kimg=BLUR_FADE_KIMG, neural_rendering_resolution_initial=raw_res,
                             dual_discrimination=True, filter_mode="antialiased", gpc_reg_prob=0.7)
        g = torch.Generator().manual_seed(7)
        img = torch.rand(3, 3, size, size, generator=g) * 2 - 1
        seg = torch.rand(3, 1, size, size, generator=g)
        c = torch.rand(3, 25, generator=g)
        loss.accumulate_gradients("Dreg", img, seg, c, torch.zeros(3, 4), c, gain=GAIN, cur_nimg=CUR_NIMG)
        for k, v in params.items():
            tensors[f"{name}.param.{k}"] = v.detach().clone()
            tensors[f"{name}.grad.{k}"] = v.grad.detach().clone()
        tensors[f"{name}.image"], tensors[f"{name}.mask"], tensors[f"{name}.camera"] = img, seg, c
        meta["cases"][name] = {"size": size, "neural_resolution": raw_res, "r1_gamma": gamma, "r1_gamma_seg": gamma_seg}
    g_main_case(StyleGAN2Loss, tensors, meta)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main(*sys.argv[1:])
