"""Fused bias + activation + gain + clamp: y = clamp(act(x + b) * gain, -clamp, clamp).

`bias_act_reference` is plain PyTorch (differentiable to any order). The compiled path runs the
C++/CUDA kernel forward and backward; the backward's own backward recomputes the reference
graph, so R1-style double backward stays exact.

A linear one without a clamp keeps nothing (its derivative is the gain). For relu, lrelu and a clamped
linear (every other layer of G and D) the compiled forward keeps its *output* for the backward, not
its input, as EG3D's plugin does: the derivative follows from the output's sign, the
next layer keeps that same tensor anyway, so a layer's activation is held once instead of twice
(bytes saved for the backward of the G-main forward at the 512-px config: see
benchmarks/bench_vs_eg3d.py). Their second derivative is zero almost everywhere, so the double
backward is the same kernel again. The one difference from the input-based rule: a pre-clamp value of
exactly +-clamp (or one that rounds to it in float16) gets no gradient, as in EG3D's plugin.
"""
from __future__ import annotations

import math

import torch

from .loader import compiled_for

# name -> (kernel code, default alpha, default gain); codes match csrc/ops_common.h
ACTIVATIONS = {
    "linear": (0, 0.0, 1.0),
    "relu": (1, 0.0, math.sqrt(2)),
    "lrelu": (2, 0.2, math.sqrt(2)),
    "tanh": (3, 0.0, 1.0),
    "sigmoid": (4, 0.0, 1.0),
    "softplus": (5, 0.0, 1.0),
}


def _resolve(act: str, alpha, gain, clamp):
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
    code, default_alpha, default_gain = ACTIVATIONS[act]
    return code, float(default_alpha if alpha is None else alpha), float(default_gain if gain is None else gain), \
        float(-1.0 if clamp is None else clamp)


