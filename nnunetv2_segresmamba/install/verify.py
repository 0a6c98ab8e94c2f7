"""Checks an installation: which trainers nnU-Net finds, and which scan backend runs and whether it is right.

Run it in a fresh interpreter after installing (``nnunetv2-segresmamba-install verify``): the package's
``.pth`` hook, which tells nnU-Net where our trainers are, runs only at interpreter start.
"""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
from dataclasses import dataclass, field

# mamba-ssm's kernel keeps fp32 state; against the float64 reference its relative error is ~1e-7.
SCAN_TOLERANCE = 1e-4


@dataclass
class Verification:
    trainers_found: list[str] = field(default_factory=list)
    trainers_missing: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    backend: str = "torch"
    scan_errors: dict[str, float] = field(default_factory=dict)  # backend -> relative error vs the reference
    mamba_ssm_problem: str | None = None

    def failures(self, require_cuda_scan: bool = False) -> list[str]:
        failures = [f"nnU-Net does not find {name}: {why}" for name, why in self.trainers_missing.items()]
        if not self.trainers_found:
            failures.append("nnU-Net finds none of the trainers")
        failures += [f"the {backend} scan differs from the float64 reference by {error:.1e} (> {SCAN_TOLERANCE:.0e})"
                     for backend, error in self.scan_errors.items() if not error <= SCAN_TOLERANCE]
        if require_cuda_scan and "cuda" not in self.scan_errors:
            failures.append(f"mamba-ssm's CUDA scan does not run: {self.mamba_ssm_problem}")
        return failures


def find_trainers() -> tuple[list[str], dict[str, str]]:
    """Looks every trainer of this package up the way nnUNetv2_train does (through nnUNet_extTrainer)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from ..training import TRAINERS

    found, missing = [], {}
    for name in TRAINERS:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates its search
                trainer = recursive_find_trainer_class_by_name(name)
        except Exception as error:  # reported per trainer: the user sees which ones and why
            missing[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        else:
            if trainer.__name__ == name:
                found.append(name)
            else:
                missing[name] = f"nnU-Net returned {trainer.__module__}.{trainer.__name__}"
    return found, missing


def scan_error(scan, device) -> float:
    """Relative error of ``scan`` against the float64 reference on small random inputs on ``device``."""
    import torch

    from ..ssm import selective_scan_reference

    g = torch.Generator(device=device).manual_seed(0)
    channels, d_state, length = 8, 16, 100
    u = torch.randn(2, channels, length, device=device, generator=g)
    delta = torch.randn(2, channels, length, device=device, generator=g)
    A = -torch.rand(channels, d_state, device=device, generator=g) * 4 - 0.05
    B = torch.randn(2, 1, d_state, length, device=device, generator=g)
    C = torch.randn(2, 1, d_state, length, device=device, generator=g)
    D = torch.randn(channels, device=device, generator=g)
    delta_bias = torch.randn(channels, device=device, generator=g) * 0.5
    inputs = (u, delta, A, B, C)
    out = scan(*inputs, D=D, delta_bias=delta_bias)
    ref = selective_scan_reference(*(t.double() for t in inputs), D=D.double(), delta_bias=delta_bias.double())
    return ((out.double() - ref).norm() / ref.norm()).item()


def verify() -> Verification:
    result = Verification()
    # Trainers first: nnU-Net's lookup walks sys.modules, and mamba-ssm's import adds lazy modules to it.
    result.trainers_found, result.trainers_missing = find_trainers()

    import torch

    from ..ssm import REGISTRY, mamba_ssm_import_error, resolve_backend

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result.device = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    result.backend = resolve_backend(device)
    result.mamba_ssm_problem = mamba_ssm_import_error() if device.type == "cuda" else "no CUDA GPU visible"
    # Every registered backend that can run on this device, checked against the reference (but the reference).
    for name, backend in REGISTRY.items():
        if name != "reference" and (device.type == "cuda" or not backend.needs_cuda) \
                and backend.unavailable_reason() is None:
            result.scan_errors[name] = scan_error(backend.scan, device)
    return result


def report(result: Verification) -> str:
    lines = [f"nnU-Net finds {len(result.trainers_found)} trainers of this package "
             f"(nnUNet_extTrainer={os.environ.get('nnUNet_extTrainer', '')}):",
             textwrap.fill(", ".join(result.trainers_found), 110, initial_indent="  ", subsequent_indent="  ")]
    lines += [f"  NOT FOUND {name}: {why}" for name, why in result.trainers_missing.items()]
    lines.append(f"Device: {result.device}; SegResMamba's scan runs on the {result.backend!r} backend")
    for backend, error in result.scan_errors.items():
        name = {"cuda": "mamba-ssm's CUDA scan", "triton": "the Triton scan"}.get(backend, "the PyTorch scan")
        verdict = "ok" if error <= SCAN_TOLERANCE else "WRONG"
        lines.append(f"  {name} against the float64 reference: relative error {error:.1e} ({verdict})")
    if result.device == "cpu":
        lines.append("  no CUDA GPU visible: mamba-ssm's CUDA scan was not checked (it needs a GPU)")
    elif result.mamba_ssm_problem:
        lines.append(f"  mamba-ssm's CUDA scan is not available ({result.mamba_ssm_problem}); the PyTorch scan "
                     "is used instead: same results, slower (build it with `nnunetv2-segresmamba-install build-mamba`)")
    return "\n".join(lines)
