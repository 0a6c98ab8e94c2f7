"""Float64-checkable reference of the selective scan: one plain loop over the sequence.

Slow by design; it is the ground truth the fast backends are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                             delta_bias: Tensor | None = None, delta_softplus: bool = True) -> Tensor:
    """The selective scan of ``registry.SelectiveScan``, one token at a time, in the dtype of ``u`` (call it
    with float64 inputs)."""
    batch, channels, length = u.shape
    groups = B.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    per_group = channels // groups
    B_per_channel = B.repeat_interleave(per_group, dim=1)  # (batch, channels, d_state, length)
    C_per_channel = C.repeat_interleave(per_group, dim=1)
    state = u.new_zeros(batch, channels, A.shape[1])
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)
        state = decay * state + (delta[:, :, t] * u[:, :, t])[:, :, None] * B_per_channel[..., t]
        outputs.append((state * C_per_channel[..., t]).sum(-1))
    y = torch.stack(outputs, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    return y
