"""The selective scan (Mamba's S6 recurrence) and the one function that picks its backend.

Backends: ``torch`` (pure PyTorch, any device) and ``cuda`` (mamba-ssm's kernels). The environment
variable ``SEGRESMAMBA_SCAN_BACKEND`` = ``auto`` (default) | ``torch`` | ``cuda`` | ``reference``
chooses; ``auto`` takes ``cuda`` for CUDA tensors when mamba-ssm imports, else ``torch``;
``reference`` is the float64-checkable loop, for debugging and benchmarks only (very slow). Both backends take the same
parameters, so one state_dict serves either.
"""

from __future__ import annotations

import os

import torch

from .cuda_scan import INSTALL_HINT, mamba_ssm_available, mamba_ssm_import_error, selective_scan_cuda
from .reference import selective_scan_reference
from .torch_scan import selective_scan_torch

BACKEND_ENV = "SEGRESMAMBA_SCAN_BACKEND"
BACKENDS = ("auto", "torch", "cuda", "reference")


class ScanBackendError(RuntimeError):
    """The requested scan backend cannot run here."""


def requested_backend() -> str:
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ScanBackendError(f"{BACKEND_ENV}={choice!r} is not one of {', '.join(BACKENDS)}.")
    return choice


def resolve_backend(device: torch.device) -> str:
    """The backend a scan on ``device`` runs with, or a ScanBackendError that says what to do."""
    choice = requested_backend()
    if choice in ("torch", "reference"):
        return choice
    if choice == "cuda":
        if device.type != "cuda":
            raise ScanBackendError(
                f"{BACKEND_ENV}=cuda, but the tensors are on {device}: mamba-ssm's kernels need a CUDA "
                f"GPU. Unset {BACKEND_ENV} (or set it to torch) to run on this device."
            )
        if not mamba_ssm_available():
            raise ScanBackendError(
                f"{BACKEND_ENV}=cuda, but mamba-ssm cannot be imported ({mamba_ssm_import_error()}). "
                + INSTALL_HINT
            )
        return "cuda"
    return "cuda" if device.type == "cuda" and mamba_ssm_available() else "torch"


SCANS = {"torch": selective_scan_torch, "cuda": selective_scan_cuda, "reference": selective_scan_reference}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Selective scan on the backend that ``resolve_backend`` picks for ``u``'s device.

    Shapes follow mamba-ssm: u, delta (batch, channels, length); A (channels, d_state);
    B, C (batch, groups, d_state, length); D, delta_bias (channels,).
    """
    scan = SCANS[resolve_backend(u.device)]
    return scan(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus)


__all__ = [
    "BACKEND_ENV",
    "ScanBackendError",
    "mamba_ssm_available",
    "resolve_backend",
    "selective_scan",
    "selective_scan_cuda",
    "selective_scan_reference",
    "selective_scan_torch",
]
