"""StyleGAN2 synthesis network (skip architecture): ws -> an image of `out_channels` channels.

For the 3D generator the 'image' is the stack of plane features; the representation decides how
many channels and which resolution (see representations.py). Channel count per resolution is
min(channel_base // res, channel_max). Mixed precision as EG3D: the `num_fp16_res` highest resolutions
(never below 8 px) compute in float16 on CUDA; the skip image and the output stay float32.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from balancehead import ops

from .layers import SynthesisLayer, ToRGB, _randn, block_dtype, fp16_resolution


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


class SynthesisBlock(nn.Module):
    """One resolution: (const input at 4x4 | 2x upsample conv) -> conv -> ToRGB added to the skip."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, generator, conv_clamp, up: int = 2,
                 use_fp16: bool = False):
        super().__init__()
        self.first = in_channels == 0
        self.use_fp16 = use_fp16  # float16 on CUDA (EG3D use_fp16); float32 elsewhere
        self.up = up  # 1: EG3D's SynthesisBlockNoUp (super-resolution at the input resolution)
        if self.first:
            self.const = nn.Parameter(_randn((out_channels, resolution, resolution), generator))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, generator, up=up, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, generator, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, generator, conv_clamp=conv_clamp)
        self.num_ws = (1 if self.first else 2) + 1  # conv0?, conv1, torgb (torgb shares the next index)
        self.register_buffer("resample_filter", ops.make_filter())

    @property
    def num_conv(self) -> int:
        return 1 if self.first else 2

    def forward(self, x, img, ws, noise_mode="const", generator=None):
        param_dtype = self.conv1.weight.dtype
        dtype = block_dtype(self.use_fp16, ws.device, param_dtype)
        i = 0
        if self.first:
            x = self.const.to(dtype)[None].repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x.to(dtype), ws[:, i], noise_mode, generator)
            i += 1
        x = self.conv1(x, ws[:, i], noise_mode, generator)
        i += 1
        y = self.torgb(x, ws[:, i]).to(param_dtype)
        if img is None:
            return x, y
        if self.up > 1:
            img = ops.upsample2d(img, self.resample_filter)
        return x, img + y


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim: int, resolution: int, out_channels: int, generator: torch.Generator,
                 channel_base: int = 32768, channel_max: int = 512, conv_clamp: float | None = 256.0,
                 num_fp16_res: int = 0):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"synthesis resolution must be a power of two >= 4, got {resolution}")
        self.w_dim, self.resolution, self.out_channels = w_dim, resolution, out_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        blocks = []
        fp16_from = fp16_resolution(resolution, num_fp16_res)
        for res in self.block_resolutions:
            in_c = 0 if res == 4 else channels_at(res // 2, channel_base, channel_max)
            blocks.append(SynthesisBlock(in_c, channels_at(res, channel_base, channel_max), w_dim, res, out_channels,
                                         generator, conv_clamp, use_fp16=res >= fp16_from))
        self.blocks = nn.ModuleList(blocks)
        # ws per block: its convs, and the ToRGB reads the index after the last conv
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", generator: torch.Generator | None = None):
        x = img = None
        start = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, start:start + block.num_conv + 1], noise_mode, generator)
            start += block.num_conv
        return img
