"""The selective scans a SegResMamba runs, one per ToM layer, found by running it on the meta device (no memory,
no compute)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .config import SegResMambaConfig
from .segresmamba import SegResMamba
from .tom import SCAN_ORDERS, TriOrientedMamba


@dataclass(frozen=True)
class ScanShape:
    batch: int
    channels: int  # all scan orders side by side, as the ToM layer scans them
    length: int
    groups: int
    d_state: int

    @property
    def label(self) -> str:
        return f"{self.batch}x{self.channels}x{self.length}"


def scan_shapes(config: SegResMambaConfig, patch_size: Sequence[int], batch: int) -> list[ScanShape]:
    """The scans of one forward pass of the network ``config`` builds, on a batch of ``patch_size`` inputs."""
    with torch.device("meta"):
        network = SegResMamba(replace(config, scan_backend="torch")).eval()  # the same scans as in training
    shapes = []

    def record(tom: TriOrientedMamba, args) -> None:
        x = args[0]
        shapes.append(ScanShape(x.shape[0], len(SCAN_ORDERS) * tom.d_inner, x[0, 0].numel(), len(SCAN_ORDERS),
                                tom.d_state))

    for module in network.modules():
        if isinstance(module, TriOrientedMamba):
            module.register_forward_pre_hook(record)
    with torch.no_grad():
        network(torch.empty(batch, config.in_channels, *patch_size, device="meta"))
    return shapes