def _activate(z: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return z
    if act == "relu":
        return torch.relu(z)
    if act == "lrelu":
        return torch.nn.functional.leaky_relu(z, alpha)
    if act == "tanh":
        return torch.tanh(z)
    if act == "sigmoid":
        return torch.sigmoid(z)
    return torch.nn.functional.softplus(z, beta=1.0, threshold=20.0)


def _bias_shape(x: torch.Tensor, dim: int) -> list[int]:
    return [-1 if i == dim else 1 for i in range(x.ndim)]


def bias_act_reference(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    _, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    z = x if b is None else x + b.reshape(_bias_shape(x, dim))
    y = _activate(z, act, alpha) * gain
    return y.clamp(-clamp, clamp) if clamp >= 0 else y


class _BiasActGrad(torch.autograd.Function):
    """dx = kernel_backward(dy, x, b); its backward differentiates the reference (double backward)."""

    @staticmethod
    def forward(ctx, dy, x, b, dim, act, alpha, gain, clamp, module):
        ctx.save_for_backward(dy, x, b)
        ctx.args = (dim, act, alpha, gain, clamp)
        code = ACTIVATIONS[act][0]
        return module.bias_act_backward(dy, x, b, dim, code, alpha, gain, clamp, False)

    @staticmethod
    def backward(ctx, ddx):
        dy, x, b = ctx.saved_tensors
        dim, act, alpha, gain, clamp = ctx.args
        with torch.enable_grad():
            dy_, x_, b_ = (t.detach().requires_grad_(True) for t in (dy, x, b))
            y = bias_act_reference(x_, b_ if b_.numel() else None, dim, act, alpha, gain, clamp)
            (dx,) = torch.autograd.grad(y, x_, dy_, create_graph=True)
            inputs = [dy_, x_] + ([b_] if b_.numel() else [])
            grads = torch.autograd.grad(dx, inputs, ddx, allow_unused=True)
        gdy, gx = grads[0], grads[1]
        gb = grads[2] if b.numel() else None
        return gdy, gx, gb, None, None, None, None, None, None


# activations whose derivative the output determines (gain > 0): the forward keeps y, not x
FROM_OUTPUT = ("linear", "relu", "lrelu")


class _BiasActGradFromOutput(torch.autograd.Function):
    """dx = kernel_backward(dy, y): linear in dy with a mask and slope read off y; its own backward is
    the same op on the incoming gradient (the y path contributes zero almost everywhere)."""

    @staticmethod
    def forward(ctx, dy, y, dim, act, alpha, gain, clamp, module):
        ctx.save_for_backward(y)
        ctx.args = (dim, act, alpha, gain, clamp, module)
        return module.bias_act_backward(dy, y, y.new_zeros([0]), dim, ACTIVATIONS[act][0], alpha, gain, clamp, True)

    @staticmethod
    def backward(ctx, ddx):
        (y,) = ctx.saved_tensors
        return (_BiasActGradFromOutput.apply(ddx, y, *ctx.args), None, None, None, None, None, None, None)


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp, module):
        y = module.bias_act_forward(x, b, dim, ACTIVATIONS[act][0], alpha, gain, clamp)
        # linear without a clamp: dx = dy * gain, nothing to keep (EG3D's plugin keeps nothing either); the
        # outputs of ToRGB and of D's skip convolutions are not held by the next op (an add), so keeping them
        # cost their full size
        ctx.constant_slope = act == "linear" and clamp < 0
        ctx.from_output = act in FROM_OUTPUT and gain > 0 and not ctx.constant_slope
        ctx.save_for_backward(*(() if ctx.constant_slope else (y,) if ctx.from_output else (x, b)))
        ctx.has_bias = b.numel() > 0
        ctx.dtype = x.dtype
        ctx.args = (dim, act, alpha, gain, clamp, module)
        return y

    @staticmethod
    def backward(ctx, dy):
        dim, act, alpha, gain, clamp, module = ctx.args
        if ctx.constant_slope:  # differentiable as it stands: the double backward is ddx * gain
            dx = (dy if gain == 1 else dy * gain).to(ctx.dtype)
        elif ctx.from_output:
            (y,) = ctx.saved_tensors
            dx = _BiasActGradFromOutput.apply(dy, y, dim, act, alpha, gain, clamp, module)
        else:
            x, b = ctx.saved_tensors
            dx = _BiasActGrad.apply(dy, x, b, dim, act, alpha, gain, clamp, module)
        db = None
        if ctx.has_bias and ctx.needs_input_grad[1]:
            db = dx.sum([i for i in range(dx.ndim) if i != dim])
        return dx, db, None, None, None, None, None, None


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="auto", module=None):
    """Bias (along `dim`), activation, gain and clamp, compiled when a build is available.

    impl: "auto" (compiled if found, else reference), "ref" or "compiled" (raises if none);
    module: an explicit compiled extension to use instead of the one the loader finds.
    """
    if module is None:  # an explicit extension module (build checks) wins over the loader
        module = None if impl == "ref" else compiled_for(x)
    if module is None:
        if impl == "compiled":
            raise RuntimeError("bias_act: no compiled ops available (see balancehead.ops.loader)")
        return bias_act_reference(x, b, dim, act, alpha, gain, clamp)
    _, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    dim = dim % x.ndim
    bias = x.new_zeros([0]) if b is None else b.to(x.dtype)
    return _BiasAct.apply(x, bias, dim, act, alpha, gain, clamp, module)


def softplus_grad_from_output(dy: torch.Tensor, y: torch.Tensor, impl="auto", module=None) -> torch.Tensor:
    """dy * softplus'(x) read off the output y = softplus(x): sigmoid(x) = -expm1(-y), so a caller can keep y
    instead of x. Compiled: one kernel (bias_act's from-output rule); reference: expm1, negations, product.
    First order only (what a caller's once-differentiable backward needs). Under torch.compile (G's
    compiled rendering) the formula is traced instead, and the compiler fuses it into one kernel itself."""
    if module is None:
        module = None if impl == "ref" or torch.compiler.is_compiling() else compiled_for(y)
    if module is None:
        return dy * -torch.expm1(-y)
    return module.bias_act_backward(dy, y, y.new_zeros([0]), 0, ACTIVATIONS["softplus"][0], 0.0, 1.0, -1.0, True)
