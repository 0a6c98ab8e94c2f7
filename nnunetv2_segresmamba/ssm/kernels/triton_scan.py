"""The selective scan in Triton: forward and backward, no compiler toolchain needed beyond the Triton
that ships with CUDA builds of PyTorch.

The recurrence h_t = a_t * h_{t-1} + b_t (a_t = exp(delta_t * A), b_t = delta_t * u_t * B_t) is
evaluated in chunks of ``CHUNK`` tokens, in three launches:

1. every chunk at once, from a zero state: the chunk's total decay exp(A * sum delta) and its end state,
   sum_t b_t * exp(A * (delta_{t+1} + ... + delta_last)), from one cumulative sum of delta per channel (every
   exponent is <= 0, so nothing overflows) rather than from a scan over the states;
2. the state entering each chunk: one short sequential pass over the chunks per (batch, channel, state);
3. every chunk at once again, from its true entering state: the states (a parallel scan over the chunk's
   tokens, ``tl.associative_scan`` with the composition of affine maps) and the read-out y_t = <C_t, h_t> + D * u_t.

The backward pass runs the same three launches on the adjoint recurrence
dh_t = C_t * dy_t + a_{t+1} * dh_{t+1} (a reverse scan), recomputes the forward states of each chunk from
the entering states that step 2 of the forward pass kept, and forms every gradient in the last launch.

One program owns one chunk of one batch element and a run of channels that share a group of B and C: it
loads the group's B and C tiles once and loops over its channels, a few at a time, so that the tiles in
registers stay small. The gradients of B and C are sums over the group's channels; the program keeps them in
registers over its loop and writes them once (an atomic add only where the GPU needs several programs per
group to be filled, see ``channel_splits``).

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
CHUNK = 32
# Channels per loop iteration of a program (at most; fewer where the channels of one B/C group need it).
MAX_CHANNEL_BLOCK = 1
# Programs wanted per multiprocessor: a group's channels are split over several programs until there are.
# The backward pass pays for each split with an atomic add of the B/C gradients, the forward pass only with
# loading the group's B and C once more.
FORWARD_PROGRAMS_PER_SM = 16
BACKWARD_PROGRAMS_PER_SM = 4
# 1: B and C tiles are loaded as [1, states, tokens], the shape they are used in. Where a row of B/C is aligned
# for vector loads (length a multiple of 16), Triton then lays the chunk's tiles out with several tokens per
# thread and carries that layout into the scans: fewer lane shuffles and instructions (compiled for sm_90), more
# registers. 0: loaded as [states, tokens] and broadcast (one token per lane).
GROUP_TILES_3D = 0
# 1: the chunk kernels are told the largest power of two (at most 16) that divides the number of tokens. Triton
# knows by itself when a length is a multiple of 16 and then loads rows with vector loads; told, it does so for
# lengths such as 1400 (a multiple of 8) too. 0: only what Triton infers.
ALIGN_ROWS = 0
# (batch, channel, state) elements per program of the sequential pass over chunks.
CARRY_BLOCK = 256
# Warps per program of the chunk kernels. One warp keeps each scan and sum within a warp (no shared memory):
# measured fastest at CHUNK 32 (docs/benchmarks.md, "Scan kernels").
FORWARD_WARPS = 1
BACKWARD_WARPS = 1
# Software-pipelining stages of the chunk kernels' loops over channels (the next channels' loads issued while
# this one computes); 0 leaves Triton's default.
FORWARD_STAGES = 0
BACKWARD_STAGES = 0


def _stages(stages: int) -> dict:
    return dict(num_stages=stages) if stages else {}


def num_chunks(length: int) -> int:
    return -(-length // CHUNK)


def row_alignment(length: int) -> int:
    """The largest power of two, at most 16, that divides ``length`` (1 where ALIGN_ROWS is off)."""
    align = 16 if ALIGN_ROWS else 1
    while length % align:
        align //= 2
    return align


def channel_block(channels_per_group: int) -> int:
    """The largest power of two <= MAX_CHANNEL_BLOCK that divides the channels of one B/C group."""
    block = MAX_CHANNEL_BLOCK
    while channels_per_group % block:
        block //= 2
    return block


def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def channel_splits(channels_per_group: int, block: int, programs: int, programs_per_sm: int,
                   device: torch.device) -> int:
    """Into how many programs one group's channels are split: the fewest (a power of two) that give
    ``programs_per_sm`` programs per multiprocessor, each still looping over whole channel blocks."""
    target = programs_per_sm * _multiprocessors(device)
    splits = 1
    while programs * splits < target and channels_per_group % (2 * splits * block) == 0:
        splits *= 2
    return splits


@triton.jit
def _compose(decay_1, value_1, decay_2, value_2):
    """Composition of the affine maps h -> decay_1 * h + value_1, then h -> decay_2 * h + value_2."""
    return decay_1 * decay_2, decay_2 * value_1 + value_2


@triton.jit
def _rows(batch, d_start, chunk, L, channels, BLOCK_D: tl.constexpr, T: tl.constexpr, SHIFT: tl.constexpr):
    """Offsets [D, T] and token mask [1, T] of one chunk of BLOCK_D channels of a (batch, channels, L) tensor,
    SHIFT tokens later."""
    d = d_start + tl.arange(0, BLOCK_D)
    t = chunk * T + tl.arange(0, T) + SHIFT
    return (batch * channels + d)[:, None] * L + t[None, :], (t < L)[None, :]


@triton.jit
def _group_tile(batch, group, chunk, L, groups, N: tl.constexpr, N_POW2: tl.constexpr, T: tl.constexpr):
    """Offsets [N, T] and mask of one chunk of one group of a (batch, groups, N, L) tensor (B, C)."""
    n = tl.arange(0, N_POW2)
    t = chunk * T + tl.arange(0, T)
    return ((batch * groups + group) * N + n)[:, None] * L + t[None, :], (n < N)[:, None] & (t < L)[None, :]


@triton.jit
def _load_group_tile(ptr, offsets, mask, TILES_3D: tl.constexpr):
    """One chunk of one group of B or C as a [1, N, T] fp32 tile (offsets and mask from _group_tile)."""
    if TILES_3D:
        tile = tl.load(ptr + offsets[None, :, :], mask=mask[None, :, :], other=0.0).to(tl.float32)
    else:
        tile = tl.load(ptr + offsets, mask=mask, other=0.0).to(tl.float32)[None, :, :]
    return tile


@triton.jit
def _summary_tile(batch, chunk, d_start, n_chunks, channels, N: tl.constexpr, N_POW2: tl.constexpr,
                  BLOCK_D: tl.constexpr):
    """Offsets [D, N] and mask of one chunk's row of a (batch, chunks, channels, N) summary tensor."""
    d = d_start + tl.arange(0, BLOCK_D)
    n = tl.arange(0, N_POW2)
    return ((batch * n_chunks + chunk) * channels + d)[:, None] * N + n[None, :], (n < N)[None, :]


