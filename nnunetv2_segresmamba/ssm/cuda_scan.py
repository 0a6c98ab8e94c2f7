"""mamba-ssm's fused CUDA selective scan behind our scan signature.

mamba-ssm is imported lazily: ``import mamba_ssm`` fails outright on machines without its compiled
extension, so nothing here may touch it at module load. The kernels run through the registered operator
in ``ops.py`` (mamba-ssm does not register them itself), so torch.compile traces through them.
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
        import selective_scan_cuda  # noqa: F401  (the compiled extension our operator calls)
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
    """The kernel keeps state and accumulation in fp32; u, delta, B, C may be fp16/bf16/fp32 (delta, B and
    C are brought to u's dtype, as the kernel requires); A, D, delta_bias are used in fp32."""
    from .ops import registered_scan

    return registered_scan("cuda", u, delta, A, B, C, D, delta_bias, delta_softplus)
