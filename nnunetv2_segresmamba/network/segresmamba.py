"""SegResMamba (Das et al., MIDL 2025, section 2), built from a :class:`SegResMambaConfig`."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import ChannelMLPSkip, NormConv, plan_kernel
from .config import SegResMambaConfig
from .decoder import SegResNetDecoder
from .encoder_blocks import ConvMambaMixedBlock, SegMambaStage
from .tom import TriOrientedMamba


class EncoderLevel(nn.Sequential):
    """Level i > 0: [IN + Conv k3 (the paper's extra conv)], IN + Conv k2 s2 downsampling, then the
    level's block. Level 0 is the block alone (the stem already downsampled)."""

    def __init__(self, config: SegResMambaConfig, level: int):
        width = config.widths[level]
        mamba = dict(d_state=config.d_state, d_conv=config.d_conv, expand=config.expand,
                     recompute=level in config.recompute_tom_levels, scan_backend=config.scan_backend)
        layers: list[nn.Module] = []
        if level > 0:
            previous = config.widths[level - 1]
            if config.extra_conv_before_downsampling:
                layers.append(NormConv(previous, previous, plan_kernel(3, config.level_plan_kernels[level - 1])))
            stride = config.down_strides[level - 1]
            layers.append(NormConv(previous, width, stride, stride))
        if config.encoder_block == "cmmb":
            layers.append(ConvMambaMixedBlock(width, config.inner_strides[level], config.level_plan_kernels[level],
                                              config.inner_plan_kernels[level], **mamba))
        else:
            layers.append(SegMambaStage(width, config.segmamba_depth, config.level_plan_kernels[level], **mamba))
        super().__init__(*layers)


class SegResMamba(nn.Module):
    def __init__(self, config: SegResMambaConfig | None = None):
        super().__init__()
        self.config = config = config or SegResMambaConfig()
        stem_kernel = plan_kernel(config.stem_kernel, config.level_plan_kernels[0], config.stem_stride)
        self.stem = nn.Conv3d(config.in_channels, config.widths[0], stem_kernel, config.stem_stride,
                              tuple(k // 2 for k in stem_kernel))
        self.levels = nn.ModuleList(EncoderLevel(config, i) for i in range(len(config.widths)))
        skip_widths = [config.skip_expansion * w for w in config.widths]
        self.skips = nn.ModuleList(ChannelMLPSkip(w, s) for w, s in zip(config.widths, skip_widths))
        self.decoder = SegResNetDecoder(skip_widths[::-1], config.down_strides[::-1], config.num_classes,
                                        config.stem_stride, config.level_plan_kernels[-2::-1])
        self.deep_supervision = config.deep_supervision
        # False runs the network in fp32 even inside an autocast region (the noAMP trainer variant).
        self.autocast_enabled = True

    @property
    def deep_supervision(self) -> bool:
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = bool(enabled)

    def deep_supervision_scales(self) -> list[list[float]]:
        return self.config.deep_supervision_scales

    def use_scan_backend(self, name: str) -> None:
        """Run every ToM layer's scan on backend ``name`` from now on (the weights are the same on every one)."""
        self.config = replace(self.config, scan_backend=name)
        for module in self.modules():
            if isinstance(module, TriOrientedMamba):
                module.scan_backend = self.config.scan_backend

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() != 5:
            raise ValueError(f"SegResMamba takes (batch, channels, D, H, W) volumes; got shape {tuple(x.shape)}")
        if not self.autocast_enabled and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        pad = [(-s) % d for s, d in zip(size, self.config.divisor)]
        if any(pad):
            # F.pad lists the last axis first.
            x = F.pad(x, [p for amount in reversed(pad) for p in (0, amount)])
        features = self.stem(x)
        skips = []
        for level, skip in zip(self.levels, self.skips):
            features = level(features)
            skips.append(skip(features))
        out = self.decoder(skips[::-1])
        if not any(pad):
            return out
        if isinstance(out, list):
            return [self._crop(o, size, scale) for o, scale in zip(out, self.deep_supervision_scales())]
        return self._crop(out, size, (1.0, 1.0, 1.0))

    @staticmethod
    def _crop(x: torch.Tensor, size, scale) -> torch.Tensor:
        target = output_size(size, scale)
        return x[:, :, : target[0], : target[1], : target[2]]


def output_size(size, scale) -> list[int]:
    """The size of a deep-supervision output for an input of ``size``: the size nnU-Net downsamples the
    target to (batchgeneratorsv2's DownsampleSegForDSTransform: Python's round(), which rounds halves to
    even), so that any patch trains. The network's own grid on the padded input is never smaller."""
    return [max(1, round(s * f)) for s, f in zip(size, scale)]
