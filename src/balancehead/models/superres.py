"""Super-resolution from the neural rendering resolution to the output resolution (EG3D §4.2).

EG3D's hybrid modules, reproduced layer for layer: the rendered feature image and its first three
channels (raw RGB) are first resized (bilinear, antialiased when shrinking) to the module's input
resolution, then two StyleGAN2 synthesis blocks driven by the last w refine them, each adding a
ToRGB output to the skip RGB image. Fixed widths per output resolution:

    output  input  block 0 (width, resolution, up)   block 1            EG3D class
    128     64     128 @ 64,  no up                   64 @ 128, up       SuperresolutionHybrid2X
    256     128    128 @ 128, no up                   64 @ 256, up       SuperresolutionHybrid4X
    512     128    128 @ 256, up                      64 @ 512, up       SuperresolutionHybrid8X
    512 DC  128    256 @ 256, up                     128 @ 512, up       SuperresolutionHybrid8XDC

Any other output resolution (the project's tiny CPU configs) uses `generic_widths`: input = neural
resolution, one up-block of `generic_channels` per doubling. Conv clamp as configured (EG3D: 256 when
its SR blocks are fp16, the default), noise mode from `superresolution_noise_mode` (default "none").
Mixed precision as EG3D's `sr_num_fp16_res`: any value > 0 makes *every* SR block float16 on CUDA.
The mask is resized bilinearly to the output (I^{m+}) for the mask discriminator.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .synthesis import SynthesisBlock

# output resolution -> (input resolution, [(width, block resolution, up)])
EG3D_PRESETS = {
    (128, False): (64, [(128, 64, 1), (64, 128, 2)]),
    (256, False): (128, [(128, 128, 1), (64, 256, 2)]),
    (512, False): (128, [(128, 256, 2), (64, 512, 2)]),
    (512, True): (128, [(256, 256, 2), (128, 512, 2)]),
}


def sr_layout(neural_resolution: int, output_resolution: int, dc: bool, generic_channels: int):
    """-> (input resolution, [(width, resolution, up)]) of the super-resolution blocks."""
    key = (output_resolution, dc and output_resolution == 512)
    if key in EG3D_PRESETS:
        return EG3D_PRESETS[key]
    ratio = output_resolution // neural_resolution
    if ratio < 1 or ratio * neural_resolution != output_resolution or ratio & (ratio - 1):
        raise ValueError(f"output/neural resolution ratio must be a power of two, got {output_resolution}/{neural_resolution}")
    blocks, res = [], neural_resolution
    for _ in range(int(math.log2(ratio))):
        res *= 2
        blocks.append((generic_channels, res, 2))
    if not blocks:  # same resolution: one refinement block
        blocks.append((generic_channels, res, 1))
    return neural_resolution, blocks


class SuperResolution(nn.Module):
    def __init__(self, in_channels: int, w_dim: int, in_resolution: int, out_resolution: int, channels: int,
                 generator: torch.Generator, conv_clamp: float | None = None, dc: bool = True, antialias: bool = True,
                 num_fp16_res: int = 0):
        super().__init__()
        self.input_resolution, layout = sr_layout(in_resolution, out_resolution, dc, channels)
        self.antialias = antialias
        blocks, c_in = [], in_channels
        for width, res, up in layout:
            blocks.append(SynthesisBlock(c_in, width, w_dim, res, 3, generator, conv_clamp, up=up,
                                         use_fp16=num_fp16_res > 0))
            c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.out_resolution = out_resolution

    def _resize(self, t):
        size = self.input_resolution
        return nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                         antialias=self.antialias)

    def forward(self, features, rgb, mask, w, noise_mode="none", generator=None):
        """features (B, F, h, w), rgb (B, 3, h, w), mask (B, 1, h, w), w (B, w_dim) -> (I+, I^{m+})."""
        x, img = features, rgb
        if x.shape[-1] != self.input_resolution:
            x, img = self._resize(x), self._resize(img)
        ws = w[:, None].expand(-1, 3, -1)
        for block in self.blocks:
            x, img = block(x, img, ws, noise_mode, generator)
        size = img.shape[-1]
        mask_up = mask if mask.shape[-1] == size else nn.functional.interpolate(
            mask, size=(size, size), mode="bilinear", align_corners=False)
        return img, mask_up
