"""360° turntables: a head rendered at evenly spaced yaws, encoded as an animated GIF (PIL), and an
optional MP4 when an ffmpeg writer is installed."""
from __future__ import annotations

import io as _io

import numpy as np
import torch

from balancehead.camera import camera_label

from .generator_io import render
from .protocols import turntable_yaws


def turntable_frames(g, ws: torch.Tensor, frames: int, pitch_deg: float = 0.0, z=None, resolution=None,
                     batch_size: int = 16, radius: float = 2.7, fov_deg: float = 18.837) -> np.ndarray:
    """(frames, H, W, 3) uint8 renders of one latent (ws: (1, num_ws, w_dim)) around the full circle."""
    cams = np.stack([camera_label(float(y), pitch_deg, radius, fov_deg) for y in turntable_yaws(frames)])
    zz = None if z is None else z.expand(frames, -1)
    return render(g, ws.expand(frames, -1, -1), cams, z=zz, resolution=resolution, batch_size=batch_size)["image"]


def gif_bytes(frames: np.ndarray, frame_ms: int = 80) -> bytes:
    """Looping GIF of uint8 frames (N, H, W, 3); deterministic bytes for equal frames."""
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("a turntable needs at least one frame")
    imgs = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buf = _io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=frame_ms, loop=0,
                 optimize=False, disposal=1)
    return buf.getvalue()


def gif_frame_count(data: bytes) -> int:
    from PIL import Image

    with Image.open(_io.BytesIO(data)) as im:
        return int(getattr(im, "n_frames", 1))


def mp4_bytes(frames: np.ndarray, fps: int = 12) -> bytes | None:
    """MP4 via imageio-ffmpeg when installed, else None (callers note the absence)."""
    try:
        import imageio.v3 as iio
    except ImportError:
        return None
    try:
        return iio.imwrite("<bytes>", frames, extension=".mp4", fps=fps)
    except Exception:  # no ffmpeg plugin
        return None


def grid(images: np.ndarray, cols: int) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one image with `cols` columns (white padding)."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * h, cols * w, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        out[r * h:(r + 1) * h, k * w:(k + 1) * w] = im
    return out
