"""Dual / mask discriminators (EG3D DualDiscriminator, PanoHead MaskDualDiscriminator / V2):
a StyleGAN2 residual D with projection conditioning and minibatch-std, layer for layer as EG3D.

Inputs (a dict as produced by the generator or by the real-data pipeline):
* ``image``     I+ at the output resolution, in [-1, 1];
* ``image_raw`` I at the neural resolution, resized here to the output resolution (EG3D
                `filtered_resizing`, bilinear with antialiasing) and concatenated to I+ (6 channels);
* ``mask``      the rendered/real mask in [0, 1], modes "mask" and "tri" only, resized and mapped to [-1, 1]:
  - ``mask`` (PanoHead MaskDualDiscriminator, reference): resized to `seg_resolution` and run through
    its own residual blocks; their 4x4 features are added to the image branch before the epilogue;
  - ``tri`` (PanoHead MaskDualDiscriminatorV2): resized to the output resolution and concatenated as a
    7th input channel.

The label c is an explicit argument (camera, semantic, both, or none): ViCiCo passes shuffled
labels, and tests can assert on exactly what D saw. Conditioning is by projection: a mapping
network (8 layers, lr multiplier 0.01 as EG3D) embeds c to `cmap`; the logit is
<features, cmap> / sqrt(cmap_dim).

Mixed precision as EG3D / PanoHead: blocks at resolution >= max(2 ** (log2(resolution) + 1 - num_fp16_res), 8)
(of the *image* resolution, for the mask branch too) compute in float16 on CUDA; the epilogue is float32.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import DiscriminatorConfig
from .layers import Conv2dLayer, FullyConnected, block_dtype, fp16_resolution
from .mapping import MappingNetwork


def channels_at(res, cfg: DiscriminatorConfig) -> int:
    return min(cfg.channel_base // res, cfg.channel_max)


def filtered_resizing(image: torch.Tensor, size: int) -> torch.Tensor:
    """EG3D filtered_resizing, 'antialiased' mode."""
    return nn.functional.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels, mid_channels, out_channels, img_channels, generator, conv_clamp,
                 use_fp16: bool = False):
        super().__init__()
        self.use_fp16 = use_fp16  # float16 on CUDA (EG3D use_fp16); float32 elsewhere
        self.fromrgb = Conv2dLayer(img_channels, mid_channels, 1, generator, conv_clamp=conv_clamp) if in_channels == 0 else None
        self.conv0 = Conv2dLayer(mid_channels, mid_channels, 3, generator, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(mid_channels, out_channels, 3, generator, down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(mid_channels, out_channels, 1, generator, activation="linear", down=2, bias=False)

    def forward(self, x, img):
        dtype = block_dtype(self.use_fp16, (x if x is not None else img).device, self.conv0.weight.dtype)
        if x is not None:
            x = x.to(dtype)
        if self.fromrgb is not None:
            x = self.fromrgb(img.to(dtype))
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the std over groups of samples as extra channels: lets D see batch diversity.
    The group is min(group_size, batch) as StyleGAN2 (which requires the batch to be a multiple of it);
    here a batch that is not falls back to the largest group size dividing it."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:
        g -= 1
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


def _blocks(top: int, img_channels: int, cfg: DiscriminatorConfig, generator) -> nn.ModuleList:
    blocks = []
    fp16_from = fp16_resolution(cfg.resolution, cfg.num_fp16_res)  # PanoHead: the mask branch uses the image's
    for res in [2 ** i for i in range(int(math.log2(top)), 2, -1)]:
        in_c = 0 if res == top else channels_at(res, cfg)
        blocks.append(DiscriminatorBlock(in_c, channels_at(res, cfg), channels_at(res // 2, cfg), img_channels,
                                         generator, cfg.conv_clamp, use_fp16=res >= fp16_from))
    return nn.ModuleList(blocks)


class Discriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        self.img_channels = 7 if cfg.mode == "tri" else 6
        self.blocks = _blocks(cfg.resolution, self.img_channels, cfg, generator)
        self.seg_resolution = min(cfg.seg_resolution, cfg.resolution)
        self.seg_blocks = _blocks(self.seg_resolution, 1, cfg, generator) if cfg.mode == "mask" else None
        c4 = channels_at(4, cfg)
        self.mapping = (MappingNetwork(0, cfg.c_dim, cfg.cmap_dim, 1, generator, num_layers=cfg.mapping_layers,
                                       lr_multiplier=cfg.mapping_lr_mul) if cfg.c_dim > 0 else None)
        self.epilogue_conv = Conv2dLayer(c4 + cfg.mbstd_channels, c4, 3, generator, conv_clamp=cfg.conv_clamp)
        self.epilogue_fc = FullyConnected(c4 * 16, c4, generator, activation="lrelu")
        self.out = FullyConnected(c4, cfg.cmap_dim if cfg.c_dim > 0 else 1, generator)

    def assemble_input(self, images: dict) -> torch.Tensor:
        img = images["image"]
        size = img.shape[-1]
        parts = [img, filtered_resizing(images["image_raw"], size)]
        if self.cfg.mode == "tri":
            parts.append(filtered_resizing(images["mask"], size) * 2 - 1)  # PanoHead: normalised to [-1, 1]
        return torch.cat(parts, dim=1)

    def forward(self, images: dict, c: torch.Tensor | None) -> torch.Tensor:
        """-> logits (B, 1)."""
        x = None
        img = self.assemble_input(images)
        for block in self.blocks:
            x = block(x, img)
        if self.seg_blocks is not None:
            seg, xs = filtered_resizing(images["mask"], self.seg_resolution) * 2 - 1, None
            for block in self.seg_blocks:
                xs = block(xs, seg)
            x = x + xs
        x = x.to(self.epilogue_conv.weight.dtype)  # the epilogue is float32 (EG3D DiscriminatorEpilogue)
        x = minibatch_std(x, self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = self.epilogue_conv(x)
        x = self.out(self.epilogue_fc(x.flatten(1)))
        if self.mapping is None:
            return x
        if c is None or c.shape[1] != self.cfg.c_dim:
            raise ValueError(f"discriminator expects a label of width {self.cfg.c_dim}, got {None if c is None else tuple(c.shape)}")
        cmap = self.mapping(None, c)[:, 0]
        return (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cfg.cmap_dim))
