"""ToM: the three scan orders are different, mapped back, and summed; checked against an
independent float64 re-derivation that builds each order from explicit index maps."""

import math

import pytest
import torch
import torch.nn.functional as F

from nnunetv2_segresmamba.benchmarking.complexity import bytes_saved_for_backward
from nnunetv2_segresmamba.network.tom import SCAN_ORDERS, TriOrientedMamba, from_scan_order, to_scan_order
from nnunetv2_segresmamba.ssm import selective_scan_reference


def order_index(order, grid):
    """Position t of the scan -> flat (row-major D,H,W) index of the token it reads."""
    d, h, w = grid
    flat = torch.arange(d * h * w).view(d, h, w)
    if order == "flat":
        return flat.flatten()
    if order == "reversed":
        return flat.flatten().flip(0)
    if order == "interslice":  # depth innermost: for each (h, w), run over all slices
        return torch.stack([flat[:, i, j] for i in range(h) for j in range(w)]).flatten()
    raise AssertionError(order)


@pytest.mark.parametrize("grid", [(3, 4, 5), (5, 2, 3), (1, 3, 2)])
def test_scan_orders_are_distinct_and_invertible(grid):
    tokens = torch.arange(math.prod(grid)).float().view(1, 1, -1)
    seen = []
    for order in SCAN_ORDERS:
        scanned = to_scan_order(tokens, order, grid)
        assert torch.equal(scanned[0, 0].long(), order_index(order, grid))
        assert torch.equal(from_scan_order(scanned, order, grid), tokens)
        seen.append(scanned)
    if min(grid) > 1:
        assert not torch.equal(seen[0], seen[2]), "inter-slice order must differ from the flat order"


def reference_tom(tom: TriOrientedMamba, x: torch.Tensor) -> torch.Tensor:
    """ToM re-derived order by order in float64 with the loop scan and explicit gathers."""
    batch, channels, *grid = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    xz = F.linear(F.layer_norm(tokens, (channels,), tom.norm.weight, tom.norm.bias), tom.in_proj.weight)
    u_flat, gate = xz.chunk(2, dim=-1)
    total = 0
    for order, params in tom.orders.items():
        index = order_index(order, grid)
        u = u_flat[:, index].transpose(1, 2)  # (b, d_inner, L) in scan order
        u = F.silu(F.conv1d(u, params.conv1d.weight, params.conv1d.bias, padding=tom.d_conv - 1,
                            groups=tom.d_inner)[..., : u.shape[-1]])
        dbc = F.linear(u.transpose(1, 2), params.x_proj.weight)
        dt, B, C = dbc.split([tom.dt_rank, tom.d_state, tom.d_state], dim=-1)
        delta = F.linear(dt, params.dt_proj.weight).transpose(1, 2)
        y = selective_scan_reference(u, delta, -torch.exp(params.A_log), B.transpose(1, 2)[:, None],
                                     C.transpose(1, 2)[:, None], params.D, params.dt_proj.bias)
        back = torch.empty_like(y)
        back[..., index] = y  # scan position t holds token index[t]
        total = total + back
    out = F.linear(total.transpose(1, 2) * F.silu(gate), tom.out_proj.weight)
    return x + out.transpose(1, 2).reshape(x.shape)


@pytest.mark.parametrize("grid", [(3, 4, 5), (4, 3, 2)])
def test_tom_matches_order_by_order_float64_reference(grid):
    torch.manual_seed(0)
    tom = TriOrientedMamba(8, d_state=4).double()
    with torch.no_grad():  # make the orders' parameters different from each other
        for p in tom.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, 8, *grid, dtype=torch.float64)
    expected = reference_tom(tom, x)
    got = tom(x)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-10


def test_tom_output_depends_on_the_interslice_parameters():
    torch.manual_seed(0)
    tom = TriOrientedMamba(8, d_state=4)
    x = torch.randn(1, 8, 3, 4, 5)
    before = tom(x)
    with torch.no_grad():
        tom.orders["interslice"].x_proj.weight.mul_(-1.5)
    assert not torch.allclose(before, tom(x))


def test_recomputed_tom_gives_the_same_gradients_and_keeps_less_for_backward():
    torch.manual_seed(0)
    stored = TriOrientedMamba(8, d_state=4).double()
    recomputed = TriOrientedMamba(8, d_state=4, recompute=True).double()
    recomputed.load_state_dict(stored.state_dict())
    x = torch.randn(2, 8, 6, 5, 4, dtype=torch.float64)
    results = []
    for tom in (stored, recomputed):
        inp = x.clone().requires_grad_(True)
        out, kept = bytes_saved_for_backward(lambda: tom(inp))
        out.square().sum().backward()
        grads = [inp.grad] + [p.grad for p in tom.parameters()]
        results.append((out.detach(), grads, kept))
    (out_a, grads_a, kept_a), (out_b, grads_b, kept_b) = results
    assert torch.equal(out_a, out_b)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert kept_a > 0
    assert kept_b < 0.2 * kept_a, (kept_a, kept_b)