@triton.jit
def _decays(delta_ptr, A_ptr, bias_ptr, batch, d_start, chunk, L, channels,
            N: tl.constexpr, N_POW2: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
            HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, SHIFT: tl.constexpr):
    """(delta after bias/softplus [D, T], delta + bias before softplus [D, T], A [D, N], decay a [D, N, T]), fp32.
    SHIFT=1 reads delta one token later (the decays a_{t+1} of the adjoint recurrence); tokens past the end
    get delta 0: decay 1, no input."""
    rows, valid = _rows(batch, d_start, chunk, L, channels, BLOCK_D, T, SHIFT)
    delta_raw = tl.load(delta_ptr + rows, mask=valid, other=0.0).to(tl.float32)
    d = d_start + tl.arange(0, BLOCK_D)
    if HAS_BIAS:
        delta_raw += tl.load(bias_ptr + d).to(tl.float32)[:, None]
    if SOFTPLUS:
        # softplus(x) = log(1 + e^x), written to stay finite for large x.
        delta = tl.where(delta_raw > 20.0, delta_raw, tl.log(1.0 + tl.exp(tl.minimum(delta_raw, 20.0))))
    else:
        delta = delta_raw
    delta = tl.where(valid, delta, 0.0)
    n = tl.arange(0, N_POW2)
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=(n < N)[None, :], other=0.0).to(tl.float32)
    return delta, delta_raw, A, tl.exp(delta[:, None, :] * A[:, :, None])


@triton.jit
def _from_entering(local, cum_decay, entering_ptr, offsets, mask):
    """A chunk's states scanned from a zero start, moved onto the true state entering the chunk (which step 2
    wrote at ``entering_ptr``): h_t = local_t + (decay_1 * ... * decay_t) * h_entering."""
    entering = tl.load(entering_ptr + offsets, mask=mask, other=0.0)
    return local + cum_decay * entering[:, :, None]


