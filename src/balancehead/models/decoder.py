"""The shared decoder MLP (EG3D's OSGDecoder): per-point plane features -> (raw density, colour features).

One hidden layer of `hidden` units with softplus, both layers with learning-rate multiplier
`lr_multiplier`. The density is returned *raw*: the ray marcher averages adjacent raw densities and
then applies softplus(x - 1) (EG3D MipRayMarcher2). Colour features go through a slightly widened
sigmoid, sigmoid(x) * (1 + 2e-3) - 1e-3, so 0 and 1 are reachable without saturation; the first 3
channels are the raw RGB, the rest feed the super-resolution network.
"""
from __future__ import annotations

import torch
from torch import nn

from balancehead import ops

from .layers import FullyConnected


class _SoftplusKeepOutput(torch.autograd.Function):
    """softplus whose backward reads its output: d softplus(x)/dx = sigmoid(x) = 1 - exp(-y) = -expm1(-y).

    The next layer keeps y for its own backward, so the hidden layer's activation is held once (the
    pre-activation is not kept): about a tenth of the G-main graph's saved bytes at the 512-px config.
    Same forward; the gradient equals torch's to float rounding (tests/test_models_gan.py). With compiled
    ops the backward is one kernel (bias_act's from-output rule) instead of four element-wise passes over
    the (points x hidden) activation: at the 512-px config 2 x 4 x 128^2 x 48 x 64 values per step."""

    @staticmethod
    def forward(ctx, x):
        y = nn.functional.softplus(x)      # under CUDA autocast: float32 from a 16-bit x
        ctx.save_for_backward(y)
        ctx.dtype = x.dtype
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return ops.softplus_grad_from_output(grad, y).to(ctx.dtype)


def activate_density(raw: torch.Tensor) -> torch.Tensor:
    """softplus(raw - 1): non-negative, and near zero at initialisation so early volumes are transparent."""
    return nn.functional.softplus(raw - 1)


class DecoderMLP(nn.Module):
    def __init__(self, in_features: int, feature_channels: int, generator: torch.Generator, hidden: int = 64,
                 lr_multiplier: float = 1.0):
        super().__init__()
        self.hidden = FullyConnected(in_features, hidden, generator, lr_multiplier=lr_multiplier)
        self.out = FullyConnected(hidden, 1 + feature_channels, generator, lr_multiplier=lr_multiplier)

    def forward(self, features: torch.Tensor):
        """features (B, N, C) -> raw density (B, N, 1), colour features (B, N, F)."""
        b, n, c = features.shape
        x = self.out(_SoftplusKeepOutput.apply(self.hidden(features.reshape(b * n, c)))).reshape(b, n, -1)
        colour = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001
        return x[..., :1], colour
