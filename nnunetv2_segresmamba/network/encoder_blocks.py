"""Encoder stages: the paper's Convolution Mamba Mixed Block (CMMB) and, for the ablation of the
paper's Table 4 (Exp 1), a SegMamba-style stage (a gated spatial conv followed by ToM layers)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .blocks import ConvNormAct, as_triple
from .tom import TriOrientedMamba


class ConvMambaMixedBlock(nn.Module):
    """Algorithm 1 of the paper.

    F1 = Conv k5 (stride ``inner_stride``, halving the grid on pooled axes); F2 = Conv k3; F3 = ToM(F2);
    F4 = Conv k3; F5 = ConvTranspose k5 (back to X's grid); F6 = F5 + X; out = ToM(F6).
    Every conv is followed by InstanceNorm + ReLU.
    """

    def __init__(self, channels: int, inner_stride: int | Sequence[int] = 2, **mamba_kwargs):
        super().__init__()
        inner_stride = as_triple(inner_stride)
        self.inner_stride = inner_stride
        self.down = ConvNormAct(channels, channels, 5, inner_stride)
        self.conv_in = ConvNormAct(channels, channels, 3)
        self.tom_inner = TriOrientedMamba(channels, **mamba_kwargs)
        self.conv_out = ConvNormAct(channels, channels, 3)
        self.up = ConvNormAct(channels, channels, 5, inner_stride, transposed=True)
        self.tom_outer = TriOrientedMamba(channels, **mamba_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = self.tom_inner(self.conv_in(self.down(x)))
        return self.tom_outer(self.up(self.conv_out(inner)) + x)


class GatedSpatialConv(nn.Module):
    """Two-branch local block in the spirit of SegMamba's gated spatial convolution: a k3-k3 branch and
    a k1 branch are summed, mixed by a k1 conv, and added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.wide = nn.Sequential(ConvNormAct(channels, channels, 3), ConvNormAct(channels, channels, 3))
        self.point = ConvNormAct(channels, channels, 1)
        self.mix = ConvNormAct(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.wide(x) + self.point(x))


class SegMambaStage(nn.Sequential):
    """Ablation stage (paper Table 4, Exp 1): gated spatial conv, then ``depth`` ToM layers."""

    def __init__(self, channels: int, depth: int = 2, **mamba_kwargs):
        super().__init__(GatedSpatialConv(channels),
                         *[TriOrientedMamba(channels, **mamba_kwargs) for _ in range(depth)])