@triton.jit
def _first_channel(channels_per_group, channels_per_program, splits):
    """(group, first channel) of this program's run of channels; axis 1 of the grid is group * splits + split."""
    program = tl.program_id(1)
    group = program // splits
    return group, group * channels_per_group + (program % splits) * channels_per_program


@triton.jit
def _forward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr, decay_ptr, state_ptr,
                    L_units, channels, groups, channels_per_group, channels_per_program, splits, n_chunks,
                    N: tl.constexpr, N_POW2: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                    SUMMARY: tl.constexpr, HAS_STATE: tl.constexpr, TILES_3D: tl.constexpr, ROW_ALIGN: tl.constexpr):
    """SUMMARY: write each chunk's total decay and end state from zero (step 1).
    Else: scan from the entering state (if HAS_STATE) and write y (step 3)."""
    L = L_units * ROW_ALIGN  # the number of tokens, known to Triton as a multiple of ROW_ALIGN
    chunk, batch = tl.program_id(0), tl.program_id(2)
    group, first = _first_channel(channels_per_group, channels_per_program, splits)
    bc, bc_mask = _group_tile(batch, group, chunk, L, groups, N, N_POW2, T)
    Bm = _load_group_tile(B_ptr, bc, bc_mask, TILES_3D)
    Cm = _load_group_tile(C_ptr, bc, bc_mask, TILES_3D)
    for d_start in range(first, first + channels_per_program, BLOCK_D):
        delta, _, A, decay = _decays(delta_ptr, A_ptr, bias_ptr, batch, d_start, chunk, L, channels,
                                     N, N_POW2, BLOCK_D, T, HAS_BIAS, SOFTPLUS, 0)
        rows, valid = _rows(batch, d_start, chunk, L, channels, BLOCK_D, T, 0)
        u = tl.load(u_ptr + rows, mask=valid, other=0.0).to(tl.float32)
        inject = (delta * u)[:, None, :] * Bm
        summary, summary_mask = _summary_tile(batch, chunk, d_start, n_chunks, channels, N, N_POW2, BLOCK_D)
        if SUMMARY:
            # The end state from zero and the total decay, from the delta still to come after each token.
            later = tl.sum(delta, axis=1)[:, None] - tl.cumsum(delta, axis=1)
            tl.store(decay_ptr + summary, tl.exp(A * tl.sum(delta, axis=1)[:, None]), mask=summary_mask)
            tl.store(state_ptr + summary, tl.sum(inject * tl.exp(A[:, :, None] * later[:, None, :]), axis=2),
                     mask=summary_mask)
        else:
            cum_decay, state = tl.associative_scan((decay, inject), 2, _compose)
            if HAS_STATE:
                state = _from_entering(state, cum_decay, state_ptr, summary, summary_mask)
            y = tl.sum(state * Cm, axis=1)
            if HAS_D:
                y += tl.load(D_ptr + d_start + tl.arange(0, BLOCK_D)).to(tl.float32)[:, None] * u
            tl.store(y_ptr + rows, y.to(y_ptr.dtype.element_ty), mask=valid)


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
                     L_units, channels, groups, channels_per_group, channels_per_program, splits, n_chunks,
                     N: tl.constexpr, N_POW2: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
                     HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                     SUMMARY: tl.constexpr, HAS_STATE: tl.constexpr, TILES_3D: tl.constexpr, ROW_ALIGN: tl.constexpr,
                     ATOMIC_BC: tl.constexpr):
    """SUMMARY: each chunk's adjoint dh at its first token from a zero right boundary, and the product of
    the shifted decays (step 1 of the adjoint recurrence). Else: the gradients (step 3). ATOMIC_BC: other
    programs add to the same B/C gradients (a group split over several programs)."""
    L = L_units * ROW_ALIGN  # the number of tokens, known to Triton as a multiple of ROW_ALIGN
    chunk, batch = tl.program_id(0), tl.program_id(2)
    group, first = _first_channel(channels_per_group, channels_per_program, splits)
    bc, bc_mask = _group_tile(batch, group, chunk, L, groups, N, N_POW2, T)
    Bm = _load_group_tile(B_ptr, bc, bc_mask, TILES_3D)
    Cm = _load_group_tile(C_ptr, bc, bc_mask, TILES_3D)
    dB = tl.zeros([N_POW2, T], dtype=tl.float32)
    dC = tl.zeros([N_POW2, T], dtype=tl.float32)
    n = tl.arange(0, N_POW2)
    for d_start in range(first, first + channels_per_program, BLOCK_D):
        d = d_start + tl.arange(0, BLOCK_D)
        rows, valid = _rows(batch, d_start, chunk, L, channels, BLOCK_D, T, 0)
        dy = tl.load(dy_ptr + rows, mask=valid, other=0.0).to(tl.float32)
        # Adjoint recurrence dh_t = next_decay_t * dh_{t+1} + C_t * dy_t, scanned from the chunk's end.
        next_delta, _, A, next_decay = _decays(delta_ptr, A_ptr, bias_ptr, batch, d_start, chunk, L, channels,
                                               N, N_POW2, BLOCK_D, T, HAS_BIAS, SOFTPLUS, 1)
        summary, summary_mask = _summary_tile(batch, chunk, d_start, n_chunks, channels, N, N_POW2, BLOCK_D)
        if SUMMARY:
            # dh at the first token from a zero right boundary, sum_t C_t dy_t exp(A (delta_1 + ... + delta_t)),
            # and the product of the shifted decays: cumulative sums of the shifted delta, no scan.
            earlier = tl.cumsum(next_delta, axis=1) - next_delta
            tl.store(decay_ptr + summary, tl.exp(A * tl.sum(next_delta, axis=1)[:, None]), mask=summary_mask)
            first_token = tl.sum(Cm * dy[:, None, :] * tl.exp(A[:, :, None] * earlier[:, None, :]),
                                 axis=2)
            tl.store(adj_ptr + summary, first_token, mask=summary_mask)
        else:
            cum_next_decay, adjoint = tl.associative_scan((next_decay, Cm * dy[:, None, :]), 2, _compose,
                                                          reverse=True)
            if HAS_STATE:
                adjoint = _from_entering(adjoint, cum_next_decay, adj_ptr, summary, summary_mask)
            delta, delta_raw, A, decay = _decays(delta_ptr, A_ptr, bias_ptr, batch, d_start, chunk, L, channels,
                                                 N, N_POW2, BLOCK_D, T, HAS_BIAS, SOFTPLUS, 0)
            u = tl.load(u_ptr + rows, mask=valid, other=0.0).to(tl.float32)
            inject = (delta * u)[:, None, :] * Bm
            cum_decay, state = tl.associative_scan((decay, inject), 2, _compose)
            if HAS_STATE:
                state = _from_entering(state, cum_decay, fwd_state_ptr, summary, summary_mask)
            # a_t * h_{t-1} = h_t - b_t: the decayed previous state, without a shifted copy of the states.
            decayed_previous = state - inject
            weighted = adjoint * delta[:, None, :]
            du = tl.sum(weighted * Bm, axis=1)
            ddelta = tl.sum(adjoint * (u[:, None, :] * Bm + A[:, :, None] * decayed_previous), axis=1)
            if HAS_D:
                du += tl.load(D_ptr + d).to(tl.float32)[:, None] * dy
                tl.atomic_add(dD_ptr + d, tl.sum(dy * u, axis=1))
            if SOFTPLUS:
                ddelta = ddelta * tl.sigmoid(delta_raw)
            if HAS_BIAS:
                tl.atomic_add(dbias_ptr + d, tl.sum(tl.where(valid, ddelta, 0.0), axis=1))
            tl.store(du_ptr + rows, du.to(du_ptr.dtype.element_ty), mask=valid)
            tl.store(ddelta_ptr + rows, ddelta.to(ddelta_ptr.dtype.element_ty), mask=valid)
            tl.atomic_add(dA_ptr + d[:, None] * N + n[None, :], tl.sum(weighted * decayed_previous, axis=2),
                          mask=summary_mask)
            dB += tl.sum(weighted * u[:, None, :], axis=0)
            dC += tl.sum(state * dy[:, None, :], axis=0)
    if not SUMMARY:
        if ATOMIC_BC:
            tl.atomic_add(dB_ptr + bc, dB, mask=bc_mask)
            tl.atomic_add(dC_ptr + bc, dC, mask=bc_mask)
        else:
            tl.store(dB_ptr + bc, dB, mask=bc_mask)
            tl.store(dC_ptr + bc, dC, mask=bc_mask)


