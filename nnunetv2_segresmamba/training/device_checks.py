"""Can SegResMamba run on the device nnU-Net was given? Checked when a trainer or predictor is set up, before
anything is written, instead of failing at the first forward pass with PyTorch's own message."""

from __future__ import annotations

import inspect
import os

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from ..ssm import resolve_backend

# Frames above build_network_architecture searched for the trainer or predictor that called it (a variant's
# override that calls super() adds one).
_MAX_BUILDER_DEPTH = 4


class DeviceUnavailableError(RuntimeError):
    """nnU-Net was asked to run on a device this machine does not have."""


def check_device(device: torch.device, command: str) -> None:
    """Raise with advice if ``device`` is a CUDA GPU and PyTorch finds none (nnU-Net's -device default)."""
    if device.type != "cuda" or torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        why = f"this PyTorch ({torch.__version__}) is a CPU-only build"
    else:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = (f"PyTorch {torch.__version__} (built for CUDA {torch.version.cuda}) finds no usable NVIDIA GPU"
               + (f" with CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""))
    raise DeviceUnavailableError(
        f"{command} runs on a CUDA GPU unless told otherwise (its -device defaults to cuda), but {why}. On a "
        f"machine without a GPU add `-device cpu` to the command (slow: see nnUNetTrainerSegResMamba_DemoCPU for "
        f"the network size a CPU trains in minutes); on a GPU machine check `nvidia-smi` and CUDA_VISIBLE_DEVICES.")


def check_scan_backend(device: torch.device | None = None, scan_backend: str | None = None) -> str:
    """The backend that ``scan_backend`` (default: SEGRESMAMBA_SCAN_BACKEND) runs on ``device``, or
    ssm.ScanBackendError with advice. Without a device, the machine's GPU if it has one."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_backend(device, scan_backend)


def check_training_device(device: torch.device, scan_backend: str | None = None) -> str:
    """For a trainer's __init__ (nnU-Net creates the fold folder and its log right after)."""
    check_device(device, "nnUNetv2_train")
    return check_scan_backend(device, scan_backend)


def check_build_device(scan_backend: str | None = None) -> str:
    """For build_network_architecture, which nnU-Net calls without a device: the device is that of the
    trainer or predictor calling it (their ``self.device``; the predictor's is nnUNetv2_predict's -device).
    Called from elsewhere (a script building the network itself), the machine's GPU if it has one."""
    builder = _network_builder()
    if isinstance(builder, nnUNetPredictor):
        check_device(builder.device, "nnUNetv2_predict")
    return check_scan_backend(None if builder is None else torch.device(builder.device), scan_backend)


def _network_builder() -> nnUNetTrainer | nnUNetPredictor | None:
    frame = inspect.currentframe()
    try:
        for _ in range(_MAX_BUILDER_DEPTH + 2):  # + this function and check_build_device
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if isinstance(owner, (nnUNetTrainer, nnUNetPredictor)):
                return owner
        return None
    finally:
        del frame  # a frame kept alive holds every local of the stack above it
