"""Head pose + crop + person mask from ONNX models (VGGHeads- and DAViD-class; BalanceHead §3.1),
with the interfaces of OfflinePoseEstimator (`.estimate`) and OfflineSegmenter (`.mask`, `.crop`).

Both models see the whole frame letterboxed into their square input (aspect kept, white borders:
our synthesised images are on white) and their outputs are mapped back to source pixels. The
tensor contracts are in `HeadPoseParams` and `PersonSegParams`.

The crop is the offline one (`segment.crop_head`: square on the head found from the mask, scale
from the head height), so fronts and views are cropped alike whichever backend made the mask; the
head detector's box can be passed instead (`crop(..., head_xyxy=...)`, from `estimate()['box']`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from balancehead.backends.segment import HeadBox, crop_head

from .onnx_session import OnnxModel, letterbox, normalise
from .params import HeadPoseParams, PersonSegParams

POSE_PARAM = "preprocess.head_pose.model"
SEG_PARAM = "preprocess.person_seg.model"
POSE_OFFLINE = "preprocess.backend: offline (OfflinePoseEstimator)"
SEG_OFFLINE = "preprocess.backend: offline (OfflineSegmenter)"


def _batches(n: int, size: int, desc: str, progress: bool):
    starts = range(0, n, size)
    return tqdm(starts, desc=desc, unit="batch", disable=not progress or len(starts) < 2)


class OnnxHeadPoseEstimator:
    """`.estimate(rgb, mask=None)` -> {'yaw', 'pitch', 'roll', 'confidence', 'detected', 'box'}.

    yaw/pitch follow balancehead.camera (degrees; +yaw = camera on the subject's left, +pitch =
    camera above) after `yaw_sign`/`pitch_sign`. With no head at or above `min_score`, the best
    candidate is still reported but `detected` is False and `confidence` is its (low) score; with
    no candidate at all the pose is 0 and confidence 0. The stage should reject undetected items.
    """

    def __init__(self, params: HeadPoseParams, param: str = POSE_PARAM, offline: str = POSE_OFFLINE):
        """`param` / `offline`: the weights' params key and the offline alternative, named in errors
        (preprocess's by default; invert passes its own)."""
        self.p = params
        self.onnx = OnnxModel(params, param=param, offline=offline, what="head pose")
        self.onnx.check_square_input(params.input_size)
        section = param.rsplit(".", 1)[0]
        for name in (params.boxes_output, params.pose_output):
            if name not in self.onnx.output_names:
                raise ValueError(f"head pose model has no output {name!r} (outputs: {self.onnx.output_names}); "
                                 f"set {section}.boxes_output / pose_output")
        self.name = f"head-pose-onnx:{self.onnx.path.name}"

    def estimate(self, rgb: np.ndarray, mask: np.ndarray | None = None) -> dict:
        return self.estimate_batch([rgb], None if mask is None else [mask])[0]

    def estimate_batch(self, images, masks=None) -> list[dict]:
        """`masks`, when given, whiten everything outside the person first (as the offline estimator)."""
        p = self.p
        out = []
        for s in _batches(len(images), p.batch_size, "head pose", p.progress):
            boxes_in, geoms = [], []
            for i in range(s, min(s + p.batch_size, len(images))):
                rgb = np.asarray(images[i])[..., :3]
                if masks is not None and masks[i] is not None:
                    rgb = np.where(np.asarray(masks[i])[..., None] > 127, rgb, 255).astype(np.uint8)
                canvas, geom = letterbox(rgb, p.input_size)
                boxes_in.append(canvas)
                geoms.append(geom)
            boxes, poses = self.onnx.run(normalise(np.stack(boxes_in), p.mean, p.std),
                                         [p.boxes_output, p.pose_output])
            for b, q, g in zip(boxes, poses, geoms):
                out.append(self._decode(np.asarray(b).reshape(-1, 5), np.asarray(q).reshape(-1, 3), g))
        return out

    def _decode(self, boxes: np.ndarray, poses: np.ndarray, g) -> dict:
        p = self.p
        if len(boxes) == 0:
            return {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "confidence": 0.0, "detected": False, "box": None}
        k = int(np.argmax(boxes[:, 4]))
        x0, y0, x1, y1, score = (float(v) for v in boxes[k])
        to_src = lambda x, off: (x - off) / g.scale  # noqa: E731
        box = [to_src(x0, g.left), to_src(y0, g.top), to_src(x1, g.left), to_src(y1, g.top)]
        yaw, pitch, roll = (float(v) for v in poses[k])
        return {"yaw": float(((p.yaw_sign * yaw) + 180.0) % 360.0 - 180.0), "pitch": p.pitch_sign * pitch,
                "roll": roll, "confidence": score, "detected": bool(score >= p.min_score), "box": box}

    def provenance(self) -> dict:
        prov = self.onnx.provenance("head-pose-onnx")
        prov.update(input_size=self.p.input_size, yaw_sign=self.p.yaw_sign, pitch_sign=self.p.pitch_sign)
        return prov


class OnnxPersonSegmenter:
    """`.mask(rgb)` -> uint8 HxW (0/255) and `.crop(rgb, mask=None, head_xyxy=None)` -> (rgb, mask, box)."""

    def __init__(self, params: PersonSegParams, crop_size: int = 128, margin: float = 0.1,
                 param: str = SEG_PARAM, offline: str = SEG_OFFLINE):
        self.p = params
        self.out_size = crop_size
        self.margin = margin
        self.onnx = OnnxModel(params, param=param, offline=offline, what="person segmentation")
        self.onnx.check_square_input(params.input_size)
        self.name = f"person-seg-onnx:{self.onnx.path.name}"

    def mask_batch(self, images) -> list[np.ndarray]:
        p = self.p
        out = []
        for s in _batches(len(images), p.batch_size, "person mask", p.progress):
            chunk = [np.asarray(im)[..., :3] for im in images[s:s + p.batch_size]]
            boxed = [letterbox(im, p.input_size) for im in chunk]
            probs = self.onnx.run(normalise(np.stack([c for c, _ in boxed]), p.mean, p.std))[0]
            probs = np.asarray(probs, np.float32).reshape(len(chunk), p.input_size, p.input_size)
            if p.output_kind == "logits":
                probs = 1.0 / (1.0 + np.exp(-probs))
            for im, (_, g), prob in zip(chunk, boxed, probs):
                out.append(self._to_source(prob, g, im.shape[:2]))
        return out

    def _to_source(self, prob: np.ndarray, g, shape) -> np.ndarray:
        h, w = shape
        inner = prob[g.top:g.top + g.height, g.left:g.left + g.width]
        up = np.asarray(Image.fromarray(inner.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR))
        fg = up >= self.p.threshold
        if self.p.keep_largest_component and fg.any():
            labels, n = ndimage.label(fg)
            sizes = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
            fg = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
        return np.where(fg, 255, 0).astype(np.uint8)

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        return self.mask_batch([rgb])[0]

    def crop(self, rgb: np.ndarray, mask: np.ndarray | None = None, head_xyxy=None):
        m = self.mask(rgb) if mask is None else mask
        box = None
        if head_xyxy is not None:
            x0, y0, x1, y1 = (float(v) for v in head_xyxy)
            side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * self.margin)
            box = HeadBox(cx=(x0 + x1) / 2, cy=(y0 + y1) / 2, side=max(side, 1.0), top=int(y0), neck=int(y1))
        return crop_head(rgb, m, out_size=self.out_size, margin=self.margin, box=box)

    def provenance(self) -> dict:
        prov = self.onnx.provenance("person-seg-onnx")
        prov.update(input_size=self.p.input_size, threshold=self.p.threshold)
        return prov
