"""Super-resolution from the neural rendering resolution to the output resolution.

log2(ratio) StyleGAN2 blocks, each doubling the resolution (modulated convs driven by the last w),
with a skip RGB image that starts from the raw rendered RGB: the network only adds detail on top
of an upsampled copy of what the volume rendered, which keeps I+ consistent with I.
The mask is upsampled bilinearly (I^{m+}) for the tri-discriminator.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from balancehead import ops

from .layers import SynthesisLayer, ToRGB


class SuperResolutionBlock(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, generator, conv_clamp):
        super().__init__()
        self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, generator, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, generator, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_channels, 3, w_dim, generator, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", ops.make_filter())

    def forward(self, x, img, w, noise_mode, generator):
        x = self.conv0(x, w, noise_mode, generator)
        x = self.conv1(x, w, noise_mode, generator)
        img = ops.upsample2d(img, self.resample_filter) + self.torgb(x, w)
        return x, img


class SuperResolution(nn.Module):
    def __init__(self, in_channels: int, w_dim: int, in_resolution: int, out_resolution: int, channels: int,
                 generator: torch.Generator, conv_clamp: float | None = 256.0):
        super().__init__()
        ratio = out_resolution // in_resolution
        if ratio < 1 or ratio * in_resolution != out_resolution or ratio & (ratio - 1):
            raise ValueError(f"output/neural resolution ratio must be a power of two, got {out_resolution}/{in_resolution}")
        self.ratio = ratio
        blocks, c_in, res = [], in_channels, in_resolution
        for _ in range(int(math.log2(ratio))):
            res *= 2
            blocks.append(SuperResolutionBlock(c_in, channels, w_dim, res, generator, conv_clamp))
            c_in = channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, features, rgb, mask, w, noise_mode="const", generator=None):
        """features (B, F, h, w), rgb (B, 3, h, w), mask (B, 1, h, w), w (B, w_dim) -> (I+, I^{m+})."""
        x, img = features, rgb
        for block in self.blocks:
            x, img = block(x, img, w, noise_mode, generator)
        size = img.shape[-1]
        mask_up = mask if mask.shape[-1] == size else nn.functional.interpolate(
            mask, size=(size, size), mode="bilinear", align_corners=False)
        return img, mask_up
