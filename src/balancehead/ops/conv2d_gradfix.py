"""conv2d whose backward is itself differentiable (R1 needs gradients of gradients of D).

The reference is `torch.nn.functional.conv2d` (ATen supports double backward), and it is what
`impl="auto"` runs, compiled ops or not: ATen's convolution measured faster than the extension's
(on an H200, forward + backward of a 3x3 conv on (8, 64, 64, 64): 0.69 ms for ATen against
0.80 ms through the extension in float32, 0.70 against 0.95 ms in bfloat16, benchmarks/bench_ops.py),
and it is what EG3D's own conv2d_gradfix falls back to on every torch after 1.9. The compiled path
(`impl="compiled"` or an explicit `module`) runs the forward through the C++ extension and writes the
backward with the differentiable `torch.nn.grad` helpers, so a second backward goes through ordinary
autograd; the build checks and the tests keep it equal to the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .loader import compiled_for


def conv2d_reference(x, weight, bias=None, stride=1, padding=0, groups=1):
    return F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=groups)


def _as_pair(v):
    return [int(v), int(v)] if isinstance(v, int) else [int(v[0]), int(v[1])]


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, groups, module):
        ctx.save_for_backward(x, weight)
        ctx.args = (stride, padding, groups, bias is not None)
        return module.conv2d_forward(x, weight, bias, stride, padding, groups)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        stride, padding, groups, has_bias = ctx.args
        dy = dy.to(x.dtype)        # under autocast the incoming gradient may be 16-bit while x is float32
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.nn.grad.conv2d_input(x.shape, weight, dy, stride=stride, padding=padding, groups=groups)
        if ctx.needs_input_grad[1]:
            dw = torch.nn.grad.conv2d_weight(x, weight.shape, dy, stride=stride, padding=padding, groups=groups)
        if has_bias and ctx.needs_input_grad[2]:
            db = dy.sum([0, 2, 3])
        return dx, dw, db, None, None, None, None


def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1, impl="auto", module=None):
    if module is None:  # an explicit extension module (build checks) wins; "auto" is ATen (module doc)
        module = compiled_for(x) if impl == "compiled" else None
    if module is None:
        if impl == "compiled":
            raise RuntimeError("conv2d: no compiled ops available")
        return conv2d_reference(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), stride, padding,
                                groups)
    return _Conv2d.apply(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype),
                         _as_pair(stride), _as_pair(padding), int(groups), module)
