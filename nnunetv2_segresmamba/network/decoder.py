"""The lightweight SegResNet-style decoder: per stage a 1x1x1 conv halving the channels, fixed
trilinear upsampling, the skip added (not concatenated), and a pre-activation residual block."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .blocks import PreActResBlock, Triple, plan_kernel

class DecoderStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, scale: Triple, plan_kernel_here: Triple = (3, 3, 3)):
        super().__init__()
        self.reduce = nn.Conv3d(in_channels, out_channels, 1)
        self.upsample = (nn.Identity() if scale == (1, 1, 1)
                         else nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode="trilinear"))
        self.block = PreActResBlock(out_channels, kernel=plan_kernel(3, plan_kernel_here))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.upsample(self.reduce(x)) + skip)


class SegResNetDecoder(nn.Module):
    """``skip_channels``, ``scales`` and ``plan_kernels`` (nnU-Net's kernel on each stage's output grid) run
    from the deepest level up; the deepest skip is the input.

    The layers whose shape depends on the number of classes live in ``seg_layers``, as in nnU-Net's own
    decoders: index 0 is the final transposed conv to the input grid, 1.. the deep-supervision heads
    (finest first). nnU-Net's ``-pretrained_weights`` skips every key containing ``.seg_layers.``, so a
    checkpoint trained for other classes fine-tunes into this network.
    """

    def __init__(self, skip_channels: Sequence[int], scales: Sequence[Triple], num_classes: int,
                 final_stride: Triple, plan_kernels: Sequence[Triple] | None = None):
        super().__init__()
        channels = list(skip_channels)
        plan_kernels = list(plan_kernels) if plan_kernels is not None else [(3, 3, 3)] * (len(channels) - 1)
        self.stages = nn.ModuleList(
            DecoderStage(c_in, c_out, scale, kernel)
            for c_in, c_out, scale, kernel in zip(channels[:-1], channels[1:], scales, plan_kernels))
        # Deep supervision heads are always built, so training and prediction build the same modules and
        # the predictor's strict state_dict load succeeds whether or not they are used.
        self.seg_layers = nn.ModuleList(
            [nn.ConvTranspose3d(channels[-1], num_classes, final_stride, final_stride)]
            + [nn.Conv3d(c, num_classes, 1) for c in reversed(channels[1:])])
        self.deep_supervision = False

    @property
    def final(self) -> nn.ConvTranspose3d:
        return self.seg_layers[0]

    @property
    def ds_heads(self) -> nn.ModuleList:
        """The deep-supervision heads, finest first (a view of ``seg_layers``, for set-up code such as freezing
        them; forward indexes ``seg_layers`` itself)."""
        return self.seg_layers[1:]

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[0]
        stage_outputs = []
        for stage, skip in zip(self.stages, skips[1:]):
            x = stage(x, skip)
            stage_outputs.append(x)
        logits = self.final(x)
        if not self.deep_supervision:
            return logits
        return [logits] + [self.seg_layers[i](out) for i, out in enumerate(reversed(stage_outputs), start=1)]
