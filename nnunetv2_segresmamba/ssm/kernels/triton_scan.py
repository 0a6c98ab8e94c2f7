"""The selective scan in Triton: forward and backward, no compiler toolchain needed beyond the Triton
that ships with CUDA builds of PyTorch.

The recurrence h_t = a_t * h_{t-1} + b_t (a_t = exp(delta_t * A), b_t = delta_t * u_t * B_t) is
evaluated in chunks of ``CHUNK`` tokens, in three launches:

1. every chunk at once, from a zero state: a parallel scan over the chunk's tokens (``tl.associative_scan``
   with the composition of affine maps), keeping only the chunk's total decay and end state;
2. the state entering each chunk: one short sequential pass over the chunks per (batch, channel, state);
3. every chunk at once again, from its true entering state: the states and the read-out
   y_t = <C_t, h_t> + D * u_t.

The backward pass runs the same three launches on the adjoint recurrence
dh_t = C_t * dy_t + a_{t+1} * dh_{t+1} (a reverse scan), recomputes the forward states of each chunk from
the entering states that step 2 of the forward pass kept, and forms every gradient in the last launch.
Channel blocks never straddle a group of B and C, so gradients of B and C are a sum over the block followed
by one atomic add per block.

Inputs may be fp16, bf16 or fp32; the state, the decays and every sum are fp32 in registers, so fp16
autocast cannot overflow the scan. Nothing here imports at package load: Triton may be absent (CPU-only
PyTorch builds), and ``TRITON_INTERPRET=1`` runs these kernels on the CPU for tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Tokens per chunk. Fixed (not autotuned) because the entering states kept for backward have one row per
# chunk and their shape must be known from the input shape alone (torch.compile's fake tensors).
CHUNK = 64
# At most this many channels share one program; fewer where the channels per group of B/C need it.
MAX_CHANNEL_BLOCK = 4
# (batch, channel, state) elements per program of the sequential pass over chunks.
CARRY_BLOCK = 256
# Warps per program of the chunk kernels.
FORWARD_WARPS = 4
BACKWARD_WARPS = 4


def num_chunks(length: int) -> int:
    return -(-length // CHUNK)


def channel_block(channels_per_group: int) -> int:
    """The largest power of two <= MAX_CHANNEL_BLOCK that divides the channels of one B/C group."""
    block = MAX_CHANNEL_BLOCK
    while channels_per_group % block:
        block //= 2
    return block


@triton.jit
def _compose(decay_1, value_1, decay_2, value_2):
    """Composition of the affine maps h -> decay_1 * h + value_1, then h -> decay_2 * h + value_2."""
    return decay_1 * decay_2, decay_2 * value_1 + value_2


@triton.jit
def _chunk_tile(u_ptr, delta_ptr, A_ptr, bias_ptr, B_ptr,
                batch, chunk, d_start, group, L, channels, groups,
                N: tl.constexpr, N_POW2: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
                HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, SHIFT: tl.constexpr):
    """One chunk of one channel block: (delta after bias/softplus [D, T], raw delta + bias [D, T], u [D, T],
    decay a [D, N, T], input b [D, N, T], B [N, T]), all fp32. SHIFT=1 reads delta one token later (the
    decays a_{t+1} of the adjoint recurrence); tokens past the end get delta 0: decay 1, no input."""
    d = d_start + tl.arange(0, BLOCK_D)
    n = tl.arange(0, N_POW2)
    t = chunk * T + tl.arange(0, T)
    t_valid = t < L
    row = (batch * channels + d)[:, None] * L
    u = tl.load(u_ptr + row + t[None, :], mask=t_valid[None, :], other=0.0).to(tl.float32)
    t_delta = t + SHIFT
    delta_valid = (t_delta < L)[None, :]
    delta_raw = tl.load(delta_ptr + row + t_delta[None, :], mask=delta_valid, other=0.0).to(tl.float32)
    if HAS_BIAS:
        delta_raw += tl.load(bias_ptr + d).to(tl.float32)[:, None]
    if SOFTPLUS:
        # softplus(x) = log(1 + e^x), written to stay finite for large x.
        delta = tl.where(delta_raw > 20.0, delta_raw, tl.log(1.0 + tl.exp(tl.minimum(delta_raw, 20.0))))
    else:
        delta = delta_raw
    delta = tl.where(delta_valid, delta, 0.0)
    n_valid = n < N
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=n_valid[None, :], other=0.0).to(tl.float32)
    bc_rows = ((batch * groups + group) * N + n)[:, None] * L
    Bm = tl.load(B_ptr + bc_rows + t[None, :], mask=n_valid[:, None] & t_valid[None, :], other=0.0).to(tl.float32)
    decay = tl.exp(delta[:, None, :] * A[:, :, None])
    inject = (delta * u)[:, None, :] * Bm[None, :, :]
    return delta, delta_raw, u, decay, inject, Bm, A


@triton.jit
def _last_token(x, T: tl.constexpr):
    """x[..., T - 1] of a [D, N, T] tile, as [D, N]."""
    is_last = (tl.arange(0, T) == T - 1)[None, None, :]
    return tl.sum(tl.where(is_last, x, 0.0), axis=2)


@triton.jit
def _first_token(x, T: tl.constexpr):
    is_first = (tl.arange(0, T) == 0)[None, None, :]
    return tl.sum(tl.where(is_first, x, 0.0), axis=2)


@triton.jit
def _store_summary(decay_ptr, state_ptr, offsets, mask, cum_decay, state, T: tl.constexpr, FIRST: tl.constexpr):
    """A chunk's summary for step 2: its total decay and its state from a zero start, at its last token (or, for
    the reverse scan of the adjoint recurrence, its first)."""
    if FIRST:
        tl.store(decay_ptr + offsets, _first_token(cum_decay, T), mask=mask)
        tl.store(state_ptr + offsets, _first_token(state, T), mask=mask)
    else:
        tl.store(decay_ptr + offsets, _last_token(cum_decay, T), mask=mask)
        tl.store(state_ptr + offsets, _last_token(state, T), mask=mask)


@triton.jit
def _from_entering(local, cum_decay, entering_ptr, offsets, mask):
    """A chunk's states scanned from a zero start, moved onto the true state entering the chunk (which step 2
    wrote at ``entering_ptr``): h_t = local_t + (decay_1 * ... * decay_t) * h_entering."""
    entering = tl.load(entering_ptr + offsets, mask=mask, other=0.0)
    return local + cum_decay * entering[:, :, None]


@triton.jit
def _forward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr, decay_ptr, state_ptr,
                    L, channels, groups, channels_per_group, n_chunks,
                    N: tl.constexpr, N_POW2: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                    SUMMARY: tl.constexpr, HAS_STATE: tl.constexpr):
    """SUMMARY: write each chunk's total decay and end state from zero (step 1).
    Else: scan from the entering state (if HAS_STATE) and write y (step 3)."""
    chunk, block, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d_start = block * BLOCK_D
    group = d_start // channels_per_group
    delta, delta_raw, u, decay, inject, Bm, A = _chunk_tile(
        u_ptr, delta_ptr, A_ptr, bias_ptr, B_ptr, batch, chunk, d_start, group, L, channels, groups,
        N, N_POW2, BLOCK_D, T, HAS_BIAS, SOFTPLUS, 0)
    cum_decay, state = tl.associative_scan((decay, inject), 2, _compose)
    d = d_start + tl.arange(0, BLOCK_D)
    n = tl.arange(0, N_POW2)
    summary_offsets = ((batch * n_chunks + chunk) * channels + d)[:, None] * N + n[None, :]
    summary_mask = (n < N)[None, :]
    if SUMMARY:
        _store_summary(decay_ptr, state_ptr, summary_offsets, summary_mask, cum_decay, state, T, False)
    else:
        if HAS_STATE:
            state = _from_entering(state, cum_decay, state_ptr, summary_offsets, summary_mask)
        t = chunk * T + tl.arange(0, T)
        t_valid = t < L
        bc_rows = ((batch * groups + group) * N + n)[:, None] * L
        Cm = tl.load(C_ptr + bc_rows + t[None, :], mask=(n < N)[:, None] & t_valid[None, :], other=0.0)
        y = tl.sum(state * Cm.to(tl.float32)[None, :, :], axis=1)
        if HAS_D:
            y += tl.load(D_ptr + d).to(tl.float32)[:, None] * u
        row = (batch * channels + d)[:, None] * L
        tl.store(y_ptr + row + t[None, :], y.to(y_ptr.dtype.element_ty), mask=t_valid[None, :])


@triton.jit
def _carry_kernel(decay_ptr, state_ptr, n_chunks, elements, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    """Step 2: replaces each chunk's end state (from zero) by the state entering it, carrying the states
    over the chunks in order (REVERSE: from the last chunk back, for the adjoint recurrence)."""
    block, batch = tl.program_id(0), tl.program_id(1)
    offsets = block * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < elements
    running_state = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(n_chunks):
        chunk = n_chunks - 1 - i if REVERSE else i
        at = (batch * n_chunks + chunk) * elements + offsets
        decay = tl.load(decay_ptr + at, mask=valid, other=1.0)
        local = tl.load(state_ptr + at, mask=valid, other=0.0)
        tl.store(state_ptr + at, running_state, mask=valid)
        running_state = decay * running_state + local


@triton.jit
def _backward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dy_ptr, fwd_state_ptr,
                     decay_ptr, adj_ptr,
                     du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
                     L, channels, groups, channels_per_group, n_chunks,
                     N: tl.constexpr, N_POW2: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
                     HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                     SUMMARY: tl.constexpr, HAS_STATE: tl.constexpr):
    """SUMMARY: each chunk's adjoint dh at its first token from a zero right boundary, and the product of
    the shifted decays (step 1 of the adjoint recurrence). Else: the gradients (step 3)."""
    chunk, block, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d_start = block * BLOCK_D
    group = d_start // channels_per_group
    d = d_start + tl.arange(0, BLOCK_D)
    n = tl.arange(0, N_POW2)
    t = chunk * T + tl.arange(0, T)
    t_valid = t < L
    n_valid = n < N
    row = (batch * channels + d)[:, None] * L
    bc_rows = ((batch * groups + group) * N + n)[:, None] * L
    bc_mask = n_valid[:, None] & t_valid[None, :]
    summary_offsets = ((batch * n_chunks + chunk) * channels + d)[:, None] * N + n[None, :]
    summary_mask = n_valid[None, :]

    dy = tl.load(dy_ptr + row + t[None, :], mask=t_valid[None, :], other=0.0).to(tl.float32)
    Cm = tl.load(C_ptr + bc_rows + t[None, :], mask=bc_mask, other=0.0).to(tl.float32)
    # Adjoint recurrence dh_t = next_decay_t * dh_{t+1} + C_t * dy_t, scanned from the chunk's end.
    _, _, _, next_decay, _, _, _ = _chunk_tile(
        u_ptr, delta_ptr, A_ptr, bias_ptr, B_ptr, batch, chunk, d_start, group, L, channels, groups,
        N, N_POW2, BLOCK_D, T, HAS_BIAS, SOFTPLUS, 1)
    cum_next_decay, adjoint = tl.associative_scan((next_decay, Cm[None, :, :] * dy[:, None, :]), 2, _compose,
                                                  reverse=True)
    if SUMMARY:
        _store_summary(decay_ptr, adj_ptr, summary_offsets, summary_mask, cum_next_decay, adjoint, T, True)
    else:
        if HAS_STATE:
            adjoint = _from_entering(adjoint, cum_next_decay, adj_ptr, summary_offsets, summary_mask)
        delta, delta_raw, u, decay, inject, Bm, A = _chunk_tile(
            u_ptr, delta_ptr, A_ptr, bias_ptr, B_ptr, batch, chunk, d_start, group, L, channels, groups,
            N, N_POW2, BLOCK_D, T, HAS_BIAS, SOFTPLUS, 0)
        cum_decay, state = tl.associative_scan((decay, inject), 2, _compose)
        if HAS_STATE:
            state = _from_entering(state, cum_decay, fwd_state_ptr, summary_offsets, summary_mask)
        # a_t * h_{t-1} = h_t - b_t: the decayed previous state, without a shifted copy of the states.
        decayed_previous = state - inject
        weighted = adjoint * delta[:, None, :]
        du = tl.sum(weighted * Bm[None, :, :], axis=1)
        ddelta = tl.sum(adjoint * (u[:, None, :] * Bm[None, :, :] + A[:, :, None] * decayed_previous), axis=1)
        if HAS_D:
            du += tl.load(D_ptr + d).to(tl.float32)[:, None] * dy
            tl.atomic_add(dD_ptr + d, tl.sum(dy * u, axis=1))
        if SOFTPLUS:
            ddelta = ddelta * tl.sigmoid(delta_raw)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d, tl.sum(tl.where(t_valid[None, :], ddelta, 0.0), axis=1))
        tl.store(du_ptr + row + t[None, :], du.to(du_ptr.dtype.element_ty), mask=t_valid[None, :])
        tl.store(ddelta_ptr + row + t[None, :], ddelta.to(ddelta_ptr.dtype.element_ty), mask=t_valid[None, :])
        tl.atomic_add(dA_ptr + d[:, None] * N + n[None, :], tl.sum(weighted * decayed_previous, axis=2),
                      mask=summary_mask)
        tl.atomic_add(dB_ptr + bc_rows + t[None, :], tl.sum(weighted * u[:, None, :], axis=0), mask=bc_mask)
        tl.atomic_add(dC_ptr + bc_rows + t[None, :], tl.sum(state * dy[:, None, :], axis=0), mask=bc_mask)


def _launch_shape(u: torch.Tensor, B: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    batch, channels, length = u.shape
    groups = B.shape[1]
    if channels % groups:
        raise ValueError(f"{channels} channels cannot be split into {groups} groups of B and C")
    per_group = channels // groups
    return batch, channels, length, groups, per_group, channel_block(per_group)


def _common_meta(A: torch.Tensor, block_d: int, has_D: bool, has_bias: bool, softplus: bool) -> dict:
    d_state = A.shape[1]
    return dict(N=d_state, N_POW2=triton.next_power_of_2(d_state), BLOCK_D=block_d, T=CHUNK,
                HAS_D=has_D, HAS_BIAS=has_bias, SOFTPLUS=softplus)


def _carry(decay: torch.Tensor, state: torch.Tensor, reverse: bool) -> None:
    batch, chunks, channels, d_state = state.shape
    elements = channels * d_state
    _carry_kernel[(triton.cdiv(elements, CARRY_BLOCK), batch)](decay, state, chunks, elements, REVERSE=reverse,
                                                               BLOCK=CARRY_BLOCK)


def scan_forward(u, delta, A, B, C, D, delta_bias, delta_softplus: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(y in u's dtype, the fp32 state entering each chunk: (batch, chunks, channels, d_state)).
    All tensors contiguous, on one device; A, D, delta_bias fp32."""
    batch, channels, length, groups, per_group, block_d = _launch_shape(u, B)
    chunks = num_chunks(length)
    meta = _common_meta(A, block_d, D is not None, delta_bias is not None, delta_softplus)
    grid = (chunks, channels // block_d, batch)
    y = torch.empty_like(u)
    entering = torch.zeros(batch, chunks, channels, A.shape[1], device=u.device, dtype=torch.float32)
    dummy = entering  # stands in for absent optional pointers (never read: HAS_* are constexpr)
    args = (u, delta, A, B, C, D if D is not None else dummy, delta_bias if delta_bias is not None else dummy)
    if chunks > 1:
        decay = torch.empty_like(entering)
        _forward_kernel[grid](*args, y, decay, entering, length, channels, groups, per_group, chunks,
                              SUMMARY=True, HAS_STATE=False, num_warps=FORWARD_WARPS, **meta)
        _carry(decay, entering, reverse=False)
    _forward_kernel[grid](*args, y, dummy, entering, length, channels, groups, per_group, chunks,
                          SUMMARY=False, HAS_STATE=chunks > 1, num_warps=FORWARD_WARPS, **meta)
    return y, entering


def scan_backward(dy, u, delta, A, B, C, D, delta_bias, entering, delta_softplus: bool):
    """Gradients (du, ddelta, dA, dB, dC, dD, ddelta_bias) of the scan; dD / ddelta_bias are None where
    D / delta_bias are. u, delta, dy keep their dtype in du, ddelta; B, C in dB, dC; the rest is fp32."""
    batch, channels, length, groups, per_group, block_d = _launch_shape(u, B)
    chunks = num_chunks(length)
    meta = _common_meta(A, block_d, D is not None, delta_bias is not None, delta_softplus)
    grid = (chunks, channels // block_d, batch)
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dA = torch.zeros(A.shape, **f32)
    dB, dC = torch.zeros(B.shape, **f32), torch.zeros(C.shape, **f32)
    dD, dbias = torch.zeros(channels, **f32), torch.zeros(channels, **f32)
    adjoint_from_right = torch.zeros_like(entering)
    inputs = (u, delta, A, B, C, D if D is not None else dD, delta_bias if delta_bias is not None else dbias, dy,
              entering)
    if chunks > 1:
        decay = torch.empty_like(entering)
        _backward_kernel[grid](*inputs, decay, adjoint_from_right, du, ddelta, dA, dB, dC, dD, dbias,
                               length, channels, groups, per_group, chunks, SUMMARY=True, HAS_STATE=False,
                               num_warps=BACKWARD_WARPS, **meta)
        _carry(decay, adjoint_from_right, reverse=True)
    _backward_kernel[grid](*inputs, entering, adjoint_from_right, du, ddelta, dA, dB, dC, dD, dbias,
                           length, channels, groups, per_group, chunks, SUMMARY=False, HAS_STATE=chunks > 1,
                           num_warps=BACKWARD_WARPS, **meta)
    return (du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD if D is not None else None,
            dbias if delta_bias is not None else None)
