"""StyleGAN2 building blocks: equalised-lr linear/conv layers and the modulated convolution.

Equalised learning rate: weights are stored N(0, 1) and scaled by 1/sqrt(fan_in) at run time, so
Adam sees every layer at the same scale. Weights are drawn from an explicit torch.Generator.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from balancehead import ops


def _randn(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


class FullyConnected(nn.Module):
    """y = act(x @ (W * gain / sqrt(in))^T + b * lr_mul)."""

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator, activation="linear",
                 bias_init: float = 0.0, lr_multiplier: float = 1.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(_randn((out_features, in_features), generator) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)) / lr_multiplier)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b[None], x, w.t())
        return ops.bias_act(x @ w.t(), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Plain (unmodulated) conv with optional anti-aliased down-sampling; used by the discriminator."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, generator: torch.Generator,
                 activation="lrelu", down: int = 1, bias: bool = True, conv_clamp: float | None = None):
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(_randn((out_channels, in_channels, kernel_size, kernel_size), generator))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", ops.make_filter())

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        if self.down > 1:
            x = ops.downsample2d(x, self.resample_filter, self.down)
        x = ops.conv2d(x, self.weight * self.weight_gain, padding=self.padding)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        act_gain = ops.ACTIVATIONS[self.activation][2] * gain
        return ops.bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=clamp)


def modulated_conv2d(x, weight, styles, demodulate=True, padding=1):
    """Per-sample conv: weight scaled by the style of each input channel, then (optionally)
    normalised so every output channel has unit expected variance. Runs as one grouped conv."""
    batch = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
    x = x.reshape(1, batch * in_c, *x.shape[2:])
    x = ops.conv2d(x, w.reshape(batch * out_c, in_c, kh, kw), padding=padding, groups=batch)
    return x.reshape(batch, out_c, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), per-pixel noise, bias and leaky ReLU."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, generator: torch.Generator, up=1,
                 conv_clamp: float | None = 256.0):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, generator, bias_init=1.0)
        self.weight = nn.Parameter(_randn((out_channels, in_channels, 3, 3), generator))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # The 'const' noise map is a buffer drawn once from the construction generator.
        self.register_buffer("noise_const", _randn((resolution, resolution), generator))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", ops.make_filter())

    def forward(self, x, w, noise_mode="const", generator: torch.Generator | None = None):
        styles = self.affine(w)
        if self.up > 1:
            x = ops.upsample2d(x, self.resample_filter, self.up)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, padding=1)
        if noise_mode == "random":
            if generator is None:
                raise ValueError("noise_mode='random' needs an explicit torch.Generator")
            noise = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=generator, device=generator.device)
            x = x + noise.to(x.device, x.dtype) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const
            if noise.shape != x.shape[2:]:  # rendering at another resolution than built for
                noise = torch.nn.functional.interpolate(noise[None, None], size=x.shape[2:], mode="bilinear",
                                                        align_corners=False)[0, 0]
            x = x + noise * self.noise_strength
        return ops.bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation: features -> output channels of the skip image."""

    def __init__(self, in_channels, out_channels, w_dim, generator: torch.Generator, conv_clamp: float | None = 256.0):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, generator, bias_init=1.0)
        self.weight = nn.Parameter(_randn((out_channels, in_channels, 1, 1), generator))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, padding=0)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)
