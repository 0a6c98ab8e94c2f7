"""The network a trainer actually built, as lines for its training log. nnU-Net's log dumps the plans, whose
``network_class_name`` is the plan's own U-Net (PlainConvUNet), not the network that trains."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..network import SegResMamba
from ..ssm import BACKEND_ENV
from .wrapped import is_compiled, unwrap


def _grid(size: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in size)


def _divided(size: Sequence[int], stride: Sequence[int]) -> list[int]:
    return [s // d for s, d in zip(size, stride)]


def segresmamba_lines(network: SegResMamba, patch_size: Sequence[int]) -> list[str]:
    """Widths, grids and ToM grids per encoder level, and the decoder's widths, for a patch of ``patch_size``
    (padded inside the network to what its strides need)."""
    config = network.config
    padded = [math.ceil(p / d) * d for p, d in zip(patch_size, config.divisor)]
    lines = [f"  patch {_grid(patch_size)}" + (f", padded to {_grid(padded)}" if padded != list(patch_size) else "")
             + f"; stem: conv stride {_grid(config.stem_stride)}",
             "  level  width  grid        ToM grids"]
    for level, width in enumerate(config.widths):
        grid = _divided(padded, config.level_strides[level])
        if config.encoder_block == "cmmb":  # the CMMB's first ToM on its halved inner grid, the second on its own
            toms = [_divided(padded, config.inner_level_strides[level]), grid]
        else:
            toms = [grid] * config.segmamba_depth
        lines.append(f"  {level:<5}  {width:<5}  {_grid(grid):<10}  {', '.join(_grid(t) for t in toms)}")
    skips = [config.skip_expansion * w for w in config.widths]
    lines.append(f"  skips (norm + channel MLP): {', '.join(map(str, skips))} channels; decoder: "
                 f"{' -> '.join(map(str, skips[::-1]))} channels, then {config.num_classes} classes at "
                 f"{_grid(patch_size)}; deep supervision {'on' if network.deep_supervision else 'off'}")
    return lines


def network_report(network: nn.Module, trainer_name: str, plan_network: str, patch_size: Sequence[int],
                   device: torch.device, scan_backend: str) -> str:
    """The text the training log gets next to nnU-Net's plan dump."""
    built = unwrap(network)
    parameters = sum(p.numel() for p in built.parameters())
    head = (f"Network built by {trainer_name}: {type(built).__name__}, {parameters / 1e6:.2f} M parameters (not "
            f"{plan_network.rsplit('.', 1)[-1]}, the plans' network_class_name above).")
    lines = [head]
    if isinstance(built, SegResMamba):
        lines += segresmamba_lines(built, patch_size)
        amp = "fp16 autocast" if device.type == "cuda" and built.autocast_enabled else "fp32"
        lines.append(f"  scan backend: {scan_backend} ({BACKEND_ENV}={built.config.scan_backend}, on "
                     f"{device.type}); torch.compile: {'yes' if is_compiled(network) else 'no'}; precision: {amp}")
    return "\n".join(lines) + "\n"
