"""The selective scan (Mamba's S6 recurrence): a registry of backends and the one function that picks among them.

Backends (``registry.py``): ``triton`` (our Triton kernels, ``kernels/triton_scan.py``: any CUDA GPU, no build
step), ``cuda`` (mamba-ssm's kernels), ``torch`` (pure PyTorch, ``torch_scan.py``: any device) and
``reference`` (the float64-checkable loop of ``reference.py``, for tests and debugging only: very slow).
A network asks for one by name through ``SegResMambaConfig.scan_backend``, whose default is the environment
variable ``SEGRESMAMBA_SCAN_BACKEND`` = ``auto`` (default) | ``triton`` | ``cuda`` | ``torch`` | ``reference``;
``auto`` takes, for CUDA tensors, the first of ``AUTO_PREFERENCE`` that is present, else ``torch``; a training
where both GPU backends are present times them at its own scans first and takes the faster (``auto_select.py``,
used by nnUNetTrainerSegResMamba). All backends take the same parameters, so one state_dict serves every
one of them. The GPU backends run as registered PyTorch operators (``ops.py``), so torch.compile traces a whole
network without a graph break.
"""

from .kernels import MAMBA_SSM_INSTALL_HINT as INSTALL_HINT
from .kernels import mamba_ssm_import_error, triton_import_error
from .reference import selective_scan_reference
from .registry import (AUTO_PREFERENCE, BACKEND_ENV, BACKENDS, GPU_BACKENDS, REGISTRY, ScanBackend, ScanBackendError,
                       SelectiveScan, available, pick_auto, requested_backend, resolve_backend, selective_scan,
                       unavailable_reason)
from .torch_scan import selective_scan_torch

# The GPU backends' scans under the names they had as functions of their own.
selective_scan_cuda = REGISTRY["cuda"].scan
selective_scan_triton = REGISTRY["triton"].scan


def mamba_ssm_available() -> bool:
    return available("cuda")


def triton_available() -> bool:
    return available("triton")


__all__ = [
    "AUTO_PREFERENCE",
    "BACKEND_ENV",
    "BACKENDS",
    "GPU_BACKENDS",
    "INSTALL_HINT",
    "REGISTRY",
    "ScanBackend",
    "ScanBackendError",
    "SelectiveScan",
    "available",
    "mamba_ssm_available",
    "mamba_ssm_import_error",
    "pick_auto",
    "requested_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_cuda",
    "selective_scan_reference",
    "selective_scan_torch",
    "selective_scan_triton",
    "triton_available",
    "triton_import_error",
    "unavailable_reason",
]
