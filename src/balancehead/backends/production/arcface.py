"""ArcFace-class identity embedder (ONNX via onnxruntime) for select_front and identity metrics.

Alignment. ArcFace models are trained on 112x112 crops in which five landmarks (eye centres, nose
tip, mouth corners) sit at fixed template positions; a similarity transform (rotation, uniform
scale, translation; Umeyama's least-squares estimate) maps the detected landmarks onto that
template. When `embed` is given landmarks for an image, that is what happens.

Fallback. Our synthesised heads come without landmarks, and side/back views have no visible face
at all (BalanceHead A.6.10 discusses why identity metrics on such views are weak). Without landmarks we
crop a square centred on the head found in the person mask (`segment.head_box`; the image centre
when there is no mask) whose side is `fallback_crop` times the head-box side, shifted down by 10% of
the head side because the face sits in the lower part of the head box (hair above it). It is an
approximation of the template crop for near-frontal heads; the resulting similarity is only
meaningful to rank candidates of one source, which is how select_front uses it.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from tqdm import tqdm

from balancehead.backends.segment import head_box

from .onnx_session import OnnxModel, normalise
from .params import ArcFaceParams

PARAM = "select_front.arcface.model"
OFFLINE = "select_front.backend: offline (OfflineIdentityEmbedder)"

# The five-point ArcFace template for a 112x112 crop (x, y): left eye, right eye, nose tip, left and
# right mouth corners, as published with the ArcFace training data.
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix M of the least-squares similarity transform with dst ~ M @ [src; 1] (Umeyama 1991)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var_s = (s0 ** 2).sum() / len(src)
    scale = (sig * sign).sum() / max(var_s, 1e-12)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def warp_affine(rgb: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Output pixel p takes the source at M^-1 p (bilinear, black outside, as the ArcFace recipe)."""
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2].ravel()
    im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    return np.asarray(im.transform((size, size), Image.Transform.AFFINE, tuple(inv), Image.Resampling.BILINEAR))


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    tmpl = ARCFACE_TEMPLATE_112 * (size / 112.0)
    return warp_affine(np.asarray(rgb), similarity_transform(landmarks, tmpl), size)


def fallback_crop(rgb: np.ndarray, mask: np.ndarray | None, fraction: float, size: int) -> np.ndarray:
    """Square around the head (mask) or the image centre, white outside the image, resized to size."""
    rgb = np.asarray(rgb)
    h, w = rgb.shape[:2]
    if mask is not None and (np.asarray(mask) > 127).any():
        box = head_box(mask, margin=0.0)
        side = fraction * box.side
        cx, cy = box.cx, box.cy + 0.1 * box.side
    else:
        side = fraction * min(h, w)
        cx, cy = w / 2.0, h / 2.0
    side = max(side, 2.0)
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    canvas = Image.new("RGB", (w + 2 * int(side), h + 2 * int(side)), (255, 255, 255))
    canvas.paste(im, (int(side), int(side)))
    box_xy = (x0 + int(side), y0 + int(side), x0 + side + int(side), y0 + side + int(side))
    return np.asarray(canvas.resize((size, size), Image.Resampling.BICUBIC, box=box_xy))


class ArcFaceEmbedder:
    """`.embed(rgbs, masks=None, landmarks=None) -> (N, D)` float32, unit rows (OfflineIdentityEmbedder's call)."""

    def __init__(self, params: ArcFaceParams, param: str = PARAM, offline: str = OFFLINE):
        """`param` / `offline`: the params key of the weights and the offline alternative, named in errors
        (select_front's by default; evaluate / invert pass their own)."""
        self.p = params
        self.onnx = OnnxModel(params, param=param, offline=offline, what="ArcFace")
        self.onnx.check_square_input(params.input_size)
        self.name = f"arcface-onnx:{self.onnx.path.name}"

    def prepare(self, rgb, mask=None, landmarks=None) -> np.ndarray:
        """The 112x112 (input_size) face crop the model sees; landmarks (5, 2) in source pixels."""
        if landmarks is not None:
            return align_face(np.asarray(rgb), np.asarray(landmarks, np.float64), self.p.input_size)
        return fallback_crop(rgb, mask, self.p.fallback_crop, self.p.input_size)

    def embed(self, rgbs, masks=None, landmarks=None) -> np.ndarray:
        p = self.p
        n = len(rgbs)
        crops = np.stack([self.prepare(rgbs[i], None if masks is None else masks[i],
                                       None if landmarks is None else landmarks[i]) for i in range(n)]) if n else None
        out = []
        starts = range(0, n, p.batch_size)
        for s in tqdm(starts, desc="arcface", unit="batch", disable=not p.progress or len(starts) < 2):
            batch = crops[s:s + p.batch_size]
            if p.channel_order == "bgr":
                batch = batch[..., ::-1]
            x = normalise(batch, p.mean, p.std, unit_scale=False)
            feats = np.asarray(self.onnx.run(x)[0], np.float32).reshape(len(batch), -1)
            out.append(feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def provenance(self) -> dict:
        prov = self.onnx.provenance("arcface-onnx")
        prov.update(input_size=self.p.input_size, fallback_crop=self.p.fallback_crop)
        return prov
