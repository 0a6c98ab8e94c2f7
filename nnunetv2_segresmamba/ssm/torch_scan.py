"""Pure-PyTorch selective scan: runs on any device, used on CPUs and wherever mamba-ssm is absent.

The recurrence h_t = a_t * h_{t-1} + b_t is evaluated as a two-level scan over chunks of T tokens:

1. all chunks at once, each from a zero state: T steps over tensors that hold every chunk, keeping
   only each chunk's final state;
2. the state entering each chunk: one step per chunk, carrying those final states forward;
3. all chunks at once again, now from their true entering states, reading out y_t = <C_t, h_t>.

With T about sqrt(length) that is about 3*sqrt(length) small Python steps instead of `length`, and the
full (token x channel x state) tensor of states is never stored by the forward pass itself. All
arithmetic (state, decays, accumulation) runs in float32 (float64 for float64 inputs) whatever the
input dtype, so fp16 autocast cannot overflow the scan. Every decay factor is exp(delta * A) <= 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def default_chunk_size(length: int) -> int:
    return int(min(256, max(8, round(math.sqrt(length)))))


def selective_scan_torch(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                         delta_bias: Tensor | None = None, delta_softplus: bool = True,
                         chunk_size: int | None = None) -> Tensor:
    """The selective scan of ``registry.SelectiveScan`` (plus the chunk length, default about sqrt(length));
    returns ``u``'s dtype."""
    out_dtype = u.dtype
    # float32 at least (fp16/bf16 inputs are upcast); float64 inputs stay float64 for exact checks.
    compute = torch.promote_types(u.dtype, torch.float32)
    batch, channels, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    if channels % groups:
        raise ValueError(f"{channels} channels cannot be split into {groups} groups of B and C")
    per_group = channels // groups

    u = u.to(compute)
    delta = delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    chunk = chunk_size or default_chunk_size(length)
    num_chunks = -(-length // chunk)
    padding = num_chunks * chunk - length
    # Padded tokens have delta = 0: decay 1 and no input, so they leave the state untouched.
    u_p, delta_p, B_p, C_p = (F.pad(t.to(compute), (0, padding)) for t in (u, delta, B, C))

    # Layout (token-in-chunk, batch, group, channel-in-group, state, chunk): the token axis leads, so
    # each step of the loops below reads and writes contiguous memory.
    def tokens_first(t: torch.Tensor, rows: int) -> torch.Tensor:
        return t.reshape(batch, groups, rows, num_chunks, chunk).permute(4, 0, 1, 2, 3)

    u_c = tokens_first(u_p, per_group).unsqueeze(-2)  # (T, b, g, dg, 1, nc)
    delta_c = tokens_first(delta_p, per_group).unsqueeze(-2)
    B_c = tokens_first(B_p, d_state).unsqueeze(3)  # (T, b, g, 1, n, nc)
    C_c = tokens_first(C_p, d_state).unsqueeze(3)
    A_c = A.to(compute).view(1, 1, groups, per_group, d_state, 1)

    decay = torch.exp(delta_c * A_c)  # (T, b, g, dg, n, nc)
    inject = (delta_c * u_c) * B_c
    # unbind() once rather than indexing per step: autograd's backward of each index op would
    # allocate a full-size zero tensor.
    decay_steps, inject_steps, C_steps = decay.unbind(0), inject.unbind(0), C_c.unbind(0)

    if num_chunks == 1:
        state = torch.zeros_like(inject_steps[0])
    else:
        # 1. every chunk's final state from a zero start, all chunks at once (only the end is kept).
        local_end = inject_steps[0]
        for t in range(1, chunk):
            local_end = torch.addcmul(inject_steps[t], decay_steps[t], local_end)
        # 2. the state entering each chunk: pass the ends forward, one step per chunk.
        chunk_decay = decay.prod(dim=0).unbind(-1)
        local_ends = local_end.unbind(-1)
        entering = [torch.zeros_like(local_ends[0])]
        for c in range(num_chunks - 1):
            entering.append(torch.addcmul(local_ends[c], chunk_decay[c], entering[-1]))
        state = torch.stack(entering, dim=-1)

    # 3. rerun every chunk from its true entering state, reading out y_t = <C_t, h_t> on the way.
    outputs = []
    for t in range(chunk):
        state = torch.addcmul(inject_steps[t], decay_steps[t], state)
        outputs.append((state * C_steps[t]).sum(dim=3))  # (b, g, dg, nc)
    y = torch.stack(outputs, dim=-1)  # (b, g, dg, nc, T)
    y = y.reshape(batch, channels, num_chunks * chunk)[..., :length]
    if D is not None:
        y = y + D.to(compute)[:, None] * u
    return y.to(out_dtype)
