"""Convolutional building blocks shared by the encoder, the skips and the decoder."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

Triple = tuple[int, int, int]


def as_triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"expected 3 values (one per axis), got {value}")
    return value  # type: ignore[return-value]


def same_padding(kernel: Triple) -> Triple:
    return tuple(k // 2 for k in kernel)  # type: ignore[return-value]


def plan_kernel(paper_kernel: int, plan_kernel: Sequence[int], stride: int | Sequence[int] = 1) -> Triple:
    """The paper's kernel size on the axes where nnU-Net's plan convolves (plan kernel > 1), 1 on the axes
    where the plan does not (too coarse a spacing: a 7-voxel kernel would span centimetres there). An axis
    the conv strides over keeps the paper's size, so that a stride never just skips voxels."""
    return tuple(paper_kernel if k > 1 or s > 1 else 1
                 for k, s in zip(as_triple(plan_kernel), as_triple(stride)))  # type: ignore[return-value]


class ConvNormAct(nn.Sequential):
    """Conv3d (or ConvTranspose3d) -> InstanceNorm -> ReLU, padded so that stride 1 keeps the grid
    and stride 2 halves an even axis (the transposed form doubles it back exactly)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | Sequence[int],
                 stride: int | Sequence[int] = 1, transposed: bool = False):
        kernel, stride = as_triple(kernel), as_triple(stride)
        padding = same_padding(kernel)
        if transposed:
            conv = nn.ConvTranspose3d(in_channels, out_channels, kernel, stride, padding,
                                      output_padding=tuple(s - 1 for s in stride))
        else:
            conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding)
        super().__init__(conv, nn.InstanceNorm3d(out_channels, affine=True), nn.ReLU(inplace=True))


class NormConv(nn.Sequential):
    """InstanceNorm -> Conv3d: the pre-normalised convs before and at each encoder downsampling.
    With kernel == stride it is the 2x2x2 stride-2 downsampling (1 on axes the plan does not pool)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | Sequence[int],
                 stride: int | Sequence[int] = 1):
        kernel, stride = as_triple(kernel), as_triple(stride)
        padding = (0, 0, 0) if kernel == stride else same_padding(kernel)
        super().__init__(nn.InstanceNorm3d(in_channels, affine=True),
                         nn.Conv3d(in_channels, out_channels, kernel, stride, padding))


class ChannelMLPSkip(nn.Sequential):
    """Skip path: InstanceNorm, then a 1x1x1 MLP C -> 2C -> 2C with GELU (the decoder starts at 2 * 384)."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__(nn.InstanceNorm3d(channels, affine=True),
                         nn.Conv3d(channels, out_channels, 1),
                         nn.GELU(),
                         nn.Conv3d(out_channels, out_channels, 1))


class PreActResBlock(nn.Module):
    """Pre-activation residual block of the decoder: (GroupNorm, ReLU, Conv k3) twice, plus identity.
    ``kernel`` is 3 per axis, or 1 on axes that the plan does not convolve at this grid."""

    def __init__(self, channels: int, num_groups: int = 8, kernel: int | Sequence[int] = 3):
        super().__init__()
        groups = num_groups if channels % num_groups == 0 else 1
        kernel = as_triple(kernel)
        padding = same_padding(kernel)
        conv = lambda: nn.Conv3d(channels, channels, kernel, padding=padding)  # noqa: E731
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.ReLU(inplace=True), conv(),
            nn.GroupNorm(groups, channels), nn.ReLU(inplace=True), conv(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
