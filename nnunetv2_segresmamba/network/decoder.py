"""The lightweight SegResNet-style decoder: per stage a 1x1x1 conv halving the channels, fixed
trilinear upsampling, the skip added (not concatenated), and a pre-activation residual block."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .blocks import PreActResBlock, Triple


class DecoderStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, scale: Triple):
        super().__init__()
        self.reduce = nn.Conv3d(in_channels, out_channels, 1)
        self.upsample = (nn.Identity() if scale == (1, 1, 1)
                         else nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode="trilinear"))
        self.block = PreActResBlock(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.upsample(self.reduce(x)) + skip)


class SegResNetDecoder(nn.Module):
    """``skip_channels`` and ``scales`` run from the deepest level up; the deepest skip is the input."""

    def __init__(self, skip_channels: Sequence[int], scales: Sequence[Triple], num_classes: int,
                 final_stride: Triple):
        super().__init__()
        channels = list(skip_channels)
        self.stages = nn.ModuleList(
            DecoderStage(c_in, c_out, scale) for c_in, c_out, scale in zip(channels[:-1], channels[1:], scales))
        self.final = nn.ConvTranspose3d(channels[-1], num_classes, final_stride, final_stride)
        # Deep supervision heads, finest first. Always built, so training and prediction build the
        # same modules and the predictor's strict state_dict load succeeds whether or not they are used.
        self.ds_heads = nn.ModuleList(nn.Conv3d(c, num_classes, 1) for c in reversed(channels[1:]))
        self.deep_supervision = False

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[0]
        stage_outputs = []
        for stage, skip in zip(self.stages, skips[1:]):
            x = stage(x, skip)
            stage_outputs.append(x)
        logits = self.final(x)
        if not self.deep_supervision:
            return logits
        return [logits] + [head(out) for head, out in zip(self.ds_heads, reversed(stage_outputs))]
