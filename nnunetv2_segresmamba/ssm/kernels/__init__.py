"""The GPU kernels of the selective scan, and whether each family can run on this machine.

``triton_scan.py`` holds our Triton kernels; mamba-ssm's CUDA kernels live in its compiled extension
``selective_scan_cuda``. Neither is imported at package load: CPU-only PyTorch builds have no Triton, and
``import mamba_ssm`` fails outright without its compiled extension. The probes below import them once, on
first use, and say why not; ``ssm/ops.py`` runs both families as registered PyTorch operators.
"""

from __future__ import annotations

import functools

MAMBA_SSM_INSTALL_HINT = (
    "Build mamba-ssm for this machine's GPU with `nnunetv2-segresmamba-install build-mamba` (needs nvcc and a "
    "CUDA build of torch; mamba-ssm ships only as source), or, on a node without internet, install an "
    "offline bundle made with `nnunetv2-segresmamba-install bundle` (see the README's Install section). "
    "Set SEGRESMAMBA_SCAN_BACKEND=torch to run without it."
)
TRITON_INSTALL_HINT = "it ships with the CUDA builds of PyTorch on Linux (pip install triton)."


def _import_error(importer) -> str | None:
    try:
        importer()
    except Exception as error:  # ImportError, OSError from a broken .so, a Triton too old for our kernels...
        return f"{type(error).__name__}: {error}"
    return None


def _import_mamba_ssm_scan() -> None:
    import selective_scan_cuda  # noqa: F401  (the compiled extension our operator calls)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401


def _import_triton_scan() -> None:
    from . import triton_scan  # noqa: F401


@functools.lru_cache(maxsize=1)
def mamba_ssm_import_error() -> str | None:
    """None when mamba-ssm's selective scan kernel imports, else why it does not."""
    return _import_error(_import_mamba_ssm_scan)


@functools.lru_cache(maxsize=1)
def triton_import_error() -> str | None:
    """None when our Triton kernels import, else why they do not."""
    return _import_error(_import_triton_scan)


def mamba_ssm_unavailable() -> str | None:
    """None when the ``cuda`` backend's kernels import here, else why not and what to do."""
    error = mamba_ssm_import_error()
    return None if error is None else f"mamba-ssm cannot be imported ({error}). {MAMBA_SSM_INSTALL_HINT}"


def triton_unavailable() -> str | None:
    """None when the ``triton`` backend's kernels import here, else why not and what to do."""
    error = triton_import_error()
    return None if error is None else f"Triton cannot be imported ({error}); {TRITON_INSTALL_HINT}"
