"""``auto``'s scan backend for a training: where several GPU backends are installed, the one that runs this
plan's scans (forward and backward, at the training batch and patch) fastest on this GPU."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..network import SegResMamba
from ..network.scan_shapes import scan_shapes
from ..ssm.auto_select import fastest_backend, time_scans


def use_fastest_scan_backend(network: SegResMamba, patch_size: Sequence[int], batch: int, device: torch.device,
                             candidates: Sequence[str], timer: Callable = time_scans) -> tuple[str, dict[str, float]]:
    """Times ``candidates`` at the network's scans, switches the network to the fastest; (it, every time)."""
    choice, times = fastest_backend(scan_shapes(network.config, patch_size, batch), candidates, device, timer)
    network.use_scan_backend(choice)
    return choice, times
