"""The GPU scan kernels as registered PyTorch operators, so that torch.compile traces through them.

``segresmamba::scan_fwd`` and ``segresmamba::scan_bwd`` take the kernel family as their first argument
(``triton`` or ``cuda`` for mamba-ssm's kernels) and have fake implementations that give their output
shapes from the input shapes alone; ``register_autograd`` ties them together. torch.compile then sees two
opaque operators instead of a graph break, and CUDA graphs can capture them.

The kernels' own modules (Triton, mamba-ssm) are imported only when an operator first runs, so this module
imports on any machine.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

KERNELS = ("triton", "cuda")
MAMBA_CHUNK = 2048  # mamba-ssm's kernels keep one (a, h) state pair per channel and 2048 tokens


def _state_shape(kernel: str, u: Tensor, A: Tensor) -> tuple:
    """Shape of what the forward kernel keeps for backward, from the input shapes alone."""
    batch, channels, length = u.shape
    d_state = A.shape[1]
    if kernel == "triton":
        from .kernels.triton_scan import CHUNK
        return batch, -(-length // CHUNK), channels, d_state
    return batch, channels, -(-length // MAMBA_CHUNK), 2 * d_state


def _mamba_module():
    import selective_scan_cuda  # mamba-ssm's compiled extension
    return selective_scan_cuda


def _io(u: Tensor, *others: Tensor) -> list[Tensor]:
    """mamba-ssm wants delta, B and C in u's dtype; every kernel wants contiguous tensors."""
    return [u.contiguous()] + [t.to(u.dtype).contiguous() for t in others]


@torch.library.custom_op("segresmamba::scan_fwd", mutates_args=())
def scan_fwd(kernel: str, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
             delta_bias: Optional[Tensor], delta_softplus: bool) -> tuple[Tensor, Tensor]:
    """(y, states kept for backward)."""
    A = A.float().contiguous()
    D = None if D is None else D.float().contiguous()
    delta_bias = None if delta_bias is None else delta_bias.float().contiguous()
    if kernel == "triton":
        from .kernels.triton_scan import scan_forward
        return scan_forward(u.contiguous(), delta.contiguous(), A, B.contiguous(), C.contiguous(), D, delta_bias,
                            delta_softplus)
    u, delta, B, C = _io(u, delta, B, C)
    y, states, *_ = _mamba_module().fwd(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
    return y, states


@scan_fwd.register_fake
def _(kernel, u, delta, A, B, C, D, delta_bias, delta_softplus):
    # The kernels return contiguous tensors whatever the inputs' strides: so must the fakes.
    return u.new_empty(u.shape), u.new_empty(_state_shape(kernel, u, A), dtype=torch.float32)


@torch.library.custom_op("segresmamba::scan_bwd", mutates_args=())
def scan_bwd(kernel: str, dy: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
             D: Optional[Tensor], delta_bias: Optional[Tensor], states: Tensor, delta_softplus: bool
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias); dD / ddelta_bias are empty where D / delta_bias are None."""
    A = A.float().contiguous()
    D_ = None if D is None else D.float().contiguous()
    bias_ = None if delta_bias is None else delta_bias.float().contiguous()
    if kernel == "triton":
        from .kernels.triton_scan import scan_backward
        grads = scan_backward(dy.contiguous(), u.contiguous(), delta.contiguous(), A, B.contiguous(), C.contiguous(),
                              D_, bias_, states, delta_softplus)
    else:
        u_, delta_, B_, C_, dy_ = _io(u, delta, B, C, dy)
        grads = _mamba_module().bwd(u_, delta_, A, B_, C_, D_, None, bias_, dy_, states, None, None,
                                    delta_softplus, False)[:7]
    du, ddelta, dA, dB, dC, dD, dbias = grads
    empty = u.new_empty(0, dtype=torch.float32)
    return (du.to(u.dtype).contiguous(), ddelta.to(delta.dtype).contiguous(), dA.float().contiguous(),
            dB.to(B.dtype).contiguous(), dC.to(C.dtype).contiguous(),
            empty if D is None else dD.float(), empty if delta_bias is None else dbias.float())


@scan_bwd.register_fake
def _(kernel, dy, u, delta, A, B, C, D, delta_bias, states, delta_softplus):
    f32 = dict(dtype=torch.float32)
    return (u.new_empty(u.shape), delta.new_empty(delta.shape), A.new_empty(A.shape, **f32), B.new_empty(B.shape),
            C.new_empty(C.shape), u.new_empty(D.shape if D is not None else (0,), **f32),
            u.new_empty(delta_bias.shape if delta_bias is not None else (0,), **f32))


def _setup_context(ctx, inputs, output) -> None:
    kernel, u, delta, A, B, C, D, delta_bias, delta_softplus = inputs
    ctx.kernel, ctx.delta_softplus = kernel, delta_softplus
    ctx.has_D, ctx.has_bias = D is not None, delta_bias is not None
    ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, output[1])


def _backward(ctx, dy: Tensor, _dstates: Tensor):
    u, delta, A, B, C, D, delta_bias, states = ctx.saved_tensors
    du, ddelta, dA, dB, dC, dD, dbias = scan_bwd(ctx.kernel, dy, u, delta, A, B, C, D, delta_bias, states,
                                                 ctx.delta_softplus)
    return (None, du, ddelta, dA.to(A.dtype), dB, dC, dD.to(D.dtype) if ctx.has_D else None,
            dbias.to(delta_bias.dtype) if ctx.has_bias else None, None)


scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def registered_scan(kernel: str, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                    delta_bias: Tensor | None = None, delta_softplus: bool = True) -> Tensor:
    """The selective scan through the registered operator of ``kernel`` (one of KERNELS)."""
    return scan_fwd(kernel, u, delta, A, B, C, D, delta_bias, delta_softplus)[0]
