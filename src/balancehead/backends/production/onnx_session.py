"""The onnxruntime plumbing every ONNX backend shares: resolve + fingerprint the .onnx file, open
a session on the available providers, check the graph's input against the documented contract, and
letterbox images to the square input size."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import weights as W
from .params import OnnxModelParams


class OnnxModel:
    """An onnxruntime session of a weights file named by params (fails before any item if absent)."""

    def __init__(self, params: OnnxModelParams, *, param: str, offline: str, what: str):
        import onnxruntime as ort

        self.p = params
        self.what = what
        path = W.resolve(params.model, param=param, offline=offline, what=what, kind="file",
                         local_files_only=params.local_files_only, allow_download=params.allow_download,
                         revision=params.revision)
        if not path.name.endswith(".onnx"):
            raise W.MissingWeightsError(W.missing_message(what, str(path), param, offline) + " (expected a .onnx file)")
        self.path = path
        self.sums = W.checksum(path)
        W.verify(self.sums, params.expected_sha256, param.rsplit(".", 1)[0] + ".expected_sha256")
        available = set(ort.get_available_providers())
        providers = [p for p in params.providers if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        if params.intra_op_threads:
            opts.intra_op_num_threads = params.intra_op_threads
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.input_name = params.input_name or self.session.get_inputs()[0].name
        if self.input_name not in inputs:
            raise ValueError(f"{what}: graph has no input {self.input_name!r} (inputs: {sorted(inputs)})")
        self.output_names = [o.name for o in self.session.get_outputs()]

    def check_square_input(self, size: int) -> None:
        """The graph's spatial input dims, where fixed, must equal the configured size."""
        shape = next(i.shape for i in self.session.get_inputs() if i.name == self.input_name)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ValueError(f"{self.what}: input {self.input_name!r} has shape {shape}, expected (N, 3, H, W)")
        for dim in shape[2:]:
            if isinstance(dim, int) and dim != size:
                raise ValueError(f"{self.what}: input {self.input_name!r} is {shape}, params say input_size {size}")

    def run(self, x: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
        return self.session.run(outputs, {self.input_name: x.astype(np.float32, copy=False)})

    def provenance(self, backend: str) -> dict:
        return {"backend": backend, "model_id": self.p.model, "revision": self.p.revision,
                "resolved_path": str(self.path), "weights_sha256": self.sums["sha256"],
                "weight_files": self.sums["files"], "providers": self.session.get_providers()}


@dataclass(frozen=True)
class Letterbox:
    """Where the image sits inside the square model input: input = image * scale + (left, top)."""

    scale: float
    left: int
    top: int
    width: int  # scaled image size inside the input
    height: int


def letterbox(rgb: np.ndarray, size: int, fill: int = 255) -> tuple[np.ndarray, Letterbox]:
    """Aspect-kept resize into a size x size canvas (bilinear, `fill` borders) -> uint8, geometry."""
    im = Image.fromarray(np.ascontiguousarray(np.asarray(rgb)[..., :3]))
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(im.resize((nw, nh), Image.Resampling.BILINEAR), (left, top))
    return np.asarray(canvas), Letterbox(scale, left, top, nw, nh)


def normalise(batch_uint8: np.ndarray, mean, std, unit_scale: bool = True) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32: /255 when unit_scale, then (x - mean) / std."""
    x = batch_uint8.astype(np.float32)
    if unit_scale:
        x /= 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
