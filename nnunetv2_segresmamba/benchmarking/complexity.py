"""Parameter and multiply-accumulate (MAC) counts of a network on one input, by forward hooks, and the
activation memory that autograd keeps for backward.

Counted: Conv1d/Conv3d (out voxels x out channels x in channels / groups x kernel volume),
ConvTranspose3d (the same over the input voxels), Linear, and inside each ToM the functional parts
(the depthwise conv1d, x_proj, dt_proj and the scan: 2 MACs per token, channel and state, one for the
state update and one for the read-out). Norms, activations, upsampling and additions are not counted,
as in the usual counters (fvcore, ptflops without extras).
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn as nn

from ..network.tom import SCAN_ORDERS, TriOrientedMamba


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tom_functional_macs(tom: TriOrientedMamba, tokens: int) -> int:
    per_order = tom.d_inner * (tom.d_conv + (tom.dt_rank + 2 * tom.d_state) + tom.dt_rank + 2 * tom.d_state)
    return tokens * len(SCAN_ORDERS) * per_order


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass at ``input_shape`` (batch included). Runs on a copy of the model on
    the meta device: no arithmetic, no memory, so 128^3 volumes can be counted on a laptop."""
    model = copy.deepcopy(model).to("meta")
    example = torch.empty(input_shape, device="meta")
    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        x = inputs[0]
        if isinstance(module, nn.ConvTranspose3d):
            total += x.numel() // x.shape[1] * module.in_channels * module.out_channels // module.groups \
                * math.prod(module.kernel_size)
        elif isinstance(module, (nn.Conv1d, nn.Conv3d)):
            total += output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            total += output.numel() // module.out_features * module.in_features * module.out_features
        elif isinstance(module, TriOrientedMamba):
            total += x.shape[0] * _tom_functional_macs(module, math.prod(x.shape[2:]))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose3d, nn.Linear, TriOrientedMamba))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return total


class SavedForBackward:
    """While entered, counts the distinct storages that autograd keeps for backward: the activation
    memory of training, on any device (a storage shared by several saved tensors counts once; parameters
    count too, as the layers that use them save them)."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self) -> "SavedForBackward":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def bytes_saved_for_backward(forward: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run ``forward()``; its output and the bytes autograd keeps from it for backward."""
    with SavedForBackward() as saved:
        out = forward()
    return out, saved.bytes
