"""StyleGAN2 building blocks: equalised-lr linear/conv layers and the modulated convolution.

Equalised learning rate: weights are stored N(0, 1) / lr_multiplier and scaled by
lr_multiplier / sqrt(fan_in) at run time, so Adam sees every layer at the same scale. Biases are
stored as `bias_init` and scaled by lr_multiplier (the StyleGAN2 / EG3D convention, so converted
official weights mean the same thing). Weights are drawn from an explicit torch.Generator.

Resampling convolutions follow the StyleGAN2 operator exactly (EG3D `conv2d_resample`):
* down=2: blur the input at full resolution (FIR [1,3,3,1], padded), then a stride-2 convolution;
  a 1x1 kernel blurs-and-decimates first, then convolves at the low resolution.
* up=2: a stride-2 *transposed* convolution, then the blur (gain 4) with the padding that makes the
  output exactly 2x the input; the skip image is upsampled with `ops.upsample2d`.

Mixed precision is EG3D's: a block built with `use_fp16` computes in float16 on CUDA only (anywhere
else it stays in the parameters' dtype, as EG3D's `force_fp32` off-CUDA); weights stay float32 and are
cast on use, the layers below follow the dtype of their input, and the skip image stays float32.
Activations stay in the contiguous layout: EG3D's `fp16_channels_last` is off in all its configs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from balancehead import ops


def _randn(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """EG3D / StyleGAN2: blocks at resolution >= this run in float16 (the `num_fp16_res` highest ones)."""
    return max(2 ** (int(math.log2(img_resolution)) + 1 - num_fp16_res), 8)


def block_dtype(use_fp16: bool, device: torch.device, param_dtype: torch.dtype) -> torch.dtype:
    """EG3D's per-block compute dtype: float16 for an fp16 block on CUDA, else the parameters' dtype."""
    return torch.float16 if use_fp16 and device.type == "cuda" else param_dtype


class FullyConnected(nn.Module):
    """y = act(x @ (W * lr_mul / sqrt(in))^T + b * lr_mul)."""

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator, activation="linear",
                 bias_init: float = 0.0, lr_multiplier: float = 1.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(_randn((out_features, in_features), generator) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b[None], x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)


def _pad_for(kernel: int, up: int, down: int, filter_size: int = 4) -> tuple[int, int]:
    """(before, after) padding of the resampling FIR for a `kernel`-sized conv (same per axis)."""
    p0 = p1 = kernel // 2
    if up > 1:
        p0 += (filter_size + up - 1) // 2
        p1 += (filter_size - up) // 2
    if down > 1:
        p0 += (filter_size - down + 1) // 2
        p1 += (filter_size - down) // 2
    return p0, p1


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
                    groups: int = 1) -> torch.Tensor:
    """Correlation of x with w ('same' padding for odd kernels), with 2x up- or down-sampling."""
    out_c, in_c_per_group, kh, kw = w.shape
    if up == 1 and down == 1:
        return ops.conv2d(x, w, padding=kh // 2, groups=groups)
    fs = f.shape[-1]
    p0, p1 = _pad_for(kh, up, down, fs)
    if down > 1:
        if kh == 1:
            x = ops.upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
            return ops.conv2d(x, w, groups=groups)
        x = ops.upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return ops.conv2d(x, w, stride=down, groups=groups)
    if kh == 1:
        x = ops.conv2d(x, w, groups=groups)
        return ops.upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
    # transposed conv: weight (in, out/groups, kh, kw) per group
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_c // groups, in_c_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_c_per_group, out_c // groups, kh, kw)
    p0 -= kw - 1
    p1 -= kw - up
    pt = max(min(-p0, -p1), 0)
    x = nn.functional.conv_transpose2d(x, wt.to(x.dtype), stride=up, padding=pt, groups=groups)
    return ops.upfirdn2d(x, f, padding=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up * up)


class Conv2dLayer(nn.Module):
    """Plain (unmodulated) conv with optional anti-aliased down-sampling; used by the discriminator."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, generator: torch.Generator,
                 activation="lrelu", down: int = 1, bias: bool = True, conv_clamp: float | None = None):
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.weight = nn.Parameter(_randn((out_channels, in_channels, kernel_size, kernel_size), generator))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", ops.make_filter())

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, down=self.down)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        act_gain = ops.ACTIVATIONS[self.activation][2] * gain
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return ops.bias_act(x, bias, act=self.activation, gain=act_gain, clamp=clamp)


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, resample_filter=None, fused=True):
    """Per-sample conv: weight scaled by the style of each input channel, then (optionally)
    normalised so every output channel has unit expected variance.

    fused=True runs it as one grouped conv (`groups=batch`, per-sample weights); fused=False (EG3D's
    `fused_modconv_default="inference_only"` in training) scales the activations by the styles before
    and by the demodulation coefficients after one plain conv with the shared weight: the same
    product, the same multiply-adds, but plain convolutions whose weight gradient is one
    (out, in, k, k) tensor rather than `batch` of them. The layers pick fused = not self.training,
    as EG3D does. A float16 input first rescales weight and styles by their max (EG3D: avoids fp16
    overflow; the demodulation cancels the scale)."""
    batch = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(in_c * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, in_c, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up)
        if demodulate:
            dcoefs = ((weight[None] * styles[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
            x = x * dcoefs.to(x.dtype).reshape(batch, out_c, 1, 1)
        return x
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    x = x.reshape(1, batch * in_c, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(batch * out_c, in_c, kh, kw).to(x.dtype), resample_filter, up=up, groups=batch)
    return x.reshape(batch, out_c, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), per-pixel noise, bias and leaky ReLU."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, generator: torch.Generator, up=1,
                 conv_clamp: float | None = 256.0, use_noise: bool = True):
        super().__init__()
        self.up, self.resolution, self.conv_clamp, self.use_noise = up, resolution, conv_clamp, use_noise
        self.affine = FullyConnected(w_dim, in_channels, generator, bias_init=1.0)
        self.weight = nn.Parameter(_randn((out_channels, in_channels, 3, 3), generator))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:  # the 'const' noise map is a buffer drawn once from the construction generator
            self.register_buffer("noise_const", _randn((resolution, resolution), generator))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", ops.make_filter())

    def forward(self, x, w, noise_mode="const", generator: torch.Generator | None = None, gain: float = 1.0):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, resample_filter=self.resample_filter,
                             fused=not self.training)
        if self.use_noise and noise_mode == "random":
            if generator is None:
                raise ValueError("noise_mode='random' needs an explicit torch.Generator")
            noise = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=generator, device=generator.device)
            # float16 activations get float32 noise added and rounded back (EG3D's in-place add_)
            noise = noise.to(x.device, torch.float32 if x.dtype == torch.float16 else x.dtype)
            x = (x + noise * self.noise_strength).to(x.dtype)
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const
            if noise.shape != x.shape[2:]:  # rendering at another resolution than built for
                noise = torch.nn.functional.interpolate(noise[None, None], size=x.shape[2:], mode="bilinear",
                                                        align_corners=False)[0, 0]
            x = (x + noise * self.noise_strength).to(x.dtype)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=ops.ACTIVATIONS["lrelu"][2] * gain,
                            clamp=clamp)


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
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=not self.training)
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)
