"""Bilinear grid_sample (zero padding, align_corners=False) with a double-backward-safe gradient.

`grid_sample_reference` is written with gathers in plain PyTorch, so it is differentiable to any
order (gradcheck/gradgradcheck run on it). The compiled kernel returns (d input, d grid); its
second-order gradient is provided for the part that R1 can reach, d(d input)/d(dy), which is
grid_sample again; second-order terms through the sampling positions are dropped (documented
limitation, as in other 3D GAN code: the generator is never in the R1 graph).

Two compiled backwards compute the same d input (tests pin both to the reference):

* ``"direct"``: each sample scatters into its 4 texels (atomics into a float32 buffer on CUDA);
* ``"gather"``: the samples' corner keys are sorted and every texel sums its own segment, so no
  two threads write the same texel (no contended atomics); it costs a sort of 4 keys per sample.

and two layouts of the planes for the compiled kernels (``layout``). Both sum the same terms in the same
order, so they give the same bits on the CPU; on CUDA the channels-last d grid sums its channels by warp
shuffles instead of a loop (float rounding apart), and atomics add in any order in both:

* ``"channels_last"`` (default): the planes are read NHWC, where a sample's C channels at one corner are
  adjacent. An input stored otherwise is copied here; the generator's representations store their planes
  so once per forward (`sampling_layout`), so its coarse and fine passes share one copy (and keep one).
  A CUDA warp then serves one sample, a lane per channel: each corner is one coalesced read, and the
  direct backward's atomics are coalesced. In NCHW each channel of each corner is a separate 4-byte read
  (and atomic) on its own cache line, which is what ATen's grid_sample (EG3D's path) does. The output
  comes back channels-last, i.e. already in the (N, S, C) order that the decoder reads after
  `sample_planes`' permute.
* ``"nchw"``: the planes as they are.

The C++ twin gains too: on 2 CPU cores, 12 planes of 32 x 256^2 and 100k ray-ordered samples each,
forward + direct backward take 0.69 s channels-last against 1.0 s in NCHW (copy included).
`benchmarks/bench_ops.py` times both layouts and ATen's operator on a GPU.

The grid stays in float32 (float64 for float64 planes) when the planes are float16/bfloat16, so
sampling positions keep their precision under mixed precision.

Without compiled ops, a caller that never differentiates twice (`double_backward=False`: the
generator's plane lookups -- R1 differentiates D alone) gets ATen's own grid_sample, the same
bilinear formula as the reference (equal to within float rounding) and what EG3D runs on a CPU;
on 2 CPU cores it is the faster one (benchmarks/bench_vs_eg3d.py --profile, 128-px step, batch 2: 1.2 s
in ATen's grid_sample against 1.6 s in the reference's gathers and scatter-adds, before its weight
multiplies). ATen's backward is not differentiable again, hence the flag; the default keeps the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .loader import compiled_for

BACKWARD_MODES = {"direct": 0, "gather": 1}
LAYOUTS = ("channels_last", "nchw")


def grid_sample_reference(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """input (N, C, H, W), grid (N, Ho, Wo, 2) with x then y in [-1, 1] -> (N, C, Ho, Wo)."""
    n, c, h, w = input.shape
    ho, wo = grid.shape[1:3]
    ix = ((grid[..., 0] + 1) * w - 1) / 2
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = torch.floor(ix), torch.floor(iy)
    tx, ty = ix - x0, iy - y0
    flat = input.reshape(n, c, h * w)
    out = input.new_zeros(n, c, ho * wo)
    for dx, dy, weight in ((0, 0, (1 - tx) * (1 - ty)), (1, 0, tx * (1 - ty)), (0, 1, (1 - tx) * ty), (1, 1, tx * ty)):
        xs, ys = (x0 + dx).long(), (y0 + dy).long()
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(n, 1, -1).expand(n, c, -1)
        values = torch.gather(flat, 2, index)
        out = out + values * (weight * inside).reshape(n, 1, -1).to(input.dtype)
    return out.reshape(n, c, ho, wo)


class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy, input, grid, module, mode):
        ctx.save_for_backward(grid)
        ctx.module, ctx.mode = module, mode
        d_input, d_grid = module.grid_sample_backward(dy, input, grid, mode)
        return d_input, d_grid.to(grid.dtype)

    @staticmethod
    def backward(ctx, dd_input, dd_grid):
        (grid,) = ctx.saved_tensors
        d_dy = None
        if ctx.needs_input_grad[0] and dd_input is not None:
            d_dy = _GridSample.apply(dd_input, grid, ctx.module, ctx.mode)
        return d_dy, None, None, None, None


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid, module, mode):
        ctx.save_for_backward(input, grid)
        ctx.module, ctx.mode = module, mode
        return module.grid_sample_forward(input, grid)

    @staticmethod
    def backward(ctx, dy):
        input, grid = ctx.saved_tensors
        d_input, d_grid = _GridSampleBackward.apply(dy, input, grid, ctx.module, ctx.mode)
        return d_input, d_grid, None, None


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"grid_sample layout must be one of {list(LAYOUTS)}, got {layout!r}")


def sampling_layout(planes: torch.Tensor, layout: str = "channels_last") -> torch.Tensor:
    """`planes` (..., C, H, W), values unchanged, stored the way the compiled kernels read them: with the
    channels innermost ("channels_last", when compiled ops run for `planes`), so that every lookup of these
    planes (a generator's coarse and fine passes) shares one copy instead of making its own. A no-op
    otherwise, and on planes already so stored."""
    _check_layout(layout)
    if layout != "channels_last" or planes.dim() < 3 or compiled_for(planes) is None:
        return planes
    d = planes.dim()
    lead = list(range(d - 3))     # (..., C, H, W) stored as (..., H, W, C), then viewed as (..., C, H, W) again
    return planes.permute(*lead, d - 2, d - 1, d - 3).contiguous().permute(*lead, d - 1, d - 3, d - 2)


def grid_sample(input, grid, impl="auto", module=None, backward="direct", double_backward=True, layout="channels_last"):
    """Sample `input` (N, C, H, W) at `grid` (N, Ho, Wo, 2); backward: "direct" or "gather", layout of the
    compiled kernels: "channels_last" or "nchw" (see module doc); double_backward=False lets "auto" use
    ATen's grid_sample when nothing is compiled (module doc)."""
    if backward not in BACKWARD_MODES:
        raise ValueError(f"grid_sample backward must be one of {sorted(BACKWARD_MODES)}, got {backward!r}")
    _check_layout(layout)
    if module is None:  # an explicit extension module (build checks) wins over the loader
        module = None if impl == "ref" else compiled_for(input)
    if module is None:
        if impl == "compiled":
            raise RuntimeError("grid_sample: no compiled ops available")
        if impl == "auto" and not double_backward and input.dtype in (torch.float32, torch.float64):
            return F.grid_sample(input, grid.to(input.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        return grid_sample_reference(input, grid)
    # the kernels follow the input's memory format (a copy here, whose backward passes the gradient on)
    input = input.contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    return _GridSample.apply(input, grid, module, BACKWARD_MODES[backward])
