"""The selective scan (Mamba's S6 recurrence) and the one function that picks its backend.

Backends: ``triton`` (Triton kernels, any CUDA GPU, no build step), ``cuda`` (mamba-ssm's kernels),
``torch`` (pure PyTorch, any device) and ``reference`` (the float64-checkable loop, for tests and debugging
only: very slow). The environment variable ``SEGRESMAMBA_SCAN_BACKEND`` = ``auto`` (default) | ``triton`` |
``cuda`` | ``torch`` | ``reference`` chooses; ``auto`` takes, for CUDA tensors, the first of
``AUTO_PREFERENCE`` that is present (fastest first, as measured in docs/benchmarks.md), else ``torch``.
All backends take the same parameters, so one state_dict serves every one of them. The GPU backends run
as registered PyTorch operators (``ops.py``), so torch.compile traces a whole network without a graph break.
"""

from __future__ import annotations

import os

import torch

from .cuda_scan import INSTALL_HINT, mamba_ssm_available, mamba_ssm_import_error, selective_scan_cuda
from .reference import selective_scan_reference
from .torch_scan import selective_scan_torch
from .triton_backend import selective_scan_triton, triton_available, triton_import_error

BACKEND_ENV = "SEGRESMAMBA_SCAN_BACKEND"
BACKENDS = ("auto", "triton", "cuda", "torch", "reference")
# What ``auto`` takes on a CUDA GPU, fastest first.
AUTO_PREFERENCE = ("cuda", "triton")
GPU_BACKENDS = ("triton", "cuda")


class ScanBackendError(RuntimeError):
    """The requested scan backend cannot run here."""


def requested_backend() -> str:
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ScanBackendError(f"{BACKEND_ENV}={choice!r} is not one of {', '.join(BACKENDS)}.")
    return choice


def _unavailable_reason(backend: str) -> str | None:
    if backend == "cuda":
        error = mamba_ssm_import_error()
        return None if error is None else f"mamba-ssm cannot be imported ({error}). {INSTALL_HINT}"
    error = triton_import_error()
    return None if error is None else (f"Triton cannot be imported ({error}); it ships with the CUDA builds of "
                                       f"PyTorch on Linux (pip install triton).")


def resolve_backend(device: torch.device | str) -> str:
    """The backend a scan on ``device`` runs with, or a ScanBackendError that says what to do."""
    device_type = torch.device(device).type
    choice = requested_backend()
    if choice in ("torch", "reference"):
        return choice
    if choice in GPU_BACKENDS:
        if device_type != "cuda":
            raise ScanBackendError(
                f"{BACKEND_ENV}={choice}, but the tensors are on {device}: the {choice} kernels need a CUDA "
                f"GPU. Unset {BACKEND_ENV} (or set it to torch) to run on this device.")
        reason = _unavailable_reason(choice)
        if reason is not None:
            raise ScanBackendError(f"{BACKEND_ENV}={choice}, but {reason}")
        return choice
    if device_type == "cuda":
        for backend in AUTO_PREFERENCE:
            if _unavailable_reason(backend) is None:
                return backend
    return "torch"


SCANS = {"triton": selective_scan_triton, "cuda": selective_scan_cuda, "torch": selective_scan_torch,
         "reference": selective_scan_reference}


@torch.compiler.assume_constant_result
def _backend_for(device_type: str) -> str:
    # Resolved outside the traced graph: torch.compile records the answer as a constant instead of
    # tracing the environment lookup and the import probes.
    return resolve_backend(device_type)


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
    scan = SCANS[_backend_for(u.device.type)]
    return scan(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus)


__all__ = [
    "AUTO_PREFERENCE",
    "BACKEND_ENV",
    "BACKENDS",
    "ScanBackendError",
    "mamba_ssm_available",
    "resolve_backend",
    "selective_scan",
    "selective_scan_cuda",
    "selective_scan_reference",
    "selective_scan_torch",
    "selective_scan_triton",
    "triton_available",
]
