"""The network inside nnU-Net's wrappers: DistributedDataParallel (-num_gpus N) and torch.compile."""

from __future__ import annotations

from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel as DDP


def unwrap(network: nn.Module) -> nn.Module:
    """The module itself, as it was built: its class, config and state_dict keys."""
    if isinstance(network, DDP):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


def is_compiled(network: nn.Module) -> bool:
    if isinstance(network, DDP):
        network = network.module
    return isinstance(network, OptimizedModule)
