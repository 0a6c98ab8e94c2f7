"""nnU-Net's own networks for a patch, built as nnU-Net builds them, for same-plan comparisons.

The topology (stages, per-stage strides and kernels) comes from nnU-Net's planner function
``get_pool_and_conv_props``; widths are 32 * 2^i capped at 320 (3D), as nnU-Net's ExperimentPlanner
sets them. PlainConvUNet is nnU-Net's default 3d_fullres network; ResEnc M uses the residual encoder
with the M preset's blocks per stage (1, 3, 4, 6, 6, 6, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

from ..network import SegResMamba, config_from_patch_and_strides


@dataclass(frozen=True)
class Topology:
    patch_size: tuple[int, ...]
    strides: list[list[int]]
    kernels: list[list[int]]

    @property
    def widths(self) -> list[int]:
        return [min(32 * 2 ** i, 320) for i in range(len(self.strides))]


def nnunet_topology(patch_size, spacing=(1.0, 1.0, 1.0)) -> Topology:
    _, strides, kernels, patch, _ = get_pool_and_conv_props(list(spacing), list(patch_size), 4, 999999)
    return Topology(tuple(int(p) for p in patch), [[int(v) for v in s] for s in strides],
                    [[int(v) for v in k] for k in kernels])


def _common(topology: Topology, in_channels: int, num_classes: int) -> dict:
    return dict(input_channels=in_channels, n_stages=len(topology.strides), features_per_stage=topology.widths,
                conv_op=nn.Conv3d, kernel_sizes=topology.kernels, strides=topology.strides, num_classes=num_classes,
                conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)


def plain_conv_unet(topology: Topology, in_channels: int, num_classes: int) -> nn.Module:
    n = len(topology.strides)
    return PlainConvUNet(n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1),
                         **_common(topology, in_channels, num_classes))


def resenc_m_unet(topology: Topology, in_channels: int, num_classes: int) -> nn.Module:
    n = len(topology.strides)
    blocks = ([1, 3, 4, 6] + [6] * n)[:n]
    return ResidualEncoderUNet(n_blocks_per_stage=blocks, n_conv_per_stage_decoder=[1] * (n - 1),
                               **_common(topology, in_channels, num_classes))


def segresmamba(topology: Topology, in_channels: int, num_classes: int, **options) -> nn.Module:
    config = config_from_patch_and_strides(topology.patch_size, topology.strides, in_channels, num_classes,
                                           plan_kernels=topology.kernels,
                                           deep_supervision=True, **options)
    return SegResMamba(config)


def segresmamba_recompute_level0(topology: Topology, in_channels: int, num_classes: int) -> nn.Module:
    """SegResMamba whose largest-grid ToM layers recompute their activations in backward."""
    return segresmamba(topology, in_channels, num_classes, recompute_tom_levels=(0,))


NETWORKS = {"PlainConvUNet": plain_conv_unet, "ResEncM": resenc_m_unet, "SegResMamba": segresmamba,
            "SegResMamba_recompute0": segresmamba_recompute_level0}
