"""Encoder stages: the paper's Convolution Mamba Mixed Block (CMMB) and, for the ablation of the
paper's Table 4 (Exp 1), a SegMamba-style stage (a gated spatial conv followed by ToM layers)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .blocks import ConvNormAct, Triple, as_triple, plan_kernel
from .tom import TriOrientedMamba


class ConvMambaMixedBlock(nn.Module):
    """Algorithm 1 of the paper.

    F1 = Conv k5 (stride ``inner_stride``, halving the grid on pooled axes); F2 = Conv k3; F3 = ToM(F2);
    F4 = Conv k3; F5 = ConvTranspose k5 (back to X's grid); F6 = F5 + X; out = ToM(F6).
    Every conv is followed by InstanceNorm + ReLU. ``outer_plan_kernel`` / ``inner_plan_kernel`` are
    nnU-Net's kernels on X's grid and on the inner grid: axes where they are 1 get kernel 1 (plan_kernel).
    """

    def __init__(self, channels: int, inner_stride: int | Sequence[int] = 2,
                 outer_plan_kernel: Triple = (3, 3, 3), inner_plan_kernel: Triple = (3, 3, 3), **mamba_kwargs):
        super().__init__()
        inner_stride = as_triple(inner_stride)
        self.inner_stride = inner_stride
        self.down = ConvNormAct(channels, channels, plan_kernel(5, inner_plan_kernel, inner_stride), inner_stride)
        self.conv_in = ConvNormAct(channels, channels, plan_kernel(3, inner_plan_kernel))
        self.tom_inner = TriOrientedMamba(channels, **mamba_kwargs)
        self.conv_out = ConvNormAct(channels, channels, plan_kernel(3, inner_plan_kernel))
        self.up = ConvNormAct(channels, channels, plan_kernel(5, outer_plan_kernel, inner_stride), inner_stride,
                              transposed=True)
        self.tom_outer = TriOrientedMamba(channels, **mamba_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = self.tom_inner(self.conv_in(self.down(x)))
        return self.tom_outer(self.up(self.conv_out(inner)) + x)


class GatedSpatialConv(nn.Module):
    """Two-branch local block in the spirit of SegMamba's gated spatial convolution: a k3-k3 branch and
    a k1 branch are summed, mixed by a k1 conv, and added to the input."""

    def __init__(self, channels: int, plan_kernel_here: Triple = (3, 3, 3)):
        super().__init__()
        kernel = plan_kernel(3, plan_kernel_here)
        self.wide = nn.Sequential(ConvNormAct(channels, channels, kernel), ConvNormAct(channels, channels, kernel))
        self.point = ConvNormAct(channels, channels, 1)
        self.mix = ConvNormAct(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.wide(x) + self.point(x))


class SegMambaStage(nn.Sequential):
    """Ablation stage (paper Table 4, Exp 1): gated spatial conv, then ``depth`` ToM layers."""

    def __init__(self, channels: int, depth: int = 2, plan_kernel_here: Triple = (3, 3, 3), **mamba_kwargs):
        super().__init__(GatedSpatialConv(channels, plan_kernel_here),
                         *[TriOrientedMamba(channels, **mamba_kwargs) for _ in range(depth)])
