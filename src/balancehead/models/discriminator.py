"""Dual / tri discriminator (StyleGAN2 residual D) with projection conditioning and minibatch-std.

Inputs (a dict as produced by the generator or by the real-data pipeline):
* ``image``     I+ at the output resolution, in [-1, 1];
* ``image_raw`` I at the neural resolution, bilinearly upsampled here to the output resolution;
* ``mask``      I^{m+} in [0, 1] (tri mode only), mapped to [-1, 1] as a 7th channel.

The label c is an explicit argument (camera, semantic, both, or none): ViCiCo passes shuffled
labels, and tests can assert on exactly what D saw. Conditioning is by projection: a mapping
network embeds c to `cmap`, the logit is <features, cmap> / sqrt(cmap_dim).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import DiscriminatorConfig
from .layers import Conv2dLayer, FullyConnected
from .mapping import MappingNetwork


def channels_at(res, cfg: DiscriminatorConfig) -> int:
    return min(cfg.channel_base // res, cfg.channel_max)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels, mid_channels, out_channels, img_channels, generator, conv_clamp):
        super().__init__()
        self.fromrgb = Conv2dLayer(img_channels, mid_channels, 1, generator, conv_clamp=conv_clamp) if in_channels == 0 else None
        c_in = mid_channels if in_channels == 0 else in_channels
        self.conv0 = Conv2dLayer(c_in, mid_channels, 3, generator, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(mid_channels, out_channels, 3, generator, down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(c_in, out_channels, 1, generator, activation="linear", down=2, bias=False)

    def forward(self, x, img):
        if self.fromrgb is not None:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the std over groups of samples as extra channels: lets D see batch diversity."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:  # largest group size dividing the batch
        g -= 1
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        self.img_channels = 7 if cfg.mode == "tri" else 6
        resolutions = [2 ** i for i in range(int(math.log2(cfg.resolution)), 2, -1)]
        blocks = []
        for res in resolutions:
            in_c = 0 if res == cfg.resolution else channels_at(res, cfg)
            blocks.append(DiscriminatorBlock(in_c, channels_at(res, cfg), channels_at(res // 2, cfg), self.img_channels,
                                             generator, cfg.conv_clamp))
        self.blocks = nn.ModuleList(blocks)
        c4 = channels_at(4, cfg)
        self.mapping = (MappingNetwork(0, cfg.c_dim, cfg.cmap_dim, 1, generator, num_layers=cfg.mapping_layers,
                                       lr_multiplier=1.0) if cfg.c_dim > 0 else None)
        self.epilogue_conv = Conv2dLayer(c4 + cfg.mbstd_channels, c4, 3, generator, conv_clamp=cfg.conv_clamp)
        self.epilogue_fc = FullyConnected(c4 * 16, c4, generator, activation="lrelu")
        self.out = FullyConnected(c4, cfg.cmap_dim if cfg.c_dim > 0 else 1, generator)

    def assemble_input(self, images: dict) -> torch.Tensor:
        img = images["image"]
        size = img.shape[-1]
        raw = images["image_raw"]
        if raw.shape[-1] != size:
            raw = nn.functional.interpolate(raw, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        parts = [img, raw]
        if self.cfg.mode == "tri":
            mask = images["mask"]
            if mask.shape[-1] != size:
                mask = nn.functional.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
            parts.append(mask * 2 - 1)
        return torch.cat(parts, dim=1)

    def forward(self, images: dict, c: torch.Tensor | None) -> torch.Tensor:
        """-> logits (B, 1)."""
        x = None
        img = self.assemble_input(images)
        for block in self.blocks:
            x = block(x, img)
        x = minibatch_std(x, self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = self.epilogue_conv(x)
        x = self.out(self.epilogue_fc(x.flatten(1)))
        if self.mapping is None:
            return x
        if c is None or c.shape[1] != self.cfg.c_dim:
            raise ValueError(f"discriminator expects a label of width {self.cfg.c_dim}, got {None if c is None else tuple(c.shape)}")
        cmap = self.mapping(None, c)[:, 0]
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cfg.cmap_dim)
