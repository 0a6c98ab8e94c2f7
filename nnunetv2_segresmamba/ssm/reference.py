"""Float64-checkable reference of the selective scan: one plain loop over the sequence.

Slow by design; it is the ground truth the fast backends are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Selective scan with the argument conventions of mamba-ssm's ``selective_scan_fn``.

    u, delta: (batch, channels, length); A: (channels, d_state);
    B, C: (batch, groups, d_state, length), channel c uses group c // (channels // groups);
    D, delta_bias: (channels,). Computes in the dtype of ``u`` (call it with float64 inputs).

        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
        y_t = <C_t, h_t> + D * u_t
    """
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
