"""Quality gate for assess_quality (BalanceHead §3.1): a Hyper-IQA-class scorer exported to ONNX and a
transformers Swin2SR super-resolution model for the enhance band, behind ClassicalIQA's interface
(`.score(rgb) -> 0..100`, `.enhance(rgb) -> rgb`, `.name`, `.enhancer_name`).

pyiqa (the usual home of Hyper-IQA) is not a dependency: its checkpoints are pickles and it pulls
weights from the network. A Hyper-IQA export to ONNX (hyper-network + target network in one graph,
one score per crop) is read with onnxruntime instead; `HyperIQAParams` holds the contract.

Crops. Hyper-IQA scores random 224 crops and averages them. We use a fixed layout instead (no
RNG): `n_crops` positions on a square grid over the image (centre only for 1), so a score is a pure
function of the image. Images smaller than the crop are upsampled (bicubic) to fit first.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import weights as W
from .onnx_session import OnnxModel, normalise
from .params import HyperIQAParams, Swin2SRParams

IQA_PARAM = "assess_quality.hyper_iqa.model"
SR_PARAM = "assess_quality.swin2sr.model"
OFFLINE = "assess_quality.backend: offline (ClassicalIQA)"


def crop_positions(h: int, w: int, size: int, n: int) -> list[tuple[int, int]]:
    """(top, left) of n crops: the centre for n = 1, else evenly picked from a k x k grid (k = ceil(sqrt(n)))
    spanning the image corner to corner, in row-major order."""
    if n == 1:
        return [((h - size) // 2, (w - size) // 2)]
    k = math.ceil(math.sqrt(n))
    grid = [(int(round(t)), int(round(l))) for t in np.linspace(0, h - size, k) for l in np.linspace(0, w - size, k)]
    pick = np.linspace(0, len(grid) - 1, n).round().astype(int)
    return [grid[i] for i in pick]


class HyperIQAScorer:
    """`.score(rgb)` -> clip(mean over crops of raw * score_scale + score_offset, 0, 100)."""

    def __init__(self, params: HyperIQAParams):
        self.p = params
        self.onnx = OnnxModel(params, param=IQA_PARAM, offline=OFFLINE, what="Hyper-IQA")
        self.onnx.check_square_input(params.input_size)
        self.name = f"hyper-iqa-onnx:{self.onnx.path.name}"

    def crops(self, rgb: np.ndarray) -> np.ndarray:
        p = self.p
        im = Image.fromarray(np.ascontiguousarray(np.asarray(rgb)[..., :3]))
        w, h = im.size
        short = p.resize_short or min(w, h)
        short = max(short, p.input_size)
        if short != min(w, h):
            f = short / min(w, h)
            im = im.resize((max(p.input_size, round(w * f)), max(p.input_size, round(h * f))), Image.Resampling.BICUBIC)
        a = np.asarray(im)
        s = p.input_size
        return np.stack([a[t:t + s, l:l + s] for t, l in crop_positions(a.shape[0], a.shape[1], s, p.n_crops)])

    def score_batch(self, images) -> list[float]:
        p = self.p
        crops = [self.crops(im) for im in images]
        flat = np.concatenate(crops) if crops else np.zeros((0, p.input_size, p.input_size, 3), np.uint8)
        raw = []
        starts = range(0, len(flat), p.batch_size)
        for s in tqdm(starts, desc="hyper-iqa", unit="batch", disable=not p.progress or len(starts) < 2):
            x = normalise(flat[s:s + p.batch_size], p.mean, p.std)
            raw.append(np.asarray(self.onnx.run(x)[0], np.float64).reshape(len(x), -1)[:, 0])
        raw = np.concatenate(raw) if raw else np.zeros(0)
        out, i = [], 0
        for c in crops:
            m = float(raw[i:i + len(c)].mean())
            i += len(c)
            out.append(float(np.clip(m * p.score_scale + p.score_offset, 0.0, 100.0)))
        return out

    def score(self, rgb: np.ndarray) -> float:
        return self.score_batch([rgb])[0]

    def provenance(self) -> dict:
        prov = self.onnx.provenance("hyper-iqa-onnx")
        prov.update(n_crops=self.p.n_crops, score_scale=self.p.score_scale, score_offset=self.p.score_offset)
        return prov


class Swin2SREnhancer:
    """`.enhance(rgb)` -> uint8: Swin2SR reconstruction (the model pads to its window itself)."""

    def __init__(self, params: Swin2SRParams):
        import torch
        from transformers import Swin2SRForImageSuperResolution

        self.p = params
        W.check_device(params.device, "assess_quality.swin2sr.device")
        path = W.resolve(params.model, param=SR_PARAM, offline=OFFLINE, what="Swin2SR",
                         local_files_only=params.local_files_only, allow_download=params.allow_download,
                         revision=params.revision)
        W.refuse_pickle_only(path, SR_PARAM, OFFLINE, "Swin2SR")
        self.path = path
        self.sums = W.checksum(path)
        W.verify(self.sums, params.expected_sha256, "assess_quality.swin2sr.expected_sha256")
        with W.hub_offline(params.allow_download):
            self.model = Swin2SRForImageSuperResolution.from_pretrained(
                path, local_files_only=True, use_safetensors=True, trust_remote_code=False,
                dtype=W.torch_dtype(params.dtype))
        self.model.to(params.device).eval()
        self.upscale = int(self.model.config.upscale)
        self._torch = torch
        self.name = f"swin2sr:{params.model}"

    def enhance_batch(self, images) -> list[np.ndarray]:
        """One forward pass per image (sizes differ), under a progress bar."""
        torch = self._torch
        p = self.p
        out = []
        for rgb in tqdm(images, desc="swin2sr", unit="img", disable=not p.progress or len(images) < 2):
            a = np.asarray(rgb)[..., :3]
            h, w = a.shape[:2]
            x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float().div(255.0)
            with torch.inference_mode():
                y = self.model(pixel_values=x.to(p.device, W.torch_dtype(p.dtype))).reconstruction
            y = y[0, :, :h * self.upscale, :w * self.upscale].float().clamp(0, 1).mul(255.0).round()
            sr = y.byte().permute(1, 2, 0).cpu().numpy()
            if p.output == "same_size":
                sr = np.asarray(Image.fromarray(sr).resize((w, h), Image.Resampling.LANCZOS))
            out.append(sr)
        return out

    def enhance(self, rgb: np.ndarray) -> np.ndarray:
        return self.enhance_batch([rgb])[0]

    def provenance(self) -> dict:
        return {"backend": "swin2sr", "model_id": self.p.model, "revision": self.p.revision,
                "resolved_path": str(self.path), "weights_sha256": self.sums["sha256"],
                "weight_files": self.sums["files"], "upscale": self.upscale, "output": self.p.output}


class ProductionQuality:
    """ClassicalIQA's interface over the two models: `.score`, `.enhance`, `.name`, `.enhancer_name`."""

    def __init__(self, iqa: HyperIQAParams, sr: Swin2SRParams):
        self.scorer = HyperIQAScorer(iqa)
        self.enhancer = Swin2SREnhancer(sr)
        self.name = self.scorer.name
        self.enhancer_name = self.enhancer.name

    def score(self, rgb: np.ndarray) -> float:
        return self.scorer.score(rgb)

    def enhance(self, rgb: np.ndarray) -> np.ndarray:
        return self.enhancer.enhance(rgb)

    def provenance(self) -> dict:
        return {"iqa": self.scorer.provenance(), "sr": self.enhancer.provenance()}
