"""The Triton selective scan behind our scan signature, and whether it can run here.

Triton ships with the CUDA builds of PyTorch on Linux, so this backend needs no build step. It is imported
lazily: CPU-only PyTorch builds have no Triton.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=1)
def triton_import_error() -> str | None:
    """None when the Triton kernels import, else why they do not."""
    try:
        from . import triton_scan  # noqa: F401
    except Exception as error:  # ImportError without Triton, errors of a Triton too old for our kernels
        return f"{type(error).__name__}: {error}"
    return None


def triton_available() -> bool:
    return triton_import_error() is None


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Same arguments and result as :func:`selective_scan_reference`, returned in ``u``'s dtype; the state and
    every accumulation are fp32 whatever the input dtype."""
    from .ops import registered_scan

    return registered_scan("triton", u, delta, A, B, C, D, delta_bias, delta_softplus)
