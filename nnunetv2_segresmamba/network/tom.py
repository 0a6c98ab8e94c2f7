"""Tri-oriented Mamba (ToM): one Mamba block that scans a volume's tokens in three orders.

Orders, over a (D, H, W) grid: ``flat`` (row-major flattening), ``reversed`` (the same, backwards) and
``interslice`` (depth innermost, i.e. the grid permuted to (H, W, D) before flattening). The input and
output projections are shared; each order has its own causal depthwise conv1d, x_proj, dt_proj,
A_log and D, named as in mamba-ssm's ``Mamba`` so that the parameters mean the same thing to both
scan backends. The three orders are stacked along the channel axis and scanned in one call (B and C
are grouped per order), then mapped back to the flat token order and summed before the gate and
the output projection. LayerNorm before, residual around.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..ssm import requested_backend, selective_scan

SCAN_ORDERS = ("flat", "reversed", "interslice")


def to_scan_order(tokens: torch.Tensor, order: str, grid: Sequence[int]) -> torch.Tensor:
    """(batch, channels, D*H*W) in flat order -> the same tokens in ``order``."""
    if order == "flat":
        return tokens
    if order == "reversed":
        return tokens.flip(-1)
    if order == "interslice":
        batch, channels = tokens.shape[:2]
        return tokens.view(batch, channels, *grid).permute(0, 1, 3, 4, 2).reshape(batch, channels, -1)
    raise ValueError(f"unknown scan order {order!r}")


def from_scan_order(tokens: torch.Tensor, order: str, grid: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_scan_order`."""
    if order == "flat":
        return tokens
    if order == "reversed":
        return tokens.flip(-1)
    if order == "interslice":
        batch, channels = tokens.shape[:2]
        depth, height, width = grid
        return tokens.view(batch, channels, height, width, depth).permute(0, 1, 4, 2, 3).reshape(batch, channels, -1)
    raise ValueError(f"unknown scan order {order!r}")


class ScanParameters(nn.Module):
    """The per-order part of a Mamba block: causal conv1d, x_proj, dt_proj, A_log, D."""

    def __init__(self, d_inner: int, d_state: int, d_conv: int, dt_rank: int,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        # Mamba's initialisation: dt starts log-uniform in [dt_min, dt_max] (bias = softplus^-1(dt)),
        # A = -(1..d_state) per channel, D = 1.
        nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True


class TriOrientedMamba(nn.Module):
    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | None = None, recompute: bool = False, scan_backend: str | None = None):
        super().__init__()
        self.dim = dim
        # The scan backend's name (ssm.BACKENDS); default: SEGRESMAMBA_SCAN_BACKEND. A plain attribute, not in
        # the state_dict: the same weights run on every backend.
        self.scan_backend = requested_backend(scan_backend)
        # Recompute this layer's activations during backward instead of keeping them from the forward
        # pass: the same gradients, less memory held across the rest of the network, one more forward.
        self.recompute = recompute
        self.d_inner = expand * dim
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 2 * self.d_inner, bias=False)
        self.orders = nn.ModuleDict(
            {name: ScanParameters(self.d_inner, d_state, d_conv, self.dt_rank) for name in SCAN_ORDERS})
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)

    def _stacked(self, getter) -> torch.Tensor:
        return torch.cat([getter(p) for p in self.orders.values()], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute and torch.is_grad_enabled():
            return x + checkpoint(self._mix, x, use_reentrant=False)
        return x + self._mix(x)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the residual: norm, projections, the three scans, gate, output projection."""
        batch, channels, *grid = x.shape
        length = math.prod(grid)
        num_orders = len(SCAN_ORDERS)
        tokens = x.flatten(2).transpose(1, 2)  # (batch, length, channels)
        u, gate = self.in_proj(self.norm(tokens)).chunk(2, dim=-1)
        u = u.transpose(1, 2)  # (batch, d_inner, length)

        # All orders side by side on the channel axis: one conv, one projection, one scan.
        u = torch.cat([to_scan_order(u, order, grid) for order in SCAN_ORDERS], dim=1)
        u = F.conv1d(u, self._stacked(lambda p: p.conv1d.weight), self._stacked(lambda p: p.conv1d.bias),
                     padding=self.d_conv - 1, groups=num_orders * self.d_inner)[..., :length]
        u = F.silu(u)

        u_per_order = u.view(batch, num_orders, self.d_inner, length)
        x_proj = torch.stack([p.x_proj.weight for p in self.orders.values()])  # (orders, R + 2N, d_inner)
        dt_low, B, C = torch.einsum("bkdl,krd->bkrl", u_per_order, x_proj).split(
            [self.dt_rank, self.d_state, self.d_state], dim=2)
        dt_proj = torch.stack([p.dt_proj.weight for p in self.orders.values()])  # (orders, d_inner, R)
        delta = torch.einsum("bkrl,kdr->bkdl", dt_low, dt_proj).reshape(batch, -1, length)

        y = selective_scan(
            u, delta,
            A=-torch.exp(self._stacked(lambda p: p.A_log)),
            B=B, C=C,
            D=self._stacked(lambda p: p.D),
            delta_bias=self._stacked(lambda p: p.dt_proj.bias),
            delta_softplus=True,
            backend=self.scan_backend,
        ).view(batch, num_orders, self.d_inner, length)

        y = sum(from_scan_order(y[:, k], order, grid) for k, order in enumerate(SCAN_ORDERS))
        # The gate is elementwise per token, so gating the sum equals gating each order in its own order.
        y = y.transpose(1, 2) * F.silu(gate)
        return self.out_proj(y).transpose(1, 2).reshape(batch, channels, *grid)
