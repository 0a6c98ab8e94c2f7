"""The scan backends by name: what each one runs, whether it can run here, and the one function that picks.

Every backend is a function of the one signature written down in :class:`SelectiveScan`, so one state_dict
serves all of them. A network holds the name of the backend it asks for (``SegResMambaConfig.scan_backend``,
whose default is the environment variable ``SEGRESMAMBA_SCAN_BACKEND``); ``auto`` is resolved per device by
:func:`pick_auto`, and nothing else decides among the backends.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import Tensor

from .kernels import mamba_ssm_unavailable, triton_unavailable
from .ops import registered_scan
from .reference import selective_scan_reference
from .torch_scan import selective_scan_torch

BACKEND_ENV = "SEGRESMAMBA_SCAN_BACKEND"
AUTO = "auto"
# What ``auto`` takes on a CUDA GPU where nothing was timed (prediction, a network built directly): the first
# present. A training with both present times them at its own scans instead (auto_select.py).
AUTO_PREFERENCE = ("cuda", "triton")


class ScanBackendError(RuntimeError):
    """The requested scan backend cannot run here."""


class SelectiveScan(Protocol):
    """The selective scan's signature, which every backend takes (mamba-ssm's ``selective_scan_fn``'s
    conventions): u, delta (batch, channels, length); A (channels, d_state); B, C (batch, groups, d_state,
    length), channel c using group c // (channels // groups); D, delta_bias (channels,). Returns y in u's
    dtype:

        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
        y_t = <C_t, h_t> + D * u_t
    """

    def __call__(self, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                 delta_bias: Tensor | None = None, delta_softplus: bool = True) -> Tensor: ...


def _runs_anywhere() -> str | None:
    return None


@dataclass(frozen=True)
class ScanBackend:
    name: str
    scan: SelectiveScan
    # None when the backend can run on this machine, else why not and what to do.
    unavailable_reason: Callable[[], str | None]
    needs_cuda: bool


REGISTRY: dict[str, ScanBackend] = {backend.name: backend for backend in (
    # Triton kernels: any CUDA GPU, no build step.
    ScanBackend("triton", functools.partial(registered_scan, "triton"), triton_unavailable, needs_cuda=True),
    # mamba-ssm's fused CUDA kernels, where mamba-ssm is built for this GPU.
    ScanBackend("cuda", functools.partial(registered_scan, "cuda"), mamba_ssm_unavailable, needs_cuda=True),
    # Pure PyTorch: any device.
    ScanBackend("torch", selective_scan_torch, _runs_anywhere, needs_cuda=False),
    # The float64-checkable loop, for tests and debugging only: very slow.
    ScanBackend("reference", selective_scan_reference, _runs_anywhere, needs_cuda=False),
)}
BACKENDS = (AUTO, *REGISTRY)
GPU_BACKENDS = tuple(name for name, backend in REGISTRY.items() if backend.needs_cuda)


def unavailable_reason(name: str) -> str | None:
    """None when the registered backend ``name`` can run on this machine, else why not."""
    return REGISTRY[name].unavailable_reason()


def available(name: str) -> bool:
    return unavailable_reason(name) is None


def requested_backend(choice: str | None = None) -> str:
    """``choice`` (default: the environment variable), checked against the registry's names."""
    if choice is None:
        choice = os.environ.get(BACKEND_ENV, AUTO)
    choice = choice.strip().lower() or AUTO
    if choice not in BACKENDS:
        raise ScanBackendError(f"{BACKEND_ENV}={choice!r} is not one of {', '.join(BACKENDS)}.")
    return choice


def pick_auto(device_type: str) -> str:
    """What ``auto`` runs on a device of ``device_type``: on a CUDA GPU the first of AUTO_PREFERENCE that is
    present, else the PyTorch scan."""
    if device_type == "cuda":
        for name in AUTO_PREFERENCE:
            if available(name):
                return name
    return "torch"


def resolve_backend(device: torch.device | str, choice: str | None = None) -> str:
    """The backend a scan on ``device`` runs with when ``choice`` is asked for (default: the environment
    variable), or a ScanBackendError that says what to do."""
    device_type = torch.device(device).type
    choice = requested_backend(choice)
    if choice == AUTO:
        return pick_auto(device_type)
    if REGISTRY[choice].needs_cuda:
        if device_type != "cuda":
            raise ScanBackendError(
                f"{BACKEND_ENV}={choice}, but the tensors are on {device}: the {choice} kernels need a CUDA "
                f"GPU. Unset {BACKEND_ENV} (or set it to torch) to run on this device.")
        reason = unavailable_reason(choice)
        if reason is not None:
            raise ScanBackendError(f"{BACKEND_ENV}={choice}, but {reason}")
    return choice


@torch.compiler.assume_constant_result
def _backend_for(choice: str | None, device_type: str) -> str:
    # Resolved outside the traced graph: torch.compile records the answer as a constant instead of
    # tracing the registry lookup and the import probes.
    return resolve_backend(device_type, choice)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = True, *,
                   backend: str | None = None) -> Tensor:
    """The selective scan (:class:`SelectiveScan`) on the backend that :func:`resolve_backend` picks for
    ``backend`` (default: the environment variable) on ``u``'s device."""
    scan = REGISTRY[_backend_for(backend, u.device.type)].scan
    return scan(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus)
