"""mamba-ssm's fused CUDA selective scan behind our scan signature.

mamba-ssm is imported lazily: ``import mamba_ssm`` fails outright on machines without its compiled
extension, so nothing here may touch it at module load.
"""

from __future__ import annotations

import functools

import torch

INSTALL_HINT = (
    "Build mamba-ssm for this machine's GPU with `nnunetv2-segresmamba-install build-mamba` (needs nvcc and a "
    "CUDA build of torch; mamba-ssm ships only as source), or, on a node without internet, install an "
    "offline bundle made with `nnunetv2-segresmamba-install bundle` (see the README's Install section). "
    "Set SEGRESMAMBA_SCAN_BACKEND=torch to run without it."
)


@functools.lru_cache(maxsize=1)
def mamba_ssm_import_error() -> str | None:
    """None when mamba-ssm's selective scan kernel imports, else why it does not."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as error:  # ImportError, OSError from a broken .so, missing CUDA runtime...
        return f"{type(error).__name__}: {error}"
    return None


def mamba_ssm_available() -> bool:
    return mamba_ssm_import_error() is None


def selective_scan_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """The kernel keeps state and accumulation in fp32; u, delta, B, C may be fp16/bf16/fp32, but
    must share one dtype, and A, D, delta_bias must be fp32."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    io_dtype = u.dtype
    return selective_scan_fn(
        u.contiguous(),
        delta.to(io_dtype).contiguous(),
        A.float().contiguous(),
        B.to(io_dtype).contiguous(),
        C.to(io_dtype).contiguous(),
        D=None if D is None else D.float(),
        z=None,
        delta_bias=None if delta_bias is None else delta_bias.float(),
        delta_softplus=delta_softplus,
    )
