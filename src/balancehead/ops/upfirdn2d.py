"""upfirdn2d: upsample by zero insertion, pad (negative = crop), FIR filter, downsample.

This is the resampling primitive of StyleGAN2 (anti-aliased up/down-sampling with a small
low-pass filter such as [1, 3, 3, 1]). The operator is linear, and its adjoint is again an
upfirdn2d with up/down swapped, the filter flipped and padding adjusted, so the compiled
backward calls the compiled forward and is differentiable to any order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .loader import compiled_for


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def _padding(padding) -> tuple[int, int, int, int]:
    """int -> all sides; (px, py); (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(int(p) for p in padding)


def make_filter(taps=(1, 3, 3, 1), normalize=True, device=None) -> torch.Tensor:
    """Separable 2-D low-pass filter from 1-D taps (outer product), summing to 1 when normalised."""
    f = torch.as_tensor(taps, dtype=torch.float32, device=device)
    f = f[:, None] * f[None, :]
    return f / f.sum() if normalize else f


def _pad_or_crop(x, left, right, top, bottom):
    """Pad with zeros where positive, crop where negative (last two dims)."""
    x = F.pad(x, [max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)])
    return x[:, :, max(-top, 0): x.shape[2] - max(-bottom, 0), max(-left, 0): x.shape[3] - max(-right, 0)]


def upfirdn2d_reference(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0):
    """Exact upfirdn2d in plain PyTorch, never building the zero-inserted tensor.

    Upsampling: zero insertion followed by convolution with k is a transposed convolution with
    stride `up` and kernel k (k = f, or f flipped when `flip_filter`, since the op correlates with
    the flipped filter by default); its "full" output F is then shifted by the padding:
    y[o] = F[o + K - 1 - p0], i.e. F padded by p0 - (K - 1) on the left and up + p1 - K on the right.
    Downsampling: a strided convolution (no discarded outputs).
    """
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = _padding(padding)
    c = x.shape[1]
    fh, fw = f.shape
    if upx > 1 or upy > 1:
        k = f.to(x.dtype).flip([0, 1]) if flip_filter else f.to(x.dtype)
        k = (k * gain)[None, None].repeat(c, 1, 1, 1)
        x = F.conv_transpose2d(x, k, stride=(upy, upx), groups=c)
        x = _pad_or_crop(x, px0 - (fw - 1), upx + px1 - fw, py0 - (fh - 1), upy + py1 - fh)
        return x[:, :, ::downy, ::downx]
    x = _pad_or_crop(x, px0, px1, py0, py1)
    g = f.to(x.dtype) if flip_filter else f.to(x.dtype).flip([0, 1])
    g = (g * gain)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, g, stride=(downy, downx), groups=c)


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, up, down, pad, flip, gain, module):
        (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
        y = module.upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain)
        ctx.save_for_backward(f)
        ctx.args = (x.shape, y.shape, up, down, pad, flip, gain, module)
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        xshape, yshape, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip, gain, module = ctx.args
        fh, fw = f.shape
        # adjoint: up<->down, flipped filter, pad' = (f - 1 - p0, in*up - out*down + p0) per axis
        pad = (fw - 1 - px0, xshape[3] * upx - yshape[3] * downx + px0,
               fh - 1 - py0, xshape[2] * upy - yshape[2] * downy + py0)
        dx = _Upfirdn2d.apply(dy, f, (downx, downy), (upx, upy), pad, not flip, gain, module)
        return dx, None, None, None, None, None, None, None


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0, impl="auto", module=None):
    """Resample NCHW `x` with the 2-D FIR filter `f` (see module docstring); gain scales the output."""
    if module is None:  # an explicit extension module (build checks) wins over the loader
        module = None if impl == "ref" else compiled_for(x)
    if module is None:
        if impl == "compiled":
            raise RuntimeError("upfirdn2d: no compiled ops available")
        return upfirdn2d_reference(x, f, up, down, padding, flip_filter, gain)
    return _Upfirdn2d.apply(x, f.float(), _pair(up), _pair(down), _padding(padding), bool(flip_filter), float(gain), module)


def upsample2d(x, f, factor=2, impl="auto", module=None):
    """Anti-aliased upsampling by `factor` (gain factor**2 keeps the mean)."""
    fh = f.shape[0]
    p = fh - factor
    pad = ((p + 1) // 2 + factor - 1, p // 2, (p + 1) // 2 + factor - 1, p // 2)
    return upfirdn2d(x, f, up=factor, padding=pad, gain=factor * factor, impl=impl, module=module)


def downsample2d(x, f, factor=2, impl="auto", module=None):
    """Anti-aliased downsampling by `factor`."""
    p = f.shape[0] - factor
    pad = ((p + 1) // 2, p // 2, (p + 1) // 2, p // 2)
    return upfirdn2d(x, f, down=factor, padding=pad, impl=impl, module=module)