def _launch(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, has_D: bool, has_bias: bool, softplus: bool,
            programs_per_sm: int):
    """(grid, the kernels' shared runtime arguments, their shared compile-time arguments, splits)."""
    batch, channels, length = u.shape
    groups = B.shape[1]
    if channels % groups:
        raise ValueError(f"{channels} channels cannot be split into {groups} groups of B and C")
    per_group = channels // groups
    block = channel_block(per_group)
    chunks = num_chunks(length)
    splits = channel_splits(per_group, block, chunks * groups * batch, programs_per_sm, u.device)
    d_state = A.shape[1]
    align = row_alignment(length)
    sizes = (length // align, channels, groups, per_group, per_group // splits, splits, chunks)
    meta = dict(N=d_state, N_POW2=triton.next_power_of_2(d_state), BLOCK_D=block, T=CHUNK,
                HAS_D=has_D, HAS_BIAS=has_bias, SOFTPLUS=softplus, TILES_3D=bool(GROUP_TILES_3D), ROW_ALIGN=align)
    return (chunks, groups * splits, batch), sizes, meta, splits


def _carry(decay: torch.Tensor, state: torch.Tensor, reverse: bool) -> None:
    batch, chunks, channels, d_state = state.shape
    elements = channels * d_state
    _carry_kernel[(triton.cdiv(elements, CARRY_BLOCK), batch)](decay, state, chunks, elements, REVERSE=reverse,
                                                               BLOCK=CARRY_BLOCK)


def scan_forward(u, delta, A, B, C, D, delta_bias, delta_softplus: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(y in u's dtype, the fp32 state entering each chunk: (batch, chunks, channels, d_state)).
    All tensors contiguous, on one device; A, D, delta_bias fp32."""
    grid, sizes, meta, _ = _launch(u, A, B, D is not None, delta_bias is not None, delta_softplus,
                                   FORWARD_PROGRAMS_PER_SM)
    chunks = grid[0]
    y = torch.empty_like(u)
    entering = torch.zeros(u.shape[0], chunks, u.shape[1], A.shape[1], device=u.device, dtype=torch.float32)
    dummy = entering  # stands in for absent optional pointers (never read: HAS_* are constexpr)
    args = (u, delta, A, B, C, D if D is not None else dummy, delta_bias if delta_bias is not None else dummy)
    if chunks > 1:
        decay = torch.empty_like(entering)
        _forward_kernel[grid](*args, y, decay, entering, *sizes, SUMMARY=True, HAS_STATE=False,
                              num_warps=FORWARD_WARPS, **_stages(FORWARD_STAGES), **meta)
        _carry(decay, entering, reverse=False)
    _forward_kernel[grid](*args, y, dummy, entering, *sizes, SUMMARY=False, HAS_STATE=chunks > 1,
                          num_warps=FORWARD_WARPS, **_stages(FORWARD_STAGES), **meta)
    return y, entering


def scan_backward(dy, u, delta, A, B, C, D, delta_bias, entering, delta_softplus: bool):
    """Gradients (du, ddelta, dA, dB, dC, dD, ddelta_bias) of the scan; dD / ddelta_bias are None where
    D / delta_bias are. u, delta, dy keep their dtype in du, ddelta; B, C in dB, dC; the rest is fp32."""
    grid, sizes, meta, splits = _launch(u, A, B, D is not None, delta_bias is not None, delta_softplus,
                                        BACKWARD_PROGRAMS_PER_SM)
    chunks = grid[0]
    channels = u.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dA = torch.zeros(A.shape, **f32)
    # Written whole by one program per (chunk, group, batch), or added to by several.
    bc_buffer = torch.zeros if splits > 1 else torch.empty
    dB, dC = bc_buffer(B.shape, **f32), bc_buffer(C.shape, **f32)
    dD, dbias = torch.zeros(channels, **f32), torch.zeros(channels, **f32)
    adjoint_from_right = torch.zeros_like(entering)
    inputs = (u, delta, A, B, C, D if D is not None else dD, delta_bias if delta_bias is not None else dbias, dy,
              entering)
    common = dict(num_warps=BACKWARD_WARPS, ATOMIC_BC=splits > 1, **_stages(BACKWARD_STAGES), **meta)
    if chunks > 1:
        decay = torch.empty_like(entering)
        _backward_kernel[grid](*inputs, decay, adjoint_from_right, du, ddelta, dA, dB, dC, dD, dbias,
                               *sizes, SUMMARY=True, HAS_STATE=False, **common)
        _carry(decay, adjoint_from_right, reverse=True)
    _backward_kernel[grid](*inputs, entering, adjoint_from_right, du, ddelta, dA, dB, dC, dD, dbias,
                           *sizes, SUMMARY=False, HAS_STATE=chunks > 1, **common)
    return (du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD if D is not None else None,
            dbias if delta_bias is not None else None)
